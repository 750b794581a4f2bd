"""The light install: what ComfyUI-Manager installs (``requirements.txt``)
carries only what the cloud nodes and Soul ID creation need, and none of it
builds from source.

* ``requirements.txt`` and pyproject's core dependencies name the same
  packages; no diffusion stack, no torch; one OpenCV package (headless).
* pip resolves the requirements to wheels only (``pip install --dry-run
  --report``: every file it would fetch is a ``.whl``; an sdist would be built).
* A fresh virtual environment installs them (pip's own cache keeps this
  quick), its log shows no "Building wheel", and the pack imported from a
  checkout (as ComfyUI loads it) creates a Soul ID from real photos.

The two pip tests need the package index: they skip, saying so, when pip
cannot reach it.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEAVY = {"diffusers", "transformers", "insightface", "onnxruntime", "onnxruntime-gpu", "peft", "accelerate", "torch",
         "torchvision"}
OPENCV = {"opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"}


def _name(req: str) -> str:
    return re.split(r"[<>=!~;\[ ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def requirement_names() -> set[str]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return {_name(x) for x in lines if x.strip() and not x.strip().startswith("#")}


def test_requirements_are_the_core_dependencies_without_the_local_stack():
    py = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = {_name(d) for d in py["dependencies"]}
    req = requirement_names()
    assert req == core, f"requirements.txt {sorted(req ^ core)} differ from pyproject's dependencies"
    assert not req & HEAVY, f"heavy packages in the light install: {sorted(req & HEAVY)}"
    assert req & OPENCV == {"opencv-python-headless"}
    local = {_name(d) for d in py["optional-dependencies"]["local"]}
    assert {"diffusers", "transformers", "insightface", "onnxruntime", "peft"} <= local


def _pip(*args, timeout=900, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*args], capture_output=True, text=True, timeout=timeout, **kw)


def _offline(r: subprocess.CompletedProcess) -> bool:
    text = (r.stdout + r.stderr).lower()
    return r.returncode != 0 and any(w in text for w in ("could not find a version", "connection", "network",
                                                           "temporary failure", "no matching distribution"))


def test_requirements_resolve_to_wheels_only(tmp_path):
    report = tmp_path / "report.json"
    r = _pip(sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report",
             str(report), "-r", str(REPO / "requirements.txt"))
    if _offline(r):
        pytest.skip(f"pip cannot reach the package index: {r.stderr.strip().splitlines()[-1:]}")
    assert r.returncode == 0, r.stderr[-2000:]
    items = json.loads(report.read_text())["install"]
    names = {i["metadata"]["name"].lower().replace("_", "-") for i in items}
    assert requirement_names() <= names
    sdists = [i["download_info"]["url"].rsplit("/", 1)[-1] for i in items
              if not i["download_info"]["url"].endswith(".whl")]
    assert sdists == [], f"would build from source: {sdists}"
    assert not names & HEAVY, sorted(names & HEAVY)


@pytest.mark.slow
def test_fresh_venv_installs_without_building_and_creates_a_soul_id(tmp_path, faces):
    venv = tmp_path / "venv"
    r = _pip(sys.executable, "-m", "venv", str(venv))
    assert r.returncode == 0, r.stderr
    py = venv / "bin" / "python"
    r = _pip(str(py), "-m", "pip", "install", "-v", "-r", str(REPO / "requirements.txt"))
    log = r.stdout + r.stderr
    if _offline(r):
        pytest.skip("pip cannot reach the package index")
    assert r.returncode == 0, log[-3000:]
    built = re.findall(r"Building wheel for (\S+)", log)
    assert built == [], f"built from source: {built}"
    assert "Running setup.py install" not in log
    # The pack as ComfyUI loads it: the checkout folder named soulid, not pip-installed.
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "soulid").symlink_to(REPO, target_is_directory=True)
    code = (
        "import sys, json\n"
        "from soulid.soul.create import create_soul_id\n"
        f"photos = [{', '.join(repr(str(faces / 'obama' / n)) for n in ('obama.jpg', 'obama2.jpg', 'obama4.jpg'))}]\n"
        "res = create_soul_id(photos, 'light', analyzer='dlib', workers=1)\n"
        "heavy = [m for m in ('torch', 'diffusers', 'insightface', 'onnxruntime') if m in sys.modules]\n"
        "print(json.dumps({'ok': res.soul is not None, 'accepted': res.report['summary']['accepted'], 'heavy': heavy}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PYTHONPATH=str(pkg), SOULID_DATA_DIR=str(tmp_path / "data"), SOULID_CONFIG_DIR=str(tmp_path / "cfg"))
    r = _pip(str(py), "-c", code, env=env, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["ok"] and out["accepted"] >= 2 and out["heavy"] == [], out
