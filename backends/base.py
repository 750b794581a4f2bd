"""Requests, results and the interface every generation backend implements.

Nodes and the CLI build a request, pick a backend by name
(:func:`get_backend`: ``higgsfield | wavespeed | aurashot | local``) and call
one of its methods. Images travel as ``[B, H, W, 3]`` float32 numpy arrays in
0..1 (ComfyUI's IMAGE layout, without torch); videos as files on disk.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from ..soul.soulfile import SoulID

#: Progress callback ``(fraction 0..1 or None, message)`` and interrupt
#: ``() -> bool``: the one signature of :mod:`soulid.soul.progress`.
from ..soul.progress import InterruptFn, ProgressFn  # noqa: E402,F401


@dataclass
class GenerateRequest:
    """Text-to-image with a Soul ID as the face anchor.

    Attributes:
        prompt: what to draw.
        soul: the identity.
        preset: a style preset (name, or an object from the presets module), or None.
        preset_strength: 0..1.
        aspect: aspect ratio ``"W:H"`` (e.g. ``"3:4"``), or None for the default.
        width, height: explicit size in px (overrides ``aspect``), or None.
        quality: provider quality (``"720p" | "1080p"`` for Higgsfield).
        batch: images per call (Higgsfield: 1 or 4).
        seed: deterministic seed, or None for random.
        enhance_prompt: let the provider rewrite the prompt.
        image_reference: ``[H, W, 3]`` float32 0..1 style/pose reference, or None.
        identity_strength: how strongly the face is held, 0..1 (provider-mapped).
        negative_prompt: for backends that take one.
        options: backend-specific extras (method, steps, model_version...).
    """

    prompt: str
    soul: SoulID | None = None
    preset: object | None = None
    preset_strength: float = 1.0
    aspect: str | None = None
    width: int | None = None
    height: int | None = None
    quality: str = "1080p"
    batch: int = 1
    seed: int | None = None
    enhance_prompt: bool = False
    image_reference: np.ndarray | None = None
    identity_strength: float = 1.0
    negative_prompt: str = ""
    options: dict = field(default_factory=dict)


@dataclass
class EditRequest:
    """Image-to-image with identity: ``strength`` 0 keeps the source, 1 restyles freely.

    ``image`` is ``[H, W, 3]`` float32 0..1; ``mask`` ``[H, W]`` float32 0..1
    (1 = repaint) or None.
    """

    image: np.ndarray
    prompt: str
    soul: SoulID | None = None
    strength: float = 0.6
    preset: object | None = None
    preset_strength: float = 1.0
    quality: str = "1080p"
    seed: int | None = None
    mask: np.ndarray | None = None
    negative_prompt: str = ""
    options: dict = field(default_factory=dict)


@dataclass
class AnimateRequest:
    """A still into a clip (DoP). ``image`` / ``end_image``: ``[H, W, 3]`` float32 0..1.

    ``motions``: up to two ``(motion name or id, strength 0..1)`` pairs.
    ``seconds`` / ``fps``: clip length (cloud DoP is fixed at 5 s).
    """

    image: np.ndarray
    prompt: str = ""
    end_image: np.ndarray | None = None
    motions: list[tuple[str, float]] = field(default_factory=list)
    model: str = ""
    seed: int | None = None
    seconds: float = 5.0
    fps: int = 24
    size: tuple[int, int] | None = None
    soul: SoulID | None = None
    enhance_prompt: bool = False
    options: dict = field(default_factory=dict)


@dataclass
class ImageResult:
    """Images from a backend: ``images`` ``[B, H, W, 3]`` float32 0..1."""

    images: np.ndarray
    request_id: str = ""
    cost: dict = field(default_factory=dict)  # {"credits": float, "usd": float}
    files: list[Path] = field(default_factory=list)
    info: dict = field(default_factory=dict)


@dataclass
class VideoResult:
    """A clip from a backend: an MP4 on disk plus its frame rate and size."""

    path: Path
    fps: float
    frames: int
    width: int
    height: int
    request_id: str = ""
    cost: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)


class Backend(Protocol):
    """What a generation backend offers. Unsupported capabilities raise
    :class:`NotImplementedError` with the provider's name."""

    name: str

    def generate(self, req: GenerateRequest, progress: ProgressFn | None = None,
                 interrupt: InterruptFn | None = None) -> ImageResult: ...

    def edit(self, req: EditRequest, progress: ProgressFn | None = None,
             interrupt: InterruptFn | None = None) -> ImageResult: ...

    def animate(self, req: AnimateRequest, progress: ProgressFn | None = None,
                interrupt: InterruptFn | None = None) -> VideoResult: ...


#: backend name -> "module:factory" (relative to this package).
BACKENDS = {
    "higgsfield": "higgsfield:HiggsfieldBackend",
    "wavespeed": "wavespeed:WaveSpeedBackend",
    "aurashot": "aurashot:AuraShotBackend",
    "local": "local:LocalBackend",
}


def get_backend(name: str, **kwargs) -> Backend:
    """Build the backend called ``name``.

    Raises:
        ValueError: unknown backend name.
    """
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {name!r}")
    mod, factory = BACKENDS[name].split(":")
    m = importlib.import_module(f"{__package__}.{mod}")
    return getattr(m, factory)(**kwargs)
