"""Loading the SDXL base model for training, and its identity (name + sha256)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ....soul.paths import cache_dir
from ..models import BaseModel, DEFAULT_BASE, find_base, local_sdxl_config


def resolve_base(model: str) -> BaseModel:
    """The base model named by ``model`` (see :func:`..models.find_base`).

    Raises:
        LocalSetupMissing: nothing matches ``model`` (a :class:`ModelFilesMissing`):
            the path, download source, size and VRAM, as local generate reports them.
    """
    b = find_base(model)
    if b is None:
        # The same report as local generate: the real path, where to download
        # it, its size and the VRAM it needs, plus any missing package.
        from ..models import SOURCES, LocalSetupMissing, _where, missing_packages

        if model:
            path = (f"{model} (SDXL base: a folder with model_index.json in {_where('diffusers')}, "
                    f"a checkpoint in {_where('checkpoints')}, or a path to either)")
        else:
            path = f"{_where('diffusers')}/{DEFAULT_BASE}/model_index.json"
        raise LocalSetupMissing("local training (soulid train --provider local --base PATH)",
                                missing_packages("generate", "lora"),
                                [(path, "SDXL base model, diffusers layout", SOURCES["sdxl_base"])])
    return b


def _weight_files(base: BaseModel) -> list[Path]:
    p = Path(base.ref)
    if base.kind == "single_file":
        return [p]
    files = sorted(f for f in (p / "unet").glob("*") if f.suffix in (".safetensors", ".bin"))
    return files or [p / "model_index.json"]


def base_hash(base: BaseModel) -> str:
    """sha256 hex of the base's denoiser weights (the checkpoint file, or the
    diffusers folder's ``unet/`` weight files in name order). ``hub`` bases
    hash their repo id. Cached per (path, size, mtime) in the cache folder,
    since a 7 GB checkpoint takes seconds to hash."""
    if base.kind == "hub":
        return hashlib.sha256(base.ref.encode()).hexdigest()
    files = _weight_files(base)
    key = json.dumps([[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files])
    cache = cache_dir() / "base_hashes.json"
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 24), b""):
                h.update(chunk)
    known[key] = h.hexdigest()
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
    tmp.write_text(json.dumps(known))
    os.replace(tmp, cache)
    return known[key]


def load_pipeline(base: BaseModel, dtype=None):
    """A diffusers ``StableDiffusionXLPipeline`` (on CPU) of the base."""
    import diffusers

    cls = diffusers.StableDiffusionXLPipeline
    if base.kind == "single_file":
        return cls.from_single_file(base.ref, torch_dtype=dtype, config=local_sdxl_config())
    return cls.from_pretrained(base.ref, torch_dtype=dtype)
