"""A full disk under the job ledger (simulated with ``RLIMIT_FSIZE``: every
write past the limit fails as on a full disk): ``soulid jobs`` says what
happened, exits 2, prints no traceback, and the ledger is intact after."""
from __future__ import annotations

import os
import resource
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from soulid.backends.ledger import Ledger

REPO = Path(__file__).resolve().parent.parent


def soulid(data: Path, *args, limit: int | None = None) -> subprocess.CompletedProcess:
    def cap():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "SOULID_DATA_DIR": str(data),
           "PYTHONPATH": os.pathsep.join([str(REPO.parent), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "soulid", *args], env=env, capture_output=True, text=True,
                          timeout=120, preexec_fn=cap if limit is not None else None)


@pytest.mark.parametrize("existing", [False, True], ids=["new_ledger", "existing_ledger"])
def test_jobs_on_a_full_disk_is_a_clear_error(tmp_path, existing):
    data = tmp_path / "data"
    if existing:
        assert soulid(data, "jobs").returncode == 0
        with sqlite3.connect(data / "jobs.sqlite3") as c:
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = (data / "jobs.sqlite3").read_bytes() if existing else b""
    p = soulid(data, "jobs", limit=0)
    assert p.returncode == 2, p.stderr[-2000:]
    assert "Traceback" not in p.stderr and "job ledger" in p.stderr and "free some space" in p.stderr, p.stderr
    if existing:
        assert (data / "jobs.sqlite3").read_bytes() == before
        assert soulid(data, "jobs").returncode == 0


def test_a_write_on_a_full_disk_is_a_ledger_error(tmp_path):
    from soulid.backends.ledger import LedgerError

    led = Ledger(tmp_path / "jobs.sqlite3")
    err = sqlite3.OperationalError("database or disk is full")
    e = LedgerError(led.path, err)
    assert "disk is full" in str(e) and str(led.path) in str(e) and not e.locked


def test_run_with_a_full_disk_under_the_journal_is_a_clear_error(tmp_path):
    import json

    from fake_comfy import FakeComfy

    graph = {"1": {"class_type": "SoulIDLoad", "inputs": {"name": "my_soul"}},
             "2": {"class_type": "SoulIDGenerate", "inputs": {"soul_id": ["1", 0], "prompt": "p", "seed": 5}},
             "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "s"}}}
    (tmp_path / "wf.json").write_text(json.dumps(graph))
    with FakeComfy(polls_pending=0, polls_running=0) as fake:
        p = soulid(tmp_path / "data", "run", tmp_path / "wf.json", "--server", "native+" + fake.url,
                   "--out", tmp_path / "o", "--timeout", "60", limit=0)
    assert p.returncode == 2, p.stderr[-2000:]
    assert "Traceback" not in p.stderr and "cannot write the job journal" in p.stderr, p.stderr
