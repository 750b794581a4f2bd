"""A small Comfy API v2 server for tests, following the contract as
Comfy-Org's ``comfy-api-proxy`` 0.1.6 serves it (``comfy_api_proxy/app.py``):

* ``GET /api/v2/health`` -> ``{"status": "healthy"}`` (no auth).
* ``POST /api/v2/jobs`` ``{"workflow", "metadata"?, "priority"?}`` with an
  optional ``Idempotency-Key`` (1-255 chars, single-use, reject on reuse:
  422 ``idempotency_key_reuse``; released only when the graph is refused);
  422 ``workflow_format_ui`` for a UI graph, ``invalid_workflow`` for an
  unknown node type, ``missing_asset`` for an unresolvable ``core/ASSET``
  ref; 201 with the job.
* ``GET /api/v2/jobs?limit=&status=`` -> ``{"jobs": [...newest first], "truncated"}``.
* ``GET /api/v2/jobs/{id}`` -> the job: ``status`` ``queued running
  succeeded failed canceled``, ``queue_position``, ``outputs`` (assets:
  ``node_id name type content_type id url job_id``), ``error`` ``{code,
  message, node_id, class_type, traceback}``, ``metadata``.
* ``POST /api/v2/assets`` multipart (``file``, ``file_path``,
  ``expected_hash``) -> 201 new / 200 when the blake3 hash is known (409
  ``hash_mismatch``); ``HEAD /api/v2/assets/by-hash/{hash}``; ``POST
  /api/v2/assets/from-hash``; ``GET /api/v2/assets/{id}/content``.
* ``Authorization: Bearer TOKEN`` on ``/api/v2/*`` but health when ``token`` is set.

Jobs run one at a time in submission order (like one ComfyUI), each taking
``job_seconds``. "Execution": every ``SaveImage`` node writes a PNG whose
colour comes from the graph's first ``seed`` input, named like ComfyUI does
(``PREFIX_00001_.png``, the counter per prefix: two jobs can produce the
same name); a ``SoulIDCreate`` node needs its ``folder`` among the uploaded
inputs (``input/<folder>/...``) and "makes" a QA sheet from its photos; a
node whose class type is ``FailNode`` (or whose ``prompt`` is ``FAIL``) fails with an ``execution_error``.

Test hooks: ``forget()`` (jobs gone, keys still claimed), ``freeze()`` (accepts connections, never answers), ``kill()``
(closes the port), counters ``posts`` (every ``POST /jobs``),
``upload_posts`` and ``uploaded_bytes``.
"""
from __future__ import annotations

import io
import json
import threading
import time
import uuid
from datetime import datetime, timezone
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import blake3
import numpy as np
from PIL import Image

KNOWN = {"SoulIDLoad", "SoulIDGenerate", "SoulIDStylePreset", "SaveImage", "PreviewImage", "SoulIDCreate",
         "SoulIDSave", "FailNode", "LoadImage", "SoulIDDriftGuard", "PreviewAny"}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _seed(graph: dict) -> int:
    for nid in sorted(graph, key=str):
        v = graph[nid].get("inputs", {}).get("seed")
        if isinstance(v, int):
            return v
    return 0


