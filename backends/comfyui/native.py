"""A ComfyUI server's own HTTP API as a :class:`~.base.Worker`.

Routes (ComfyUI 0.3.64 ``server.py``;
https://docs.comfy.org/development/comfyui-server/comms_routes):
``POST /prompt`` (with a client-chosen ``prompt_id``), ``GET /history/{id}``,
``GET /queue``, ``GET|HEAD /view``, ``POST /upload/image``.

Idempotency: the ``prompt_id`` is a UUID derived from the job key, and the
server's history and queue are asked for it before anything is queued, so
the same job is never queued twice on one server (the caller's journal
covers servers that restarted and forgot their history).

Every ``/history`` entry is validated (:func:`parse_history_entry`): a
string, a list where outputs should be, a file name that is not text or
holds a NUL byte is a :class:`~.base.ServerError` naming the field.
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError

from .base import (REQUEST_TIMEOUT_S, CANCELED, FAILED, QUEUED, RUNNING, SUCCEEDED, UNKNOWN, Deadline, HttpWorker, JobRefused, JobState,
                   Output, ServerError, Upload)
from .transfer import safe_name, stream_to_file

#: Output-list keys of ComfyUI's UI results that name files (``SavedResult``).
FILE_KEYS = ("images", "gifs", "videos", "audio", "animated_images", "3d")
_NS = uuid.UUID("6f0e4c52-3b0e-4b8e-9d1e-5a0c8f6b7e21")


#: Longest server error message kept (characters); the rest is cut and counted.
MAX_ERROR_CHARS = 2000
#: Longest text output kept per item (characters), and items kept per node.
MAX_TEXT_CHARS, MAX_TEXTS = 64 * 1024, 64
#: Text output characters kept per job in all (they go into the journal and the terminal).
MAX_TEXT_TOTAL = 1 << 20
#: Most output files one job may list.
MAX_OUTPUTS = 10000


def _clip(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters cut)"


def prompt_id_for(key: str) -> str:
    """The ``prompt_id`` a job with ``key`` gets on every native server."""
    return str(uuid.uuid5(_NS, key))


def _text(v: str) -> str:
    if not v or "\x00" in v:
        raise ValueError("must be non-empty text without NUL bytes")
    return v


def _folder(v: str) -> str:
    if "\x00" in v:
        raise ValueError("must not hold NUL bytes")
    return v


class _File(BaseModel):
    model_config = ConfigDict(extra="allow")
    filename: Annotated[StrictStr, AfterValidator(_text)]
    subfolder: Annotated[StrictStr, AfterValidator(_folder)] = ""
    type: Annotated[StrictStr, AfterValidator(_text)] = "output"


class _NodeUI(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    images: list[_File] = []
    gifs: list[_File] = []
    videos: list[_File] = []
    audio: list[_File] = []
    animated_images: list[_File] = []
    three_d: list[_File] = Field(default=[], alias="3d")
    text: list[Any] = []


class _Status(BaseModel):
    model_config = ConfigDict(extra="allow")
    status_str: StrictStr | None = None
    completed: StrictBool | None = None
    messages: list[tuple[StrictStr, Any]] = []


class _Entry(BaseModel):
    model_config = ConfigDict(extra="allow")
    outputs: dict[str, _NodeUI] = {}
    status: _Status = _Status()


def _field_errors(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(entry)'}: {err['msg']} "
                     f"(got {str(err.get('input'))[:60]!r})" for err in e.errors()[:5])


def parse_history_entry(entry: Any, where: str) -> JobState:
    """A terminal :class:`JobState` from one ``/history/{id}`` entry.

    Raises:
        ServerError: the entry is not ComfyUI's shape (names the field).
    """
    try:
        e = _Entry.model_validate(entry)
    except ValidationError as err:
        raise ServerError(f"{where}: malformed history entry: {_field_errors(err)}") from None
    outputs, texts = [], {}
    text_left = MAX_TEXT_TOTAL
    for nid, ui in e.outputs.items():
        for key in FILE_KEYS:
            for f in getattr(ui, "three_d" if key == "3d" else key):
                if len(outputs) >= MAX_OUTPUTS:
                    raise ServerError(f"{where}: the job lists more than {MAX_OUTPUTS} output files")
                outputs.append(Output(node_id=nid, name=f.filename, kind=key,
                                      ref={"filename": f.filename, "subfolder": f.subfolder, "type": f.type}))
        kept = []
        for t in ui.text[:MAX_TEXTS]:
            t = _clip(t if isinstance(t, str) else str(t)[:MAX_TEXT_CHARS], min(MAX_TEXT_CHARS, max(0, text_left)))
            text_left -= len(t)
            kept.append(t)
        texts[nid] = kept
    for kind, data in e.status.messages:
        data = data if isinstance(data, dict) else {}
        if kind == "execution_error":
            msg = (f"node {_clip(str(data.get('node_id')), 100)} ({_clip(str(data.get('node_type')), 100)}) failed: "
                   f"{_clip(str(data.get('exception_type', 'Error')), 200)}: "
                   f"{_clip(str(data.get('exception_message', '')).strip(), MAX_ERROR_CHARS)}")
            return JobState(FAILED, outputs, texts, msg)
        if kind == "execution_interrupted":
            return JobState(CANCELED, outputs, texts, f"interrupted at node {_clip(str(data.get('node_id')), 100)} "
                                                      f"({_clip(str(data.get('node_type')), 100)})")
    if e.status.status_str == "error":
        return JobState(FAILED, outputs, texts, "failed (no error message in its history)")
    return JobState(SUCCEEDED, outputs, texts)


def error_text(body: Any, max_lines: int = 50) -> str:
    """ComfyUI's ``/prompt`` refusal (``{"error": {...}, "node_errors": {...}}``) as lines:
    at most ``max_lines`` node errors, each clipped (a server chooses their number and size)."""
    if not isinstance(body, dict):
        return _clip(str(body), MAX_ERROR_CHARS)
    err = body.get("error")
    lines = [_clip(str(err.get("message", "")) + (f": {err['details']}" if err.get("details") else ""), MAX_ERROR_CHARS)
             if isinstance(err, dict) else _clip(str(err), MAX_ERROR_CHARS)]
    node_errors = body.get("node_errors")
    count = 0
    for nid, ne in (node_errors.items() if isinstance(node_errors, dict) else ()):
        for e in (ne.get("errors") or [] if isinstance(ne, dict) else []):
            if isinstance(e, dict):
                count += 1
                if count <= max_lines:
                    lines.append(_clip(f"  node {nid} ({ne.get('class_type', '?')}): {e.get('message', '')}"
                                       + (f": {e['details']}" if e.get("details") else ""), 500))
    if count > max_lines:
        lines.append(f"  ... and {count - max_lines} more node error(s)")
    return "\n".join(lines)


class NativeWorker(HttpWorker):
    """One ComfyUI server over its native routes (see the module docstring)."""

    kind = "native"

    server = "ComfyUI"

    def __init__(self, url: str, api_key: str | None = None, client: httpx.Client | None = None,
                 request_timeout: float = REQUEST_TIMEOUT_S):
        super().__init__(url, client, request_timeout)
        self._uploaded: dict[tuple[str, str], str] = {}

    # ------------------------------------------------------------- uploads
    def prepare(self, graph: dict, uploads: list[Upload], deadline: Deadline) -> dict:
        for up in uploads:
            sub = "soulid-" + up.content_hash().split(":", 1)[1][:16]
            names = []
            for path, h in zip(up.files, up.hashes):
                want = (safe_name(path.name, "photo") if up.folder
                        else h.split(":", 1)[1][:16] + path.suffix.lower()[:8])
                names.append(self._upload(path, h, sub, want, deadline))
            graph[up.node_id]["inputs"][up.input] = sub if up.folder else f"{sub}/{names[0]}"
        return graph

    def _upload(self, path: Path, h: str, sub: str, name: str, deadline: Deadline) -> str:
        if (h, sub) in self._uploaded:
            return self._uploaded[(h, sub)]
        r = self._call("HEAD", "/view", deadline, params={"filename": name, "subfolder": sub, "type": "input"})
        if r.status_code != 200:
            with open(path, "rb") as f:
                r = self._call("POST", "/upload/image", deadline, files={"image": (name, f)},
                               data={"subfolder": sub, "type": "input"})
            body = self._json(r, "/upload/image")
            if r.status_code != 200 or not isinstance(body, dict) or not isinstance(body.get("name"), str):
                raise ServerError(f"{self.url}/upload/image refused {path.name} (HTTP {r.status_code})")
            name = body["name"]
        self._uploaded[(h, sub)] = name
        return name

    # ----------------------------------------------------------------- jobs
    def find(self, key: str, deadline: Deadline) -> str | None:
        """The queue is read before the history: ComfyUI moves a prompt from
        its queue to its history under one lock, so a job that finishes
        between the two reads is still seen (in the history)."""
        pid = prompt_id_for(key)
        if self._queue_place(pid, deadline) is not None:
            return pid
        return pid if self._history_entry(pid, deadline) is not None else None

    def _history_entry(self, pid: str, deadline: Deadline):
        """The raw ``/history/{pid}`` entry, or None when the history does not hold it."""
        h = self._json(self._call("GET", f"/history/{pid}", deadline), f"/history/{pid}")
        if not isinstance(h, dict):
            raise ServerError(f"{self.url}/history/{pid}: expected an object of prompt id -> entry, "
                              f"got {type(h).__name__}")
        return h.get(pid)

    def submit(self, graph: dict, key: str, deadline: Deadline) -> str:
        found = self.find(key, deadline)
        if found:
            return found
        pid = prompt_id_for(key)
        r = self._call("POST", "/prompt", deadline,
                       json={"prompt": graph, "client_id": "soulid-" + key[:16], "prompt_id": pid})
        try:
            body = self._json(r, "/prompt")
        except ServerError:
            body = r.text[:2000]
        if r.status_code != 200:
            raise JobRefused(f"ComfyUI at {self.url} refused the workflow (HTTP {r.status_code})", error_text(body))
        if not isinstance(body, dict) or not isinstance(body.get("prompt_id"), str) or not body["prompt_id"]:
            raise ServerError(f"{self.url}/prompt answered without a prompt_id: {str(body)[:300]}")
        return body["prompt_id"]

    def _queue_place(self, pid: str, deadline: Deadline) -> int | None:
        """0 running, N >= 1 the place in the pending queue, None: not queued."""
        q = self._json(self._call("GET", "/queue", deadline), "/queue")
        if not isinstance(q, dict):
            raise ServerError(f"{self.url}/queue: expected an object, got {type(q).__name__}")
        running = q.get("queue_running") or []
        pending = q.get("queue_pending") or []
        if not isinstance(running, list) or not isinstance(pending, list):
            raise ServerError(f"{self.url}/queue: queue_running/queue_pending are not lists")
        if any(isinstance(e, list) and len(e) > 1 and e[1] == pid for e in running):
            return 0
        ordered = sorted((e for e in pending if isinstance(e, list) and len(e) > 1),
                         key=lambda e: e[0] if isinstance(e[0], (int, float)) else 0)
        for i, e in enumerate(ordered):
            if e[1] == pid:
                return i + 1
        return None

    def state(self, job_id: str, deadline: Deadline) -> JobState:
        """The job's state from one consistent view: the queue first, then the
        history (a prompt leaves the queue only once its history entry is
        written). A job in neither is looked up once more after a pause
        before it counts as ``unknown`` (lost by the server)."""
        where = f"{self.url}/history/{job_id}"
        for attempt in range(2):
            place = self._queue_place(job_id, deadline)
            if place is not None:
                return JobState(RUNNING) if place == 0 else JobState(QUEUED, queue_position=place)
            entry = self._history_entry(job_id, deadline)
            if entry is not None:
                status = entry.get("status") if isinstance(entry, dict) else None
                if isinstance(status, dict) and not (status.get("completed") or
                                                     status.get("status_str") in ("success", "error")):
                    return JobState(RUNNING)
                return parse_history_entry(entry, where)
            if attempt == 0:
                time.sleep(min(0.5, deadline.left()))
        return JobState(UNKNOWN)

    def download(self, output: Output, dest: Path, max_bytes: int, deadline: Deadline) -> Path:
        return stream_to_file(self.client, "/view", dest, params=output.ref, max_bytes=max_bytes,
                              deadline=deadline, request_timeout=self.request_timeout,
                              what=f"{self.url}/view {output.name!r} of node {output.node_id}")
