"""One job engine for every cloud provider: submit once, poll, download.

Each provider surface is a small :class:`ProviderApi` (URLs, auth headers,
how to read its submit and status answers); :class:`JobEngine` does the rest
the same way for all of them:

* **Never pay twice.** A request's *fingerprint* (SHA-256 of provider,
  endpoint, JSON body and the SHA-256 of every uploaded file) keys a row in
  the :class:`~.ledger.Ledger`, written before the POST together with an
  ``Idempotency-Key`` derived from the fingerprint. A re-queued node, a
  restarted ComfyUI or a killed CLI finds the row and resumes the same
  request id; a finished row with its files returns the files without any
  request. A POST whose answer is lost (timeout, dropped connection) is an
  *ambiguous submission*: it is resent with the same key, never a new one.
* **Polling** with exponential backoff and jitter (2 s growing to 10 s by
  default; ``SOULID_POLL_INITIAL`` / ``SOULID_POLL_MAX`` or the constructor
  override them), an overall timeout per job, GET retries only on 408, 429,
  5xx and network errors.
* **Concurrency**: at most ``max_concurrency`` jobs per provider in flight in
  this process (default 4, Higgsfield's cap; ``SOULID_MAX_CONCURRENT``),
  counted by one process-wide semaphore, so the cap holds across threads.
  Higgsfield's 400 "maximum number of concurrent requests" is back-pressure:
  wait and resend with the same key.
* **Threads and processes**: one :class:`JobEngine` (and one
  :class:`CloudBackend`) may be used from several threads at once, e.g. from
  ComfyUI's async nodes through ``await asyncio.to_thread(backend.generate,
  ...)``: its httpx clients are thread-safe, request counters are per thread,
  and the ledger opens one SQLite connection per call. Two runs of the *same*
  request (same fingerprint) in two threads or two processes are serialised
  by a lock file per fingerprint: the second waits, then reuses the first's
  result or resumes its request; it never pays again.
* **Interrupt**: ``interrupt()`` returning True cancels a queued job
  (``cancel_url``) and stops waiting for a running one (it stays in the
  ledger and is resumed next time).
* **Errors**: 401 credentials, 402/403 credits, 404, 422 (the server's field
  messages verbatim), 423 model blocked, moderated, failed with the server's
  reason; all are :class:`CloudError` subclasses (a ``SoulIDError``), with
  credentials masked.
* **Results** are downloaded at once (they expire) by :mod:`.media` into
  ``<cache dir>/results/<key>/``.
* **Cost**: ``estimate`` (credits, USD) before submit where the provider
  offers it, reported through ``progress`` before any upload; ``max_usd``
  refuses a dearer job; a shared :class:`Budget` caps several jobs together;
  ``estimate_only`` submits nothing.
* **Answers** are parsed through typed models (pydantic): HTML, a missing
  request id or an unknown status raises :class:`BadResponse` naming the field
  and the raw value, and the ledger row moves to ``bad_response``.
* **Resources**: :meth:`JobEngine.close` / :meth:`CloudBackend.close` (or
  ``with``) close the HTTP clients; they are also closed when the object is
  garbage-collected.

Nothing here imports ComfyUI; nodes pass ``progress`` / ``interrupt`` callables.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import random
import threading
import time
import weakref
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pydantic
from filelock import FileLock
from filelock import Timeout as LockTimeout

from ..soul.errors import Interrupted, SoulIDError
from ..soul.progress import InterruptFn, ProgressFn  # noqa: F401  (re-exported: the one signature)
from ..soul.paths import cache_dir
from . import http, media
from .credentials import install_log_redaction, redact
from .ledger import BAD_RESPONSE, RESUMABLE, JobRow, Ledger
from .media import InvalidNumber, number

log = logging.getLogger("soulid.cloud")
install_log_redaction()


STATES = ("queued", "running", "succeeded", "failed", "moderated", "canceled")


# ---------------------------------------------------------------------- errors
class CloudError(SoulIDError):
    """A cloud job could not be done. ``request_id`` is set when one exists."""

    def __init__(self, msg: str, request_id: str | None = None, status: int | None = None):
        self.request_id = request_id
        self.status = status
        super().__init__(redact(msg))


class CredentialsRejected(CloudError):
    """HTTP 401: the key is wrong or revoked."""


class InsufficientCredits(CloudError):
    """HTTP 402/403: not enough credits (or no access to the model)."""


class NotFound(CloudError):
    """HTTP 404: unknown model path, request id or reference."""


class ValidationFailed(CloudError):
    """HTTP 422 (or 400): the provider refused a field; the message holds its
    field messages verbatim."""


class ModelBlocked(CloudError):
    """HTTP 423: the model is blocked for this account."""


class Moderated(CloudError):
    """The provider's moderation rejected the prompt or the result (NSFW)."""


class JobFailed(CloudError):
    """The provider reports the job failed; the message holds its reason."""


class Canceled(CloudError):
    """The job was canceled."""


class CloudTimeout(CloudError):
    """The job did not finish within the per-job timeout (it stays resumable)."""


class CostLimit(CloudError):
    """The estimate is above ``max_usd`` or the :class:`Budget` left, or no
    estimate exists to check it."""


class BadResponse(CloudError):
    """The provider answered, but not in its documented shape (HTML or other
    non-JSON, a missing request id, a list where an object belongs, an
    unknown status); the message names the field and the raw value."""


# ----------------------------------------------------------- typed answers
def _short(v, n: int = 80) -> str:
    t = repr(v)
    return t if len(t) <= n else t[: n - 1] + "…"


