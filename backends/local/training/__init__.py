"""Local persona-LoRA training from a Soul ID's own photos (SDXL; diffusers + peft).

One training core, ComfyUI-free (inside ComfyUI, training uses ComfyUI's own
``TrainLoraNode``; see ``workflows/10 Train a persona LoRA (local).json``):

* :mod:`.dataset`: face-centred crops of the accepted photos, aspect buckets, flips;
* :mod:`.captions`: ``"<trigger> <class word>, <pose> view"`` per photo, editable;
* :mod:`.trainer`: cached latents/text embeddings, LoRA on the UNet attention
  projections, resumable checkpoints (:mod:`.checkpoint`);
* :mod:`.lora_file`: kohya-key ``.safetensors`` readable by diffusers and ComfyUI;
* :mod:`.check`: held-out-prompt images scored with the drift guard.

:func:`train_persona` runs them in order and returns the LoRA bytes and
metadata for :meth:`soulid.soul.soulfile.SoulID.attach_lora` (arch ``"sdxl"``).
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from pathlib import Path

from ....soul import progress as prog
from ....soul.paths import cache_dir
from ....soul.soulfile import SoulID
from . import lora_file
from .base import base_hash, load_pipeline, resolve_base
from .captions import DEFAULT_CLASS_WORD, DEFAULT_TRIGGER, build_captions
from .dataset import DatasetError, accepted_photos, build_samples
from .trainer import TrainSettings, base_schedule, default_steps, encode, fingerprint, fit

ARCH = "sdxl"
#: Fewer accepted photos than this trains with a "weak persona" warning.
WEAK_PERSONA_PHOTOS = 5

__all__ = ["ARCH", "TrainSettings", "TrainResult", "train_persona", "default_steps", "checkpoint_path",
           "DatasetError"]


@dataclass
class TrainResult:
    """A trained persona LoRA: ``data`` (``.safetensors`` bytes), ``metadata``
    (see :class:`soulid.soul.soulfile.PersonaLoRA`) and ``warnings`` (str)."""

    arch: str
    data: bytes
    metadata: dict
    warnings: list[str] = field(default_factory=list)


def checkpoint_path(soul_name: str, arch: str = ARCH) -> Path:
    """Where a training run of ``soul_name`` keeps its resumable checkpoint."""
    return cache_dir() / "training" / f"{soul_name}-{arch}" / "checkpoint.pt"


def train_persona(soul: SoulID, base: str, settings: TrainSettings | None = None, *,
                  trigger: str = DEFAULT_TRIGGER, class_word: str = DEFAULT_CLASS_WORD, captions=None,
                  resume: bool = False, check_images: int = 4, check_steps: int = 25,
                  progress=None, interrupt=None, keep_checkpoint: bool = False) -> TrainResult:
    """Train a persona LoRA for ``soul`` on the SDXL base ``base``.

    Args:
        soul: the Soul ID; its accepted photos are the training set.
        base: SDXL base (diffusers folder / checkpoint file / path; see
            :func:`soulid.backends.local.models.find_base`).
        settings: :class:`TrainSettings` (default: SDXL defaults).
        trigger, class_word: caption words (:mod:`.captions`); captions: edited
            captions (list or file path), one per accepted photo.
        resume: continue from :func:`checkpoint_path` when a checkpoint of the same run is there.
        check_images: held-out images generated and scored after training (0: no check).
        check_steps: denoising steps of each check image.
        progress, interrupt: :mod:`soulid.soul.progress` callables.
        keep_checkpoint: leave the last checkpoint for the caller to delete
            once the LoRA is saved (a failed save can then ``resume``).

    Returns:
        :class:`TrainResult` (the caller attaches it: ``soul.attach_lora(r.arch, r.data, r.metadata)``).

    Raises:
        DatasetError: no accepted photo. ModelFilesMissing: ``base`` not found.
        CaptionError: captions do not fit. CheckpointError: resume of another run.
        Interrupted: the interrupt fired (the last checkpoint stays for ``resume``).
    """
    import torch

    s = settings or TrainSettings()
    t_start = time.time()
    photos = accepted_photos(soul)
    if not photos:
        raise DatasetError(f"Soul ID {soul.name!r} has no accepted photo; training refused")
    warnings = []
    if len(photos) < WEAK_PERSONA_PHOTOS:
        warnings.append(f"weak persona: only {len(photos)} accepted photo(s) in {soul.name!r}; "
                        f"20+ varied photos are recommended, the LoRA may copy the photo rather than learn the face")
        prog.report(progress, None, "warning: " + warnings[-1])
    caps = build_captions([p.pose_class for _, p in photos], trigger, class_word, captions)
    steps = int(s.steps or default_steps(len(photos), s.resolved_batch_size()))
    device, dtype = s.resolved_device(), s.compute_dtype()
    bm = resolve_base(base)
    bhash = base_hash(bm)
    fp = fingerprint(s, steps, {"captions": caps, "photos": [p.jpeg.hex()[:64] + str(len(p.jpeg)) for _, p in photos],
                                "base": bhash})
    ck = checkpoint_path(soul.name)
    prog.report(progress, 0.0, f"loading base {Path(bm.ref).name}")
    samples = build_samples(soul, caps, s.resolution, flip=s.flip)
    # As the recipe: everything loads in float32, the VAE stays float32 (latents), the rest runs in ``dtype``.
    pipe = load_pipeline(bm, dtype=torch.float32)
    for m in (pipe.unet, pipe.text_encoder, pipe.text_encoder_2):
        m.to(dtype)
    schedule, prediction_type = base_schedule(pipe.scheduler.config)
    data = encode(pipe, samples, device, dtype, interrupt=interrupt)
    unet = pipe.unet.to(device)
    del pipe, samples  # free the VAE and both text encoders: the loop needs the UNet only
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    res = fit(unet, data, s, steps, schedule=schedule, prediction_type=prediction_type, checkpoint_path=ck, resume=resume, fingerprint_=fp,
              progress=progress, interrupt=interrupt)
    alpha = s.alpha or s.rank
    header = {"arch": ARCH, "rank": s.rank, "alpha": alpha, "trigger": trigger, "base_model_hash": bhash}
    data_bytes = lora_file.to_bytes(res.lora_state, alpha, header)
    meta = {
        "source": "trained", "trainer": "soulid.local", "arch": ARCH,
        "base_model": Path(bm.ref).name, "base_model_hash": bhash,
        "rank": s.rank, "alpha": alpha, "steps": res.steps, "batch_size": s.resolved_batch_size(), "resolution": s.resolution,
        "learning_rate": s.learning_rate, "seed": s.seed, "mixed_precision": str(dtype).replace("torch.", ""),
        "trigger": trigger, "class_word": class_word, "captions": caps, "photos": len(photos),
        "samples": len(data), "flip": s.flip, "prediction_type": prediction_type, "target_modules": ["to_q", "to_k", "to_v", "to_out.0"],
        "training_seconds": round(time.time() - t_start, 2), "seconds_per_step": round(res.seconds_per_step, 4),
        "final_loss": res.final_loss, "loss_curve": res.loss_curve, "loss_every": s.log_every,
        "resumed_from_step": res.resumed_from, "device": device, "created": time.time(),
        "warnings": warnings,
    }
    del unet, data
    gc.collect()
    if check_images > 0:
        meta["check"] = _check(soul, bm, data_bytes, f"{trigger} {class_word}", check_images, check_steps, s,
                               device, dtype, progress, interrupt)
    if ck.exists() and not keep_checkpoint:
        ck.unlink()
    return TrainResult(ARCH, data_bytes, meta, warnings)


def _check(soul, bm, data: bytes, subject, k, steps, s, device, dtype, progress, interrupt) -> dict:
    import torch
    from safetensors.torch import load as st_load

    from .check import run_check

    pipe = load_pipeline(bm, dtype=dtype).to(device)
    pipe.load_lora_weights(st_load(data), adapter_name="persona")
    out = run_check(soul, pipe, subject, k=k, steps=steps, size=s.resolution, seed=s.seed, device=device,
                    progress=progress, interrupt=interrupt)
    del pipe
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return out
