"""The job ledger: one SQLite file that remembers every paid request.

``<data dir>/jobs.sqlite3`` (:func:`soulid.soul.paths.data_dir`; SQLite is the
embedded database in Python's standard library, https://sqlite.org/wal.html).
A row is written *before* the submit POST (state ``submitting``, with the
Idempotency-Key) and updated with the provider's request id as soon as the
POST answers. A re-queued workflow, a restarted ComfyUI or a ``kill -9``
therefore finds the row by request fingerprint and resumes the same request
(or, in state ``submitting``, resends the POST with the *same* key) instead of
paying again.

States: ``submitting | queued | running | succeeded | failed | moderated |
canceled | bad_response``. ``bad_response``: the provider answered something
that is not its documented shape (HTML, no request id, an unknown status);
the row keeps the reason in ``error`` and is resumed like an active job
(resent with the same Idempotency-Key when no request id is known).

Rows never hold credentials: the body stored is the request's fingerprint
body (image bytes replaced by their SHA-256), and every text column is passed
through :func:`~.credentials.redact` on the way in and out, so provider error
text that echoes a key is stored and shown masked.

The file is created mode 0600 in a 0700 folder; concurrent processes are
serialised by SQLite's locks (WAL, ``busy_timeout`` 30 s, ``BEGIN IMMEDIATE``
for the insert), and :meth:`Ledger.reserve` never raises on a row another
process inserted first.
"""
from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..soul.errors import SoulIDError
from ..soul.paths import data_dir
from .credentials import redact, remember_configured_keys


def _private_dir(d: Path) -> None:
    """Create ``d`` mode 0700 (parents as the umask says); tighten it if it
    is ours and open to group or others."""
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.name == "posix":
        st = d.stat()
        if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(d, 0o700)


def _private_file(p: Path) -> None:
    """Create ``p`` mode 0600 before SQLite opens it (its -wal and -shm files
    take the same mode); tighten an existing file of ours."""
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    if os.name == "posix":
        st = p.stat()
        if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(p, 0o600)

TERMINAL = ("succeeded", "failed", "moderated", "canceled")
ACTIVE = ("submitting", "queued", "running")
#: The provider's answer could not be read; resumable like :data:`ACTIVE`.
BAD_RESPONSE = "bad_response"
RESUMABLE = ACTIVE + (BAD_RESPONSE,)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    idem_key     TEXT PRIMARY KEY,
    fingerprint  TEXT NOT NULL,
    attempt      INTEGER NOT NULL DEFAULT 0,
    provider     TEXT NOT NULL,
    endpoint     TEXT NOT NULL,
    kind         TEXT NOT NULL,
    state        TEXT NOT NULL,
    request_id   TEXT,
    status_url   TEXT,
    cancel_url   TEXT,
    body         TEXT,
    cost         TEXT,
    files        TEXT,
    error        TEXT,
    created      REAL NOT NULL,
    updated      REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_fp ON jobs(fingerprint);
