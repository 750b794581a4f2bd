"""Loading the SDXL base model for training, and its identity (name + sha256)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ....soul.errors import SoulIDError
from ....soul.paths import NotRegularFile, atomic_write_bytes, cache_dir, open_regular_file
from ..models import SDXL_CLASSES, BaseModel, DEFAULT_BASE, find_base, local_sdxl_config

#: Largest ``model_index.json`` read, bytes.
MAX_MODEL_INDEX_BYTES = 1 << 20
#: Largest single-file checkpoint accepted, bytes.
MAX_CHECKPOINT_BYTES = 64 << 30


class BaseModelError(SoulIDError):
    """``--base`` names something that is not a usable SDXL base (the message says what it is)."""


def _check_base(b: BaseModel, model: str) -> None:
    """Refuse a base whose files are not what they claim, before diffusers reads them."""
    p = Path(b.ref)
    if b.kind == "hub":
        if os.path.lexists(Path(model).expanduser()):
            raise BaseModelError(f"--base {model}: this path is neither a diffusers folder with model_index.json "
                                 f"nor a .safetensors/.ckpt checkpoint file")
        return
    target = p if b.kind == "single_file" else p / "model_index.json"
    try:
        f, _ = open_regular_file(target, MAX_CHECKPOINT_BYTES if b.kind == "single_file" else MAX_MODEL_INDEX_BYTES)
        with f:
            head = f.read(MAX_MODEL_INDEX_BYTES + 1) if b.kind == "diffusers" else b""
    except NotRegularFile as e:
        raise BaseModelError(f"--base {model}: {target} is {e.reason}") from None
    except OSError as e:
        raise BaseModelError(f"--base {model}: cannot read {target} ({e.strerror or e})") from None
    if b.kind == "diffusers":
        try:
            index = json.loads(head)
        except (ValueError, RecursionError):
            index = None
        cls = index.get("_class_name") if isinstance(index, dict) else None
        if cls not in SDXL_CLASSES:
            raise BaseModelError(f"--base {model}: {target} is not an SDXL diffusers model index "
                                 f"(_class_name {str(cls)[:60]!r}; expected one of {', '.join(SDXL_CLASSES)})")


def resolve_base(model: str) -> BaseModel:
    """The base model named by ``model`` (see :func:`..models.find_base`).

    Raises:
        LocalSetupMissing: nothing matches ``model`` (a :class:`ModelFilesMissing`):
            the path, download source, size and VRAM, as local generate reports them.
        BaseModelError: it matches a FIFO, a device, a junk ``model_index.json``...
    """
    p = Path(model).expanduser() if model else None
    if p is not None and os.path.lexists(p) and not (p.is_dir() or p.is_file()):
        try:
            open_regular_file(p, 0)[0].close()
        except NotRegularFile as e:
            raise BaseModelError(f"--base {model}: {e.reason}") from None
        except OSError as e:
            raise BaseModelError(f"--base {model}: cannot read it ({e.strerror or e})") from None
    if p is not None and p.is_dir() and p.is_absolute():
        if not os.path.lexists(p / "model_index.json"):
            raise BaseModelError(f"--base {model}: this folder has no model_index.json, so it is not a diffusers "
                                 f"model (pass the folder that holds model_index.json, or a .safetensors checkpoint)")
        _check_base(BaseModel("diffusers", str(p)), model)
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
    _check_base(b, model)
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
    atomic_write_bytes(cache, json.dumps(known).encode())
    return known[key]


def load_pipeline(base: BaseModel, dtype=None):
    """A diffusers ``StableDiffusionXLPipeline`` (on CPU) of the base."""
    import diffusers

    cls = diffusers.StableDiffusionXLPipeline
    try:
        if base.kind == "single_file":
            return cls.from_single_file(base.ref, torch_dtype=dtype, config=local_sdxl_config())
        return cls.from_pretrained(base.ref, torch_dtype=dtype)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError) as e:
        # diffusers' many ways of saying "these files are not a model": one line naming the base
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise BaseModelError(f"cannot load the SDXL base {base.ref}: {type(e).__name__}: {first}") from None
