"""Local persona-LoRA training on tiny random SDXL components (CPU, seconds),
on a Soul ID built from the real Obama fixture photos with dlib.

The tiny models are random, so the check step's similarity numbers are
meaningless here; these tests check the plumbing and the training behaviour
(loss falls, resume, determinism, storage, loading)."""
from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("diffusers")
pytest.importorskip("peft")
torch = pytest.importorskip("torch")

import local_tiny_models as tiny  # noqa: E402

from soulid.backends.local.training import (  # noqa: E402
    DatasetError, TrainSettings, checkpoint_path, default_steps, train_persona,
)
from soulid.backends.local.training.captions import CaptionError, build_captions  # noqa: E402
from soulid.backends.local.training.dataset import build_samples, buckets  # noqa: E402
from soulid.soul.create import create_soul_id  # noqa: E402
from soulid.soul.errors import Interrupted  # noqa: E402
from soulid.soul.library import Library  # noqa: E402
from soulid.soul.soulfile import SoulID  # noqa: E402

FAST = dict(resolution=64, learning_rate=1e-3, log_every=5, checkpoint_every=0, device="cpu")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny") / "models"
    tiny.build_sdxl(root)
    return str(root / "diffusers" / "tiny-sdxl")


@pytest.fixture(scope="module")
def obama(faces):
    r = create_soul_id([faces / "obama"], "obama", analyzer="dlib", workers=1)
    assert r.soul is not None and len(r.soul.photos) >= 5
    return r.soul


@pytest.fixture(scope="module")
def trained(obama, base):
    return train_persona(obama, base, TrainSettings(steps=40, **FAST), check_images=2, check_steps=2)


def test_dataset_face_crops_buckets_flips(obama):
    caps = build_captions([p.pose_class for p in obama.photos], "ohwx", "man")
    samples = build_samples(obama, caps, 1024, flip=True)
    assert len(samples) == 2 * len(obama.photos)
    allowed = set(buckets(1024))
    for a, b in zip(samples[::2], samples[1::2]):
        assert a.size in allowed and a.rgb.dtype == np.uint8
        assert b.flipped and np.array_equal(a.rgb[:, ::-1], b.rgb)
    assert all(c.startswith("ohwx man") for c in caps)
    with pytest.raises(CaptionError, match="caption"):
        build_captions(["front", "front"], captions=["only one"])
    assert build_captions(["front"], "ohwx", captions=["a man smiling"]) == ["ohwx a man smiling"]


@pytest.mark.slow  # measured: 15-40 s on the 2-core CI machine (.ci/run --durations)
def test_training_loss_finite_and_falls(trained, obama):
    m = trained.metadata
    curve = m["loss_curve"]
    assert len(curve) == 8 and all(np.isfinite(curve))
    assert np.mean(curve[-2:]) < np.mean(curve[:2]), curve
    assert m["steps"] == 40 and m["final_loss"] == curve[-1]
    assert m["captions"] and all(c.startswith("ohwx person") for c in m["captions"])
    assert len(m["base_model_hash"]) == 64 and m["arch"] == "sdxl" and m["rank"] == 16
    assert trained.warnings == []