def typed(model: type[pydantic.BaseModel], data, what: str = "answer"):
    """Validate ``data`` (parsed JSON) against ``model``.

    Raises:
        BadResponse: the first offending field, its problem and its raw value,
            e.g. ``status answer: field 'status': Input should be 'queued',
            ... (got 'paused')``.
    """
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err.get("loc", ())) or "(the whole answer)"
        raise BadResponse(f"{what}: field {loc!r}: {err.get('msg')} (got {_short(err.get('input'))})") from None


def answer_json(r: httpx.Response, what: str = "answer"):
    """The JSON body of ``r``.

    Raises:
        BadResponse: the body is not JSON (an HTML page, empty, truncated).
    """
    try:
        return r.json()
    except ValueError:
        ctype = r.headers.get("content-type", "").split(";")[0] or "no content type"
        raise BadResponse(f"{what}: HTTP {r.status_code} with {ctype}, not JSON "
                          f"(starts {_short(r.text[:60])})") from None


class Answer(pydantic.BaseModel):
    """Base of the typed provider answers: documented fields are checked,
    extra fields are kept."""

    model_config = pydantic.ConfigDict(extra="allow")


class Estimate(pydantic.BaseModel):
    """A provider's cost estimate: finite, non-negative credits and USD."""

    credits: float = pydantic.Field(0.0, ge=0, allow_inf_nan=False)
    usd: float = pydantic.Field(0.0, ge=0, allow_inf_nan=False)


# ------------------------------------------------------------------ budget
class Budget:
    """One spending cap in US dollars shared by several paid jobs (best-of-N,
    an ID sheet's views, a campaign's rows), safe to share between threads.

    Before each *new* paid submit the engine calls :meth:`reserve` with the
    provider's estimate; the reservation is kept when the request is accepted
    (or may have been: a lost answer counts as paid) and given back by
    :meth:`refund` when the provider refused it outright. Reused or resumed
    requests were paid earlier and reserve nothing.

    Args:
        max_usd: the cap, a finite number >= 0, or None for no cap (spending
            is still counted).
        label: name used in messages (``"best-of-4"``).

    Raises:
        InvalidNumber: ``max_usd`` is NaN, infinite or negative.
    """

    def __init__(self, max_usd: float | None = None, label: str = "budget"):
        self.max_usd = number(max_usd, f"{label} max_usd", allow_none=True)
        self.label = label
        self._lock = threading.Lock()
        self._spent = 0.0
        self._jobs = 0

    @property
    def spent(self) -> float:
        """USD reserved by accepted jobs so far."""
        with self._lock:
            return self._spent

    @property
    def remaining(self) -> float | None:
        """USD left (None without a cap)."""
        with self._lock:
            return None if self.max_usd is None else max(0.0, self.max_usd - self._spent)

    def reserve(self, usd: float | None, what: str, *, free: bool = False) -> float:
        """Reserve ``usd`` for the job ``what``; returns the amount reserved.

        Args:
            usd: the job's estimate in USD, or None when the provider gives none.
            free: the job is known to cost nothing (a local run); reserves 0
                and is never refused.

        Raises:
            CostLimit: the estimate does not fit in what is left, or there is
                no estimate while a cap is set (it cannot be checked).
        """
        if free:
            return 0.0
        with self._lock:
            if usd is None:
                if self.max_usd is not None:
                    raise CostLimit(f"{what}: no cost estimate, so the {self.label} of max_usd=${self.max_usd:.4f} "
                                    f"cannot be enforced; not submitted")
                self._jobs += 1
                return 0.0
            usd = number(usd, f"{what} estimate")
            if self.max_usd is not None and self._spent + usd > self.max_usd + 1e-9:
                raise CostLimit(f"{what}: estimated ${usd:.4f} would bring the {self.label} to "
                                f"${self._spent + usd:.4f}, above max_usd=${self.max_usd:.4f} "
                                f"(${self.max_usd - self._spent:.4f} left); not submitted")
            self._spent += usd
            self._jobs += 1
            return usd

    def refund(self, usd: float) -> None:
        """Give back a reservation whose request the provider refused."""
        with self._lock:
            self._spent = max(0.0, self._spent - float(usd))
            self._jobs = max(0, self._jobs - 1)

    def summary(self) -> dict:
        """``{"max_usd", "spent_usd", "remaining_usd", "jobs"}``."""
        with self._lock:
            left = None if self.max_usd is None else max(0.0, self.max_usd - self._spent)
            return {"max_usd": self.max_usd, "spent_usd": round(self._spent, 6), "remaining_usd": left,
                    "jobs": self._jobs}


# ----------------------------------------------------------------- data types
@dataclass
class JobSpec:
    """One request to a provider.

    Attributes:
        endpoint: the provider route (``"higgsfield-ai/soul/standard"``,
            ``"/v1/image2video/dop"``...).
        body: JSON body. A value ``{"$upload": NAME}`` (also inside lists) is
            replaced by the URL of ``uploads[NAME]`` once uploaded.
        uploads: NAME -> ``(bytes, content type)``.
        kind: result kind, ``"image"``, ``"video"``, or ``"none"`` (nothing to
            download, e.g. Soul ID training).
    """

    endpoint: str
    body: dict
    uploads: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    kind: str = "image"


@dataclass
class StatusInfo:
    """A status answer normalised: ``state`` in :data:`STATES`, result URLs and
    the provider's reason (failures)."""

    state: str
    urls: list[str] = field(default_factory=list)
    reason: str = ""
    raw: dict = field(default_factory=dict)


