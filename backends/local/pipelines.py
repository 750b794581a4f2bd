"""SDXL identity pipelines on diffusers: IP-Adapter FaceID Plus v2 and InstantID.

* ``faceid_plusv2`` (Ye et al., "IP-Adapter", arXiv:2308.06721;
  https://huggingface.co/h94/IP-Adapter-FaceID): SDXL + diffusers'
  ``load_ip_adapter`` with ``ip-adapter-faceid-plusv2_sdxl.bin``
  (``IPAdapterFaceIDPlusImageProjection``): the buffalo_l unit embedding, plus
  the CLIP ViT-H penultimate hidden states of the aligned face crop, with the
  v2 *shortcut* on; the paired LoRA when present. Recipe:
  https://huggingface.co/docs/diffusers/using-diffusers/ip_adapter#ip-adapter-face-id
* ``instantid``: SDXL ControlNet pipelines + :mod:`.instantid`.

Runtime policy:

* dtype/device: CUDA -> bfloat16 where supported, else float16; Apple MPS ->
  float16; CPU -> float32. ``options["dtype"]`` overrides.
* attention: PyTorch scaled-dot-product attention (diffusers' default
  ``AttnProcessor2_0`` / ``IPAdapterAttnProcessor2_0`` on torch >= 2).
* one pipeline is kept loaded, keyed by its configuration (method, files,
  LoRAs, device, dtype, offload); edit modes reuse its modules via
  ``from_pipe``. This package never imports ComfyUI (no node runs it).
* ``offload``: ``"model"`` (``enable_model_cpu_offload``) or ``"sequential"``.
* every denoising step reports progress and checks the interrupt through
  ``callback_on_step_end``; an interrupt raises
  :class:`soulid.soul.errors.Interrupted` before the next step.
* seeds: a CPU ``torch.Generator`` so the same seed gives the same image on
  any device.
"""
from __future__ import annotations

import gc
import random
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...soul.imageio import to_uint8
from ...soul.progress import InterruptFn, ProgressFn, check, report
from .models import Resolved, load_clip_vision, load_identitynet, local_sdxl_config

#: Pipeline classes per method and mode.
CLASSES = {
    ("faceid_plusv2", "txt2img"): "StableDiffusionXLPipeline",
    ("faceid_plusv2", "img2img"): "StableDiffusionXLImg2ImgPipeline",
    ("faceid_plusv2", "inpaint"): "StableDiffusionXLInpaintPipeline",
    ("instantid", "txt2img"): "StableDiffusionXLControlNetPipeline",
    ("instantid", "img2img"): "StableDiffusionXLControlNetImg2ImgPipeline",
    ("instantid", "inpaint"): "StableDiffusionXLControlNetInpaintPipeline",
}

_lock = threading.RLock()
_loaded: dict = {}  # {"key": PipelineKey, "modes": {mode: pipe}}
#: How many times a pipeline was built from files (tests read it to check reuse).
LOAD_COUNT = 0


@dataclass(frozen=True)
class PipelineKey:
    """Everything that makes two loaded pipelines different."""

    resolved: Resolved
    device: str
    dtype: str
    offload: str = "none"
    #: channels_last + fused QKV + ``torch.compile`` of the UNet (and IdentityNet), CUDA only.
    optimise: bool = False


def device_and_dtype(device: str | None = None, dtype: str | None = None) -> tuple[str, str]:
    """The device and dtype name to run on (see the module docstring)."""
    import torch

    if not device:
        device = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    if not dtype:
        if device.startswith("cuda"):
            dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        elif device == "mps":
            dtype = "float16"
        else:
            dtype = "float32"
    if dtype not in ("float32", "float16", "bfloat16"):
        raise ValueError(f"dtype must be float32, float16 or bfloat16, not {dtype!r}")
    return device, dtype


def release() -> None:
    """Drop the loaded pipeline and return its memory (VRAM included)."""
    with _lock:
        _loaded.clear()
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def _load(key: PipelineKey):
    import diffusers
    import torch

    from .lora_layout import load_persona_lora

    global LOAD_COUNT
    r = key.resolved
    dtype = getattr(torch, key.dtype)
    cls = getattr(diffusers, CLASSES[(r.method, "txt2img")])
    extra = {}
    if r.method == "instantid":
        extra["controlnet"] = load_identitynet(r.get("identitynet"), dtype=dtype)
    if r.base.kind == "single_file":
        pipe = cls.from_single_file(r.base.ref, torch_dtype=dtype, config=local_sdxl_config(), **extra)
    else:
        pipe = cls.from_pretrained(r.base.ref, torch_dtype=dtype, **extra)
    if r.method == "faceid_plusv2":
        enc, proc = load_clip_vision(r.get("clip_vision"), dtype=dtype)
        pipe.register_modules(image_encoder=enc, feature_extractor=proc)
        adapter = Path(r.get("faceid_adapter"))
    else:
        adapter = Path(r.get("instantid_adapter"))
    pipe.load_ip_adapter(str(adapter.parent), subfolder="", weight_name=adapter.name, image_encoder_folder=None)
    names, weights = [], []
    for i, (path, scale) in enumerate(r.loras):
        # kohya / diffusers layouts become PEFT adapters; ComfyUI's TrainLoraNode layout is merged.
        name = load_persona_lora(pipe, path, scale, adapter_name=f"soulid_{i}")
        if name is not None:
            names.append(name)
            weights.append(scale)
    if names:
        pipe.set_adapters(names, adapter_weights=weights)
    if key.offload == "model":
        pipe.enable_model_cpu_offload(device=key.device)
    elif key.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=key.device)
    else:
        pipe.to(key.device)
    if key.optimise and key.device.startswith("cuda"):
        _optimise(pipe)
    LOAD_COUNT += 1
    return pipe


