"""``soulid run``: the headless runner.

Part 1 (always): the runner against a small ComfyUI look-alike that the test
starts on 127.0.0.1 (stdlib :mod:`http.server`). It speaks ComfyUI's routes
(``POST /prompt``, ``GET /queue``, ``GET /history/{id}``, ``GET /view``,
https://docs.comfy.org/development/comfyui-server/comms_routes) with the same
JSON shapes as ComfyUI 0.3.64's ``server.py`` / ``execution.py``, keeps each
prompt pending then running for a few polls, and "executes" a few node types:
``SoulIDGenerate`` renders a PNG whose colour comes from its seed,
``SaveImage`` stores it for ``/view``, ``SoulIDLoad`` fails for names not in
its library, with ComfyUI's ``execution_error`` message.

Part 2 (with ``$COMFYUI_PATH``): every API twin in ``workflows/api/`` runs
headless through a real ComfyUI on CPU, cloud nodes pointed at the API
stand-in (``SOULID_HIGGSFIELD_URL`` ...; the keys are in the host's 0600
credentials file, never in the workflow), on a Soul ID made from real photos
and trained on the stand-in. Workflows whose nodes need local model weights
are skipped, saying so. With ``$SOULID_WORKFLOW_PICTURES`` set to a folder
the run also writes a small picture of each workflow's result there (how
``docs/images/`` was made).
"""
from __future__ import annotations

import io
import json
import os
import shutil
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from PIL import Image

from soulid.cli import main

REPO = Path(__file__).resolve().parent.parent
API_DIR = REPO / "workflows" / "api"


# ----------------------------------------------------------- the look-alike
def seed_colour(seed: int) -> tuple[int, int, int]:
    return tuple(int(x) for x in np.random.default_rng(seed).integers(0, 256, 3))