@dataclass
class JobOutcome:
    """What :meth:`JobEngine.run` returns.

    Attributes:
        request_id: the provider's request id ("" in estimate-only mode).
        state: ``succeeded`` or ``estimate``.
        files: downloaded result files (PNG/JPEG/WebP or MP4).
        cost: ``{"credits": float, "usd": float}`` where the provider estimates.
        resumed: an earlier submit of the same request was reused.
        requests: HTTP requests this call made (API and media).
        completed_at: ``time.monotonic()`` when the provider reported success.
    """

    request_id: str
    state: str
    files: list[Path] = field(default_factory=list)
    cost: dict = field(default_factory=dict)
    idem_key: str = ""
    fingerprint: str = ""
    resumed: bool = False
    requests: int = 0
    completed_at: float | None = None


# ------------------------------------------------------------- provider API
class ProviderApi:
    """How to talk to one provider surface. Subclasses override what differs.

    Args:
        base_url: API root (``https://api.higgsfield.ai``...).
        key: the API key (kept out of every message).
    """

    provider = ""
    #: Substring of a 400 body that means "too many concurrent requests".
    backpressure_text = "maximum number of concurrent requests"
    #: Where the key came from, in words (set by :class:`CloudBackend`).
    key_source = ""

    def __init__(self, base_url: str, key: str):
        self.base_url = base_url.rstrip("/")
        self._key = key

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).netloc

    def headers(self) -> dict:
        """Auth headers for API calls (never sent to upload or media URLs)."""
        raise NotImplementedError

    def submit_url(self, spec: JobSpec) -> str:
        return f"{self.base_url}/{spec.endpoint.lstrip('/')}"

    def submit_json(self, spec: JobSpec, body: dict) -> dict:
        return body

    def parse_submit(self, data) -> tuple[str, str, str | None]:
        """Parsed JSON of a submit answer -> ``(request_id, status_url, cancel_url
        or None)``.

        Raises:
            BadResponse: not the documented shape (use :func:`typed`).
        """
        raise NotImplementedError

    def parse_status(self, data) -> StatusInfo:
        """Parsed JSON of a status answer -> :class:`StatusInfo`.

        Raises:
            BadResponse: not the documented shape, or an unknown status value.
        """
        raise NotImplementedError

    def upload(self, eng: "JobEngine", data: bytes, content_type: str) -> str:
        """Upload bytes; returns the public URL."""
        raise NotImplementedError(f"{self.provider}: uploads not supported")

    def estimate(self, eng: "JobEngine", spec: JobSpec, body: dict) -> dict | None:
        """``{"credits", "usd"}`` without charging, or None if not offered."""
        return None

    def error_detail(self, resp: httpx.Response) -> str:
        """The server's error text, verbatim (FastAPI ``detail`` lists joined)."""
        try:
            data = resp.json()
        except ValueError:
            return resp.text[:500]
        if isinstance(data, dict):
            d = data.get("detail", data.get("message", data.get("error", data)))
            if isinstance(d, list):
                parts = []
                for e in d:
                    if isinstance(e, dict):
                        loc = ".".join(str(x) for x in e.get("loc", []) if x != "body")
                        parts.append(f"{loc}: {e.get('msg', e)}" if loc else str(e.get("msg", e)))
                    else:
                        parts.append(str(e))
                return "; ".join(parts)
            return d if isinstance(d, str) else json.dumps(d)
        return str(data)


# ------------------------------------------------------------------ helpers
def _env_float(name: str, default: float) -> float:
    """``$name`` as a finite number > 0, else ``default`` when unset.

    Raises:
        InvalidNumber: the variable is set to NaN, inf, a negative, 0 or text.
    """
    v = os.environ.get(name, "").strip()
    return default if not v else number(v, f"${name}", positive=True)


def configured_url(provider: str, default: str) -> str:
    """``$SOULID_<PROVIDER>_URL`` or ``default`` (no trailing slash)."""
    return (os.environ.get(f"SOULID_{provider.upper()}_URL") or default).rstrip("/")


def _close_clients(*clients: httpx.Client) -> None:
    for c in clients:
        c.close()


_SEMAPHORES: dict[tuple[str, int], threading.BoundedSemaphore] = {}
_SEM_LOCK = threading.Lock()


def _semaphore(provider: str, cap: int) -> threading.BoundedSemaphore:
    with _SEM_LOCK:
        return _SEMAPHORES.setdefault((provider, cap), threading.BoundedSemaphore(cap))


def _walk_uploads(obj, fn):
    """Copy of ``obj`` with every ``{"$upload": NAME}`` replaced by ``fn(NAME)``."""
    if isinstance(obj, dict):
        if set(obj) == {"$upload"}:
            return fn(obj["$upload"])
        return {k: _walk_uploads(v, fn) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_walk_uploads(v, fn) for v in obj]
    return obj


def fingerprint(provider: str, base_url: str, spec: JobSpec, nonce: str = "") -> str:
    """SHA-256 hex of what makes two requests the same paid job."""
    h = {n: hashlib.sha256(b).hexdigest() for n, (b, _ct) in spec.uploads.items()}
    doc = {"provider": provider, "host": urlsplit(base_url).netloc, "endpoint": spec.endpoint,
           "body": spec.body, "uploads": h, "kind": spec.kind, "nonce": nonce}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


