"""Conversions between ComfyUI types and the core's numpy arrays.

ComfyUI IMAGE: torch ``[B, H, W, C]`` float32 0..1 (C = 3). The core uses
``[H, W, 3]`` uint8 RGB for analysis and ``[B, H, W, 3]`` float32 0..1 numpy
arrays for generated images.
"""
from __future__ import annotations

import numpy as np
import torch

from ..soul.imageio import to_float01, to_uint8


def image_to_uint8_list(image: torch.Tensor) -> list[np.ndarray]:
    """IMAGE ``[B, H, W, C]`` float 0..1 -> list of ``[H, W, 3]`` uint8."""
    arr = image.detach().cpu().float().clamp(0, 1).numpy()
    if arr.ndim == 3:
        arr = arr[None]
    return [to_uint8(a[..., :3]) for a in arr]


def image_to_float_np(image: torch.Tensor) -> np.ndarray:
    """IMAGE -> ``[B, H, W, 3]`` float32 0..1 numpy."""
    arr = image.detach().cpu().float().clamp(0, 1).numpy()
    if arr.ndim == 3:
        arr = arr[None]
    return np.ascontiguousarray(arr[..., :3], dtype=np.float32)


def np_to_image(arr: np.ndarray) -> torch.Tensor:
    """``[B, H, W, 3]`` or ``[H, W, 3]`` array (uint8, or float 0..1) -> IMAGE."""
    a = np.asarray(arr)
    a = to_float01(a)
    if a.ndim == 3:
        a = a[None]
    return torch.from_numpy(np.ascontiguousarray(a))


def copy_soul(soul):
    """An independent copy of a Soul ID (a ``.soulid`` round trip): nodes
    change the copy, never the upstream output ComfyUI caches and shares."""
    from ..soul.soulfile import SoulID

    return SoulID.from_bytes(soul.to_bytes(), label=soul.name)