def test_lora_lands_in_soulid_with_metadata(trained, obama, tmp_path):
    soul = copy.deepcopy(obama)
    soul.attach_lora(trained.arch, trained.data, trained.metadata)
    lib = Library(tmp_path / "lib")
    path = lib.save(soul)
    back = SoulID.from_bytes(path.read_bytes())
    lora = back.lora("sdxl")
    assert lora.data == trained.data
    for k in ("base_model", "base_model_hash", "rank", "steps", "resolution", "trigger", "captions",
              "training_seconds", "final_loss", "loss_curve"):
        assert k in lora.metadata, k
    check = lora.metadata["check"]
    assert check["k"] == 2 and 0.0 <= check["pass_rate"] <= 1.0  # random tiny model: no face, numbers meaningless
    # `soulid show` prints it
    out = subprocess.run([sys.executable, "-m", "soulid", "--library", str(tmp_path / "lib"), "show", "obama"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "LoRA sdxl" in out.stdout and "pass rate" in out.stdout and "rank 16" in out.stdout


def _pipe(base):
    from diffusers import StableDiffusionXLPipeline

    return StableDiffusionXLPipeline.from_pretrained(base)


def _img(pipe):
    g = torch.Generator("cpu").manual_seed(7)
    return pipe(prompt="a photo of ohwx person", num_inference_steps=2, width=64, height=64, generator=g,
                output_type="np").images[0]


def test_lora_loads_in_diffusers_changes_output_and_scale0_does_not(trained, base):
    from safetensors.torch import load

    pipe = _pipe(base)
    before = _img(pipe)
    pipe.load_lora_weights(load(trained.data), adapter_name="persona")
    n_layers = sum(1 for n, _ in pipe.unet.named_modules() if n.endswith(".to_q") or n.endswith(".to_out.0"))
    lora_layers = [m for n, m in pipe.unet.named_modules() if hasattr(m, "lora_A") and "persona" in m.lora_A]
    assert len(lora_layers) == sum(k.endswith(".lora_down.weight") for k in load(trained.data)) == 4 * n_layers // 2
    pipe.set_adapters(["persona"], adapter_weights=[1.0])
    with_lora = _img(pipe)
    assert np.abs(with_lora - before).max() > 1e-3
    pipe.set_adapters(["persona"], adapter_weights=[0.0])
    assert np.allclose(_img(pipe), before, atol=1e-5)


def test_same_seed_same_bytes(obama, base):
    s = TrainSettings(steps=6, **FAST)
    a = train_persona(obama, base, s, check_images=0)
    b = train_persona(obama, base, s, check_images=0)
    assert a.data == b.data
    c = train_persona(obama, base, TrainSettings(steps=6, **{**FAST, "seed": 1}), check_images=0)
    assert c.data != a.data


def test_one_photo_weak_persona_zero_refused(obama, base):
    one = copy.deepcopy(obama)
    one.photos = one.photos[:1]
    r = train_persona(one, base, TrainSettings(steps=2, **FAST), check_images=0)
    assert any("weak persona" in w for w in r.warnings) and r.metadata["photos"] == 1
    none = copy.deepcopy(obama)
    none.photos = []
    with pytest.raises(DatasetError, match="no accepted photo"):
        train_persona(none, base, TrainSettings(steps=2, **FAST), check_images=0)


def test_interrupt_keeps_checkpoint_and_resume_matches_uninterrupted(obama, base):
    s = TrainSettings(steps=12, **{**FAST, "checkpoint_every": 4, "log_every": 2})
    full = train_persona(obama, base, s, check_images=0)
    seen = []

    def stop():
        return "step 9/12" in "".join(seen)  # 9 steps ran; the last checkpoint is at step 8

    with pytest.raises(Interrupted, match="step 10/12"):
        train_persona(obama, base, s, check_images=0, interrupt=stop, progress=lambda f, m: seen.append(m))
    assert checkpoint_path("obama").is_file()
    resumed = train_persona(obama, base, s, check_images=0, resume=True)
    assert resumed.metadata["resumed_from_step"] == 8
    assert resumed.data == full.data  # continues exactly where it stopped
    assert not checkpoint_path("obama").exists()


def test_default_steps_scale_with_photos():
    assert default_steps(1) == 400 and default_steps(20) == 800 and default_steps(80) == 1600
    # A bigger batch keeps the same number of samples: 800 samples of 20 photos = 200 steps of 4.
    assert default_steps(20, 4) == 200 and default_steps(3, 4) == 100
    assert TrainSettings(device="cpu").resolved_batch_size() == 1
    assert TrainSettings(device="cuda").resolved_batch_size() == 4 and TrainSettings(batch_size=2).resolved_batch_size() == 2


def _cli(lib, base, *extra):
    return [sys.executable, "-m", "soulid", "--library", str(lib), "train", "obama", "--provider", "local",
            "--base", base, "--steps", "60", "--resolution", "64", "--lr", "1e-3", "--checkpoint-every", "5",
            "--check-images", "0", "--device", "cpu", "--json", *extra]


@pytest.mark.slow  # measured: 15-40 s on the 2-core CI machine (.ci/run --durations)
def test_cli_kill9_then_resume_continues(obama, base, tmp_path):
    lib = Library(tmp_path / "lib")
    lib.save(obama)
    ck = checkpoint_path("obama")
    proc = subprocess.Popen(_cli(tmp_path / "lib", base), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.time() + 240
        step = 0
        while time.time() < deadline and proc.poll() is None:
            if ck.is_file():
                try:
                    step = int(torch.load(ck, weights_only=True)["step"])
                except Exception:  # caught mid-replace: try again
                    step = 0
                if step >= 10:
                    break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert step >= 10
    out = subprocess.run(_cli(tmp_path / "lib", base, "--resume"), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads(out.stdout)
    assert info["resumed_from_step"] >= step and info["steps"] == 60
    assert lib.load("obama").lora("sdxl").metadata["resumed_from_step"] == info["resumed_from_step"]
