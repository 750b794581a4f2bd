"""Local persona-LoRA training speed: seconds per step, peak memory and the
projected minutes for a 20- and an 80-photo Soul ID at the default steps.

Speed does not depend on weight values, so:

* ``--full-size``: the real SDXL architecture (UNet 2.6 B, VAE; configs of
  stabilityai/stable-diffusion-xl-base-1.0 built in code, no downloads) with
  random weights, bf16 frozen weights + float32 LoRA under autocast, SDPA
  attention, channels-last, gradient checkpointing (``--no-gc`` turns it off);
  the text embeddings are random tensors of the real shapes (``[1, 77, 2048]``,
  ``[1, 1280]``): encoding the handful of distinct captions once costs
  milliseconds. The VAE pre-encode is timed on the real VAE architecture.
* default: the tiny random SDXL components of the tests
  (``tests/local_tiny_models.py``), through the same ``encode`` + ``fit`` path.

Both run :func:`soulid.backends.local.training.trainer.fit`, the training loop
``soulid train --provider local`` uses.

    python benchmarks/bench_train.py                          # CPU, tiny components, 128 px
    python benchmarks/bench_train.py --device cuda --full-size --steps 30

Target (issue 10), one H100: a 20-photo SDXL persona in <= 5 minutes at
1024 px, peak memory <= 24 GB.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
try:
    import soulid  # noqa: F401
except ImportError:  # run from a checkout: the repository folder is the package
    import importlib.util

    spec = importlib.util.spec_from_file_location("soulid", HERE.parent / "__init__.py",
                                                  submodule_search_locations=[str(HERE.parent)])
    sys.modules["soulid"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sys.modules["soulid"])


def _peak_gb(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def full_size(device: str, resolution: int, photos: int):
    """Random-weight SDXL UNet (bf16) + cached random embeddings; the VAE pre-encode timed per image."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from bench_local_gpu import SDXL_UNET, SDXL_VAE
    from soulid.backends.local.training.trainer import Encoded

    dtype = torch.bfloat16
    torch.manual_seed(0)
    with torch.device(device):
        vae = AutoencoderKL(**SDXL_VAE).to(dtype).eval()
    x = torch.rand(1, 3, resolution, resolution, device=device, dtype=dtype) * 2 - 1
    with torch.no_grad():
        for _ in range(2):
            vae.encode(x)
        _sync(device)
        t = time.perf_counter()
        for _ in range(4):
            lat = vae.encode(x).latent_dist.mean * 0.13025
        _sync(device)
    encode_s = (time.perf_counter() - t) / 4
    del vae
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    with torch.device(device):
        unet = UNet2DConditionModel(**SDXL_UNET).to(dtype)
    n = 2 * photos
    g = torch.Generator(device).manual_seed(0)
    lats = [torch.randn(lat.shape, generator=g, device=device, dtype=dtype) for _ in range(n)]
    pe = torch.randn(1, 77, 2048, generator=g, device=device, dtype=dtype)
    pooled = torch.randn(1, 1280, generator=g, device=device, dtype=dtype)
    tids = torch.tensor([[resolution, resolution, 0, 0, resolution, resolution]], device=device, dtype=dtype)
    data = Encoded(lats, [pe] * n, [pooled] * n, [tids] * n, [(resolution, resolution)] * n)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    return unet, data, encode_s


def tiny(device: str, resolution: int, photos: int):
    """The tests' tiny SDXL components, through the real ``encode``."""
    import numpy as np

    from local_tiny_models import build_sdxl
    from soulid.backends.local.training.base import load_pipeline
    from soulid.backends.local.models import BaseModel
    from soulid.backends.local.training.dataset import Sample
    from soulid.backends.local.training.trainer import encode

    import torch

    root = Path(tempfile.mkdtemp(prefix="soulid-bench-train-"))
    build_sdxl(root)
    pipe = load_pipeline(BaseModel("diffusers", str(root / "diffusers" / "tiny-sdxl")))
    rng = np.random.default_rng(0)
    samples = [Sample(rng.integers(0, 255, (resolution, resolution, 3), dtype=np.uint8), "ohwx person", i)
               for i in range(2 * photos)]
    t = time.perf_counter()
    data = encode(pipe, samples, device, torch.float32)
    encode_s = (time.perf_counter() - t) / len(samples)
    return pipe.unet.to(device), data, encode_s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--full-size", action="store_true", help="real SDXL architecture, random weights (CUDA)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 30 on CUDA, 6 on CPU)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--resolution", type=int, default=None,
                    help="px (default 1024 full-size; 128 tiny: the tiny VAE only halves the size, so its "
                         "mid-block attention at 1024 px would be over 512x512 tokens)")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--no-gc", action="store_true", help="no gradient checkpointing")
    ap.add_argument("--photos", type=int, default=4, help="cached samples are 2 x photos (flips)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)

    import torch

    from soulid.backends.local.training.trainer import TrainSettings, default_steps, fit

    cuda = a.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print("CUDA is not available; run without --device cuda for the CPU figures")
        return 0
    if a.full_size and not cuda:
        print("--full-size needs --device cuda (the 2.6 B-parameter UNet is impractical on CPU)")
        return 2
    torch.set_float32_matmul_precision("high")
    steps = a.steps or (30 if cuda else 6)
    a.resolution = a.resolution or (1024 if a.full_size else 128)
    unet, data, encode_s = (full_size if a.full_size else tiny)(a.device, a.resolution, a.photos)
    s = TrainSettings(rank=a.rank, resolution=a.resolution, batch_size=a.batch, device=a.device,
                      gradient_checkpointing=not a.no_gc, mixed_precision="bf16" if cuda else "no",
                      checkpoint_every=0, log_every=10)
    marks = {}

    def progress(fraction, message):  # soul.progress signature: called after every step
        if round(fraction * (a.warmup + steps)) == a.warmup:
            _sync(a.device)
            marks["t"] = time.perf_counter()

    r = fit(unet, data, s, a.warmup + steps, progress=progress)
    sps = (time.perf_counter() - marks["t"]) / steps
    out = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "model": "SDXL (random weights, real architecture)" if a.full_size else "tiny random SDXL (tests)",
        "resolution": a.resolution, "rank": a.rank, "batch": a.batch, "gradient_checkpointing": not a.no_gc,
        "dtype": "bf16 weights + fp32 LoRA, autocast" if cuda else "float32",
        "seconds_per_step": round(sps, 4), "encode_seconds_per_image": round(encode_s, 4),
        "peak_memory_gb": round(_peak_gb(a.device), 2),
        "peak_memory_kind": "torch.cuda.max_memory_allocated" if cuda else "process max RSS",
        "final_loss": r.final_loss,
    }
    for n in (20, 80):
        st = default_steps(n, a.batch)
        out[f"projected_minutes_{n}_photos"] = round((st * sps + 2 * n * encode_s) / 60, 2)
        out[f"default_steps_{n}_photos"] = st
    if a.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:32s} {v}")
        print("(projection: default steps at this batch size (40 samples per photo) x s/step + VAE pre-encode "
              "of 2 x photos; base-model loading excluded)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