class FakeComfy:
    """A ComfyUI look-alike on 127.0.0.1 (see the module docstring).

    ``hold``: the prompt never finishes (timeout test). ``received``: the
    ``/prompt`` bodies, ``views``: the ``/view`` query strings, ``interrupts``:
    ``POST /interrupt`` calls.
    """

    LIBRARY = {"my_soul"}
    KNOWN = {"SoulIDLoad", "SoulIDGenerate", "SaveImage", "SoulIDScore"}

    def __init__(self, polls_pending: int = 1, polls_running: int = 1, hold: bool = False):
        self.polls_pending, self.polls_running, self.hold = polls_pending, polls_running, hold
        self.received, self.views, self.interrupts = [], [], 0
        self.jobs: dict[str, dict] = {}
        self.files: dict[tuple[str, str, str], bytes] = {}
        self.lock = threading.Lock()
        fake = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def reply(self, code, body=None, raw=None, ctype="application/json"):
                data = raw if raw is not None else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.path == "/interrupt":
                    fake.interrupts += 1
                    return self.reply(200, {})
                if self.path != "/prompt":
                    return self.reply(404, {})
                return self.reply(*fake.submit(body))

            def do_GET(self):
                url = urlsplit(self.path)
                if url.path == "/queue":
                    return self.reply(200, fake.queue())
                if url.path.startswith("/history/"):
                    return self.reply(200, fake.history(url.path.rsplit("/", 1)[1]))
                if url.path == "/view":
                    q = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
                    fake.views.append(q)
                    data = fake.files.get((q.get("type", ""), q.get("subfolder", ""), q.get("filename", "")))
                    return self.reply(404, {}) if data is None else self.reply(200, raw=data, ctype="image/png")
                return self.reply(404, {})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    # ComfyUI's validate_prompt: unknown class types are refused with HTTP 400.
    def submit(self, body: dict):
        self.received.append(body)
        prompt = body.get("prompt") or {}
        bad = {nid: n.get("class_type") for nid, n in prompt.items() if n.get("class_type") not in self.KNOWN}
        if bad:
            nid, typ = next(iter(bad.items()))
            return 400, {"error": {"type": "invalid_prompt", "message": "Cannot execute because a node is missing "
                                   "the class_type property.", "details": f"Node ID '#{nid}'", "extra_info": {}},
                         "node_errors": {nid: {"errors": [{"message": f"Node type {typ} not found", "details": ""}],
                                               "class_type": typ}}}
        pid = str(uuid.uuid4())
        with self.lock:
            number = len(self.jobs)
            self.jobs[pid] = {"prompt": prompt, "number": number, "polls": 0, "entry": None}
        return 200, {"prompt_id": pid, "number": number, "node_errors": {}}

    def _advance(self, pid: str) -> dict:
        job = self.jobs[pid]
        job["polls"] += 1
        if job["entry"] is None and not self.hold and job["polls"] > self.polls_pending + self.polls_running:
            job["entry"] = self.execute(pid, job["prompt"])
        return job

    def queue(self) -> dict:
        with self.lock:
            running, pending = [], []
            for pid, job in self.jobs.items():
                if job["entry"] is None:
                    item = [job["number"], pid, job["prompt"], {}, []]
                    (pending if job["polls"] <= self.polls_pending else running).append(item)
        return {"queue_running": running, "queue_pending": pending}

    def history(self, pid: str) -> dict:
        with self.lock:
            if pid not in self.jobs:
                return {}
            job = self._advance(pid)
            return {} if job["entry"] is None else {pid: job["entry"]}

    def execute(self, pid: str, prompt: dict) -> dict:
        """Run the graph in id order: outputs per node, or ComfyUI's error record."""
        values, outputs, executed = {}, {}, []
        for nid in sorted(prompt, key=int):
            node = prompt[nid]
            ins = {k: values[v[0]][v[1]] if isinstance(v, list) else v for k, v in node["inputs"].items()}
            typ = node["class_type"]
            if typ == "SoulIDLoad" and ins["name"] not in self.LIBRARY:
                msg = f"Soul ID {ins['name']!r} is not in the library (it has: my_soul)"
                return {"prompt": [0, pid, prompt, {}, []], "outputs": outputs, "status": {
                    "status_str": "error", "completed": False, "messages": [
                        ["execution_start", {"prompt_id": pid, "timestamp": 0}],
                        ["execution_error", {"prompt_id": pid, "node_id": nid, "node_type": typ,
                                             "executed": executed, "exception_message": msg,
                                             "exception_type": "soulid.soul.errors.LibraryError",
                                             "traceback": [], "current_inputs": {}, "current_outputs": []}]]}}
            if typ == "SoulIDLoad":
                values[nid] = [ins["name"]]
            elif typ == "SoulIDGenerate":
                img = Image.new("RGB", (48, 64), seed_colour(int(ins["seed"])))
                values[nid] = [img, "req-" + nid, "{}"]
            elif typ == "SaveImage":
                buf = io.BytesIO()
                ins["images"].save(buf, format="PNG")
                sub, _, stem = ins["filename_prefix"].rpartition("/")
                name = f"{stem}_00001_.png"
                self.files[("output", sub, name)] = buf.getvalue()
                outputs[nid] = {"images": [{"filename": name, "subfolder": sub, "type": "output"}]}
            elif typ == "SoulIDScore":
                outputs[nid] = {"text": ["image 1: 0.912 same person"]}
            executed.append(nid)
        return {"prompt": [0, pid, prompt, {}, list(outputs)], "outputs": outputs,
                "status": {"status_str": "success", "completed": True,
                           "messages": [["execution_start", {"prompt_id": pid}], ["execution_success", {"prompt_id": pid}]]}}


GRAPH = {
    "1": {"class_type": "SoulIDLoad", "inputs": {"name": "my_soul"}, "_meta": {"title": "Soul ID Load"}},
    "2": {"class_type": "SoulIDGenerate", "inputs": {"soul_id": ["1", 0], "prompt": "a portrait", "seed": 5},
          "_meta": {"title": "Close-up"}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "look/closeup"},
          "_meta": {"title": "Save Image"}},
    "4": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "look/copy"},
          "_meta": {"title": "Save Image"}},
    "5": {"class_type": "SoulIDScore", "inputs": {"soul_id": ["1", 0], "images": ["2", 0]},
          "_meta": {"title": "Soul ID Score"}},
}


@pytest.fixture
def graph_file(tmp_path) -> Path:
    p = tmp_path / "graph.json"
    p.write_text(json.dumps(GRAPH))
    return p


def run_cli(*args) -> int:
    return main(["run", *map(str, args)])


