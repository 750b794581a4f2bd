"""Persona LoRA key layouts in the local (diffusers) backend.

A persona LoRA reaches the diffusers pipelines in one of three layouts:

* ``kohya``: ``lora_unet_<module>.lora_down/lora_up/alpha`` (``soulid train
  --provider local`` writes it; :mod:`.training.lora_file`). diffusers'
  ``load_lora_weights`` converts it.
* ``diffusers``: PEFT keys ``unet.<module>.lora_A/lora_B``; loaded as is.
* ``comfyui``: the layout ComfyUI's ``TrainLoraNode`` writes
  (``comfy_extras/nodes_train.py``): keys on the ComfyUI model's own module
  paths, ``diffusion_model.<ldm module>.lora_up.weight`` ``[out, rank]``,
  ``.lora_down.weight`` ``[rank, in x kh x kw]`` (convolutions flattened),
  ``.alpha`` (scale = alpha / rank, as ``comfy.weight_adapter.lora``),
  ``.diff`` (a full weight delta for 1-D weights, the norms) and ``.diff_b``
  (a bias delta). diffusers cannot load it (``Invalid LoRA checkpoint``), and
  its own converter drops ``diff``/``diff_b``; so it is merged here into the
  pipeline's UNet weights exactly as ComfyUI patches them
  (``comfy.lora.calculate_weight``: ``W += strength * alpha / rank *
  (up @ down).reshape(W.shape)``, ``W += strength * diff``, ``b += strength *
  diff_b``). The ldm -> diffusers module names come from diffusers' own
  ``convert_ldm_unet_checkpoint`` for the pipeline's UNet config.

Anything else is refused with :class:`LoRALayoutError`, one message saying
what to do.
"""
from __future__ import annotations

from ...soul.errors import SoulIDError

#: ComfyUI diffusion-model prefix of a TrainLoraNode LoRA's keys.
COMFY_PREFIX = "diffusion_model."
_UP = (".lora_up.weight", ".lora_B.weight")
_DOWN = (".lora_down.weight", ".lora_A.weight")
_OTHER = (".alpha", ".diff", ".diff_b")
_WHAT_TO_DO = ("use it in ComfyUI with Soul ID Apply, or train a diffusers-readable one with "
               "`soulid train NAME --provider local`, or save it in kohya layout (lora_unet_*) and attach that")


class LoRALayoutError(SoulIDError):
    """A persona LoRA whose key layout the local (diffusers) backend cannot use."""


