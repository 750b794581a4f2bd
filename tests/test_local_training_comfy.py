"""The persona LoRA file loads through ComfyUI's own LoRA loader: on an
in-memory tiny ComfyUI SDXL model (the tiny test UNet's architecture in
ComfyUI's layout), ``comfy.lora.model_lora_keys_unet`` + ``comfy.lora.load_lora``
match every key of the file, and each patch has the target weight's shape.

Needs ``$COMFYUI_PATH`` (a ComfyUI checkout); skipped with the reason otherwise."""
from __future__ import annotations

import importlib.util
import os
import sys

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("peft")
torch = pytest.importorskip("torch")

if importlib.util.find_spec("comfy") is None and not os.environ.get("COMFYUI_PATH"):
    pytest.skip("ComfyUI is not importable and COMFYUI_PATH is not set (a ComfyUI checkout)", allow_module_level=True)

import local_tiny_models as tiny  # noqa: E402

#: The tiny test UNet (local_tiny_models._unet_kwargs) in ComfyUI's UNetModel terms.
TINY_COMFY_UNET = dict(
    image_size=16, in_channels=4, out_channels=4, model_channels=32, num_res_blocks=[1, 1], channel_mult=[1, 2],
    transformer_depth=[0, 1], transformer_depth_output=[0, 0, 1, 1], transformer_depth_middle=1,
    num_head_channels=16, context_dim=tiny.CROSS, adm_in_channels=80, use_linear_in_transformer=True,
    use_spatial_transformer=True, legacy=False, num_classes="sequential", use_temporal_attention=False,
)


@pytest.fixture(scope="module")
def comfy():
    root = os.environ.get("COMFYUI_PATH")
    before = set(sys.modules)
    added = bool(root) and importlib.util.find_spec("comfy") is None
    if added:
        sys.path.append(root)
    try:
        from comfy.cli_args import args

        args.cpu = True
        import comfy.lora
        import comfy.supported_models
    except ImportError as e:
        pytest.skip(f"ComfyUI at {root} does not import here: {e}")
    yield comfy
    base = os.path.realpath(root) if root else None
    for name in set(sys.modules) - before:
        f = getattr(sys.modules[name], "__file__", None) or ""
        if base and os.path.realpath(f).startswith(base + os.sep):
            del sys.modules[name]
    if added:
        sys.path.remove(root)


def test_every_key_matched_by_comfyui_lora_loader(comfy):
    from safetensors.torch import load

    data, dunet = tiny.persona_lora_bytes()
    lora = load(data)
    cfg = comfy.supported_models.SDXL(dict(TINY_COMFY_UNET))
    model = cfg.get_model({}, "", device="cpu")
    key_map = comfy.lora.model_lora_keys_unet(model, {})
    patches = comfy.lora.load_lora(lora, key_map, log_missing=False)
    modules = {k[: -len(".lora_down.weight")] for k in lora if k.endswith(".lora_down.weight")}
    assert len(modules) == 4 * sum(1 for n, _ in dunet.named_modules() if n.endswith((".attn1", ".attn2")))
    matched = {m for m in modules if m in key_map}
    assert matched == modules, sorted(modules - matched)[:5]
    assert len(patches) == len(modules)
    sd = model.state_dict()
    for m in modules:
        target = key_map[m]
        w = sd[target]
        up, down = lora[f"{m}.lora_up.weight"], lora[f"{m}.lora_down.weight"]
        assert (up.shape[0], down.shape[1]) == tuple(w.shape[:2]), (m, target)
        assert target in patches