# ------------------------------------------------------------------- engine
class JobEngine:
    """Runs :class:`JobSpec` jobs against one :class:`ProviderApi`.

    Args:
        api: the provider surface.
        ledger: job ledger (default: the user's ``jobs.sqlite3``).
        max_concurrency: jobs in flight per provider in this process (default
            ``$SOULID_MAX_CONCURRENT`` or 4).
        poll_initial, poll_max: poll interval bounds, seconds (default
            ``$SOULID_POLL_INITIAL`` or 2, ``$SOULID_POLL_MAX`` or 10).
        timeout_s: overall per-job timeout, seconds (``$SOULID_JOB_TIMEOUT`` or 1800).
        request_timeout_s: one HTTP call's timeout (``$SOULID_HTTP_TIMEOUT`` or 60).
        max_retries: retries of one GET (or one POST with the same key) on
            408/429/5xx and network errors.
    """

    def __init__(self, api: ProviderApi, ledger: Ledger | None = None, *, max_concurrency: int | None = None,
                 poll_initial: float | None = None, poll_max: float | None = None,
                 timeout_s: float | None = None, request_timeout_s: float | None = None, max_retries: int = 6):
        def opt(v, env, default, name):
            return _env_float(env, default) if v is None else number(v, name, positive=True)

        self.api = api
        self.ledger = ledger or Ledger()
        cap = opt(max_concurrency, "SOULID_MAX_CONCURRENT", 4, "max_concurrency")
        if cap != int(cap) or cap < 1:
            raise InvalidNumber(f"max_concurrency must be a whole number >= 1, not {cap!r}")
        self.max_concurrency = int(cap)
        self.poll_initial = opt(poll_initial, "SOULID_POLL_INITIAL", 2.0, "poll_initial")
        self.poll_max = opt(poll_max, "SOULID_POLL_MAX", 10.0, "poll_max")
        self.timeout_s = opt(timeout_s, "SOULID_JOB_TIMEOUT", 1800.0, "timeout_s")
        t = opt(request_timeout_s, "SOULID_HTTP_TIMEOUT", 60.0, "request_timeout_s")
        self.download_deadline_s = _env_float("SOULID_DOWNLOAD_TIMEOUT", media.DOWNLOAD_DEADLINE_S)
        self.max_retries = max_retries
        self.retry = replace(http.RETRY, max_retries=max_retries)
        self.allow_loopback = media.is_loopback_url(api.base_url)
        if not self.allow_loopback:
            media.check_url(api.base_url, what=f"{api.provider} API URL")
        self.client = http.client(timeout=t)
        #: A bare client: no auth header ever, for uploads and media.
        self.media_client = http.client(timeout=t)
        self._local = threading.local()
        self._finalizer = weakref.finalize(self, _close_clients, self.client, self.media_client)

    def close(self) -> None:
        """Close both HTTP clients (idempotent; also done on garbage collection)."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        return self.client.is_closed and self.media_client.is_closed

    def __enter__(self) -> "JobEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------- HTTP
    @property
    def requests(self) -> int:
        return getattr(self._local, "n", 0)

    def _count(self) -> None:
        self._local.n = self.requests + 1

    def api_call(self, method: str, url: str, *, retry: bool = True, **kw) -> httpx.Response:
        """Authenticated call on the API host; retries 408/429/5xx and network
        errors when ``retry``; returns any other response unchanged.

        Raises:
            media.UnsafeURL: ``url`` is not on the configured API host.
            CloudError: still failing after :attr:`max_retries`.
        """
        media.check_url(url, allow_loopback=self.allow_loopback, host=self.api.host, what=f"{self.api.provider} URL")
        headers = {**self.api.headers(), **kw.pop("headers", {})}
        waits = self.retry.waits(min(self.poll_initial, 1.0), self.poll_max) if retry else iter(())
        while True:
            try:
                self._count()
                r = self.client.request(method, url, headers=headers, **kw)
            except httpx.TransportError as e:
                wait = next(waits, None)
                if wait is None:
                    raise CloudError(f"{self.api.provider}: {method} {urlsplit(url).path} failed: {type(e).__name__}") from None
            else:
                wait = next(waits, None) if self.retry.retryable(r.status_code) else None
                if wait is None:
                    return r
            time.sleep(wait)

    def raise_for(self, r: httpx.Response, what: str, request_id: str | None = None) -> None:
        """Map an error response to the :class:`CloudError` subclass; no-op on 2xx."""
        if r.is_success:
            return
        code, detail = r.status_code, redact(self.api.error_detail(r))
        p = self.api.provider
        try:
            path = r.request.url.path
        except RuntimeError:
            path = ""
        env = f"$SOULID_{p.upper()}_URL"
        src = self.api.key_source or ""
        if src.startswith("the environment variable"):
            auth = (f"{p} rejected the API key from {src} (401) at {path}: correct or unset that variable "
                    f"(it takes precedence over `soulid login {p}`); if the key is right, check that {env} "
                    f"({self.api.base_url}) is the {p} API root")
        else:
            auth = (f"{p} rejected the API key (401) at {path}: check it with `soulid login {p}`; if the key is "
                    f"right, check that {env} ({self.api.base_url}) is the {p} API root")
        if request_id is None:
            missing = (f"{p}: {what}: not found (404): {detail}: {self.api.base_url} has no {path}; check that "
                       f"{env} is the {p} API root")
        else:
            missing = f"{p}: {what}: not found (404): {detail}"
        cls, msg = {
            401: (CredentialsRejected, auth),
            402: (InsufficientCredits, f"{p}: not enough credits (402): {detail}"),
            403: (InsufficientCredits, f"{p}: not enough credits or no access (403): {detail}"),
            404: (NotFound, missing),
            422: (ValidationFailed, f"{p} refused the request (422): {detail}"),
            423: (ModelBlocked, f"{p}: model is blocked for this account (423): {detail}"),
            400: (ValidationFailed, f"{p} refused the request (400): {detail}"),
        }.get(code, (CloudError, f"{p}: {what} failed: HTTP {code}: {detail}"))
        raise cls(msg, request_id=request_id, status=code)

    # ------------------------------------------------------------- public
    def estimate(self, spec: JobSpec) -> dict | None:
        """The provider's estimate for ``spec`` without paying or uploading:
        ``{"credits": float, "usd": float}``, or None where none is offered.

        Raises:
            CloudError subclasses (401...), BadResponse (malformed estimate).
        """
        est = self.api.estimate(self, spec, _walk_uploads(spec.body, lambda n: None))
        if est is None:
            return None
        return typed(Estimate, est, f"{self.api.provider}: estimate for {spec.endpoint}").model_dump()

    def _fp_lock(self, fp: str, progress, interrupt) -> FileLock:
        """Hold the lock file of fingerprint ``fp`` (one run of one request at a
        time across threads and processes); polls ``interrupt`` while waiting.

        Lock files are shared by fingerprints with the same first 3 hex digits
        (at most 4096 files, never deleted: deleting a lock file others may
        hold open would let two holders in). Two *different* requests share a
        lock with probability 1/4096, which only makes the second wait."""
        d = self.ledger.path.parent / "locks"
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = FileLock(str(d / f"{fp[:3]}.lock"), mode=0o600)
        told = False
        while True:
            try:
                lock.acquire(timeout=0.1)
                return lock
            except LockTimeout:
                if not told:
                    told = True
                    log.info("%s: the same request is running in another thread or process; waiting for it",
                             self.api.provider)
                    if progress:
                        progress(None, f"{self.api.provider}: the same request is already running elsewhere; "
                                       f"waiting to reuse its result")
                self._check_interrupt(interrupt, None)

    def run(self, spec: JobSpec, progress: ProgressFn | None = None, interrupt: InterruptFn | None = None, *,
            max_usd: float | None = None, estimate_only: bool = False, new: bool = False,
            budget: Budget | None = None) -> JobOutcome:
        """Submit ``spec`` once (or resume it), wait, download the results.

        Thread-safe: may be called from several threads at once on one engine.

        Args:
            progress: ``(fraction or None, message)`` callback; it also gets the
                estimate (or "no estimate") before anything is uploaded.
            interrupt: returns True to stop (ComfyUI interrupt).
            max_usd: refuse if the estimate is above this many US dollars
                (finite, >= 0), or if there is no estimate to check.
            estimate_only: return the estimate; submit nothing.
            new: run again even if an identical request exists in the ledger.
            budget: a :class:`Budget` shared with other jobs; a new submit
                reserves its estimate there first (reused results reserve nothing).

        Raises:
            CloudError subclasses (see the module docstring); media.MediaError;
            InvalidNumber: ``max_usd`` is NaN, infinite or negative.
        """
        self._local.n = 0
        max_usd = number(max_usd, "max_usd", allow_none=True)
        api = self.api
        nonce = f"new:{time.time_ns()}" if new else ""
        fp = fingerprint(api.provider, api.base_url, spec, nonce)
        if estimate_only:
            cost = self.estimate(spec) or {}
            return JobOutcome("", "estimate", cost=cost, fingerprint=fp, requests=self.requests)
        lock = self._fp_lock(fp, progress, interrupt)
        try:
            return self._run_locked(spec, fp, progress, interrupt, max_usd, budget)
        finally:
            lock.release()

    def _run_locked(self, spec, fp, progress, interrupt, max_usd, budget) -> JobOutcome:
        api = self.api
        row = self.ledger.latest(fp)
        if row is not None:
            done = row.files and all(Path(f).exists() for f in row.files) or (row.kind == "none")
            if row.state == "succeeded" and done:
                log.info("%s: request %s already done; reusing its results", api.provider, row.request_id)
                return JobOutcome(row.request_id, "succeeded", [Path(f) for f in row.files], row.cost,
                                  row.idem_key, fp, resumed=True, requests=0)
            if row.state in RESUMABLE or row.state == "succeeded":
                return self._drive(row, spec.kind, progress, interrupt, resumed=True)
        # Estimating is free: always ask where the provider offers it, and say it before uploading.
        cost = self.estimate(spec) or {}
        if progress:
            progress(None, f"{api.provider} {spec.endpoint}: estimate ${cost['usd']:.4f} ({cost['credits']:g} credits)"
                     if cost else f"{api.provider} {spec.endpoint}: no cost estimate offered")
        if max_usd is not None:
            if not cost:
                raise CostLimit(f"{api.provider} offers no cost estimate for {spec.endpoint}; "
                                f"cannot enforce max_usd={max_usd}")
            if float(cost.get("usd", 0)) > max_usd:
                raise CostLimit(f"{api.provider} {spec.endpoint}: estimated ${cost['usd']:.4f} "
                                f"({cost.get('credits')} credits) is above max_usd=${max_usd:.4f}; not submitted")
        held = budget.reserve(cost.get("usd") if cost else None, f"{api.provider} {spec.endpoint}") if budget else 0.0
        attempt = row.attempt + 1 if row is not None else 0
        key = hashlib.sha256(f"{fp}:{attempt}".encode()).hexdigest()[:40]
        try:
            urls = {}
            for name, (data, ctype) in spec.uploads.items():
                self._check_interrupt(interrupt, None)
                if progress:
                    progress(None, f"{api.provider}: uploading {name}")
                urls[name] = api.upload(self, data, ctype)
            body = _walk_uploads(copy.deepcopy(spec.body), lambda n: urls[n])
            new_row = JobRow(idem_key=key, fingerprint=fp, attempt=attempt, provider=api.provider,
                             endpoint=spec.endpoint, kind=spec.kind, state="submitting", body=body)
            got = self.ledger.reserve(new_row)
            if got is not new_row:  # another process reserved this attempt first: resume it
                return self._drive(got, spec.kind, progress, interrupt, resumed=True)
            if cost:
                self.ledger.update(key, cost=cost)
                new_row.cost = cost
            return self._drive(new_row, spec.kind, progress, interrupt, resumed=False)
        except BaseException:
            if held:
                r = self.ledger.get(key)
                if r is None or (r.state == "failed" and not r.request_id):
                    budget.refund(held)  # refused before the provider accepted anything: not paid
            raise

    def resume(self, ref: str, progress: ProgressFn | None = None, interrupt: InterruptFn | None = None) -> JobOutcome:
        """Resume a ledger job by request id / key (``soulid jobs resume``).

        Raises:
            NotFound: no such job in the ledger.
        """
        self._local.n = 0
        row = self.ledger.get(ref)
        if row is None:
            raise NotFound(f"no job {ref!r} in the ledger {self.ledger.path}")
        if row.state in ("failed", "moderated", "canceled"):
            raise JobFailed(f"job {row.request_id or row.idem_key} ended {row.state}: {row.error or ''}",
                            request_id=row.request_id)
        return self._drive(row, row.kind, progress, interrupt, resumed=True)

    def cancel(self, ref: str) -> JobRow:
        """Cancel a queued ledger job at the provider (``soulid jobs cancel``).

        Raises:
            NotFound: no such job; CloudError: the provider refused (e.g. it is
            already running).
        """
        row = self.ledger.get(ref)
        if row is None:
            raise NotFound(f"no job {ref!r} in the ledger {self.ledger.path}")
        if row.state not in RESUMABLE:
            return row
        if not row.cancel_url:
            raise CloudError(f"{row.provider} job {row.request_id}: the provider offers no cancel", row.request_id)
        r = self.api_call("POST", row.cancel_url)
        self.raise_for(r, f"cancel {row.request_id}", row.request_id)
        self.ledger.update(row.idem_key, state="canceled", error="canceled by the user")
        row.state = "canceled"
        return row

    # ------------------------------------------------------------ internals
    def _check_interrupt(self, interrupt: InterruptFn | None, row: JobRow | None, state: str = "") -> None:
        if interrupt is None or not interrupt():
            return
        if row is None:
            raise Interrupted(f"{self.api.provider}: interrupted before submit")
        if state in ("queued", "submitting") and row.cancel_url:
            try:
                r = self.api_call("POST", row.cancel_url, retry=False)
                if r.is_success:
                    self.ledger.update(row.idem_key, state="canceled", error="interrupted while queued")
                    raise Interrupted(f"{self.api.provider}: interrupted; queued request {row.request_id} canceled",
                                      row.request_id)
            except (CloudError, media.UnsafeURL):
                pass
        raise Interrupted(f"{self.api.provider}: interrupted; request {row.request_id or row.idem_key} is "
                          f"{state or 'pending'} and will be resumed when queued again (or `soulid jobs resume`)",
                          row.request_id)

    def _sleep(self, seconds: float, interrupt: InterruptFn | None, row: JobRow | None, state: str) -> None:
        end = time.monotonic() + seconds
        while True:
            self._check_interrupt(interrupt, row, state)
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.1))

    def _acquire(self, interrupt, row) -> threading.BoundedSemaphore:
        sem = _semaphore(self.api.provider, self.max_concurrency)
        while not sem.acquire(timeout=0.1):
            self._check_interrupt(interrupt, row, row.state)
        return sem

    def _drive(self, row: JobRow, kind: str, progress, interrupt, resumed: bool) -> JobOutcome:
        sem = self._acquire(interrupt, row)
        try:
            if row.state == "submitting" or (row.state == BAD_RESPONSE and not row.request_id):
                self._submit(row, progress, interrupt)
            completed_at, files = self._poll(row, kind, progress, interrupt)
        finally:
            sem.release()
        return JobOutcome(row.request_id or "", "succeeded", files, row.cost, row.idem_key, row.fingerprint,
                          resumed=resumed, requests=self.requests, completed_at=completed_at)

    def _submit(self, row: JobRow, progress, interrupt) -> None:
        api = self.api
        spec = JobSpec(endpoint=row.endpoint, body=row.body, kind=row.kind)
        url = api.submit_url(spec)
        payload = api.submit_json(spec, row.body)
        delay, tries, t0 = self.poll_initial, 0, time.monotonic()
        while True:
            self._check_interrupt(interrupt, row, "submitting")
            try:
                self._count()
                r = self.client.post(url, json=payload, headers={**api.headers(), "Idempotency-Key": row.idem_key})
            except httpx.TransportError as e:
                # Ambiguous: the POST may have been accepted. Same key again.
                tries += 1
                log.warning("%s: submit %s got no answer (%s); resending with the same Idempotency-Key",
                            api.provider, row.endpoint, type(e).__name__)
                if tries > self.max_retries:
                    raise CloudError(f"{api.provider}: no answer to the submit after {tries} tries; the job is "
                                     f"kept in the ledger (key {row.idem_key[:12]}), run `soulid jobs resume "
                                     f"{row.idem_key[:12]}` later") from None
                self._sleep(delay, interrupt, row, "submitting")
                delay = min(delay * 2, self.poll_max)
                continue
            if r.status_code == 400 and api.backpressure_text in r.text.lower():
                if progress:
                    progress(None, f"{api.provider}: provider at its concurrency cap; waiting "
                                   f"{time.monotonic() - t0:.0f}s")
                log.info("%s: concurrency cap reached; waiting, then resending with the same key", api.provider)
                if time.monotonic() - t0 > self.timeout_s:
                    raise CloudTimeout(f"{api.provider}: still at the concurrency cap after {self.timeout_s:.0f}s")
                self._sleep(delay * random.uniform(0.8, 1.2), interrupt, row, "submitting")
                delay = min(delay * 1.5, self.poll_max)
                continue
            if self.retry.retryable(r.status_code) and tries < self.max_retries:
                tries += 1
                self._sleep(delay * random.uniform(0.8, 1.2), interrupt, row, "submitting")
                delay = min(delay * 2, self.poll_max)
                continue
            if not r.is_success:
                try:
                    self.raise_for(r, f"submit {row.endpoint}")
                except CloudError as e:
                    self.ledger.update(row.idem_key, state="failed", error=str(e))
                    raise
            try:
                rid, status_url, cancel_url = api.parse_submit(answer_json(r, "submit answer"))
                media.check_url(status_url, allow_loopback=self.allow_loopback, host=api.host, what="status URL")
                if cancel_url:
                    media.check_url(cancel_url, allow_loopback=self.allow_loopback, host=api.host,
                                    what="cancel URL")
            except (BadResponse, media.UnsafeURL) as e:
                raise self._bad(row, f"{api.provider}: submit {row.endpoint}: {e}; the request may have been "
                                     f"accepted: `soulid jobs resume {row.idem_key[:12]}` resends it with the "
                                     f"same Idempotency-Key", type(e)) from None
            self.ledger.update(row.idem_key, state="queued", request_id=rid, status_url=status_url,
                               cancel_url=cancel_url)
            row.state, row.request_id, row.status_url, row.cancel_url = "queued", rid, status_url, cancel_url
            log.info("%s: submitted %s as request %s", api.provider, row.endpoint, rid)
            return

    def _bad(self, row: JobRow, msg: str, cls: type = None) -> Exception:
        """Record a malformed (or unsafe) answer on the row (state
        ``bad_response``); returns the error (``cls``, default
        :class:`BadResponse`) for the caller to raise."""
        cls = cls or BadResponse
        err = cls(msg, row.request_id) if issubclass(cls, CloudError) else cls(msg)
        self.ledger.update(row.idem_key, state=BAD_RESPONSE, error=str(err))
        row.state = BAD_RESPONSE
        log.warning("%s", err)
        return err

    def _poll(self, row: JobRow, kind: str, progress, interrupt) -> tuple[float, list[Path]]:
        api = self.api
        t0 = time.monotonic()
        delay = self.poll_initial
        state = row.state
        while True:
            elapsed = time.monotonic() - t0
            if elapsed > self.timeout_s:
                raise CloudTimeout(f"{api.provider}: request {row.request_id} not finished after "
                                   f"{self.timeout_s:.0f}s; it stays in the ledger: `soulid jobs resume "
                                   f"{row.request_id}`", row.request_id)
            r = self.api_call("GET", row.status_url)
            self.raise_for(r, f"status of {row.request_id}", row.request_id)
            try:
                info = api.parse_status(answer_json(r, "status answer"))
            except BadResponse as e:
                raise self._bad(row, f"{api.provider}: request {row.request_id}: {e}") from None
            if info.state != state:
                state = info.state
                if state in ("queued", "running"):
                    self.ledger.update(row.idem_key, state=state)
                row.state = state
            if progress:
                progress(None, f"{api.provider} {row.request_id}: {state}, {elapsed:.0f}s")
            if state == "succeeded":
                done = time.monotonic()
                files = self._download(row, info, kind) if kind != "none" else []
                self.ledger.update(row.idem_key, state="succeeded", files=[str(f) for f in files])
                return done, files
            if state in ("failed", "moderated", "canceled"):
                reason = info.reason or state
                self.ledger.update(row.idem_key, state=state, error=reason)
                cls = {"failed": JobFailed, "moderated": Moderated, "canceled": Canceled}[state]
                verb = {"failed": "failed", "moderated": "was rejected by moderation",
                        "canceled": "was canceled"}[state]
                raise cls(f"{api.provider}: request {row.request_id} {verb}: {reason}", row.request_id)
            self._sleep(delay * random.uniform(0.8, 1.2), interrupt, row, state)
            delay = min(delay * 1.5, self.poll_max)

    def _download(self, row: JobRow, info: StatusInfo, kind: str) -> list[Path]:
        if not info.urls:
            raise JobFailed(f"{self.api.provider}: request {row.request_id} succeeded without results",
                            row.request_id)
        out = cache_dir() / "results" / row.idem_key
        files = []
        for i, url in enumerate(info.urls):
            self._count()
            try:
                files.append(media.download(self.media_client, url, out / f"{i:02d}", kind,
                                            allow_loopback=self.allow_loopback,
                                            deadline_s=self.download_deadline_s))
            except media.MediaError as e:
                self.ledger.update(row.idem_key, error=str(e))
                raise type(e)(f"{self.api.provider} request {row.request_id}: {e}") from None
        return files


# -------------------------------------------------------- result conversion
def image_result(out: JobOutcome, provider: str, **info):
    """:class:`~.base.ImageResult` (``[B, H, W, 3]`` float32 0..1) from a finished job."""
    from .base import ImageResult

    imgs = media.decode_images(out.files)
    return ImageResult(images=imgs, request_id=out.request_id, cost=out.cost, files=list(out.files),
                       info={"provider": provider, "resumed": out.resumed, "requests": out.requests,
                             "key": out.idem_key, **info})


def video_result(out: JobOutcome, provider: str, **info):
    """:class:`~.base.VideoResult` (an MP4 on disk) from a finished job."""
    from .base import VideoResult

    path = out.files[0]
    fps, frames, w, h = media.probe_video(path)
    return VideoResult(path=path, fps=fps, frames=frames, width=w, height=h, request_id=out.request_id,
                       cost=out.cost, info={"provider": provider, "resumed": out.resumed,
                                            "requests": out.requests, "key": out.idem_key, **info})


def estimate_result(out: JobOutcome, provider: str):
    """An empty :class:`~.base.ImageResult` carrying only the estimate."""
    from .base import ImageResult

    return ImageResult(images=np.zeros((0, 1, 1, 3), np.float32), cost=out.cost,
                       info={"provider": provider, "estimate_only": True})


# ------------------------------------------------------------ backend base
class CloudBackend:
    """Shared plumbing of the cloud backends: engines per API surface and the
    cost options every request may carry in ``options``:

    * ``max_usd`` (float): refuse if the estimate is above it;
    * ``budget`` (:class:`Budget`): a cap shared with other calls (best-of-N...);
    * ``estimate_only`` (bool): return only the estimate (empty images);
    * ``new`` (bool): pay for a fresh run even if the same request is in the ledger.

    Thread-safe: one backend may serve several threads at once (ComfyUI's
    async nodes call it through ``asyncio.to_thread``). Close it (or use
    ``with``) to close its HTTP clients.

    Args:
        key: API key (default: :func:`.credentials.get_key`).
        ledger: job ledger (default: the user's).
        **engine_kw: :class:`JobEngine` options (``poll_initial``, ``poll_max``,
            ``timeout_s``, ``max_concurrency``...).
    """

    name = ""

    def __init__(self, key: str | None = None, ledger: Ledger | None = None, **engine_kw):
        from .credentials import get_key, key_source, remember_secret

        self.key = key or get_key(self.name)
        self.key_source = "the key passed in" if key else key_source(self.name)
        remember_secret(self.key)
        self.ledger = ledger or Ledger()
        self.engine_kw = engine_kw
        self._engines: dict[str, JobEngine] = {}
        self._engines_lock = threading.Lock()

    def api_for(self, endpoint: str) -> ProviderApi:
        """The API surface that serves ``endpoint`` (for resuming ledger jobs)."""
        return self.api

    def engine(self, api: ProviderApi) -> JobEngine:
        """The (one, shared) :class:`JobEngine` of ``api``."""
        k = f"{type(api).__name__}:{api.base_url}"
        with self._engines_lock:
            if k not in self._engines:
                api.key_source = self.key_source
                self._engines[k] = JobEngine(api, self.ledger, **self.engine_kw)
            return self._engines[k]

    def close(self) -> None:
        """Close every engine's HTTP clients (idempotent; the backend can be used
        again later: new engines are made on demand)."""
        with self._engines_lock:
            engines = list(self._engines.values())
            self._engines.clear()
        for e in engines:
            e.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def estimate(self, api: ProviderApi, spec: JobSpec) -> dict | None:
        """``{"credits", "usd"}`` for ``spec`` without paying or uploading, or None."""
        return self.engine(api).estimate(spec)

    def run_job(self, api: ProviderApi, spec: JobSpec, options: dict, progress=None, interrupt=None) -> JobOutcome:
        budget = options.get("budget")
        if budget is not None and not isinstance(budget, Budget):
            raise ValidationFailed(f"options['budget'] must be a Budget, not {type(budget).__name__}")
        return self.engine(api).run(spec, progress, interrupt, max_usd=options.get("max_usd"),
                                    estimate_only=bool(options.get("estimate_only")), new=bool(options.get("new")),
                                    budget=budget)

    def finish_images(self, out: JobOutcome, **info):
        if out.state == "estimate":
            return estimate_result(out, self.name)
        return image_result(out, self.name, **info)

    def finish_video(self, out: JobOutcome, **info):
        if out.state == "estimate":
            from .base import VideoResult

            return VideoResult(path=Path(), fps=0.0, frames=0, width=0, height=0, cost=out.cost,
                               info={"provider": self.name, "estimate_only": True})
        return video_result(out, self.name, **info)


def nearest_size(sizes: list[str], aspect: str | None = None, width: int | None = None,
                 height: int | None = None, default: str | None = None) -> str:
    """The ``"WxH"`` of ``sizes`` whose aspect ratio is closest to ``aspect``
    (``"W:H"``) or ``width``/``height``.

    Raises:
        ValidationFailed: ``aspect`` is not ``W:H`` with positive numbers.
    """
    if width and height:
        want = width / height
    elif aspect:
        try:
            a, b = (float(x) for x in aspect.replace("x", ":").split(":"))
            if a <= 0 or b <= 0:
                raise ValueError
        except ValueError:
            raise ValidationFailed(f"aspect ratio {aspect!r} is not of the form W:H (e.g. 3:4)") from None
        want = a / b
    else:
        return default or sizes[0]

    def ratio(s: str) -> float:
        w, h = (int(x) for x in s.split("x"))
        return w / h

    import math

    return min(sizes, key=lambda s: (abs(math.log(ratio(s) / want)), -int(s.split("x")[0])))
