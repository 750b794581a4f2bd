"""The Comfy API v2 job contract as a :class:`~.base.Worker`.

Served by Comfy Cloud and, in front of a self-hosted ComfyUI, by Comfy-Org's
``comfy-api-proxy`` (PyPI; the contract as that proxy serves it, v0.1.6):

* ``POST /api/v2/jobs`` ``{"workflow": API graph, "metadata": "..."}`` with an
  ``Idempotency-Key`` header -> 201 and the job. Keys are single-use and
  *reject on duplicate*: a second POST with the same key gets 422
  ``idempotency_key_reuse`` and no job id. So the key is also sent as the
  job's ``metadata`` (``soulid-key:<key>``), and a reused key is resolved to
  its job through ``GET /api/v2/jobs``.
* ``GET /api/v2/jobs/{id}``: ``status`` is one of ``queued running succeeded
  failed canceling canceled expired``; ``outputs`` are assets (``node_id``,
  ``name``, ``id``, ``url``); ``error`` ``{code, message, node_id, class_type}``.
* ``POST /api/v2/assets`` (multipart ``file``, ``file_path``,
  ``expected_hash``) -> 201 new / 200 existing, deduplicated by content
  (``blake3:<hex>``); ``HEAD /api/v2/assets/by-hash/{hash}`` and ``POST
  /api/v2/assets/from-hash`` reuse bytes already there. A graph refers to
  an uploaded file as ``{"__type": "core/ASSET", "info": {"id": ...}}``.
* ``GET /api/v2/assets/{id}/content``: the bytes (redirects are followed
  without credentials, to a public address only).
* Auth: ``Authorization: Bearer <key>`` (and ``X-API-Key`` for Comfy Cloud),
  the key from the environment only.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urljoin, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError

from .base import (REQUEST_TIMEOUT_S, CANCELED, FAILED, QUEUED, RUNNING, SUCCEEDED, UNKNOWN, Deadline, HttpWorker, JobRefused, JobState,
                   Output, ServerError, Upload, WorkerDown)
from .native import MAX_ERROR_CHARS, MAX_OUTPUTS, _clip, _field_errors, error_text
from .. import http
from ..media import check_url, is_loopback_url
from .transfer import Redirected, safe_name, stream_to_file

METADATA_PREFIX = "soulid-key:"
#: What an asset id may be before it is put into a URL path (no ``/``, no ``..``).
_ASSET_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_STATUS = {"queued": QUEUED, "running": RUNNING, "canceling": RUNNING, "succeeded": SUCCEEDED,
           "failed": FAILED, "canceled": CANCELED, "expired": UNKNOWN}

try:  # the contract's content hash; without blake3 every upload is sent (the server still dedups)
    import blake3 as _blake3
except ImportError:  # pragma: no cover - blake3 is a core dependency
    _blake3 = None


def blake3_hash(path: Path) -> str | None:
    if _blake3 is None:
        return None
    h = _blake3.blake3()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "blake3:" + h.hexdigest()


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")
    node_id: StrictStr | None = None
    name: StrictStr | None = None
    type: StrictStr | None = None
    id: StrictStr | None = None
    url: StrictStr | None = None


class _Err(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: StrictStr | None = None
    message: StrictStr | None = None
    node_id: StrictStr | None = None
    class_type: StrictStr | None = None


class _Job(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: StrictStr
    status: Literal["queued", "running", "succeeded", "failed", "canceling", "canceled", "expired"]
    outputs: list[_Out] = []
    error: _Err | None = None
    queue_position: StrictInt | None = None
    metadata: StrictStr | None = None


class V2Worker(HttpWorker):
    """One Comfy API v2 endpoint (see the module docstring). ``url`` is the
    base that ``/api/v2/...`` hangs off."""

    kind = "v2"

    server = "the v2 server"

    def __init__(self, url: str, api_key: str | None = None, client: httpx.Client | None = None,
                 request_timeout: float = REQUEST_TIMEOUT_S):
        headers = {"Authorization": f"Bearer {api_key}", "X-API-Key": api_key} if api_key else {}
        super().__init__(url, client, request_timeout, headers)
        self._assets: dict[tuple[str, str], str] = {}

    def check(self, r: httpx.Response, path: str) -> None:
        """5xx, 401, 403 and 429 drain the worker (a v2 gateway's refusals)."""
        if r.status_code >= 500 or r.status_code in (401, 403, 429):
            raise WorkerDown(f"{self.url}{path}: HTTP {r.status_code} {self._code(r)}".rstrip()
                             + (" (set COMFY_API_KEY)" if r.status_code == 401 else ""),
                             no_job=r.status_code in (401, 403, 429))

    @staticmethod
    def _code(r: httpx.Response) -> str:
        try:
            err = r.json().get("error") or {}
            return _clip(f"{err.get('code', '')}: {err.get('message', '')}", MAX_ERROR_CHARS)
        except (ValueError, AttributeError, RecursionError):
            return ""

    # ------------------------------------------------------------- uploads
    def prepare(self, graph: dict, uploads: list[Upload], deadline: Deadline) -> dict:
        for up in uploads:
            sub = "soulid-" + up.content_hash().split(":", 1)[1][:16]
            ids = []
            for path, h in zip(up.files, up.hashes):
                name = safe_name(path.name, "photo") if up.folder else h.split(":", 1)[1][:16] + path.suffix.lower()[:8]
                ids.append(self._upload(path, h, f"input/{sub}/{name}", deadline, up.folder))
            graph[up.node_id]["inputs"][up.input] = (
                sub if up.folder else {"__type": "core/ASSET", "info": {"id": ids[0]}})
        return graph

    def _upload(self, path: Path, h: str, file_path: str, deadline: Deadline, folder: bool = False) -> str:
        if (h, file_path) in self._assets:
            return self._assets[(h, file_path)]
        bh = blake3_hash(path)
        body = None
        if bh and self._call("HEAD", f"/api/v2/assets/by-hash/{bh}", deadline).status_code == 200:
            r = self._call("POST", "/api/v2/assets/from-hash", deadline, json={"hash": bh})
            body = self._json(r, "/api/v2/assets/from-hash") if r.status_code in (200, 201) else None
        if body is None:
            data = {"file_path": file_path, **({"expected_hash": bh} if bh else {})}
            with open(path, "rb") as f:
                r = self._call("POST", "/api/v2/assets", deadline, files={"file": (Path(file_path).name, f)}, data=data)
            body = self._json(r, "/api/v2/assets")
            if r.status_code not in (200, 201):
                raise ServerError(f"{self.url}/api/v2/assets refused {path.name}: HTTP {r.status_code} {self._code(r)}")
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            raise ServerError(f"{self.url}/api/v2/assets: answer without an asset id")
        placed = body.get("file_path")
        if folder and isinstance(placed, str) and placed.removeprefix("input/") != file_path.removeprefix("input/"):
            # v2 servers keep one copy per content hash: the bytes stay where they were first put.
            raise ServerError(f"{path.name}: the same photo is already on {self.url} as {placed!r}, so it cannot "
                              f"also be in the folder {file_path.rsplit('/', 1)[0]!r}; give each photo set its own "
                              f"photos")
        self._assets[(h, file_path)] = body["id"]
        return body["id"]

    # ----------------------------------------------------------------- jobs
    def submit(self, graph: dict, key: str, deadline: Deadline) -> str:
        r = self._call("POST", "/api/v2/jobs", deadline, headers={"Idempotency-Key": key},
                       json={"workflow": graph, "metadata": METADATA_PREFIX + key})
        body = self._json(r, "/api/v2/jobs")
        if r.status_code in (200, 201, 202):
            try:
                return _Job.model_validate(body).id
            except ValidationError as e:
                raise ServerError(f"{self.url}/api/v2/jobs: malformed job: {_field_errors(e)}") from None
        err = (body.get("error") if isinstance(body, dict) else None) or {}
        code = err.get("code") if isinstance(err, dict) else None
        if code == "idempotency_key_reuse":
            found = self.find(key, deadline)
            if found:
                return found
            raise ServerError(f"{self.url}: job key {key[:12]}... was used before but its job is not in the "
                              f"job list (older than the list's window?)")
        details = ""
        if isinstance(err, dict):
            details = str(err.get("message", ""))
            node_errors = (err.get("details") or {}).get("node_errors") if isinstance(err.get("details"), dict) else None
            if node_errors:
                details += "\n" + error_text({"node_errors": node_errors}).strip()
        raise JobRefused(f"{self.url} refused the workflow (HTTP {r.status_code} {code or ''})".rstrip(), details)

    def find(self, key: str, deadline: Deadline) -> str | None:
        r = self._call("GET", "/api/v2/jobs", deadline, params={"limit": 100})
        body = self._json(r, "/api/v2/jobs")
        jobs = body.get("jobs") if isinstance(body, dict) else None
        if r.status_code != 200 or not isinstance(jobs, list):
            raise ServerError(f"{self.url}/api/v2/jobs: expected {{'jobs': [...]}}, got HTTP {r.status_code}")
        for j in jobs:
            if isinstance(j, dict) and j.get("metadata") == METADATA_PREFIX + key and isinstance(j.get("id"), str):
                return j["id"]
        return None

    def state(self, job_id: str, deadline: Deadline) -> JobState:
        r = self._call("GET", f"/api/v2/jobs/{job_id}", deadline)
        if r.status_code == 404:
            return JobState(UNKNOWN)
        body = self._json(r, f"/api/v2/jobs/{job_id}")
        try:
            job = _Job.model_validate(body)
        except ValidationError as e:
            raise ServerError(f"{self.url}/api/v2/jobs/{job_id}: malformed job: {_field_errors(e)}") from None
        outputs = []
        if len(job.outputs) > MAX_OUTPUTS:
            raise ServerError(f"{self.url}/api/v2/jobs/{job_id}: the job lists more than {MAX_OUTPUTS} outputs")
        for i, o in enumerate(job.outputs):
            if o.type == "text":
                continue
            if not (o.url or o.id):
                raise ServerError(f"{self.url}/api/v2/jobs/{job_id}: outputs.{i} has neither url nor id")
            outputs.append(Output(node_id=o.node_id or "?", name=o.name or f"output_{i}", kind=o.type or "file",
                                  ref={"url": o.url, "id": o.id}))
        st = _STATUS[job.status]
        error = ""
        if st == FAILED:
            e = job.error or _Err()
            error = (f"node {_clip(e.node_id, 100)} ({_clip(str(e.class_type), 100)}) failed: "
                     f"{_clip(e.message or e.code or 'error', MAX_ERROR_CHARS)}" if e.node_id
                     else f"failed: {_clip(e.message or e.code or 'no reason given', MAX_ERROR_CHARS)}")
        return JobState(st, outputs, {}, error, job.queue_position)

    def download(self, output: Output, dest: Path, max_bytes: int, deadline: Deadline) -> Path:
        url = output.ref.get("url")
        mine = urlsplit(self.url)
        if not url or urlsplit(url)[:2] != mine[:2]:  # never send our key to a host the server names
            if not output.ref.get("id"):
                raise ServerError(f"{self.url}: output {output.name!r} points at another host and has no id")
            if not _ASSET_ID.fullmatch(output.ref["id"]):
                raise ServerError(f"{self.url}: output {output.name[:80]!r} has the asset id "
                                  f"{output.ref['id'][:80]!r}, which is not an id (refused, not fetched)")
            url = f"{self.url}/api/v2/assets/{output.ref['id']}/content"
        what = f"{self.url} output {output.name!r} of node {output.node_id}"
        try:
            return stream_to_file(self.client, url, dest, max_bytes=max_bytes, deadline=deadline, what=what,
                                  request_timeout=self.request_timeout)
        except Redirected as moved:
            target = urljoin(url, moved.location)
        check_url(target, allow_loopback=is_loopback_url(self.url), what=what)
        with http.client(timeout=30.0, trust_env=False) as bare:  # no credentials to a signed URL
            return stream_to_file(bare, target, dest, max_bytes=max_bytes, deadline=deadline, what=what)
