"""The interface every ComfyUI-server client implements, and what they share.

A *job* is one API-format graph (``{node_id: {"class_type", "inputs"}}``)
plus the local files it needs uploaded. Its **key** is the SHA-256 of the
graph after overrides (canonical JSON) and of its inputs' content hashes:
the same graph with the same photos always has the same key, on every
worker. v2 servers receive it as the ``Idempotency-Key`` header; native
servers get a ``prompt_id`` derived from it (ComfyUI 0.3.64's ``POST
/prompt`` takes a client-chosen ``prompt_id``), so a rerun finds the job
instead of queueing it again.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

from ...soul.errors import SoulIDError
from .. import http

#: Job states, the v2 contract's names (native states are mapped onto them).
QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED, UNKNOWN = (
    "queued", "running", "succeeded", "failed", "canceled", "unknown")
TERMINAL = (SUCCEEDED, FAILED, CANCELED)
#: Seconds one HTTP request may take at most (less when a deadline is nearer).
REQUEST_TIMEOUT_S = 30.0
#: Largest answer body (JSON, error text) read from a server, bytes; read as a
#: stream, so a bigger answer is refused after this many bytes, not held whole.
MAX_ANSWER_BYTES = 32 << 20
#: Deepest nesting accepted in a server's JSON answer.
MAX_JSON_DEPTH = 64


class ServerError(SoulIDError):
    """A server answered something unusable (malformed JSON, a field of the
    wrong type). The message names the server, the route and the field."""


class WorkerDown(ServerError):
    """The server cannot be reached, timed out, or refused the request (5xx;
    401, 403 or 429 from a v2 gateway): it takes no new jobs.

    ``no_job`` is True when the request surely created no job: the connection
    was never made, or an auth or rate-limit refusal. Otherwise (a timeout, a
    dropped connection, 5xx) a submit may have reached the server."""

    def __init__(self, message: str, *, no_job: bool = False):
        super().__init__(message)
        self.no_job = no_job


class JobRefused(ServerError):
    """The server refused the graph (ComfyUI's validation, HTTP 400 / v2 422).
    Resubmitting the same graph elsewhere would be refused again.

    Attributes:
        details: the server's reason, with every node error, one per line.
    """

    def __init__(self, message: str, details: str = ""):
        self.details = details
        super().__init__(message + (f":\n{details}" if details else ""))


class DeadlineExceeded(SoulIDError):
    """A total deadline (``--timeout``, a download's deadline) passed."""


def check_seconds(value: float, what: str) -> float:
    """``value`` when it is a finite number > 0.

    Raises:
        SoulIDError: NaN, infinite, zero or negative (names ``what``).
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise SoulIDError(f"{what} {value!r}: not a number") from None
    if not math.isfinite(v) or v <= 0:
        raise SoulIDError(f"{what} {value!r}: must be a finite number of seconds above 0")
    return v


class Deadline:
    """A point in monotonic time; ``left()`` seconds remain (never below 0)."""

    def __init__(self, seconds: float):
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def timeout(self, cap: float = REQUEST_TIMEOUT_S) -> float:
        """A per-request timeout: ``cap`` or what is left, whichever is less (>= 0.05 s)."""
        return max(0.05, min(cap, self.left()))


def json_too_deep(value, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when a parsed JSON value nests lists/objects deeper than ``limit`` (iterative walk)."""
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        elif not isinstance(v, list):
            continue
        if d > limit:
            return True
        stack.extend((x, d + 1) for x in v if isinstance(x, (dict, list)))
    return False


def file_sha256(path: Path) -> str:
    """``sha256:<hex>`` of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def canonical_json(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def job_key(graph: dict, input_hashes: dict[str, str] | None = None, salt: str = "") -> str:
    """The job's key: 64 hex chars of SHA-256 over the graph (canonical JSON)
    and ``{placeholder: content hash}`` of its uploaded inputs. ``salt``
    (e.g. ``"retry-1"``) makes a deliberate new attempt a new job."""
    h = hashlib.sha256(canonical_json({"graph": graph, "inputs": input_hashes or {}, "salt": salt}))
    return h.hexdigest()


@dataclass
class Upload:
    """Local files a job needs on the server.

    ``files`` are uploaded (each once per worker, by content hash) into one
    server-side input folder; the node input ``node_id.input`` then receives
    the folder name (``folder=True``) or the single file's name.
    """

    node_id: str
    input: str
    files: list[Path]
    folder: bool = False
    hashes: list[str] = field(default_factory=list)

    def content_hash(self) -> str:
        if not self.hashes:
            self.hashes = [file_sha256(p) for p in self.files]
        lines = [f"{p.name}\t{h}" if self.folder else h for p, h in zip(self.files, self.hashes)]
        return "sha256:" + hashlib.sha256("\n".join(lines).encode("utf-8", "surrogateescape")).hexdigest()


@dataclass
class Output:
    """One file a job made, as the server described it.

    ``name`` is the server's name for it: shown to the user, never used
    unchecked as a local path (see :mod:`.transfer`). ``ref`` is what the
    client needs to fetch it (``/view`` parameters or a v2 content URL).
    """

    node_id: str
    name: str
    kind: str
    ref: dict


@dataclass
class JobState:
    """A job's state on its worker.

    Attributes:
        status: one of ``queued running succeeded failed canceled unknown``
            (``unknown``: the worker does not know the job, e.g. restarted).
        outputs: files made (on success; partial outputs on failure).
        texts: ``{node_id: [text, ...]}`` of text outputs (native only: the
            v2 contract lists file outputs only).
        error: ``"node ID (TYPE) failed: MESSAGE"`` on failure.
        queue_position: 1-based place in the queue while queued, if known.
    """

    status: str
    outputs: list[Output] = field(default_factory=list)
    texts: dict[str, list[str]] = field(default_factory=dict)
    error: str = ""
    queue_position: int | None = None


class Worker(Protocol):
    """One ComfyUI server, native or v2. Every method raises
    :class:`WorkerDown` when the server cannot be reached and
    :class:`ServerError` on an answer it cannot use."""

    url: str
    kind: str  # "native" or "v2"

    def prepare(self, graph: dict, uploads: list[Upload], deadline: Deadline) -> dict:
        """``graph`` with every upload sent (once per content hash) and its
        node input pointing at the uploaded file or folder."""

    def submit(self, graph: dict, key: str, deadline: Deadline) -> str:
        """Queue ``graph`` under ``key`` and return the job id; an existing
        job with the same key is returned instead of a second one.

        Raises:
            JobRefused: the server's validation refused the graph.
        """

    def find(self, key: str, deadline: Deadline) -> str | None:
        """The id of the job submitted under ``key``, or None."""

    def state(self, job_id: str, deadline: Deadline) -> JobState:
        """The job's current :class:`JobState`."""

    def download(self, output: Output, dest: Path, max_bytes: int, deadline: Deadline) -> Path:
        """Stream one output to ``dest`` (see :func:`.transfer.stream_to_file`)."""

    def close(self) -> None: ...


class HttpWorker:
    """What the native and the v2 clients share: one ``httpx.Client`` on the
    server's base URL and one way to call it under a :class:`Deadline`.

    Subclasses set ``kind`` and ``server`` (words for messages) and may
    override :meth:`check` to turn more status codes into :class:`WorkerDown`.
    """

    kind = ""
    server = "the server"

    def __init__(self, url: str, client: httpx.Client | None = None,
                 request_timeout: float = REQUEST_TIMEOUT_S, headers: dict | None = None):
        self.url = url.rstrip("/")
        self.request_timeout = request_timeout
        self.client = client or http.client(self.url, timeout=30.0, headers=headers, trust_env=False)

    def close(self) -> None:
        self.client.close()

    def _call(self, method: str, path: str, deadline: Deadline, **kw) -> httpx.Response:
        """One request, bounded by ``deadline`` and the per-request timeout;
        its body is read as a stream of at most :data:`MAX_ANSWER_BYTES`
        within the same time (a body that trickles ends there too).

        Raises:
            DeadlineExceeded: the deadline passed while waiting.
            WorkerDown: no answer, a transport error, a status :meth:`check`
                refuses, or a body still arriving after the request's time.
            ServerError: a body over :data:`MAX_ANSWER_BYTES`.
        """
        limit = deadline.timeout(self.request_timeout)
        started = time.monotonic()
        try:
            req = self.client.build_request(method, path, timeout=limit, **kw)
            r = self.client.send(req, stream=True)
            try:
                length = r.headers.get("content-length", "")
                if length.isdigit() and int(length) > MAX_ANSWER_BYTES:
                    raise ServerError(f"{self.url}{path}: the answer is {int(length) >> 20} MiB, over "
                                      f"{MAX_ANSWER_BYTES >> 20} MiB; refused without reading it")
                chunks, n = [], 0
                for chunk in r.iter_bytes():
                    n += len(chunk)
                    if n > MAX_ANSWER_BYTES:
                        raise ServerError(f"{self.url}{path}: the answer is over {MAX_ANSWER_BYTES >> 20} MiB; "
                                          f"refused without reading the rest")
                    chunks.append(chunk)
                    if time.monotonic() - started > limit:
                        raise httpx.ReadTimeout("answer still arriving", request=req)
            finally:
                r.close()
        except httpx.TimeoutException as e:
            if deadline.left() < 0.1:
                raise DeadlineExceeded(f"{self.url}{path} did not answer before the deadline") from None
            raise WorkerDown(f"{self.url}{path}: no answer in {self.request_timeout:g} s",
                             no_job=isinstance(e, httpx.ConnectTimeout)) from None
        except httpx.TransportError as e:
            raise WorkerDown(f"cannot reach {self.server} at {self.url} ({type(e).__name__}: {e})",
                             no_job=isinstance(e, httpx.ConnectError)) from None
        headers = [(k, v) for k, v in r.headers.multi_items()
                   if k.lower() not in ("content-encoding", "transfer-encoding", "content-length")]
        r = httpx.Response(r.status_code, headers=headers, content=b"".join(chunks), request=req)
        self.check(r, path)
        return r

    def _json(self, r: httpx.Response, what: str):
        """The answer's JSON; a non-JSON answer, or one nested deeper than
        :data:`MAX_JSON_DEPTH`, is a :class:`ServerError` naming the route."""
        try:
            value = r.json()
        except RecursionError:
            value = None
            deep = True
        except ValueError:
            raise ServerError(f"{self.url}{what}: answered HTTP {r.status_code} with non-JSON "
                              f"{r.text[:120]!r}") from None
        else:
            deep = json_too_deep(value)
        if deep:
            raise ServerError(f"{self.url}{what}: the JSON answer is nested more than {MAX_JSON_DEPTH} levels deep")
        return value

    def check(self, r: httpx.Response, path: str) -> None:
        """Raise :class:`WorkerDown` for a server-side failure (5xx)."""
        if r.status_code >= 500:
            raise WorkerDown(f"{self.url}{path}: HTTP {r.status_code}")
