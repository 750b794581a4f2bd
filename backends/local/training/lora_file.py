"""The persona LoRA's file format: kohya-style ``.safetensors`` keys.

Keys, for each adapted UNet projection (diffusers module path ``m``)::

    lora_unet_<m with "." -> "_">.lora_down.weight   [rank, in]    (PEFT lora_A)
    lora_unet_<m with "." -> "_">.lora_up.weight     [out, rank]   (PEFT lora_B)
    lora_unet_<m with "." -> "_">.alpha              []            (scale = alpha / rank)

ComfyUI's LoRA loader maps ``lora_unet_<diffusers key>`` for SDXL
(``comfy.lora.model_lora_keys_unet``) and diffusers' ``load_lora_weights``
converts kohya keys (``_convert_non_diffusers_lora_to_diffusers``); tests
load the file through both. Tensors are stored as float16.
"""
from __future__ import annotations

#: Header metadata (stable fields only, so the same training gives the same bytes).
FORMAT = "soulid-persona-lora"


def peft_to_kohya(state: dict, alpha: float) -> dict:
    """PEFT/diffusers UNet LoRA state dict (``<module>.lora_A.weight`` /
    ``lora_B``) to kohya keys (see the module docstring), float16, contiguous."""
    import torch

    out = {}
    for k, v in state.items():
        for peft_name, kohya_name in ((".lora_A.weight", "lora_down"), (".lora_B.weight", "lora_up")):
            if k.endswith(peft_name):
                mod = k[: -len(peft_name)]
                if mod.startswith("unet."):
                    mod = mod[len("unet."):]
                base = "lora_unet_" + mod.replace(".", "_")
                out[f"{base}.{kohya_name}.weight"] = v.detach().to("cpu", torch.float16).contiguous()
                out[f"{base}.alpha"] = torch.tensor(float(alpha), dtype=torch.float16)
                break
        else:
            raise ValueError(f"unexpected LoRA key {k!r} (expected .lora_A.weight / .lora_B.weight)")
    return dict(sorted(out.items()))


def to_bytes(state: dict, alpha: float, header: dict) -> bytes:
    """The ``.safetensors`` bytes of a PEFT UNet LoRA state dict in kohya keys.

    Args:
        header: string metadata for the file header (only deterministic values).
    """
    from safetensors.torch import save

    meta = {"format": "pt", "soulid_format": FORMAT, **{k: str(v) for k, v in header.items()}}
    return canonical(save(peft_to_kohya(state, alpha), metadata=meta))


def canonical(data: bytes) -> bytes:
    """The same ``.safetensors`` bytes with the JSON header's keys sorted
    (safetensors writes its header from a hash map, in no fixed order), so
    that equal tensors and metadata give equal bytes. Data offsets are unchanged."""
    import json
    import struct

    n = struct.unpack("<Q", data[:8])[0]
    head = json.loads(data[8:8 + n])
    raw = json.dumps(head, sort_keys=True, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data[8 + n:]