CREATE INDEX IF NOT EXISTS jobs_rid ON jobs(request_id);
"""


@dataclass
class JobRow:
    """One ledger row (see the module docstring for the states)."""

    idem_key: str
    fingerprint: str
    attempt: int
    provider: str
    endpoint: str
    kind: str
    state: str
    request_id: str | None = None
    status_url: str | None = None
    cancel_url: str | None = None
    body: dict = field(default_factory=dict)
    cost: dict = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    error: str | None = None
    created: float = 0.0
    updated: float = 0.0

    @classmethod
    def _from(cls, r: sqlite3.Row) -> "JobRow":
        d = {k: redact(v) if isinstance(v, str) else v for k, v in dict(r).items()}
        for k, empty in (("body", {}), ("cost", {}), ("files", [])):
            d[k] = json.loads(d[k]) if d[k] else empty
        return cls(**d)


class LedgerError(SoulIDError):
    """The ledger database cannot be read or written (disk full, unreadable,
    corrupt). ``locked``: another process holds it (a retry may succeed)."""

    def __init__(self, path: Path, e: Exception):
        text = str(e)
        self.locked = "locked" in text
        if "full" in text or "No space" in text or "too large" in text:
            reason = "the disk is full; free some space and try again (what the ledger holds is intact)"
        elif "disk I/O error" in text:
            reason = ("a disk I/O error (a full disk, a file size limit or a failing drive); free some space "
                      "and try again (what the ledger holds is intact)")
        elif "readonly" in text or "read-only" in text:
            reason = "it is read-only"
        elif "unable to open" in text:
            reason = "it cannot be opened (check the folder exists and is writable)"
        elif "malformed" in text or "not a database" in text:
            reason = f"it is damaged ({text}); move it aside to start a new one"
        else:
            reason = text
        super().__init__(f"job ledger {path}: {reason}")


class Ledger:
    """SQLite job ledger; safe to share between threads and processes.

    Args:
        path: database file (default ``<data dir>/jobs.sqlite3``).
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else data_dir() / "jobs.sqlite3"
        try:
            _private_dir(self.path.parent)
            _private_file(self.path)
        except OSError as e:
            raise LedgerError(self.path, OSError(e.strerror or str(e))) from None
        self._lock = threading.Lock()
        remember_configured_keys()
        for attempt in range(50):  # a first-time WAL switch in two processes at once
            try:
                with self._conn() as c:
                    if c.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                        c.execute("PRAGMA journal_mode=WAL")
                    c.executescript(_SCHEMA)
                break
            except LedgerError as e:
                if not e.locked or attempt == 49:
                    raise
                time.sleep(0.05)

    def _connect(self) -> sqlite3.Connection:
        c = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        c.row_factory = sqlite3.Row
        c.execute("PRAGMA busy_timeout=30000")
        c.execute("PRAGMA synchronous=FULL")
        return c

    @contextmanager
    def _conn(self):
        """A connection that is closed afterwards (``sqlite3.Connection`` as a
        context manager only commits)."""
        try:
            c = self._connect()
        except sqlite3.Error as e:
            raise LedgerError(self.path, e) from None
        try:
            yield c
        except sqlite3.Error as e:
            raise LedgerError(self.path, e) from None
        finally:
            c.close()

    def _one(self, sql: str, args=()) -> JobRow | None:
        with self._lock, self._conn() as c:
            r = c.execute(sql, args).fetchone()
        return JobRow._from(r) if r else None

    def latest(self, fingerprint: str) -> JobRow | None:
        """The newest attempt for ``fingerprint``, or None."""
        return self._one("SELECT * FROM jobs WHERE fingerprint=? ORDER BY attempt DESC LIMIT 1", (fingerprint,))

    def get(self, ref: str) -> JobRow | None:
        """Find a row by request id, Idempotency-Key or fingerprint (prefixes of
        8+ characters accepted)."""
        row = self._one("SELECT * FROM jobs WHERE request_id=? OR idem_key=?", (ref, ref))
        if row is None and len(ref) >= 8:
            row = self._one(
                "SELECT * FROM jobs WHERE request_id LIKE ? OR idem_key LIKE ? OR fingerprint LIKE ? "
                "ORDER BY updated DESC LIMIT 1",
                (ref + "%", ref + "%", ref + "%"),
            )
        return row

    def reserve(self, row: JobRow) -> JobRow:
        """Insert ``row`` (state ``submitting``) before the submit is sent.

        Returns:
            ``row``, or the row another thread or process inserted first with
            the same Idempotency-Key (then nothing is written: the caller
            resumes that row instead of paying again).
        """
        now = time.time()
        with self._lock, self._conn() as c:
            c.execute("BEGIN IMMEDIATE")
            try:
                old = c.execute("SELECT * FROM jobs WHERE idem_key=?", (row.idem_key,)).fetchone()
                if old is None:
                    c.execute(
                        "INSERT INTO jobs (idem_key, fingerprint, attempt, provider, endpoint, kind, state, body, "
                        "created, updated) VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (row.idem_key, row.fingerprint, row.attempt, row.provider, row.endpoint, row.kind,
                         "submitting", redact(json.dumps(row.body, sort_keys=True)), now, now),
                    )
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        return row if old is None else JobRow._from(old)

    def update(self, idem_key: str, **fields) -> None:
        """Set columns of the row ``idem_key`` (dict/list values stored as JSON)."""
        if not fields:
            return
        cols, vals = [], []
        for k, v in fields.items():
            cols.append(f"{k}=?")
            v = json.dumps(v) if isinstance(v, (dict, list)) else v
            vals.append(redact(v) if isinstance(v, str) else v)
        cols.append("updated=?")
        vals += [time.time(), idem_key]
        with self._lock, self._conn() as c:
            c.execute(f"UPDATE jobs SET {', '.join(cols)} WHERE idem_key=?", vals)

    def list(self, limit: int = 50, states: tuple[str, ...] | None = None) -> list[JobRow]:
        """Newest rows first, optionally only those in ``states``."""
        sql, args = "SELECT * FROM jobs", []
        if states:
            sql += f" WHERE state IN ({','.join('?' * len(states))})"
            args += list(states)
        sql += " ORDER BY updated DESC LIMIT ?"
        with self._lock, self._conn() as c:
            rows = c.execute(sql, (*args, limit)).fetchall()
        return [JobRow._from(r) for r in rows]