def _optimise(pipe) -> None:
    """Speed-ups that keep the output: channels-last memory format and
    ``torch.compile`` of the denoiser
    (PyTorch 2 recipe: https://huggingface.co/docs/diffusers/optimization/fp16 and
    https://pytorch.org/blog/accelerating-generative-ai-3/)."""
    import torch

    pipe.unet.to(memory_format=torch.channels_last)
    pipe.vae.to(memory_format=torch.channels_last)
    pipe.unet = torch.compile(pipe.unet, mode="max-autotune-no-cudagraphs")
    if getattr(pipe, "controlnet", None) is not None:
        pipe.controlnet.to(memory_format=torch.channels_last)


def get_pipeline(key: PipelineKey, mode: str = "txt2img"):
    """The pipeline for ``key`` in ``mode`` (``txt2img | img2img | inpaint``),
    loading it on first use and reusing it while the key is unchanged."""
    import diffusers

    with _lock:
        if _loaded.get("key") != key:
            if _loaded:
                release()
            _loaded.update(key=key, modes={"txt2img": _load(key)})
        modes = _loaded["modes"]
        if mode not in modes:
            cls = getattr(diffusers, CLASSES[(key.resolved.method, mode)])
            modes[mode] = cls.from_pipe(modes["txt2img"])
        return modes[mode]


def _step_callback(total: int, progress: ProgressFn | None, interrupt: InterruptFn | None, label: str = ""):
    """``callback_on_step_end``: progress per step and the interrupt check
    before the next step starts (raises :class:`Interrupted` naming the step)."""

    def cb(pipe, step, timestep, kwargs):
        report(progress, (step + 1) / total, f"denoising step {step + 1}/{total}")
        check(interrupt, f"{label + ': ' if label else ''}denoising step {step + 1} of {total}")
        return kwargs

    return cb


def _generator(seed: int | None) -> tuple["object", int]:
    import torch

    seed = random.randrange(2**32) if seed is None else int(seed) % 2**64
    return torch.Generator("cpu").manual_seed(seed), seed


def persona_lora(soul, scale: float = 1.0) -> tuple[str, float] | None:
    """``(path, scale)`` of the Soul ID's SDXL persona LoRA (``soul.loras["sdxl"]``,
    from ``soulid train --provider local`` or attached), or None when it has none.

    The bytes are written once to ``<cache>/persona_loras/<sha256>.safetensors``
    (content-addressed, atomic), so the path is a stable part of the pipeline
    key and diffusers' ``load_lora_weights`` reads it like any LoRA file.
    """
    from ...soul.paths import atomic_write_bytes, cache_dir

    lora = (getattr(soul, "loras", None) or {}).get("sdxl")
    if lora is None:
        return None
    path = cache_dir() / "persona_loras" / f"{lora.sha256}.safetensors"
    if not path.is_file():
        atomic_write_bytes(path, lora.data)
    return str(path), float(scale)


def persona_prompt(soul, prompt: str) -> str:
    """``prompt`` with the persona LoRA's trigger words (``"<trigger> <class word>, "``)
    in front when the Soul ID has an SDXL persona LoRA and the prompt lacks the trigger."""
    lora = (getattr(soul, "loras", None) or {}).get("sdxl")
    trigger = (lora.metadata.get("trigger") or "") if lora is not None else ""
    if not trigger or trigger in prompt.split() or trigger in prompt:
        return prompt
    subject = f"{trigger} {lora.metadata.get('class_word') or ''}".strip()
    return f"{subject}, {prompt}" if prompt else subject


def size_multiple(pipe) -> int:
    """Image sizes must be multiples of this (VAE factor x UNet downsampling)."""
    return int(pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1))


@dataclass
class RunParams:
    """One run's settings (see :meth:`soulid.backends.local.LocalBackend.generate`)."""

    prompt: str
    negative_prompt: str = ""
    width: int = 1024
    height: int = 1024
    steps: int = 30
    guidance: float = 5.0
    seed: int | None = None
    batch: int = 1
    ip_scale: float = 0.8
    controlnet_scale: float = 0.8
    shortcut_scale: float = 1.0
    strength: float = 1.0