def test_success_applies_overrides_and_downloads_outputs(graph_file, tmp_path, capsys):
    out = tmp_path / "out"
    with FakeComfy() as fake:
        code = run_cli(graph_file, "--server", fake.url, "--out", out, "--timeout", 30,
                       "--set", "Close-up.seed=77", "--set", "SoulIDLoad.name=my_soul", "--set", "3.filename_prefix=look/x")
    cap = capsys.readouterr()
    assert code == 0, cap.err
    body = fake.received[0]
    assert body["client_id"] and body["prompt"]["2"]["inputs"]["seed"] == 77  # JSON number, not "77"
    assert body["prompt"]["3"]["inputs"]["filename_prefix"] == "look/x"
    assert json.loads(graph_file.read_text()) == GRAPH  # the file itself is left alone
    # Both SaveImage outputs downloaded byte for byte, into their subfolder.
    for name in ("x_00001_.png", "copy_00001_.png"):
        saved = out / "look" / name
        assert saved.read_bytes() == fake.files[("output", "look", name)]
        assert str(saved) in cap.out
    px = np.asarray(Image.open(out / "look" / "x_00001_.png").convert("RGB"))
    assert px.shape == (64, 48, 3) and tuple(px[0, 0]) == seed_colour(77) != seed_colour(5)
    assert {v["type"] for v in fake.views} == {"output"}
    # Progress from /queue, then the text output of the Score node.
    assert "queued (0 ahead)" in cap.err and "running" in cap.err
    assert "node 5 (SoulIDScore): image 1: 0.912 same person" in cap.out


def test_failing_node_exits_1_with_its_error(graph_file, tmp_path, capsys):
    with FakeComfy(polls_pending=0, polls_running=1) as fake:
        code = run_cli(graph_file, "--server", fake.url, "--out", tmp_path / "o", "--set", "1.name=nobody")
    err = capsys.readouterr().err
    assert code == 1
    assert "node 1 (SoulIDLoad) failed" in err and "'nobody' is not in the library" in err
    assert not (tmp_path / "o").exists()


def test_refused_prompt_exits_2_with_node_errors(tmp_path, capsys):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"1": {"class_type": "NoSuchNode", "inputs": {}}}))
    with FakeComfy() as fake:
        code = run_cli(p, "--server", fake.url)
    err = capsys.readouterr().err
    assert code == 2 and "HTTP 400" in err and "node 1 (NoSuchNode): Node type NoSuchNode not found" in err


def test_timeout_leaves_the_prompt_queued(graph_file, tmp_path, capsys):
    with FakeComfy(hold=True) as fake:
        code = run_cli(graph_file, "--server", fake.url, "--out", tmp_path / "o", "--timeout", 1)
    err = capsys.readouterr().err
    assert code == 1 and "timed out after 1 s" in err and "not cancelled" in err
    assert fake.interrupts == 0 and len(fake.received) == 1


@pytest.mark.parametrize("override, message", [
    ("Save Image.filename_prefix=x", "2 nodes have the title 'Save Image' (ids 3, 4)"),
    ("9.seed=1", "no node '9'; nodes are: 1 (Soul ID Load), 2 (Close-up)"),
    ("2.soul_id=abc", "input 'soul_id' of node 2 (SoulIDGenerate) is connected to node 1"),
    ("seed=3", "expected NODE.INPUT=VALUE"),
])
def test_bad_overrides_exit_2_before_queueing(graph_file, override, message, capsys):
    with FakeComfy() as fake:
        code = run_cli(graph_file, "--server", fake.url, "--set", override)
    assert code == 2 and message in capsys.readouterr().err
    assert fake.received == []


def test_ui_format_points_at_the_api_twin(capsys):
    code = run_cli(REPO / "workflows" / "soul_id_create.json", "--server", "http://127.0.0.1:9")
    err = capsys.readouterr().err
    assert code == 2 and "UI-format workflow" in err and str(API_DIR / "soul_id_create.json") in err


def test_unreadable_workflow_and_unreachable_server(tmp_path, graph_file, capsys):
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    assert run_cli(bad) == 2
    assert f"{bad}: not valid JSON" in capsys.readouterr().err
    with FakeComfy() as fake:
        url = fake.url
    assert run_cli(graph_file, "--server", url, "--timeout", 5) == 2  # closed port
    assert f"cannot reach ComfyUI at {url}" in capsys.readouterr().err
