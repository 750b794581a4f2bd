"""The local journal of jobs: an append-only JSON-lines file in the output folder.

One line per event (``submitting``, ``submitted``, ``done``, ``failed``),
each written with a single ``write`` on an ``O_APPEND`` descriptor and
fsynced, so a crash (kill -9) loses at most the line being written; a torn
last line is ignored on reading. Records are merged per job key: the last
value of each field wins, except ``got`` (``{output tag: local file}``):
each ``downloading`` line carries only the file it finished, and the maps
are merged, so the journal grows by one short line per download (linearly
in the outputs).

A job whose key has a ``submitted`` line is polled on its worker instead of
being queued again; a ``done`` job is not touched. The journal never holds
a credential (workers are recorded by URL, which :mod:`.dispatch` refuses
to carry user:password).
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from ...soul.errors import SoulIDError


class JournalError(SoulIDError):
    """The journal cannot be written (a full disk, a read-only folder)."""


#: Name of the job journal kept in an output folder (``soulid run --out``, campaigns).
JOURNAL_NAME = ".soulid-jobs.jsonl"


class Journal:
    """Merged job records from ``path`` (created on first write)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.records: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._offset = 0
        self.refresh()

    def refresh(self) -> None:
        """Merge the lines other processes appended since the last read (two
        campaigns on one output folder see each other's downloads)."""
        with self._lock:
            try:
                with open(self.path, "rb") as f:
                    f.seek(self._offset)
                    data = f.read()
            except FileNotFoundError:
                return
            end = data.rfind(b"\n") + 1  # a line still being written is read next time
            for line in data[:end].splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a line torn by a crash
                if isinstance(rec, dict) and isinstance(rec.get("key"), str):
                    _merge(self.records.setdefault(rec["key"], {}), rec)
            self._offset += end

    def get(self, key: str) -> dict:
        with self._lock:
            return dict(self.records.get(key, {}))

    def record(self, key: str, **fields) -> dict:
        """Append one event for ``key``; return the merged record."""
        rec = {"key": key, "t": round(time.time(), 3), **fields}
        line = (json.dumps(rec, ensure_ascii=True) + "\n").encode()
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as e:
                raise JournalError(f"cannot write the job journal {self.path} ({e.strerror or e}); "
                                   f"free some space and run the same command again") from None
            merged = self.records.setdefault(key, {})
            _merge(merged, rec)
            return dict(merged)


def _merge(merged: dict, rec: dict) -> None:
    got = rec.get("got")
    if isinstance(got, dict):
        old = merged.get("got")
        rec = {**rec, "got": {**(old if isinstance(old, dict) else {}), **got}}
    merged.update(rec)
