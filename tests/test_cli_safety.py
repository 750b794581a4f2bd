"""The CLI's safe defaults as a user meets them, in subprocesses: no paid
request without an explicit backend or prompt, the estimate before a paid
submit, the default budget, CLI generations in the character log, Ctrl-C
(exit 130 within 2 s), killed parents leave no workers, a closed pipe ends
quietly, and a base install without the local extra ends in one line."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from standin.fixtures import *  # noqa: F401,F403
from standin.fixtures import stats

REPO = Path(__file__).resolve().parents[1]


def soulid(*args, env=None, timeout=120, check=False, **kw):
    return subprocess.run([sys.executable, "-m", "soulid", *map(str, args)], capture_output=True, text=True,
                          env=env or os.environ.copy(), timeout=timeout, cwd=kw.get("cwd", REPO.parent))


@pytest.fixture
def lib_obama(trained_obama, cloud_env):
    from soulid.soul.library import Library

    Library().save(trained_obama, overwrite=True)
    return trained_obama


def _provider_requests(s) -> dict:
    """Requests the stand-in received as a provider (its own /_standin calls left out)."""
    return {k: v for k, v in stats(s)["requests"].items() if "/_standin" not in k}


def test_generate_without_backend_or_prompt_makes_no_request(lib_obama, cloud_env, monkeypatch):
    monkeypatch.delenv("SOULID_BACKEND", raising=False)
    before = _provider_requests(cloud_env)  # (the fixture's training)
    p = soulid("generate", "--soul", "obama", "--prompt", "on a beach")
    assert p.returncode == 2 and "--backend" in p.stderr and "Traceback" not in p.stderr
    p = soulid("generate", "--backend", "higgsfield", "--soul", "obama")
    assert p.returncode == 2 and "--prompt is empty" in p.stderr
    p = soulid("edit", str(REPO / "docs" / "images" / "id_photo.png"), "--backend", "wavespeed", "--soul", "obama")
    assert p.returncode == 2 and "--prompt is empty" in p.stderr
    assert _provider_requests(cloud_env) == before  # nothing more reached the provider


def test_configured_backend_estimate_first_and_default_budget(lib_obama, cloud_env, tmp_path):
    env = {**os.environ, "SOULID_BACKEND": "higgsfield"}
    p = soulid("generate", "--soul", "obama", "--prompt", "on a beach", "--out", tmp_path, "--json", env=env)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert "higgsfield: estimate $" in p.stderr and "submitting" in p.stderr
    assert out["backend"] == "higgsfield" and len(out["files"]) == 1
    paid = stats(cloud_env)["paid"]
    p = soulid("generate", "--soul", "obama", "--prompt", "at night", "--out", tmp_path,
               env={**env, "SOULID_MAX_USD": "0.01"})
    assert p.returncode != 0 and "max_usd" in p.stderr and "not submitted" in p.stderr
    assert "budget $0.01" in p.stderr and stats(cloud_env)["paid"] == paid


def test_cli_generation_shows_in_the_log(lib_obama, cloud_env, tmp_path):
    p = soulid("generate", "--backend", "higgsfield", "--soul", "obama", "--prompt", "red coat", "--seed", "7",
               "--out", tmp_path, "--json")
    assert p.returncode == 0, p.stderr
    rid = json.loads(p.stdout)["request_id"]
    log = json.loads(soulid("log", "obama", "--json").stdout)
    assert len(log) == 1
    e = log[0]
    assert e["prompt"] == "red coat" and e["seed"] == 7 and e["backend"] == "higgsfield"
    assert e["extra"]["request_id"] == rid and e["thumb"]
    assert "red coat" in soulid("log", "obama").stdout


def _photo_folder(faces, tmp_path, copies: int) -> Path:
    d = tmp_path / "many"
    d.mkdir()
    srcs = sorted((faces / "obama").glob("*.jpg"))
    for k in range(copies):
        for s in srcs:
            (d / f"{k:02d}_{s.name}").symlink_to(s)
    return d


def _children(pid: int) -> list[int]:
    out = []
    for st in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = st.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(st.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _start_create(folder, tmp_path):
    return subprocess.Popen([sys.executable, "-m", "soulid", "--library", str(tmp_path / "lib"), "create",
                             "--name", "many", "--analyzer", "dlib", "--workers", "2", str(folder)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_workers(proc, n=2, timeout=30.0):
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        kids = [k for k in _children(proc.pid) if _alive(k)]
        if len(kids) >= n:
            time.sleep(0.5)  # analysis under way
            return kids
        time.sleep(0.05)
    raise AssertionError("create started no analysis workers")


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_sigint_during_create_exits_130_within_2s(faces, tmp_path):
    proc = _start_create(_photo_folder(faces, tmp_path, 12), tmp_path)
    kids = _wait_for_workers(proc)
    t = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    took = time.monotonic() - t
    assert proc.returncode == 130 and took < 2.0, (took, err[-2000:])
    assert err.strip().splitlines()[-1].endswith("soulid: interrupted") and "Traceback" not in err
    assert not (tmp_path / "lib" / "many.soulid").exists()
    time.sleep(0.5)
    assert not [k for k in kids if _alive(k)]


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_killed_create_leaves_no_worker(faces, tmp_path):
    proc = _start_create(_photo_folder(faces, tmp_path, 12), tmp_path)
    kids = _wait_for_workers(proc)
    proc.kill()
    proc.wait(timeout=5)
    t = time.monotonic()
    while time.monotonic() - t < 5.0 and [k for k in kids if _alive(k)]:
        time.sleep(0.1)
    assert not [k for k in kids if _alive(k)], "analysis workers outlived their killed parent"


def test_closed_pipe_ends_quietly(tmp_path):
    r = subprocess.run("set -o pipefail; " + f"{sys.executable} -m soulid jobs | head -1", shell=True,
                       executable="/bin/bash", capture_output=True, text=True, timeout=60)
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr
    # deterministic: the reader is gone before the first write
    p = subprocess.Popen([sys.executable, "-m", "soulid", "presets"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait(timeout=60) == 0 and "Traceback" not in err and "BrokenPipe" not in err


# --------------------------------------------- base install: no local extra
BLOCKER = '''
import importlib.abc, sys
BLOCKED = {"torch", "diffusers", "transformers", "accelerate", "peft", "insightface", "onnxruntime"}
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _Block())
'''


def test_every_local_command_names_the_extra_without_a_traceback(obama, faces, tmp_path):
    from soulid.soul.library import Library

    Library().save(obama, overwrite=True)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "SOULID_MODELS_DIR": str(tmp_path / "models")}
    img = faces / "obama" / "obama.jpg"
    commands = [
        ("generate", "--backend", "local", "--soul", "obama", "--prompt", "portrait"),
        ("generate", "--backend", "local", "--soul", "obama", "--prompt", "portrait", "--method", "instantid"),
        ("edit", img, "--backend", "local", "--soul", "obama", "--prompt", "noir"),
        ("animate", img, "--backend", "local", "--engine", "i2v", "--out", tmp_path / "c.mp4"),
        ("create", "--name", "ins", "--analyzer", "insightface", img),
        ("score", "--soul", "obama", img),  # base install: works
    ]
    from soulid.backends.install import local_extra_command

    advice = local_extra_command()  # this checkout's: cd <repo> && <python> -m pip install -e ".[local]"
    assert advice.endswith('pip install -e ".[local]"')
    for cmd in commands:
        p = soulid(*cmd, env=env, cwd=tmp_path)
        if cmd[0] == "score":
            assert p.returncode == 0, p.stderr
            continue
        assert p.returncode == 2, (cmd, p.stderr)
        assert "Traceback" not in p.stderr and advice in p.stderr, (cmd, p.stderr)
        assert p.stderr.startswith("soulid: ") and p.stderr.count("soulid: ") == 1, p.stderr
    # The blocker really hides the local extra from the child processes above.
    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr, probe.stderr
    p = soulid("generate", "--backend", "local", "--soul", "obama", "--prompt", "portrait", env=env)
    msg = p.stderr
    # one report: the packages and every file, with real paths, sources, sizes and VRAM
    for part in ("torch", "diffusers", str(tmp_path / "models" / "ipadapter" / "ip-adapter-faceid-plusv2_sdxl.bin"),
                 str(tmp_path / "models" / "clip_vision"), "stable-diffusion-xl-base-1.0", "buffalo_l",
                 "huggingface.co/h94/IP-Adapter-FaceID", "GB", "VRAM"):
        assert part in msg, (part, msg)
    assert "<ComfyUI>" not in msg


def test_idphoto_budget_covers_the_four_views_together(lib_obama, cloud_env, tmp_path):
    p = soulid("generate", "--backend", "higgsfield", "--soul", "obama", "--prompt", "x", "--estimate", "--json")
    one = json.loads(p.stdout)["cost"]["usd"]
    paid = stats(cloud_env)["paid"]
    p = soulid("idphoto", "obama", "--backend", "higgsfield", "--out", tmp_path / "sheet.png",
               "--max-usd", f"{2.5 * one:.4f}")
    assert p.returncode != 0 and "above max_usd" in p.stderr and "budget $" in p.stderr
    assert not (tmp_path / "sheet.png").exists()
    new = {k: v for k, v in stats(cloud_env)["paid"].items() if paid.get(k) != v}
    assert sum(v - paid.get(k, 0) for k, v in new.items()) == 2  # two views fit the budget, the third was refused