def lora_layout(keys) -> str:
    """``"comfyui"``, ``"kohya"``, ``"diffusers"`` or ``"unknown"`` for a LoRA's tensor names."""
    keys = list(keys)
    if keys and all(k.startswith(COMFY_PREFIX) for k in keys):
        return "comfyui"
    if any(k.startswith(COMFY_PREFIX) for k in keys):
        return "unknown"  # mixed layouts
    if any(k.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")) for k in keys):
        return "kohya"
    if any(k.startswith(("unet.", "text_encoder.", "text_encoder_2.")) for k in keys):
        return "diffusers"
    return "unknown"


def _split(key: str) -> tuple[str, str]:
    """``(ldm module path, kind)`` of a ComfyUI-layout key; kind ``up``/``down``/``alpha``/``diff``/``diff_b``."""
    body = key[len(COMFY_PREFIX):]
    for suffixes, kind in ((_UP, "up"), (_DOWN, "down")):
        for s in suffixes:
            if body.endswith(s):
                return body[: -len(s)], kind
    for s in _OTHER:
        if body.endswith(s):
            return body[: -len(s)], s[1:]
    return body, ""


def ldm_to_diffusers(unet_config: dict, ldm_keys) -> dict[str, str]:
    """ldm (ComfyUI / original SDXL) UNet parameter names -> the diffusers UNet's, for
    ``unet_config`` (a ``UNet2DConditionModel`` config), through diffusers'
    ``convert_ldm_unet_checkpoint`` (the names are carried as the values)."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING, LDM_UNET_KEY, convert_ldm_unet_checkpoint

    names = set(ldm_keys)
    # Keys the converter indexes directly (not with .get): present as placeholders when the LoRA lacks them.
    unet_map = DIFFUSERS_TO_LDM_MAPPING["unet"]
    direct = set(unet_map.get("addition_embed_type", {}).values()) | set(unet_map.get("class_embed_type", {}).values())
    ckpt = {LDM_UNET_KEY + k: k for k in names}
    ckpt.update({LDM_UNET_KEY + k: None for k in direct - names})
    out = convert_ldm_unet_checkpoint(ckpt, dict(unet_config))
    return {v: k for k, v in out.items() if v is not None}


def merge_comfy_lora(unet, state: dict, scale: float = 1.0, where: str = "persona LoRA") -> int:
    """Merge a ComfyUI-layout LoRA (see the module docstring) into a diffusers UNet, in place.

    Args:
        unet: ``diffusers.UNet2DConditionModel`` (any dtype; the maths runs in float32).
        state: the LoRA's tensors (any float dtype).
        scale: LoRA strength (ComfyUI's ``strength_model``).
        where: what to call the LoRA in errors.

    Returns:
        The number of UNet parameters changed.

    Raises:
        LoRALayoutError: a key of another adapter type, a module the UNet does not have,
            or a shape that does not fit; the message says what to do.
    """
    import torch

    modules: dict[str, dict[str, "torch.Tensor"]] = {}
    for k, v in state.items():
        m, kind = _split(k)
        if not kind:
            raise LoRALayoutError(f"{where}: key {k[:120]!r} is not a LoRA/diff key the local backend can apply; "
                                  + _WHAT_TO_DO)
        modules.setdefault(m, {})[kind] = v
    wanted = {f"{m}.weight" for m, p in modules.items() if {"up", "down", "diff"} & set(p)}
    wanted |= {f"{m}.bias" for m, p in modules.items() if "diff_b" in p}
    names = ldm_to_diffusers(unet.config, wanted)
    params = dict(unet.named_parameters())
    missing = sorted(k for k in wanted if names.get(k) not in params)
    if missing:
        raise LoRALayoutError(
            f"{where}: {len(missing)} of its {len(wanted)} ComfyUI module weights have no counterpart in this "
            f"diffusers SDXL UNet (e.g. {missing[0]!r}): it was trained on another base; " + _WHAT_TO_DO)
    changed = 0
    with torch.no_grad():
        for m, p in modules.items():
            if ("up" in p) != ("down" in p):
                raise LoRALayoutError(f"{where}: module {m!r} has only one of lora_up / lora_down; " + _WHAT_TO_DO)
            w = params.get(names.get(f"{m}.weight", ""))
            delta = None
            if "up" in p:
                up, down = p["up"].float(), p["down"].float()
                lora = up.flatten(1) @ down.flatten(1)
                alpha = float(p["alpha"]) / down.shape[0] if "alpha" in p else 1.0
                if lora.numel() != w.numel():
                    raise LoRALayoutError(f"{where}: module {m!r} gives a {list(lora.shape)} delta for a "
                                          f"{list(w.shape)} weight; " + _WHAT_TO_DO)
                delta = alpha * lora.reshape(w.shape)
            if "diff" in p:
                if tuple(p["diff"].shape) != tuple(w.shape):
                    raise LoRALayoutError(f"{where}: '{m}.diff' is {list(p['diff'].shape)} for a {list(w.shape)} "
                                          "weight; " + _WHAT_TO_DO)
                delta = p["diff"].float() if delta is None else delta + p["diff"].float()
            if delta is not None:
                w.copy_((w.float() + scale * delta.to(w.device)).to(w.dtype))
                changed += 1
            if "diff_b" in p:
                b = params[names[f"{m}.bias"]]
                if tuple(p["diff_b"].shape) != tuple(b.shape):
                    raise LoRALayoutError(f"{where}: '{m}.diff_b' is {list(p['diff_b'].shape)} for a "
                                          f"{list(b.shape)} bias; " + _WHAT_TO_DO)
                b.copy_((b.float() + scale * p["diff_b"].float().to(b.device)).to(b.dtype))
                changed += 1
    return changed


def load_persona_lora(pipe, path: str, scale: float, adapter_name: str) -> str | None:
    """Put one LoRA file on a diffusers SDXL pipeline.

    kohya and diffusers layouts load as a PEFT adapter (returns ``adapter_name``,
    for ``set_adapters``); the ComfyUI layout is merged into the UNet at ``scale``
    (returns None).

    Raises:
        LoRALayoutError: an unknown or unconvertible layout (one message, what to do).
    """
    from pathlib import Path

    from safetensors import safe_open
    from safetensors.torch import load_file

    p = Path(path)
    with safe_open(str(p), framework="pt") as f:
        keys = list(f.keys())
    layout = lora_layout(keys)
    if layout == "comfyui":
        merge_comfy_lora(pipe.unet, load_file(str(p)), scale, where=f"LoRA {p.name}")
        return None
    if layout == "unknown":
        raise LoRALayoutError(f"LoRA {p.name}: its key layout (e.g. {keys[0][:80]!r}) is not one the local backend "
                              "reads (kohya lora_unet_*, diffusers unet.*, or ComfyUI diffusion_model.*); "
                              + _WHAT_TO_DO)
    try:
        pipe.load_lora_weights(str(p.parent), weight_name=p.name, adapter_name=adapter_name)
    except (ValueError, KeyError, RuntimeError) as e:
        raise LoRALayoutError(f"LoRA {p.name} ({layout} layout): diffusers cannot load it "
                              f"({type(e).__name__}: {str(e)[:200]}); " + _WHAT_TO_DO) from None
    return adapter_name