def png(colour, size=(48, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, tuple(int(c) for c in colour)).save(buf, format="PNG")
    return buf.getvalue()


class StandinV2:
    def __init__(self, job_seconds: float = 0.05, token: str | None = None):
        self.job_seconds, self.token = job_seconds, token
        self.jobs: dict[str, dict] = {}
        self.order: list[str] = []
        self.keys: set[str] = set()
        self.assets: dict[str, dict] = {}  # id -> {hash, path, data}
        self.by_hash: dict[str, str] = {}
        self.inputs: dict[str, bytes] = {}  # "sub/name" -> bytes
        self.outputs: dict[str, bytes] = {}
        self.counters: dict[str, int] = {}
        self.posts = self.upload_posts = self.uploaded_bytes = 0
        self.frozen = threading.Event()
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = False
        me = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def reply(self, code, body=None, raw=None, ctype="application/json"):
                data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def error(self, code, err, msg, **details):
                return self.reply(code, {"error": {"code": err, "message": msg, "details": details or None}})

            def gate(self) -> bool:
                if me.stopping:  # killed: kept-alive connections get no answer either
                    self.close_connection = True
                    return False
                if me.frozen.is_set():
                    while me.frozen.is_set() and not me.stopping:
                        time.sleep(0.05)
                    self.close_connection = True
                    return False
                path = urlsplit(self.path).path
                if me.token and path.startswith("/api/v2/") and path != "/api/v2/health":
                    if self.headers.get("Authorization", "") != f"Bearer {me.token}":
                        self.error(401, "unauthorized", "Missing or malformed Authorization header.")
                        return False
                return True

            def body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))

            def do_HEAD(self):
                if not self.gate():
                    return
                path = urlsplit(self.path).path
                if path.startswith("/api/v2/assets/by-hash/"):
                    return self.reply(200 if path.rsplit("/", 1)[1] in me.by_hash else 404)
                return self.reply(404)

            def do_GET(self):
                if not self.gate():
                    return
                url = urlsplit(self.path)
                parts = url.path.strip("/").split("/")
                if url.path == "/api/v2/health":
                    return self.reply(200, {"status": "healthy", "upstream": "standin"})
                if url.path == "/api/v2/jobs":
                    q = {k: v[0] for k, v in parse_qs(url.query).items()}
                    limit = int(q.get("limit", 50))
                    if not 1 <= limit <= 100:
                        return self.error(400, "invalid_request", "'limit' must be between 1 and 100.")
                    want = set(q["status"].split(",")) if q.get("status") else None
                    with me.lock:
                        jobs = [me.job_json(j) for j in reversed(me.order)]
                    jobs = [j for j in jobs if want is None or j["status"] in want]
                    return self.reply(200, {"jobs": jobs[:limit], "truncated": False})
                if len(parts) == 4 and parts[:3] == ["api", "v2", "jobs"]:
                    with me.lock:
                        job = me.jobs.get(parts[3])
                        body = None if job is None else me.job_json(parts[3])
                    return self.error(404, "not_found", f"No job {parts[3]}.") if body is None else self.reply(200, body)
                if len(parts) == 5 and parts[:3] == ["api", "v2", "assets"] and parts[4] == "content":
                    data = me.outputs.get(parts[3])
                    if data is None and parts[3] in me.assets:
                        data = me.assets[parts[3]]["data"]
                    if data is None:
                        return self.error(404, "not_found", "Unknown asset id.")
                    return self.reply(200, raw=data, ctype="image/png")
                return self.error(404, "not_found", "no such route")

            def do_POST(self):
                if not self.gate():
                    return
                path = urlsplit(self.path).path
                if path == "/api/v2/jobs":
                    return self.reply(*me.submit(self.headers.get("Idempotency-Key"), self.body()))
                if path == "/api/v2/assets":
                    return self.reply(*me.upload(self.headers.get("Content-Type", ""), self.body()))
                if path == "/api/v2/assets/from-hash":
                    h = json.loads(self.body() or b"{}").get("hash")
                    if h not in me.by_hash:
                        return self.error(404, "blob_not_found", "No blob the caller may mint from.")
                    return self.reply(200, me.asset_json(me.by_hash[h]))
                return self.error(404, "not_found", "no such route")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    # ------------------------------------------------------------ lifecycle
    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        threading.Thread(target=self._run_jobs, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.kill()

    def kill(self):
        """Close the port and stop executing (a dead worker)."""
        if not self.stopping:
            self.stopping = True
            self.frozen.clear()
            self.wake.set()
            self.httpd.shutdown()
            self.httpd.server_close()

    def forget(self):
        """Lose every job (a restarted server without state); used keys stay claimed."""
        with self.lock:
            self.jobs.clear()
            self.order.clear()

    def freeze(self):
        """Keep the port open but never answer again (a hung worker)."""
        self.frozen.set()

    # ----------------------------------------------------------------- jobs
    def job_json(self, jid: str) -> dict:
        j = self.jobs[jid]
        body = {"id": jid, "status": j["status"], "created_at": j["created_at"], "started_at": None,
                "completed_at": None, "queue_position": None, "progress": None, "outputs": j["outputs"],
                "error": j["error"], "outputs_reused": False,
                "urls": {"self": f"{self.url}/api/v2/jobs/{jid}"}}
        if j["status"] == "queued":
            pending = [x for x in self.order if self.jobs[x]["status"] == "queued"]
            body["queue_position"] = pending.index(jid) + 1
        if j["metadata"] is not None:
            body["metadata"] = j["metadata"]
        return body

    def submit(self, key, raw: bytes):
        self.posts += 1
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, {"error": {"code": "invalid_request", "message": "Body must be JSON.", "details": None}}
        wf = body.get("workflow")
        if not isinstance(wf, dict):
            return 422, {"error": {"code": "invalid_workflow", "message": "Missing 'workflow' (API-format graph).",
                                   "details": None}}
        if isinstance(wf.get("nodes"), list) and "links" in wf:
            return 422, {"error": {"code": "workflow_format_ui", "message": "This is a UI-export graph.",
                                   "details": None}}
        md = body.get("metadata")
        if md is not None and (not isinstance(md, str) or len(md.encode()) > 1024):
            return 422, {"error": {"code": "invalid_request", "message": "'metadata' must be a string <= 1 KiB.",
                                   "details": None}}
        missing = []
        wf = self._resolve(wf, missing)
        if missing:
            return 422, {"error": {"code": "missing_asset", "message": "Unresolvable core/ASSET reference(s)",
                                   "details": {"missing_ids": missing}}}
        with self.lock:
            if key is not None:
                if not key or len(key) > 255:
                    return 400, {"error": {"code": "invalid_request", "message": "Idempotency-Key must be 1-255 "
                                           "characters.", "details": None}}
                if key in self.keys:
                    return 422, {"error": {"code": "idempotency_key_reuse", "message": "This Idempotency-Key has "
                                           "already been used.", "details": None}}
                self.keys.add(key)
            bad = {nid: n.get("class_type") for nid, n in wf.items() if n.get("class_type") not in KNOWN}
            if bad:
                if key is not None:
                    self.keys.discard(key)  # a definite refusal releases the key
                nid, typ = next(iter(bad.items()))
                return 422, {"error": {"code": "invalid_workflow", "message": "Workflow rejected.", "details": {
                    "node_errors": {nid: {"errors": [{"message": f"Node type {typ} not found"}], "class_type": typ}}}}}
            jid = str(uuid.uuid4())
            self.jobs[jid] = {"workflow": wf, "status": "queued", "created_at": _now(), "outputs": [],
                              "error": None, "metadata": md}
            self.order.append(jid)
            out = self.job_json(jid)
        self.wake.set()
        return 201, out

    def _resolve(self, node, missing):
        if isinstance(node, dict) and node.get("__type") == "core/ASSET":
            aid = (node.get("info") or {}).get("id")
            if aid not in self.assets:
                missing.append(str(aid))
                return node
            return self.assets[aid]["path"].removeprefix("input/")
        if isinstance(node, dict):
            return {k: self._resolve(v, missing) for k, v in node.items()}
        if isinstance(node, list):
            return [self._resolve(v, missing) for v in node]
        return node

    def _run_jobs(self):
        while not self.stopping:
            with self.lock:
                nxt = next((j for j in self.order if self.jobs[j]["status"] == "queued"), None)
                if nxt:
                    self.jobs[nxt]["status"] = "running"
            if nxt is None:
                self.wake.wait(0.1)
                self.wake.clear()
                continue
            time.sleep(self.job_seconds)
            if self.stopping:
                return
            job = self.jobs.get(nxt)
            if job is None:  # forgotten meanwhile
                continue
            outputs, error = self._execute(nxt, job["workflow"])
            with self.lock:
                job.update(status="failed" if error else "succeeded", outputs=outputs, error=error)

    def _execute(self, jid: str, wf: dict):
        outputs = []
        colour = np.random.default_rng(_seed(wf)).integers(0, 256, 3)
        for nid in sorted(wf, key=str):
            node = wf[nid]
            typ, ins = node["class_type"], node.get("inputs", {})
            if typ == "FailNode" or ins.get("prompt") == "FAIL":
                return outputs, {"code": "node_execution_error", "message": "FailNode: failed on purpose",
                                 "node_id": nid, "class_type": typ, "traceback": None}
            if typ == "SoulIDCreate":
                folder = ins.get("folder", "")
                photos = [k for k in self.inputs if k.startswith(folder + "/")]
                if not folder or not photos:
                    return outputs, {"code": "node_execution_error", "node_id": nid, "class_type": typ,
                                     "message": f"no photos in input/{folder}", "traceback": None}
                outputs.append(self._output(jid, nid, f"soul_id_{len(photos)}_photos.png", png(colour)))
            if typ == "SaveImage":
                prefix = str(ins.get("filename_prefix", "ComfyUI")).rsplit("/", 1)[-1]
                with self.lock:
                    self.counters[prefix] = self.counters.get(prefix, 0) % 2 + 1  # names repeat across jobs
                outputs.append(self._output(jid, nid, f"{prefix}_{self.counters[prefix]:05d}_.png", png(colour)))
        return outputs, None

    def _output(self, jid, nid, name, data) -> dict:
        aid = str(uuid.uuid4())
        self.outputs[aid] = data
        return {"node_id": nid, "name": name, "type": "image", "content_type": "image/png",
                "size_bytes": len(data), "id": aid, "hash": None, "job_id": jid,
                "url": f"{self.url}/api/v2/assets/{aid}/content", "url_expires_at": None}

    # --------------------------------------------------------------- assets
    def asset_json(self, aid: str, created_new: bool | None = None) -> dict:
        a = self.assets[aid]
        body = {"id": aid, "hash": a["hash"], "size_bytes": len(a["data"]), "content_type": "image/png",
                "file_path": a["path"], "created_at": _now(), "url": f"{self.url}/api/v2/assets/{aid}/content",
                "url_expires_at": None}
        if created_new is not None:
            body["created_new"] = created_new
        return body

    def upload(self, ctype: str, raw: bytes):
        self.upload_posts += 1
        if not ctype.startswith("multipart/"):
            return 422, {"error": {"code": "invalid_request", "message": "Expected multipart/form-data.", "details": None}}
        msg = BytesParser().parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw)
        fields, data = {}, None
        for part in msg.get_payload():
            name = part.get_param("name", header="content-disposition")
            if name == "file":
                data = part.get_payload(decode=True)
            elif name:
                fields[name] = part.get_payload(decode=True).decode().strip()
        if data is None or not fields.get("file_path"):
            return 422, {"error": {"code": "invalid_request", "message": "Missing 'file' or 'file_path'.", "details": None}}
        path = fields["file_path"]
        if path.startswith("/") or ".." in path.split("/"):
            return 422, {"error": {"code": "invalid_request", "message": f"bad file_path {path!r}", "details": None}}
        self.uploaded_bytes += len(data)
        h = "blake3:" + blake3.blake3(data).hexdigest()
        if fields.get("expected_hash") and fields["expected_hash"].lower() != h:
            return 409, {"error": {"code": "hash_mismatch", "message": "hash mismatch", "details": None}}
        with self.lock:
            if h in self.by_hash:
                return 200, self.asset_json(self.by_hash[h], created_new=False)
            aid = str(uuid.uuid4())
            self.assets[aid] = {"hash": h, "path": path, "data": data}
            self.by_hash[h] = aid
            self.inputs[path.removeprefix("input/")] = data
            return 201, self.asset_json(aid, created_new=True)


def main() -> None:  # a stand-in in its own process: python -m standin_v2.server PORT_FILE
    import sys
    s = StandinV2(job_seconds=float(sys.argv[2]) if len(sys.argv) > 2 else 0.05)
    with s:
        with open(sys.argv[1], "w") as f:
            f.write(s.url)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
