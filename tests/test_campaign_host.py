"""Campaigns on two real ComfyUI 0.3.64 servers (CPU, ``$COMFYUI_PATH``): one
behind Comfy-Org's ``comfy-api-proxy`` (the Comfy API v2), one native.

Twelve ``soul_id_create`` jobs (one Soul ID per real fixture photo) run
across both; ``soulid campaign`` is killed with SIGKILL halfway and run
again. The jobs are then counted on the servers themselves (the proxy's
``GET /api/v2/jobs``, each ComfyUI's ``/history``): exactly one per plan
row, and every output is in the manifest. Skips without ``$COMFYUI_PATH``.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
from comfy_host import _free_port, comfy_checkout, start_comfy

from soulid.cli import main

REPO = Path(__file__).resolve().parent.parent
#: Twelve single-photo sets: distinct bytes (the v2 proxy deduplicates uploads by content).
PHOTOS = ["obama/obama.jpg", "obama/obama2.jpg", "obama/obama4.jpg", "obama/obama-240p.jpg",
          "obama/obama-480p.jpg", "obama/obama_small.jpg", "biden/biden.jpg", "biden/biden2.jpg",
          "kit_harington/kit1.jpeg", "kit_harington/kit3.jpg", "rose_leslie/rose1.jpg", "alex_lacamoire/alex2.jpg"]


@contextmanager
def start_proxy(comfy_url: str, state_dir: Path):
    """``comfy-api-proxy`` in front of ``comfy_url`` on a free port; yields its base URL."""
    port = _free_port()
    log = open(state_dir.parent / "proxy.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "comfy_api_proxy.cli", "run", "--comfyui", comfy_url,
                             "--port", str(port), "--state-dir", str(state_dir)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(url + "/api/v2/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                pytest.fail(f"comfy-api-proxy exited: {(state_dir.parent / 'proxy.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
        log.close()


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    if comfy_checkout()[0] is None:
        pytest.skip(comfy_checkout()[1])
    with ExitStack() as st:
        a = st.enter_context(start_comfy(tmp_path_factory.mktemp("comfy_a")))
        b = st.enter_context(start_comfy(tmp_path_factory.mktemp("comfy_b")))
        state = tmp_path_factory.mktemp("proxy") / "state"
        state.mkdir()
        proxy = st.enter_context(start_proxy(a.url, state))
        yield a, b, proxy


def _photo_sets(root: Path, faces: Path) -> Path:
    for rel in PHOTOS:
        src = faces / rel
        d = root / "sets" / Path(rel).stem.replace("-", "_")
        d.mkdir(parents=True)
        shutil.copy(src, d / src.name)
    return root / "sets"


@pytest.mark.slow  # measured: 15-40 s on the 2-core CI machine (.ci/run --durations)
def test_campaign_across_proxy_and_native_survives_kill9(two_workers, tmp_path, faces):
    a, b, proxy = two_workers
    missing = [p for p in PHOTOS if not (faces / p).is_file()]
    assert not missing, missing
    _photo_sets(tmp_path, faces)
    plan = tmp_path / "plan.yaml"
    plan.write_text("kind: create\nsets: ['sets/*']\nset: ['Soul ID Create.max_photos=4']\n")
    out = tmp_path / "out"
    args = ["campaign", str(plan), "--server", proxy, "--server", b.url, "--out", str(out), "--per-worker", "2",
            "--job-timeout", "600"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO.parent / "i10.pkg"), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-m", "soulid", *args], env=env, stdout=subprocess.DEVNULL,
                             stderr=open(tmp_path / "first.log", "wb"))
    journal = out / ".soulid-jobs.jsonl"
    t0 = time.monotonic()
    while time.monotonic() - t0 < 300:
        done = journal.read_text().count('"event": "done"') if journal.exists() else 0
        if done >= 5 or child.poll() is not None:
            break
        time.sleep(0.2)
    assert child.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert main(args) == 0, (tmp_path / "first.log").read_text()[-3000:]

    proxied = httpx.get(proxy + "/api/v2/jobs", params={"limit": 100}).json()["jobs"]
    hist_a = httpx.get(a.url + "/history").json()
    hist_b = httpx.get(b.url + "/history").json()
    assert len(proxied) == len(hist_a) >= 1 and len(hist_b) >= 1  # both workers received jobs
    assert len(proxied) + len(hist_b) == 12  # exactly one job per plan row
    keys = [j["metadata"] for j in proxied] + list(hist_b)
    assert len(set(keys)) == 12
    assert all(j["status"] == "succeeded" for j in proxied)
    rows = json.loads((out / "manifest.json").read_text())["rows"]
    assert len(rows) == 12 and all(r["status"] == "done" and r["files"] for r in rows), rows
    files = {f for r in rows for f in r["files"]}
    assert files == {p.name for p in out.iterdir() if not p.name.startswith((".", "manifest"))}
    # Native rows carry the set's QA summary (the v2 contract lists file outputs only).
    native_rows = [r for r in rows if r["worker"] == b.url]
    assert native_rows and all(r["qa"] and r["qa"]["photos"] == 1 for r in native_rows), native_rows
    # The Soul IDs really exist on the servers that made them.
    made = sorted(p.stem for base in (a.base, b.base) for p in base.rglob("*.soulid"))
    assert made == sorted(Path(p).stem.replace("-", "_") for p in PHOTOS)
