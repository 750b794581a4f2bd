"""Local persona training follows diffusers' ``train_dreambooth_lora_sdxl.py``:
float32 VAE for the latents, true original size and crop in the SDXL time ids,
the prediction type of the base's scheduler config, flips off by default
(``--flip`` turns them on). Tiny random SDXL parts, real photos."""
from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest

pytest.importorskip("diffusers")
pytest.importorskip("peft")
torch = pytest.importorskip("torch")

import local_tiny_models as tiny  # noqa: E402

from soulid.backends.local.training import TrainSettings, train_persona, trainer  # noqa: E402
from soulid.backends.local.training.captions import build_captions  # noqa: E402
from soulid.backends.local.training.dataset import Sample, build_samples, crop_window  # noqa: E402
from soulid.soul.create import create_soul_id  # noqa: E402


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny") / "models"
    tiny.build_sdxl(root)
    return root / "diffusers" / "tiny-sdxl"


@pytest.fixture(scope="module")
def obama(faces):
    return create_soul_id([faces / "obama"], "obama", analyzer="dlib", workers=1).soul


def _pipe(base, dtype):
    from diffusers import StableDiffusionXLPipeline

    return StableDiffusionXLPipeline.from_pretrained(str(base), torch_dtype=dtype)


def test_latents_come_from_a_float32_vae_whatever_the_compute_dtype(base, obama):
    pipe = _pipe(base, torch.bfloat16)
    ref_vae = copy.deepcopy(pipe.vae).float()  # the same weights, in float32
    caps = build_captions([obama.photos[0].pose_class], "ohwx", "man")
    s = build_samples(obama, caps * len(obama.photos), 64)[0]
    data = trainer.encode(pipe, [s], "cpu", torch.float32)
    x = torch.from_numpy(np.ascontiguousarray(s.rgb)).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        want = ref_vae.encode(x).latent_dist.mean * ref_vae.config.scaling_factor
    torch.testing.assert_close(data.latents[0], want, rtol=1e-5, atol=1e-6)
    assert pipe.vae.dtype == torch.float32


def test_time_ids_carry_the_true_size_and_crop(base, obama):
    from PIL import Image

    caps = build_captions([p.pose_class for p in obama.photos], "ohwx", "man")
    samples = build_samples(obama, caps, 1024, flip=True)
    upscaled = 0
    for s in samples:
        photo = obama.photos[s.photo]
        rgb = photo.rgb()
        h, w = rgb.shape[:2]
        assert s.original_size == (h, w)
        bw, bh = s.size
        upscaled += max(h, w) < max(bw, bh)
        # The crop is the resized (and for a flipped sample, mirrored) photo at crop_top_left.
        scale = bw / crop_window((h, w), photo.face_box, (bw, bh))[2]  # the photo's resize factor
        size = (max(bw, int(round(w * scale))), max(bh, int(round(h * scale))))
        big = Image.fromarray(rgb).resize(size, Image.LANCZOS)
        big = np.asarray(big)[:, ::-1] if s.flipped else np.asarray(big)
        top, left = s.crop_top_left
        window = big[top:top + bh, left:left + bw].astype(np.float32)
        assert window.shape == s.rgb.shape, (window.shape, s.rgb.shape)
        assert np.abs(window - s.rgb).mean() < 4.0, f"photo {s.photo} flipped={s.flipped}: crop not at {s.crop_top_left}"
    assert upscaled > 0, "the fixture photos should include ones smaller than the bucket"
    pipe = _pipe(base, torch.float32)
    small = build_samples(obama, caps, 128, flip=True)[:2]
    data = trainer.encode(pipe, small, "cpu", torch.float32)
    for s, tid in zip(small, data.time_ids):
        w, h = s.size
        want = [*s.original_size, *s.crop_top_left, h, w]
        assert tid.tolist() == [want], (tid.tolist(), want)
        assert want[:2] != [h, w]


def test_prediction_type_read_from_the_base_scheduler(base, obama, tmp_path, monkeypatch):
    from diffusers import DDPMScheduler

    v_base = tmp_path / "tiny-sdxl-v"
    shutil.copytree(base, v_base)
    cfg_path = v_base / "scheduler" / "scheduler_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["prediction_type"] = "v_prediction"
    cfg_path.write_text(json.dumps(cfg))
    acp, pt = trainer.base_schedule(cfg)
    assert pt == "v_prediction"
    sched = DDPMScheduler.from_config(cfg)
    torch.testing.assert_close(acp, sched.alphas_cumprod.float())
    g = torch.Generator().manual_seed(0)
    lat, noise = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    t = torch.tensor([10, 700])
    torch.testing.assert_close(trainer.training_target(lat, noise, acp[t].view(-1, 1, 1, 1), "v_prediction"),
                               sched.get_velocity(lat, noise, t), rtol=1e-5, atol=1e-6)
    # train_persona trains against the base's own target.
    seen = []
    real = trainer.training_target

    def spy(latents, noise, alphas, prediction_type):
        seen.append(prediction_type)
        return real(latents, noise, alphas, prediction_type)

    monkeypatch.setattr(trainer, "training_target", spy)
    fast = dict(steps=2, resolution=64, log_every=1, checkpoint_every=0, device="cpu")
    r = train_persona(obama, str(v_base), TrainSettings(**fast), check_images=0)
    assert seen == ["v_prediction", "v_prediction"] and r.metadata["prediction_type"] == "v_prediction"
    seen.clear()
    r = train_persona(obama, str(base), TrainSettings(**fast), check_images=0)
    assert seen == ["epsilon", "epsilon"] and r.metadata["prediction_type"] == "epsilon"
    assert r.metadata["flip"] is False and r.metadata["samples"] == len(obama.photos)


def test_flips_off_by_default_and_on_with_flip(obama):
    from soulid.cli import build_parser

    assert TrainSettings().flip is False
    caps = build_captions([p.pose_class for p in obama.photos], "ohwx", "man")
    assert not any(s.flipped for s in build_samples(obama, caps, 64))
    assert len(build_samples(obama, caps, 64, flip=True)) == 2 * len(obama.photos)
    p = build_parser()
    assert p.parse_args(["train", "obama", "--provider", "local"]).flip is False
    assert p.parse_args(["train", "obama", "--provider", "local", "--flip"]).flip is True
    assert isinstance(Sample(np.zeros((8, 8, 3), np.uint8), "x", 0).crop_top_left, tuple)