def run(key: PipelineKey, params: RunParams, embedding: np.ndarray, *, face_crop: np.ndarray | None = None,
        keypoint_image: np.ndarray | None = None, image: np.ndarray | None = None, mask: np.ndarray | None = None,
        progress: ProgressFn | None = None, interrupt: InterruptFn | None = None) -> tuple[np.ndarray, dict]:
    """Run one generation or edit.

    Args:
        key: pipeline configuration.
        params: prompt, size (px), denoising steps, guidance, seed, scales.
        embedding: ``[512]`` float32 identity embedding of the method's space.
        face_crop: ``[224, 224, 3]`` uint8 aligned face (faceid_plusv2).
        keypoint_image: ``[H, W, 3]`` uint8 IdentityNet condition (instantid), at the output size.
        image: ``[H, W, 3]`` float32 0..1 source for edits (img2img), or None.
        mask: ``[H, W]`` float32 0..1, 1 = repaint (inpaint), or None.

    Returns:
        ``(images [B, H, W, 3] float32 0..1, info)``; info has ``seed``, ``steps``, ``method``.

    Raises:
        Interrupted: the interrupt fired (after a denoising step).
    """
    import torch
    from PIL import Image

    method = key.resolved.method
    mode = "txt2img" if image is None else ("inpaint" if mask is not None else "img2img")
    pipe = get_pipeline(key, mode)
    dev = torch.device(key.device)
    dtype = getattr(torch, key.dtype)
    gen, seed = _generator(params.seed)
    cfg = params.guidance > 1.0
    emb = torch.as_tensor(np.asarray(embedding, np.float32)).reshape(1, 1, 1, -1)
    id_embeds = torch.cat([torch.zeros_like(emb), emb]) if cfg else emb
    pipe.set_ip_adapter_scale(float(params.ip_scale))
    kw = dict(
        prompt=params.prompt, negative_prompt=params.negative_prompt or None,
        num_inference_steps=int(params.steps), guidance_scale=float(params.guidance), generator=gen,
        num_images_per_prompt=int(params.batch), output_type="np",
        ip_adapter_image_embeds=[id_embeds.to(dev, dtype)],
        callback_on_step_end=None,
    )
    m = size_multiple(pipe)
    if image is not None:
        src = np.asarray(image, np.float32)
        h, w = (src.shape[0] // m) * m, (src.shape[1] // m) * m
        src = src[:h, :w]
        kw["image"] = Image.fromarray(to_uint8(src))
        kw["strength"] = float(params.strength)
        if mask is not None:
            kw["mask_image"] = Image.fromarray(to_uint8(np.asarray(mask, np.float32)[:h, :w]))
        width, height = w, h
    else:
        width, height = (params.width // m) * m, (params.height // m) * m
    if mode != "img2img":  # img2img takes its size from the source image
        kw.update(width=width, height=height)
    # Steps actually run: img2img runs int(steps * strength) of them.
    total = int(params.steps) if image is None else max(1, min(int(params.steps), int(params.steps * params.strength)))
    kw["callback_on_step_end"] = _step_callback(total, progress, interrupt, method)
    tokens = None
    try:
        if method == "faceid_plusv2":
            if face_crop is None:
                raise ValueError("faceid_plusv2 needs the aligned face crop")
            layer = pipe.unet.encoder_hid_proj.image_projection_layers[0]
            clip = pipe.prepare_ip_adapter_image_embeds([Image.fromarray(face_crop)], None, dev, int(params.batch), cfg)[0]
            layer.clip_embeds = clip.to(dev, dtype)
            layer.shortcut = True  # "Plus v2": add the ID embedding back after the Resampler
            layer.shortcut_scale = float(params.shortcut_scale)
        else:
            from .instantid import IdentityTokens

            if keypoint_image is None:
                raise ValueError("instantid needs the keypoint image")
            ki = Image.fromarray(np.ascontiguousarray(keypoint_image)).resize((width, height))
            kw["controlnet_conditioning_scale"] = float(params.controlnet_scale)
            if mode == "txt2img":
                kw["image"] = ki
            else:
                kw["control_image"] = ki
            tokens = IdentityTokens(pipe)
            tokens.set(embedding, dev, dtype)
        with torch.inference_mode():
            out = pipe(**kw).images
    finally:
        if tokens is not None:
            tokens.remove()
    images = np.asarray(out, np.float32)
    if image is not None and mask is not None:
        # Keep unmasked pixels exactly: composite over the source.
        mk = np.clip(np.asarray(mask, np.float32)[:height, :width], 0, 1)[None, ..., None]
        images = src[None, :height, :width] * (1 - mk) + images * mk
    return np.clip(images, 0, 1).astype(np.float32), {"seed": seed, "steps": total, "method": method, "mode": mode}
