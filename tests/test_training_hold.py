"""A Soul ID held by ``soulid train --provider local`` (tiny random SDXL, CPU):
rename, delete and a second training refuse while it trains, the
checkpoint is 0600 in a 0700 folder, and the trained LoRA lands in the
Soul ID at the end."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("peft")

import local_tiny_models as tiny  # noqa: E402

from soulid.backends.local.training import checkpoint_path  # noqa: E402
from soulid.soul.create import create_soul_id  # noqa: E402
from soulid.soul.library import Library  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO.parent), os.environ.get("PYTHONPATH", "")])}


def soulid(lib: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "soulid", "--library", str(lib), *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env())


def test_rename_delete_and_a_second_training_refuse_while_it_trains(faces, tmp_path):
    root = tmp_path / "models"
    tiny.build_sdxl(root)
    base = root / "diffusers" / "tiny-sdxl"
    soul = create_soul_id([faces / "obama"], "heldsoul", analyzer="dlib", workers=1).soul
    lib = Library(tmp_path / "lib")
    lib.save(soul)
    ck = checkpoint_path("heldsoul")
    ck.unlink(missing_ok=True)
    train = ["train", "heldsoul", "--provider", "local", "--base", base, "--steps", "40", "--resolution", "64",
             "--lr", "1e-3", "--checkpoint-every", "2", "--check-images", "0", "--device", "cpu", "--json"]
    proc = subprocess.Popen([sys.executable, "-m", "soulid", "--library", str(tmp_path / "lib"), *map(str, train)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    try:
        t0 = time.time()
        while not ck.is_file() and proc.poll() is None and time.time() - t0 < 300:
            time.sleep(0.2)
        assert proc.poll() is None and ck.is_file(), proc.stderr.read()[-2000:] if proc.poll() is not None else "no checkpoint"
        assert stat.S_IMODE(ck.stat().st_mode) == 0o600
        assert stat.S_IMODE(ck.parent.stat().st_mode) == 0o700
        for args, verb in ((["rename", "heldsoul", "other"], "renamed"), (["delete", "heldsoul", "--yes"], "deleted"),
                           (train, "already held")):
            r = soulid(tmp_path / "lib", *args)
            assert r.returncode == 2, (args, r.stderr[-2000:])
            assert "a local training (pid" in r.stderr and verb in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert proc.poll() is None, "the checks must run while it trains (raise --steps)"
        out, err = proc.communicate(timeout=1500)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-2000:]
    assert json.loads(out)["steps"] == 40
    assert lib.load("heldsoul").lora("sdxl").metadata["steps"] == 40
    assert not ck.exists()  # removed once the LoRA was saved
    assert soulid(tmp_path / "lib", "rename", "heldsoul", "other").returncode == 0  # released
