"""``python -m soulid`` cloud commands as subprocesses against the stand-in:
login, train, remote, generate, edit, animate, jobs; kill -9 mid-poll and
resume; and no credential anywhere in what the user can see or share."""
from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from standin.fixtures import *  # noqa: F401,F403
from standin.fixtures import SECRETS, stats

REPO = Path(__file__).resolve().parents[1]


def soulid(*args, check=True, input=None, env=None, timeout=120):
    p = subprocess.run([sys.executable, "-m", "soulid", *map(str, args)], capture_output=True, text=True,
                       input=input, env=env or os.environ.copy(), timeout=timeout, cwd=REPO.parent)
    if check and p.returncode != 0:
        raise AssertionError(f"soulid {' '.join(map(str, args))} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture
def lib_obama(obama, cloud_env):
    from soulid.soul.library import Library

    Library().save(obama, overwrite=True)
    return obama


def test_login_writes_a_private_credentials_file(cloud_env, monkeypatch):
    monkeypatch.delenv("WAVESPEED_API_KEY")
    p = soulid("login", "wavespeed", input="ws-secret-abcdef123456\n")
    from soulid.backends.credentials import credentials_path, get_key

    path = credentials_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "ws-secret-abcdef123456" not in p.stdout + p.stderr and "ws-s…(22 chars)" in p.stdout
    assert get_key("wavespeed") == "ws-secret-abcdef123456"
    os.chmod(path, 0o644)
    from soulid.backends.credentials import CredentialsMissing

    with pytest.raises(CredentialsMissing, match="must be private"):
        get_key("wavespeed")


@pytest.mark.slow  # measured: 15-40 s on the 2-core CI machine (.ci/run --durations)
def test_train_generate_edit_animate_jobs_remote(lib_obama, cloud_env, tmp_path, faces):
    out = tmp_path / "out"
    t = json.loads(soulid("train", "obama", "--provider", "higgsfield", "--model-version", "v1", "--json").stdout)
    from soulid.soul.library import Library

    assert Library().load("obama").remote("higgsfield", "v1").id == t["id"]

    g = json.loads(soulid("generate", "--backend", "higgsfield", "--soul", "obama", "--prompt", "on a beach",
                          "--aspect", "16:9", "--batch", "4", "--seed", "9", "--quality", "720p",
                          "--out", out, "--json").stdout)
    assert len(g["files"]) == 4 and g["cost"] == {"credits": 8.0, "usd": 0.5}
    im = Image.open(g["files"][0])
    assert im.size == (1365, 768)  # 2048x1152 at 720p
    assert im.text["soulid:request_id"] == g["request_id"] and im.text["soulid:prompt"] == "on a beach"

    e = json.loads(soulid("edit", faces / "biden" / "biden.jpg", "--backend", "wavespeed", "--soul", "obama",
                          "--prompt", "noir", "--strength", "0.4", "--out", out, "--json").stdout)
    assert len(e["files"]) == 1 and Path(e["files"][0]).exists()

    mp4 = tmp_path / "clip.mp4"
    a = json.loads(soulid("animate", faces / "obama" / "obama.jpg", "--backend", "higgsfield", "--motion",
                          "Dolly In:0.7", "--prompt", "smiles", "--out", mp4, "--json").stdout)
    assert a["files"] == [str(mp4)]
    import av

    with av.open(str(mp4)) as c:
        assert c.streams.video[0].frames == 120

    est = json.loads(soulid("generate", "--backend", "higgsfield", "--soul", "obama", "--prompt", "x",
                            "--estimate", "--json").stdout)
    assert est["estimate_only"] and est["files"] == [] and est["cost"]["usd"] == 0.1875

    jobs = json.loads(soulid("jobs", "list", "--json").stdout)
    assert {j["state"] for j in jobs} == {"succeeded"} and len(jobs) == 4
    r = json.loads(soulid("jobs", "resume", g["request_id"], "--json").stdout)
    assert r["request_id"] == g["request_id"] and r["files"]

    assert stats(cloud_env)["paid"] == {"/v1/custom-references": 1, "higgsfield-ai/soul/character": 1,
                                        "/api/v3/higgsfield/soul/image-to-image": 1, "/v1/image2video/dop": 1}
    motions = soulid("animate", "--list-motions", "--backend", "higgsfield").stdout
    assert "Dolly In  (higgsfield" in motions

    listed = json.loads(soulid("remote", "list", "--json").stdout)
    assert [x["id"] for x in listed] == [t["id"]]
    soulid("remote", "delete", t["id"], "--soul", "obama")
    assert Library().load("obama").remote("higgsfield") is None


def test_cli_exit_codes(lib_obama, cloud_env):
    p = soulid("generate", "--backend", "higgsfield", "--soul", "obama", "--prompt", "x", check=False)
    assert p.returncode == 2 and "no Higgsfield training" in p.stderr
    httpx.post(cloud_env.url + "/_standin/faults", json={"faults": [{"kind": "failed", "reason": "out of GPUs",
                                                                     "path": "/higgsfield-ai/soul/standard"}]})
    p = soulid("generate", "--backend", "higgsfield", "--prompt", "x", check=False)
    assert p.returncode == 1 and "out of GPUs" in p.stderr
    p = soulid("generate", "--backend", "wavespeed", "--prompt", "x", check=False)
    assert p.returncode == 2 and "image-to-image" in p.stderr


def test_jobs_cancel_a_queued_job(cloud_env):
    from soulid.backends.base import GenerateRequest, get_backend
    from soulid.backends.engine import CloudTimeout
    from soulid.backends.ledger import Ledger

    httpx.post(cloud_env.url + "/_standin/config", json={"queue_s": 30.0})
    with pytest.raises(CloudTimeout):  # stop waiting; the job stays queued at the provider
        get_backend("higgsfield", timeout_s=0.2).generate(GenerateRequest(prompt="x"))
    row = Ledger().list(1)[0]
    assert row.state == "queued"
    p = json.loads(soulid("jobs", "cancel", row.request_id, "--json").stdout)
    assert p["state"] == "canceled" and stats(cloud_env)["cancels"] == 1
    assert Ledger().get(row.request_id).state == "canceled"


def test_kill_9_mid_poll_then_restart_resumes_the_same_request(cloud_env, tmp_path):
    from soulid.backends.ledger import Ledger

    httpx.post(cloud_env.url + "/_standin/config", json={"queue_s": 0.5, "run_s": 4.0})
    args = [sys.executable, "-m", "soulid", "generate", "--backend", "higgsfield", "--prompt", "a red door",
            "--seed", "42", "--out", str(tmp_path / "o"), "--json"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO.parent)
    deadline = time.monotonic() + 30
    row = None
    while time.monotonic() < deadline:
        rows = Ledger().list(1) if (Path(os.environ["SOULID_DATA_DIR"]) / "jobs.sqlite3").exists() else []
        if rows and rows[0].request_id and rows[0].state in ("queued", "running"):
            row = rows[0]
            break
        time.sleep(0.05)
    assert row is not None, "the job never reached the ledger"
    time.sleep(0.3)  # polling
    assert proc.poll() is None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert stats(cloud_env)["paid"] == {"higgsfield-ai/soul/standard": 1}
    res = json.loads(soulid(*args[3:]).stdout)
    st = stats(cloud_env)
    assert res["request_id"] == row.request_id and res["resumed"] is True
    assert st["paid"] == {"higgsfield-ai/soul/standard": 1} and st["replays"] == 0
    assert Ledger().get(row.request_id).state == "succeeded"


def test_no_credentials_in_logs_errors_ledger_workflows_or_outputs(lib_obama, cloud_env, tmp_path, caplog,
                                                                     monkeypatch):
    from soulid.backends.base import GenerateRequest, get_backend
    from soulid.backends.engine import CredentialsRejected

    seen = []
    caplog.set_level(logging.DEBUG)
    for name in ("soulid", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    res = get_backend("higgsfield").generate(GenerateRequest(prompt="x", seed=3))
    seen.append(caplog.text)
    out = tmp_path / "o"
    p = soulid("generate", "--backend", "higgsfield", "--prompt", "y", "--out", out, "--json")
    seen += [p.stdout, p.stderr]
    seen += [json.dumps(Image.open(f).text) for f in out.glob("*.png")]
    seen += [soulid("jobs", "list").stdout]
    # a rejected key must not be echoed either
    env = {**os.environ, "HF_KEY": "bad-key-id:bad-secret-0123456789"}
    p = soulid("generate", "--backend", "higgsfield", "--prompt", "z", env=env, check=False)
    assert p.returncode == 2 and "rejected the API key from the environment variable HF_KEY (401)" in p.stderr
    assert "bad-secret-0123456789" not in p.stdout + p.stderr
    seen += [p.stdout, p.stderr]
    monkeypatch.setenv("HF_KEY", "bad-key-id:bad-secret-0123456789")
    with pytest.raises(CredentialsRejected) as ei:
        get_backend("higgsfield").generate(GenerateRequest(prompt="w"))
    seen.append(str(ei.value))
    db = Path(os.environ["SOULID_DATA_DIR"]) / "jobs.sqlite3"
    blobs = [f.read_bytes().decode("latin-1") for f in db.parent.glob("jobs.sqlite3*")] + [p.read_text() for p in (REPO / "workflows").glob("*.json")]
    text = "\n".join(seen + blobs)
    assert res.request_id in text  # the haystack is real
    for secret in (*SECRETS, "bad-secret-0123456789"):
        assert secret not in text, f"credential {secret[:4]}… leaked"
