"""Running one job on one worker: upload, submit once, follow, download.

:func:`execute` is used by ``soulid run`` (one job) and by campaigns (many);
it writes the :class:`~.journal.Journal` before and after every step that
creates something on a server, so a rerun after a crash picks the job up
where it was instead of queueing it again.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

from ...soul.paths import try_lock
from .base import (QUEUED, SUCCEEDED, TERMINAL, UNKNOWN, Deadline, DeadlineExceeded, JobState, ServerError, Upload, Worker,
                   WorkerDown, job_key)
from .journal import Journal
from .transfer import MAX_OUTPUT_BYTES, safe_name

POLL_START_S, POLL_MAX_S = 0.2, 2.0


class JobLost(ServerError):
    """The worker no longer knows a job it accepted (it restarted): the job
    may be submitted again (on any worker)."""


@dataclass
class GraphJob:
    """One job: the graph after overrides, the files to upload, a label.

    ``label``: prefix of the local output names (campaign rows); empty for
    ``soulid run``, which keeps the server's subfolders (made safe).
    ``salt``: anything that must make an otherwise identical job new.
    """

    graph: dict
    uploads: list[Upload] = field(default_factory=list)
    label: str = ""
    salt: str = ""
    key: str = ""

    def __post_init__(self):
        if not self.key:
            keyed = copy.deepcopy(self.graph)
            hashes = {}
            for u in self.uploads:
                ref = f"{u.node_id}.{u.input}"
                hashes[ref] = u.content_hash()
                keyed[u.node_id]["inputs"][u.input] = hashes[ref]
            self.key = job_key(keyed, hashes, self.salt)


@dataclass
class JobResult:
    """How a job ended. ``status``: ``done`` / ``failed``; ``files`` are
    relative to the output folder; ``reused``: finished in an earlier run
    (nothing was submitted now)."""

    key: str
    status: str
    worker: str = ""
    job_id: str = ""
    files: list[str] = field(default_factory=list)
    texts: dict = field(default_factory=dict)
    error: str = ""
    reused: bool = False
    nodes: list[str] = field(default_factory=list)  # the node id that made each of ``files``


def _local_path(out_dir: Path, label: str, subfolder: str, name: str, fallback: str) -> Path:
    if label:
        return out_dir / f"{label}_{safe_name(name, fallback)}"
    parts = [safe_name(p, "_") for p in PurePosixPath(subfolder.replace("\\", "/")).parts
             if p not in ("", ".", "..", "/")]
    return out_dir.joinpath(*parts, safe_name(name, fallback))


def drift_score(texts: dict) -> float | None:
    """The kept (or best) similarity from a Drift Guard report among text outputs, if any."""
    best = None
    for items in texts.values():
        for t in items:
            for line in str(t).splitlines()[::-1]:
                try:
                    rep = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rep, dict) and isinstance(rep.get("entries"), list):
                    sims = [e.get("similarity") for e in rep["entries"] if isinstance(e, dict)]
                    idx = rep.get("best")
                    if isinstance(idx, int) and 0 <= idx < len(sims) and isinstance(sims[idx], (int, float)):
                        s = float(sims[idx])
                    else:
                        nums = [float(x) for x in sims if isinstance(x, (int, float))]
                        s = max(nums) if nums else None
                    if s is not None and (best is None or s > best):
                        best = s
                break
    return best


@contextmanager
def _download_claim(out_dir: Path, what: str, deadline: Deadline):
    """Hold an OS file lock (``out_dir/.soulid-locks/<hash>``) while one output is
    fetched, so that two runs on one ``--out`` fetch it once: the second waits,
    then finds it in the journal. Released on exit or when the process dies.

    The folder stays: removing it when empty raced with a concurrent claim that
    had just made it (``FileNotFoundError`` on open, ``FileExistsError`` from
    ``mkdir``), which failed rows of a ``--per-worker 4`` campaign."""
    d = out_dir / ".soulid-locks"
    d.mkdir(parents=True, exist_ok=True)
    path = d / hashlib.sha256(what.encode()).hexdigest()[:24]
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    held = False
    try:
        while not try_lock(fd):
            if deadline.left() < 0.2:
                raise DeadlineExceeded(f"{what}: another run on {out_dir} is still downloading it")
            time.sleep(0.1)
        held = True
        yield
    finally:
        if held:
            # Tidied while still held: a waiter (or a later run) that then locks a new file
            # finds the output in the journal, which is read after the lock is taken.
            path.unlink(missing_ok=True)
        os.close(fd)


def execute(worker: Worker, spec: GraphJob, journal: Journal, out_dir: Path, deadline: Deadline, *,
            max_bytes: int = MAX_OUTPUT_BYTES, on_state: Callable[[JobState], None] | None = None,
            log: Callable[[str], None] = lambda m: None) -> JobResult:
    """Run ``spec`` on ``worker`` (or pick up its earlier run) and download its outputs.

    Returns:
        A :class:`JobResult` (``done`` or ``failed``: a failed node is
        recorded, not retried).

    Raises:
        WorkerDown: the worker is unusable (the job may go elsewhere).
        JobLost: the worker forgot the job (it may be submitted again).
        JobRefused: the graph was refused. ServerError: a malformed answer.
        DeadlineExceeded: ``deadline`` passed (the job stays on the server).
    """
    journal.refresh()  # another process on the same --out may have finished it
    rec = journal.get(spec.key)
    if rec.get("event") in ("done", "failed"):
        return JobResult(spec.key, rec["event"], rec.get("worker", ""), rec.get("job_id", ""),
                         list(rec.get("files") or []), rec.get("texts") or {}, rec.get("error", ""), reused=True,
                         nodes=list(rec.get("nodes") or []))
    job_id = rec.get("job_id") if rec.get("worker") == worker.url else None
    if not job_id:
        graph = worker.prepare(copy.deepcopy(spec.graph), spec.uploads, deadline)
        journal.record(spec.key, event="submitting", worker=worker.url, job_id=None, label=spec.label)
        try:
            job_id = worker.submit(graph, spec.key, deadline)
        except WorkerDown as e:
            if e.no_job:  # surely not sent or refused: no job there, the row may go elsewhere
                journal.record(spec.key, event="unsent", worker=worker.url, job_id=None)
            raise
        journal.record(spec.key, event="submitted", worker=worker.url, job_id=job_id)
        log(f"queued job {job_id} on {worker.url}")
    wait, shown = POLL_START_S, None
    while True:
        st = worker.state(job_id, deadline)
        if st.status in TERMINAL:
            break
        if st.status == UNKNOWN:
            journal.record(spec.key, event="lost", job_id=None)
            raise JobLost(f"{worker.url} no longer knows job {job_id} (restarted?)")
        if on_state:
            on_state(st)
        shown_now = st.status + (f" ({st.queue_position - 1} ahead)" if st.status == QUEUED and st.queue_position else "")
        if shown_now != shown:
            log(f"  {shown_now}")
            shown = shown_now
        if deadline.left() < wait:
            raise DeadlineExceeded(f"job {job_id} is still {st.status} on {worker.url} (not cancelled; "
                                   f"a rerun with the same --out picks it up)")
        time.sleep(wait)
        wait = min(wait * 2, POLL_MAX_S)
    if on_state:
        on_state(st)
    if st.status != SUCCEEDED:
        journal.record(spec.key, event="failed", worker=worker.url, job_id=job_id, error=st.error or st.status)
        return JobResult(spec.key, "failed", worker.url, job_id, [], st.texts, st.error or st.status)
    files = []
    got = dict(journal.get(spec.key).get("got") or {})  # downloads finished before a crash
    for i, o in enumerate(st.outputs):
        tag = f"{job_id}:{i}"
        with _download_claim(out_dir, f"{worker.url} {tag}", deadline):  # one process per output on a shared --out
            if tag not in got:
                journal.refresh()  # downloaded meanwhile by another process on the same --out?
                got.update(journal.get(spec.key).get("got") or {})
            if isinstance(got.get(tag), str) and (out_dir / got[tag]).is_file():
                files.append(got[tag])
                continue
            target = _local_path(out_dir, spec.label, str(o.ref.get("subfolder") or ""), o.name, f"output_{i}")
            path = worker.download(o, target, max_bytes, deadline)
            files.append(str(path.relative_to(out_dir)))
            got[tag] = files[-1]
            journal.record(spec.key, event="downloading", got={tag: files[-1]})
    nodes = [o.node_id for o in st.outputs]
    journal.record(spec.key, event="done", worker=worker.url, job_id=job_id, files=files, nodes=nodes, texts=st.texts)
    return JobResult(spec.key, "done", worker.url, job_id, files, st.texts, nodes=nodes)
