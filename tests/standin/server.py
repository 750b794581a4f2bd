"""A stand-in for the Higgsfield, WaveSpeed and AuraShot HTTP APIs, for tests.

A real HTTP server (stdlib :mod:`http.server`, one thread per connection) on
127.0.0.1 that implements the contracts soulid's cloud backend speaks, renders
real PNG/JPEG images (Pillow) and H.264 MP4 clips (PyAV) itself, and can be
told to misbehave. Run by hand::

    python tests/standin/server.py --port 8765

It prints ``standin ready: http://127.0.0.1:8765`` when it listens.

Surfaces (one host; point ``SOULID_HIGGSFIELD_URL``, ``SOULID_WAVESPEED_URL``,
``SOULID_AURASHOT_URL`` at it):

* Higgsfield request API (https://github.com/higgsfield-ai/higgsfield-client):
  ``Authorization: Key ID:SECRET``; ``POST /<model path>`` ->
  ``{status, request_id, status_url, cancel_url}``; ``GET /requests/{id}/status``
  (``queued | in_progress | completed | failed | nsfw | canceled`` plus
  ``images: [{url}]`` / ``video: {url}``); ``POST /requests/{id}/cancel``;
  ``POST /estimate/<model path>``; ``POST /files/generate-upload-url`` then an
  unauthenticated ``PUT``.
* Higgsfield v1 platform: headers ``hf-api-key`` / ``hf-secret``, body
  ``{"params": {...}}``; ``/v1/text2image/soul``, ``/v1/image2video/dop``,
  ``/v1/job-sets/{id}``, ``/v1/custom-references`` (create / get / list /
  delete), ``/v1/text2image/soul-styles``, ``/v2/text2image/soul-styles``,
  ``/v1/motions``.
* WaveSpeed v3: Bearer; ``POST /api/v3/higgsfield/soul/image-to-image``,
  ``POST /api/v3/higgsfield/dop/image-to-video``,
  ``GET /api/v3/predictions/{id}/result``, ``POST /api/v3/media/upload/binary``.
* AuraShot: Bearer; ``POST /aurashot/v1/upload``, ``/aurashot/v1/id-photo``,
  ``/aurashot/v1/generate``, ``/aurashot/v1/edit``, ``GET /aurashot/v1/tasks/{id}``.

Every paid POST honours ``Idempotency-Key`` (a replay returns the first answer
and is not counted) and the cap of 4 jobs in flight per provider (a fifth gets
Higgsfield's 400 "maximum number of concurrent requests").

Test control:

* ``GET /_standin/stats``: ``paid`` (paid submits per endpoint), ``in_flight``,
  ``references`` (custom reference id -> model version), ``reference_images``
  (custom reference id -> photos it was trained on),
  ``peak_in_flight``, ``concurrency_rejections``, ``replays``,
  ``auth_leaks`` (auth headers seen on upload/media requests), ``requests``.
* ``POST /_standin/faults`` ``{"faults": [{"kind", "path", "method", "count",
  "seconds", "reason"}]}``: faults for the next ``count`` requests whose path
  starts with ``path`` (and whose method is ``method``, if given). Kinds:
  ``concurrency`` (400), ``401 403 404 422 423 500 502 503``, ``slow``
  (accept, then answer after ``seconds``), ``drop`` (accept a POST, then close
  the connection without answering), ``moderated``, ``failed`` (job outcome),
  ``expired``, ``truncated``, ``redirect_private``, ``wrong_type``,
  ``trickle`` (one byte every ``seconds``) (the job's result downloads),
  ``foreign_status_url``; malformed answers: ``answer`` (HTTP 200 with the
  JSON value ``body``, e.g. a list, an object without a request id, or a
  status ``"paused"``), ``html200`` (HTTP 200 with an HTML page),
  ``request_id`` (the submit answer names the request ``id``, e.g. ``../x``,
  while its status URL stays valid), ``echo_auth`` (HTTP ``code``, default
  400, whose error text echoes the request's credentials).

Routing comes before authentication, as in a real web framework: a path no
surface serves is a 404 whatever the key (an API root that is wrong shows
up as 404, not 401).
* ``POST /_standin/config`` ``{"queue_s", "run_s", "cap"}``; ``POST /_standin/reset``.

Cast mode (Soul Cast tests), switched on with ``POST /_standin/config``
``{"cast_people": {PERSON: [photo file, ...], ...}}`` (single-face photos of
each person, distinct shots, e.g. the real fixture photos) and off again by a
reset:

* a text-to-image request with no face reference (no ``custom_reference_id``,
  ``soul_id`` or reference image) "draws" a person chosen by the prompt (the
  same prompt always picks the same person);
* an edit whose reference image is one of those renders (Higgsfield
  ``image_reference``, WaveSpeed ``image``, AuraShot ``image_url``) returns
  *another* photo of the same person (the next one not shown yet; a person
  with few photos gets mirrored ones), as an angle edit of the front view should;
* ``{"cast_swap": K}``: the K-th such edit from now (1 = the next) comes back
  as another person, once (the inconsistent mode that tests a redraw).

``GET /_standin/stats`` then also lists ``cast``: per render, the person and
photo it shows.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import numpy as np
from PIL import Image, ImageDraw

KEY_ID, KEY_SECRET = "standin-key-id", "standin-key-secret"
WAVESPEED_KEY = "standin-wavespeed-key"
AURASHOT_KEY = "standin-aurashot-key"

#: Higgsfield Soul's 13 fixed sizes (``width_and_height``).
SOUL_SIZES = ["1152x2048", "2048x1152", "2048x1536", "1536x2048", "1344x2016", "2016x1344", "960x1696",
              "1536x1536", "1536x1152", "1696x960", "1152x1536", "1088x1632", "1632x1088"]
HF_SOUL_ROUTES = {"higgsfield-ai/soul/standard": None, "higgsfield-ai/soul/character": "v1",
                  "higgsfield-ai/soul/v2/standard": "v2", "higgsfield-ai/soul/cinema": "cinema"}
STYLES_V1 = [{"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"style/{n}")), "name": n, "description": f"{n} look",
              "preview_url": ""} for n in ("Realistic", "Y2K", "Tokyo Streetstyle", "Grunge", "Indie Sleaze")]
STYLES_V2 = [{"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"style2/{n}")), "name": n, "description": f"{n} look",
              "preview_url": ""} for n in ("Realistic", "Editorial", "Film Noir")]
MOTIONS = [{"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"motion/{n}")), "name": n, "description": n,
            "preview_url": "", "start_end_frame": n == "Morph"}
           for n in ("Dolly In", "Dolly Out", "Crash Zoom In", "360 Orbit", "Handheld", "Morph")]
DOP_MODELS = ("dop-turbo", "dop-lite", "dop-preview")
CAP = 4


def _err(loc: str, msg: str, typ: str = "value_error") -> dict:
    return {"loc": ["body", *loc.split(".")], "msg": msg, "type": typ}


# ------------------------------------------------------------------ rendering
def render_image(w: int, h: int, seed: int, label: str, face: bytes | None, fmt: str = "PNG") -> bytes:
    """A gradient canvas with the face reference pasted in the middle."""
    rng = np.random.default_rng(seed)
    c0, c1 = rng.integers(0, 255, 3), rng.integers(0, 255, 3)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    canvas = (c0 * (1 - t) + c1 * t).astype(np.uint8)
    im = Image.fromarray(np.broadcast_to(canvas, (h, w, 3)).copy())
    if face:
        f = Image.open(io.BytesIO(face)).convert("RGB")
        s = min(w * 0.8 / f.width, h * 0.8 / f.height)
        f = f.resize((max(1, int(f.width * s)), max(1, int(f.height * s))), Image.LANCZOS)
        im.paste(f, ((w - f.width) // 2, (h - f.height) // 2))
    ImageDraw.Draw(im).text((8, 8), label[:60], fill=(255, 255, 255))
    buf = io.BytesIO()
    im.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {"compress_level": 1}))
    return buf.getvalue()


def pixel_key(data: bytes) -> str:
    """The sha256 of an image's RGB pixels: the same for a render and for a
    lossless re-upload of it (a client decodes, then re-encodes as PNG)."""
    try:
        return hashlib.sha256(Image.open(io.BytesIO(data)).convert("RGB").tobytes()).hexdigest()
    except Exception:  # not an image: matches nothing
        return ""


def cast_photo(files: list[str], n: int) -> bytes:
    """Photo ``n`` of a person (``files``) as PNG bytes: ``n`` runs through the
    photos, then through them again mirrored (so four views of a person with
    three photos are four different images)."""
    im = Image.open(files[n % len(files)]).convert("RGB")
    if (n // len(files)) % 2:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    im.thumbnail((1024, 1024))
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def render_video(start: bytes | None, seconds: float = 5.0, fps: int = 24, long_side: int = 384) -> bytes:
    """An H.264 MP4: a slow zoom into the start image."""
    import av

    src = Image.open(io.BytesIO(start)).convert("RGB") if start else Image.new("RGB", (640, 480), (90, 120, 160))
    src.thumbnail((long_side * 2, long_side * 2))
    s = long_side / max(src.size)
    w, h = int(src.width * s) // 2 * 2, int(src.height * s) // 2 * 2
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        st = out.add_stream("libx264", rate=fps)
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.options = {"preset": "ultrafast"}
        n = int(round(seconds * fps))
        for i in range(n):
            z = 1.0 + 0.15 * i / max(n - 1, 1)
            cw, ch = src.width / z, src.height / z
            box = ((src.width - cw) / 2, (src.height - ch) / 2, (src.width + cw) / 2, (src.height + ch) / 2)
            fr = av.VideoFrame.from_ndarray(np.asarray(src.resize((w, h), Image.BILINEAR, box=box)), format="rgb24")
            for p in st.encode(fr):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    return buf.getvalue()


# ---------------------------------------------------------------------- state
class Job:
    def __init__(self, provider, endpoint, params, kind, queue_s, run_s, faults):
        self.id = str(uuid.uuid4())
        self.provider, self.endpoint, self.params, self.kind = provider, endpoint, params, kind
        self.created = time.monotonic()
        self.queue_s, self.run_s = queue_s, run_s
        self.canceled = False
        self.faults = faults  # job-level fault kinds -> fault dict
        self.outputs: list[str] | None = None
        self.lock = threading.Lock()

    def state(self) -> str:
        if self.canceled:
            return "canceled"
        t = time.monotonic() - self.created
        if t < self.queue_s:
            return "queued"
        if t < self.queue_s + self.run_s:
            return "running"
        if "moderated" in self.faults:
            return "moderated"
        if "failed" in self.faults:
            return "failed"
        return "succeeded"


class State:
    def __init__(self, queue_s=0.2, run_s=0.3, cap=CAP):
        self.lock = threading.RLock()
        self.queue_s, self.run_s, self.cap = queue_s, run_s, cap
        self.reset()

    def reset(self):
        with self.lock:
            self.jobs: dict[str, Job] = {}
            self.idem: dict[tuple, tuple[int, dict, str]] = {}
            self.files: dict[str, tuple[bytes, str]] = {}
            self.files_faults: dict[str, dict] = {}
            self.refs: dict[str, dict] = {}
            self.faults: list[dict] = []
            self.stats = {"paid": {}, "peak_in_flight": {}, "concurrency_rejections": 0, "replays": 0,
                          "auth_leaks": 0, "requests": {}, "cancels": 0, "cast": []}
            self.cast_people: dict[str, list[str]] = {}  # cast mode: person -> photo files
            self.cast_next: dict[str, int] = {}  # person -> next photo number to show
            self.cast_swap = 0  # the K-th cast edit from now shows another person
            self.cast_edits = 0
            self.made: dict[str, tuple[str, int]] = {}  # pixel_key of a render -> (person, photo number)

    def in_flight(self, provider: str) -> int:
        return sum(1 for j in self.jobs.values()
                   if j.provider == provider and j.state() in ("queued", "running"))

    def take_faults(self, method: str, path: str) -> list[dict]:
        out = []
        with self.lock:
            for f in list(self.faults):
                if f.get("method", method).upper() == method and path.startswith(f.get("path", "")):
                    out.append(dict(f))
                    f["count"] = f.get("count", 1) - 1
                    if f["count"] <= 0:
                        self.faults.remove(f)
        return out

    def add_file(self, data: bytes, ctype: str, name: str | None = None) -> str:
        token = (name or hashlib.sha256(data).hexdigest()[:24]) + {"image/png": ".png", "image/jpeg": ".jpg",
                                                         "video/mp4": ".mp4"}.get(ctype, "")
        with self.lock:
            self.files[token] = (data, ctype)
        return token


JOB_FAULTS = {"moderated", "failed", "expired", "truncated", "redirect_private", "wrong_type", "trickle"}
#: Higgsfield v1/v2 platform paths (routing before auth: anything else is a 404).
V1_ROUTES = re.compile(r"/v1/(text2image/soul|image2video/dop|job-sets/[^/]+|text2image/soul-styles|motions|"
                       r"custom-references|custom-references/list|custom-references/[^/]+)|/v2/text2image/soul-styles")


# -------------------------------------------------------------------- handler
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "standin/1"
    S: State  # set by make_server

    def log_message(self, *a):  # quiet
        pass

    # ---------------------------------------------------------- plumbing
    @property
    def base(self) -> str:
        h, p = self.server.server_address[:2]
        return f"http://{h}:{p}"

    def send(self, code: int, obj=None, *, raw: bytes | None = None, ctype="application/json", headers=None):
        body = raw if raw is not None else (b"" if obj is None else json.dumps(obj).encode())
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def body_json(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        self._raw = raw
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def drop(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_PUT(self):
        self.route("PUT")

    def do_DELETE(self):
        self.route("DELETE")

    def route(self, method: str):
        S = self.S
        path = urlsplit(self.path).path
        with S.lock:
            k = f"{method} {re.sub(r'/[0-9a-f-]{20,}.*', '/{id}', path)}"
            S.stats["requests"][k] = S.stats["requests"].get(k, 0) + 1
        if path.startswith("/_standin/"):
            return self.control(method, path)
        faults = S.take_faults(method, path)
        self._faults = faults
        for f in faults:
            kind = str(f["kind"])
            if kind == "concurrency":
                self.body_json()
                return self.send(400, {"detail": "You have reached the maximum number of concurrent requests"})
            if kind.isdigit():
                code = int(kind)
                detail = {401: "Invalid credentials", 403: "Not enough credits", 404: "Not found",
                          423: "Model is blocked for this account",
                          422: [_err("prompt", "String should have at most 2000 characters", "string_too_long")]
                          }.get(code, "Internal Server Error")
                self.body_json()
                return self.send(code, {"detail": f.get("reason", detail)})
            if kind == "slow" and method == "GET":
                time.sleep(float(f.get("seconds", 1.0)))
            if kind == "answer":
                self.body_json()
                return self.send(200, f.get("body"))
            if kind == "html200":
                self.body_json()
                return self.send(200, raw=b"<!doctype html><html><body>Service update</body></html>",
                                 ctype="text/html")
            if kind == "echo_auth":
                self.body_json()
                creds = " ".join(f"{h}: {self.headers[h]}" for h in ("Authorization", "hf-api-key", "hf-secret")
                                 if h in self.headers)
                return self.send(int(f.get("code", 400)), {"detail": f"malformed request (received {creds})"})
        try:
            self.dispatch(method, path)
        except (BrokenPipeError, ConnectionResetError):
            pass

    # --------------------------------------------------------------- control
    def control(self, method, path):
        S = self.S
        if path == "/_standin/stats":
            with S.lock:
                st = json.loads(json.dumps(S.stats))
                st["in_flight"] = {p: S.in_flight(p) for p in ("higgsfield", "wavespeed", "aurashot")}
                st["jobs"] = {j.id: {"endpoint": j.endpoint, "state": j.state(), "provider": j.provider}
                              for j in S.jobs.values()}
                st["references"] = {r["id"]: r["model_version"] for r in S.refs.values()}
                st["reference_images"] = {r["id"]: len(r["input_images"]) for r in S.refs.values()}
            return self.send(200, st)
        body = self.body_json() or {}
        if path == "/_standin/faults" and method == "POST":
            with S.lock:
                S.faults += [dict(f) for f in body.get("faults", [])]
            return self.send(200, {"faults": len(S.faults)})
        if path == "/_standin/config" and method == "POST":
            with S.lock:
                for k in ("queue_s", "run_s", "cap", "cast_people", "cast_swap"):
                    if k in body:
                        setattr(S, k, body[k])
                if "cast_swap" in body:
                    S.cast_edits = 0
            return self.send(200, {"queue_s": S.queue_s, "run_s": S.run_s, "cap": S.cap})
        if path == "/_standin/reset" and method == "POST":
            S.reset()
            return self.send(200, {})
        return self.send(404, {"detail": "Not found"})

    # ------------------------------------------------------------------ auth
    def auth(self, provider: str, v1: bool = False) -> bool:
        if provider == "higgsfield":
            if v1:
                ok = self.headers.get("hf-api-key") == KEY_ID and self.headers.get("hf-secret") == KEY_SECRET
                ok = ok or self.headers.get("Authorization") == f"Key {KEY_ID}:{KEY_SECRET}"
            else:
                ok = self.headers.get("Authorization") == f"Key {KEY_ID}:{KEY_SECRET}"
        else:
            key = WAVESPEED_KEY if provider == "wavespeed" else AURASHOT_KEY
            ok = self.headers.get("Authorization") == f"Bearer {key}"
        if not ok:
            self.body_json()
            self.send(401, {"detail": "Invalid credentials"})
        return ok

    def note_leak(self):
        if any(h in self.headers for h in ("Authorization", "hf-api-key", "hf-secret")):
            with self.S.lock:
                self.S.stats["auth_leaks"] += 1

    # --------------------------------------------------------------- dispatch
    def dispatch(self, method, path):
        S = self.S
        if path.startswith("/upload/") and method == "PUT":
            self.note_leak()
            n = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(n)
            token = path.rsplit("/", 1)[1]
            with S.lock:
                S.files[token] = (data, self.headers.get("Content-Type", "application/octet-stream"))
            return self.send(200, {})
        if path.startswith("/cdn/") and method == "GET":
            return self.serve_media(path.rsplit("/", 1)[1])
        if path == "/files/generate-upload-url" and method == "POST":
            if not self.auth("higgsfield", v1=True):
                return
            body = self.body_json() or {}
            ct = body.get("content_type")
            if ct not in ("image/jpeg", "image/png", "image/webp"):
                return self.send(422, {"detail": [_err("content_type", "Input should be 'image/jpeg', 'image/png' or 'image/webp'")]})
            token = uuid.uuid4().hex + {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}[ct]
            return self.send(200, {"public_url": f"{self.base}/cdn/{token}", "upload_url": f"{self.base}/upload/{token}",
                                   "upload_headers": {"Content-Type": ct}})
        # ---- Higgsfield request API
        m = re.fullmatch(r"/requests/([^/]+)/(status|cancel)", path)
        if m:
            if not self.auth("higgsfield"):
                return
            return self.hf_status(m.group(1)) if m.group(2) == "status" else self.cancel(m.group(1))
        if path.startswith("/estimate/") and method == "POST":
            if not self.auth("higgsfield"):
                return
            body = self.body_json() or {}
            route = path[len("/estimate/"):]
            errs = self.validate_soul(route, body)
            if errs:
                return self.send(422, {"detail": errs})
            credits = int(body.get("batch_size", 1)) * (2 if body.get("quality") == "720p" else 3)
            return self.send(200, {"credits": credits, "usd": round(credits * 0.0625, 4)})
        if path.lstrip("/") in HF_SOUL_ROUTES and method == "POST":
            if not self.auth("higgsfield"):
                return
            return self.submit("higgsfield", path.lstrip("/"), "hf")
        # ---- Higgsfield v1
        if path.startswith("/aurashot/v1/"):
            return self.aurashot(method, path)
        if path.startswith("/v1/") or path.startswith("/v2/"):
            if not V1_ROUTES.fullmatch(path):
                self.body_json()
                return self.send(404, {"detail": "Not Found"})
            if not self.auth("higgsfield", v1=True):
                return
            return self.v1(method, path)
        if path.startswith("/api/v3/"):
            if not self.auth("wavespeed"):
                return
            return self.wavespeed(method, path)
        self.body_json()
        return self.send(404, {"detail": "Not Found"})

    # ------------------------------------------------------------- submits
    def submit(self, provider: str, endpoint: str, surface: str):
        """Validate, honour Idempotency-Key and the cap, create the job."""
        S = self.S
        body = self.body_json()
        if body is None:
            return self.send(422, {"detail": [_err("", "Input should be a valid JSON object", "json_invalid")]})
        params = body.get("params", body) if surface == "v1" else body
        errs = self.validate(surface, endpoint, params)
        if errs:
            return self.send(422, {"detail": errs})
        key = self.headers.get("Idempotency-Key")
        faults = {f["kind"]: f for f in self._faults if f["kind"] in JOB_FAULTS}
        with S.lock:
            if key and (provider, key) in S.idem:
                code, resp, _ = S.idem[(provider, key)]
                S.stats["replays"] += 1
                replay = True
            else:
                replay = False
                if S.in_flight(provider) >= S.cap:
                    S.stats["concurrency_rejections"] += 1
                    return self.send(400, {"detail": "You have reached the maximum number of concurrent requests"})
                kind = "video" if "dop" in endpoint else "image"
                job = Job(provider, endpoint, params, kind, S.queue_s, S.run_s, faults)
                S.jobs[job.id] = job
                S.stats["paid"][endpoint] = S.stats["paid"].get(endpoint, 0) + 1
                n = S.in_flight(provider)
                S.stats["peak_in_flight"][provider] = max(S.stats["peak_in_flight"].get(provider, 0), n)
                code, resp = 200, self.submit_answer(surface, job)
                if any(f["kind"] == "foreign_status_url" for f in self._faults) and "status_url" in resp:
                    resp["status_url"] = resp["status_url"].replace(self.base, "http://203.0.113.7")
                for f in self._faults:
                    if f["kind"] == "request_id":
                        resp = json.loads(json.dumps(resp))
                        for holder in (resp, resp.get("data") or {}):
                            for k in ("request_id", "id", "task_id"):
                                if k in holder:
                                    holder[k] = f["id"]
                if key:
                    S.idem[(provider, key)] = (code, resp, job.id)
        if not replay:
            for f in self._faults:
                if f["kind"] == "slow":
                    time.sleep(float(f.get("seconds", 1.0)))
                if f["kind"] == "drop":
                    return self.drop()
        return self.send(code, resp)

    def submit_answer(self, surface: str, job: Job) -> dict:
        b = self.base
        if surface == "hf":
            return {"status": "queued", "request_id": job.id, "status_url": f"{b}/requests/{job.id}/status",
                    "cancel_url": f"{b}/requests/{job.id}/cancel"}
        if surface == "v1":
            n = int(job.params.get("batch_size", 1)) if job.kind == "image" else 1
            return {"id": job.id, "type": job.endpoint, "created_at": time.time(),
                    "jobs": [{"id": f"{job.id}-{i}", "status": "queued", "results": None} for i in range(n)]}
        if surface == "ws":
            return {"code": 200, "message": "success",
                    "data": {"id": job.id, "model": job.endpoint, "status": "created", "outputs": [],
                             "urls": {"get": f"{b}/api/v3/predictions/{job.id}/result"}, "created_at": time.time()}}
        return {"task_id": job.id, "status": "pending", "status_url": f"{b}/aurashot/v1/tasks/{job.id}",
                "cancel_url": f"{b}/aurashot/v1/tasks/{job.id}/cancel"}

    # ------------------------------------------------------------ validation
    def validate(self, surface, endpoint, p) -> list:
        if not isinstance(p, dict):
            return [_err("params", "Input should be a valid dictionary", "dict_type")]
        if surface in ("hf",) or endpoint == "/v1/text2image/soul":
            return self.validate_soul(endpoint, p)
        errs = []
        if "dop" in endpoint:
            if surface == "v1":
                if p.get("model", "dop-turbo") not in DOP_MODELS:
                    errs.append(_err("params.model", f"Input should be {', '.join(repr(m) for m in DOP_MODELS)}", "enum"))
                imgs = p.get("input_images") or []
                if len(imgs) != 1 or not self.known_url(imgs[0].get("image_url")):
                    errs.append(_err("params.input_images", "Exactly one reachable input image is required"))
                mot = p.get("motions") or []
                if len(mot) > 2:
                    errs.append(_err("params.motions", "List should have at most 2 items", "too_long"))
                ids = {m["id"] for m in MOTIONS}
                for i, m in enumerate(mot):
                    if m.get("id") not in ids:
                        errs.append(_err(f"params.motions.{i}.id", f"Unknown motion id {m.get('id')!r}"))
                    if not 0 <= float(m.get("strength", 0.5)) <= 1:
                        errs.append(_err(f"params.motions.{i}.strength", "Input should be between 0 and 1"))
            elif not self.known_url(p.get("image")):
                errs.append(_err("image", "image URL is not reachable"))
            return errs
        if surface == "ws":
            if not self.known_url(p.get("image")):
                errs.append(_err("image", "image URL is not reachable"))
            if not 0 <= float(p.get("strength", 0.5)) <= 1:
                errs.append(_err("strength", "Input should be less than or equal to 1"))
            if p.get("quality", "high") not in ("medium", "high"):
                errs.append(_err("quality", "Input should be 'medium' or 'high'", "enum"))
            if p.get("soul_id") and p["soul_id"] not in self.S.refs:
                errs.append(_err("soul_id", f"Soul ID {p['soul_id']!r} not found"))
            return errs
        if surface == "as":
            for f in ("face_image_url", "image_url"):
                if f in p and not self.known_url(p[f]):
                    errs.append(_err(f, "URL is not reachable"))
            return errs
        return errs

    def validate_soul(self, route, p) -> list:
        errs = []
        if not isinstance(p.get("prompt"), str) or not p.get("prompt", "").strip():
            errs.append(_err("prompt", "Field required", "missing"))
        if p.get("width_and_height", "1536x2048") not in SOUL_SIZES:
            errs.append(_err("width_and_height", "Input should be " + ", ".join(repr(s) for s in SOUL_SIZES), "enum"))
        if p.get("quality", "1080p") not in ("720p", "1080p"):
            errs.append(_err("quality", "Input should be '720p' or '1080p'", "enum"))
        if p.get("batch_size", 1) not in (1, 4):
            errs.append(_err("batch_size", "Input should be 1 or 4", "literal_error"))
        for f in ("style_strength", "custom_reference_strength", "image_reference_strength"):
            if f in p and not 0 <= float(p[f]) <= 1:
                errs.append(_err(f, "Input should be between 0 and 1"))
        if p.get("style_id") and p["style_id"] not in {s["id"] for s in STYLES_V1 + STYLES_V2}:
            errs.append(_err("style_id", f"Unknown style id {p['style_id']!r}"))
        if p.get("image_reference") and not self.known_url(p["image_reference"]):
            errs.append(_err("image_reference", "image URL is not reachable"))
        ref = p.get("custom_reference_id")
        want = HF_SOUL_ROUTES.get(route.lstrip("/"), "v1")
        if ref:
            r = self.S.refs.get(ref)
            if r is None:
                errs.append(_err("custom_reference_id", f"Custom reference {ref!r} not found"))
            elif r["status"] != "completed":
                errs.append(_err("custom_reference_id", f"Custom reference {ref!r} is {r['status']}, not completed"))
            elif want is None or r["model_version"] != want:
                errs.append(_err("custom_reference_id", f"Custom reference {ref!r} was trained for model_version "
                                 f"{r['model_version']!r}; this route takes {want!r}"))
        elif want is not None and route.lstrip("/") in HF_SOUL_ROUTES:
            errs.append(_err("custom_reference_id", "Field required", "missing"))
        return errs

    def known_url(self, url) -> bool:
        if not isinstance(url, str) or not url.startswith(self.base + "/cdn/"):
            return False
        return url.rsplit("/", 1)[1] in self.S.files

    # ----------------------------------------------------------- results
    def outputs(self, job: Job) -> list[str]:
        with job.lock:
            if job.outputs is None:
                p = job.params
                seed = int(p.get("seed") or 0)
                urls = []
                if job.kind == "video":
                    imgs = p.get("input_images") or [{"image_url": p.get("image")}]
                    data = render_video(self.fetch(imgs[0].get("image_url")))
                    urls.append(self.S.add_file(data, "video/mp4", job.id))
                else:
                    face = None
                    ref = self.S.refs.get(p.get("custom_reference_id") or p.get("soul_id") or "")
                    if ref:
                        face = self.fetch(ref["input_images"][0])
                    for f in ("image", "face_image_url", "image_reference"):
                        if face is None and p.get(f):
                            face = self.fetch(p[f])
                    wh = p.get("width_and_height") or p.get("size") or "1152x1536"
                    w, h = (int(x) for x in wh.split("x"))
                    if p.get("quality") == "720p":
                        w, h = w * 2 // 3, h * 2 // 3
                    cast = self.cast_pick(p, ref) if self.S.cast_people else None
                    for i in range(int(p.get("batch_size", 1))):
                        if cast is not None:
                            face = cast_photo(self.S.cast_people[cast[0]], cast[1] + i)
                        data = render_image(w, h, seed + i, str(p.get("prompt", "")), face)
                        urls.append(self.S.add_file(data, "image/png", f"{job.id}-{i}"))
                        if cast is not None:
                            with self.S.lock:
                                self.S.made[pixel_key(data)] = (cast[0], cast[1] + i)
                                self.S.stats["cast"].append({"file": urls[-1], "person": cast[0],
                                                             "photo": cast[1] + i, "endpoint": job.endpoint})
                with self.S.lock:
                    for u in urls:
                        self.S.files_faults[u] = job.faults
                job.outputs = urls
            return [f"{self.base}/cdn/{u}" for u in job.outputs]

    def cast_pick(self, p: dict, ref) -> tuple[str, int] | None:
        """Cast mode: ``(person, photo number)`` this request shows, or None
        (a request with a trained identity, or an edit of an image the cast
        mode did not make, renders as usual)."""
        S = self.S
        if ref:
            return None
        src = next((p[f] for f in ("image_reference", "image", "image_url") if isinstance(p.get(f), str)), None)
        people = sorted(S.cast_people)
        if src is None:  # text to image: the prompt picks the person
            h = int.from_bytes(hashlib.sha256(str(p.get("prompt", "")).encode()).digest()[:4], "big")
            person = people[h % len(people)]
        else:
            data = self.fetch(src)
            made = None if data is None else S.made.get(pixel_key(data))
            if made is None:
                return None
            person = made[0]
            with S.lock:
                S.cast_edits += 1
                swap = bool(S.cast_swap) and S.cast_edits == S.cast_swap
                if swap:
                    S.cast_swap = 0
            if swap:
                person = next(q for q in people if q != person)
        with S.lock:
            n = S.cast_next.get(person, 0)
            S.cast_next[person] = n + int(p.get("batch_size", 1))
        return person, n

    def fetch(self, url) -> bytes | None:
        if not isinstance(url, str) or "/cdn/" not in url:
            return None
        f = self.S.files.get(url.rsplit("/", 1)[1])
        return f[0] if f else None

    def serve_media(self, token):
        self.note_leak()
        S = self.S
        with S.lock:
            f = S.files.get(token)
            ff = S.files_faults.get(token, {})
        if f is None:
            return self.send(404, {"detail": "Not found"})
        data, ctype = f
        if "expired" in ff:
            return self.send(410, {"detail": "This result has expired"})
        if "redirect_private" in ff:
            return self.send(302, None, headers={"Location": f"http://10.20.30.40/cdn/{token}"})
        if "wrong_type" in ff:
            return self.send(200, raw=b"<html>login</html>", ctype="text/html")
        if "trickle" in ff:
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                for i in range(len(data)):
                    self.wfile.write(data[i:i + 1])
                    self.wfile.flush()
                    time.sleep(float(ff["trickle"].get("seconds", 1.0)))
            except OSError:
                pass
            return self.drop()
        if "truncated" in ff:
            fault = ff["truncated"]
            with S.lock:
                fault["served"] = fault.get("served", 0) + 1
                if fault["served"] >= int(fault.get("times", 1)):
                    ff.pop("truncated", None)
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            return self.drop()
        return self.send(200, raw=data, ctype=ctype)

    def hf_status(self, rid):
        S = self.S
        job = S.jobs.get(rid)
        if job is None:
            return self.send(404, {"detail": "Request not found"})
        st = job.state()
        hf = {"queued": "queued", "running": "in_progress", "succeeded": "completed", "failed": "failed",
              "moderated": "nsfw", "canceled": "canceled"}[st]
        out = {"status": hf, "request_id": rid, "status_url": f"{self.base}/requests/{rid}/status",
               "cancel_url": f"{self.base}/requests/{rid}/cancel"}
        if st == "succeeded":
            urls = self.outputs(job)
            if job.kind == "video":
                out["video"] = {"url": urls[0]}
            else:
                out["images"] = [{"url": u} for u in urls]
        if st == "failed":
            out["error"] = job.faults["failed"].get("reason", "Generation failed")
        return self.send(200, out)

    def cancel(self, rid):
        self.body_json()
        job = self.S.jobs.get(rid)
        if job is None:
            return self.send(404, {"detail": "Request not found"})
        if job.state() != "queued":
            return self.send(400, {"detail": "Request cannot be cancelled: it is already processing"})
        job.canceled = True
        with self.S.lock:
            self.S.stats["cancels"] += 1
        return self.send(202, {})

    # ------------------------------------------------------------------- v1
    def v1(self, method, path):
        S = self.S
        if method == "POST" and path in ("/v1/text2image/soul", "/v1/image2video/dop"):
            return self.submit("higgsfield", path, "v1")
        m = re.fullmatch(r"/v1/job-sets/([^/]+)", path)
        if m and method == "GET":
            job = S.jobs.get(m.group(1))
            if job is None:
                return self.send(404, {"detail": "Job set not found"})
            st = job.state()
            v1s = {"queued": "queued", "running": "in_progress", "succeeded": "completed", "failed": "failed",
                   "moderated": "nsfw", "canceled": "canceled"}[st]
            urls = self.outputs(job) if st == "succeeded" else None
            n = int(job.params.get("batch_size", 1)) if job.kind == "image" else 1
            ct = "video/mp4" if job.kind == "video" else "image/png"
            jobs = [{"id": f"{job.id}-{i}", "status": v1s,
                     "results": {"raw": {"type": ct, "url": urls[i]}, "min": {"type": ct, "url": urls[i]}} if urls else None}
                    for i in range(n)]
            return self.send(200, {"id": job.id, "type": job.endpoint, "jobs": jobs})
        if path == "/v1/text2image/soul-styles" and method == "GET":
            return self.send(200, STYLES_V1)
        if path == "/v2/text2image/soul-styles" and method == "GET":
            return self.send(200, STYLES_V2)
        if path == "/v1/motions" and method == "GET":
            return self.send(200, MOTIONS)
        if path == "/v1/custom-references" and method == "POST":
            return self.create_reference()
        if path == "/v1/custom-references/list" and method == "GET":
            with S.lock:
                items = [self.ref_view(r) for r in S.refs.values()]
            return self.send(200, {"total": len(items), "items": items})
        m = re.fullmatch(r"/v1/custom-references/([^/]+)", path)
        if m:
            r = S.refs.get(m.group(1))
            if r is None:
                return self.send(404, {"detail": "Custom reference not found"})
            if method == "GET":
                return self.send(200, self.ref_view(r))
            if method == "DELETE":
                with S.lock:
                    S.refs.pop(r["id"], None)
                return self.send(200, {"id": r["id"], "deleted": True})
        self.body_json()
        return self.send(404, {"detail": "Not Found"})

    def create_reference(self):
        S = self.S
        body = self.body_json() or {}
        errs = []
        if not str(body.get("name", "")).strip():
            errs.append(_err("name", "Field required", "missing"))
        if body.get("model_version", "v1") not in ("v1", "v2", "cinema"):
            errs.append(_err("model_version", "Input should be 'v1', 'v2' or 'cinema'", "enum"))
        imgs = body.get("input_images") or []
        if not 1 <= len(imgs) <= 100:
            errs.append(_err("input_images", f"List should have 1 to 100 items, not {len(imgs)}", "too_long"))
        for i, im in enumerate(imgs):
            if not self.known_url((im or {}).get("image_url")):
                errs.append(_err(f"input_images.{i}.image_url", "image URL is not reachable"))
        if errs:
            return self.send(422, {"detail": errs})
        key = self.headers.get("Idempotency-Key")
        with S.lock:
            if key and ("ref", key) in S.idem:
                S.stats["replays"] += 1
                return self.send(200, self.ref_view(S.refs[S.idem[("ref", key)][2]]))
            rid = str(uuid.uuid4())
            S.refs[rid] = {"id": rid, "name": body["name"], "model_version": body.get("model_version", "v1"),
                           "input_images": [im["image_url"] for im in imgs], "created": time.monotonic(),
                           "status": "not_ready"}
            S.stats["paid"]["/v1/custom-references"] = S.stats["paid"].get("/v1/custom-references", 0) + 1
            if key:
                S.idem[("ref", key)] = (200, {}, rid)
        return self.send(200, self.ref_view(S.refs[rid]))

    def ref_view(self, r) -> dict:
        t = time.monotonic() - r["created"]
        q, run = self.S.queue_s, self.S.run_s
        r["status"] = "queued" if t < q else "in_progress" if t < q + run else "completed"
        return {"id": r["id"], "name": r["name"], "status": r["status"], "model_version": r["model_version"],
                "thumbnail_url": r["input_images"][0], "created_at": r["created"]}

    # -------------------------------------------------------------- wavespeed
    def wavespeed(self, method, path):
        S = self.S
        if path == "/api/v3/media/upload/binary" and method == "POST":
            return self.multipart_upload(lambda url: {"code": 200, "message": "success",
                                                      "data": {"type": "image", "download_url": url}})
        if path in ("/api/v3/higgsfield/soul/image-to-image", "/api/v3/higgsfield/dop/image-to-video") and method == "POST":
            return self.submit("wavespeed", path, "ws")
        m = re.fullmatch(r"/api/v3/predictions/([^/]+)/result", path)
        if m and method == "GET":
            job = S.jobs.get(m.group(1))
            if job is None:
                return self.send(404, {"code": 404, "message": "prediction not found"})
            st = job.state()
            ws = {"queued": "created", "running": "processing", "succeeded": "completed", "failed": "failed",
                  "moderated": "failed", "canceled": "failed"}[st]
            err = {"failed": job.faults.get("failed", {}).get("reason", "generation failed"),
                   "moderated": "content flagged as NSFW by moderation", "canceled": "canceled"}.get(st, "")
            return self.send(200, {"code": 200, "message": "success",
                                   "data": {"id": job.id, "status": ws, "error": err,
                                            "outputs": self.outputs(job) if st == "succeeded" else []}})
        self.body_json()
        return self.send(404, {"code": 404, "message": "not found"})

    def multipart_upload(self, answer):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n)
        m = re.search(rb"\r\n\r\n(.*)\r\n--", raw, re.S)
        ct = re.search(rb"Content-Type: ([\w/]+)", raw)
        if not m:
            return self.send(422, {"detail": [_err("file", "Field required", "missing")]})
        ctype = ct.group(1).decode() if ct else "application/octet-stream"
        token = self.S.add_file(m.group(1), ctype)
        return self.send(200, answer(f"{self.base}/cdn/{token}"))

    # --------------------------------------------------------------- aurashot
    def aurashot(self, method, path):
        S = self.S
        if not self.auth("aurashot"):
            return
        if path == "/aurashot/v1/upload" and method == "POST":
            return self.multipart_upload(lambda url: {"url": url})
        if path in ("/aurashot/v1/id-photo", "/aurashot/v1/generate", "/aurashot/v1/edit") and method == "POST":
            return self.submit("aurashot", path, "as")
        m = re.fullmatch(r"/aurashot/v1/tasks/([^/]+)(/cancel)?", path)
        if m:
            if m.group(2):
                return self.cancel(m.group(1))
            job = S.jobs.get(m.group(1))
            if job is None:
                return self.send(404, {"error": "task not found"})
            st = job.state()
            a = {"queued": "pending", "running": "processing"}.get(st, st)
            return self.send(200, {"task_id": job.id, "status": a,
                                   "error": job.faults.get("failed", {}).get("reason", "") if st == "failed" else "",
                                   "result_urls": self.outputs(job) if st == "succeeded" else []})
        self.body_json()
        return self.send(404, {"error": "not found"})


# ----------------------------------------------------------------- lifecycle
class StandIn:
    """The server in a background thread: ``with StandIn() as s: s.url``."""

    def __init__(self, port: int = 0, queue_s: float = 0.2, run_s: float = 0.3):
        self.state = State(queue_s, run_s)
        handler = type("BoundHandler", (Handler,), {"S": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="soulid's cloud API stand-in (tests only; binds 127.0.0.1)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--queue-s", type=float, default=0.2, help="seconds a job stays queued")
    ap.add_argument("--run-s", type=float, default=0.3, help="seconds a job runs")
    a = ap.parse_args(argv)
    s = StandIn(a.port, a.queue_s, a.run_s)
    print(f"standin ready: {s.url}", flush=True)
    try:
        s.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
