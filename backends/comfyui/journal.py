"""The local journal of jobs: an append-only JSON-lines file in the output folder.

One line per event (``submitting``, ``submitted``, ``done``, ``failed``),
each written with a single ``write`` on an ``O_APPEND`` descriptor and
fsynced, so a crash (kill -9) loses at most the line being written; a torn
last line is ignored on reading. Records are merged per job key: the last
value of each field wins.

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


#: Name of the job journal kept in an output folder (``soulid run --out``, campaigns).
JOURNAL_NAME = ".soulid-jobs.jsonl"


class Journal:
    """Merged job records from ``path`` (created on first write)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.records: dict[str, dict] = {}
        self._lock = threading.Lock()
        try:
            lines = self.path.read_bytes().splitlines()
        except FileNotFoundError:
            lines = []
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line torn by a crash
            if isinstance(rec, dict) and isinstance(rec.get("key"), str):
                self.records.setdefault(rec["key"], {}).update(rec)

    def get(self, key: str) -> dict:
        with self._lock:
            return dict(self.records.get(key, {}))

    def record(self, key: str, **fields) -> dict:
        """Append one event for ``key``; return the merged record."""
        rec = {"key": key, "t": round(time.time(), 3), **fields}
        line = (json.dumps(rec, ensure_ascii=True) + "\n").encode()
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
            merged = self.records.setdefault(key, {})
            merged.update(rec)
            return dict(merged)
