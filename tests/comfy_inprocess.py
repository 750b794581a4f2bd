"""ComfyUI imported in-process for node tests, and tiny ComfyUI models built in memory.

:func:`comfy_modules` imports ComfyUI from ``$COMFYUI_PATH`` (with ``--cpu``
set as its launcher would) and removes its modules, and our node modules,
from ``sys.modules`` afterwards: while ``folder_paths`` is loaded the core
believes it runs inside ComfyUI (:mod:`soulid.soul.paths`).

:func:`tiny_model` builds a real ComfyUI diffusion model from ComfyUI's own
classes (``comfy.supported_models`` config -> ``comfy.model_base`` model ->
``comfy.model_patcher.ModelPatcher``) with a tiny random UNet (about 1.4 M
parameters, no weights on disk), so that LoRA loading runs through exactly
the path a user's checkpoint takes.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from contextlib import contextmanager

import pytest


def need_comfy() -> None:
    """Skip the calling module, with the reason, when ComfyUI is not available."""
    if importlib.util.find_spec("comfy_api") is None and not os.environ.get("COMFYUI_PATH"):
        pytest.skip("comfy_api is not importable and COMFYUI_PATH is not set (a ComfyUI checkout)",
                    allow_module_level=True)


@contextmanager
def comfy_modules():
    """Import ComfyUI for the duration of the block; skips when it does not import."""
    root = os.environ.get("COMFYUI_PATH")
    before = set(sys.modules)
    added = bool(root) and root not in sys.path
    if added:
        sys.path.append(root)

    def from_comfy(mod, base: str) -> bool:
        # Packages without an __init__ (comfy, comfy_api) have no __file__, only __path__.
        files = [getattr(mod, "__file__", None) or ""] + list(getattr(mod, "__path__", None) or [])
        return any(f and os.path.realpath(f).startswith(base + os.sep) for f in files)

    def cleanup():
        base = os.path.realpath(root) if root else None
        # Decide first, then remove: a namespace package's __path__ is recomputed from its parent.
        drop = [name for name in set(sys.modules) - before
                if name.startswith("soulid.nodes") or (base and from_comfy(sys.modules[name], base))]
        for name in drop:
            sys.modules.pop(name, None)
        if added:
            sys.path.remove(root)

    try:
        from comfy.cli_args import args

        args.cpu = True  # before comfy.model_management picks a device
        import comfy.model_management  # noqa: F401
        import comfy_api.latest  # noqa: F401

        _load_core_nodes_module()
    except ImportError as e:
        cleanup()
        pytest.skip(f"ComfyUI at {root} does not import here: {e}")
    try:
        yield
    finally:
        cleanup()


def _load_core_nodes_module() -> None:
    """Make ``import nodes`` give ComfyUI's ``nodes.py`` (KSampler, VAEDecode...).

    Run from the repository root, ``nodes`` would otherwise be this pack's own
    ``nodes/`` folder (the working directory is on ``sys.path``).
    """
    import importlib.util

    import comfy

    path = os.path.join(os.path.dirname(os.path.abspath(list(comfy.__path__)[0])), "nodes.py")
    have = sys.modules.get("nodes")
    if have is not None and os.path.realpath(getattr(have, "__file__", "") or "") == os.path.realpath(path):
        return
    spec = importlib.util.spec_from_file_location("nodes", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["nodes"] = mod
    spec.loader.exec_module(mod)


#: Tiny UNet settings shared by the SD1.5 and SDXL configs (two levels, 32 base channels).
_TINY_UNET = {
    "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
    "legacy": False, "in_channels": 4, "model_channels": 32, "num_res_blocks": [1, 1],
    "channel_mult": [1, 2], "num_head_channels": 16, "use_temporal_resblock": False,
    "use_temporal_attention": False, "context_dim": 64,
}
#: Per architecture, the transformer layout of the real model in miniature: SDXL has
#: no attention at the top level and several blocks deeper down; SD1.5 one block at every level.
_ARCH_UNET = {
    "sdxl": ("SDXL", {"num_classes": "sequential", "adm_in_channels": 2816, "use_linear_in_transformer": True,
                      "transformer_depth": [0, 2], "transformer_depth_output": [0, 0, 2, 2],
                      "transformer_depth_middle": 2}),
    "sd15": ("SD15", {"use_linear_in_transformer": False, "num_heads": -1, "transformer_depth": [1, 1],
                      "transformer_depth_output": [1, 1, 1, 1], "transformer_depth_middle": 1}),
}


def tiny_model(arch: str = "sdxl", seed: int = 0, width: int = 32):
    """A ModelPatcher around a tiny random ComfyUI ``sdxl`` or ``sd15`` model, on the CPU;
    ``width`` is the UNet's base channel count (``model_channels``)."""
    import comfy.model_patcher
    import comfy.supported_models
    import torch

    name, extra = _ARCH_UNET[arch]
    config = getattr(comfy.supported_models, name)({**_TINY_UNET, **extra, "model_channels": width})
    model = config.get_model({}, device="cpu")
    # ComfyUI's ops skip weight initialisation (weights come from a file): fill them.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))


def kohya_lora(model, rank: int = 4, seed: int = 1, scale: float = 0.5) -> dict:
    """A random kohya-format LoRA (``lora_unet_*.lora_up/lora_down/alpha``) on every
    attention projection of ``model``'s UNet: the layout persona trainers write."""
    import torch

    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, w in model.model.state_dict().items():
        if not (k.startswith("diffusion_model.") and k.endswith(".weight") and w.ndim == 2):
            continue
        if not any(f".{p}.weight" in k for p in ("to_q", "to_k", "to_v", "to_out.0")):
            continue
        stem = "lora_unet_" + k[len("diffusion_model."):-len(".weight")].replace(".", "_")
        out[f"{stem}.lora_up.weight"] = torch.randn(w.shape[0], rank, generator=g) * scale
        out[f"{stem}.lora_down.weight"] = torch.randn(rank, w.shape[1], generator=g) * scale
        out[f"{stem}.alpha"] = torch.tensor(float(rank))
    return out


def unet_output(patcher, seed: int = 0):
    """The UNet's output on a fixed random input, with the patcher's patches applied
    (``patch_model``) and removed again afterwards (``unpatch_model``)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 4, 8, 8, generator=g)
    ctx = torch.randn(1, 4, 64, generator=g)
    kw = {"y": torch.randn(1, 2816, generator=g)} if type(patcher.model.model_config).__name__ == "SDXL" else {}
    patcher.patch_model()
    try:
        with torch.no_grad():
            return patcher.model.diffusion_model(x, timesteps=torch.tensor([500.0]), context=ctx, **kw).clone()
    finally:
        patcher.unpatch_model()
