"""Moodboards: a labelled grid of images with captions (preset, seed, score).

:func:`label_grid` is the shared renderer (the ID photo sheet uses it too):
each image is fitted, aspect kept, into a square tile on a neutral
background, with caption lines under it. Text is drawn with Pillow's
built-in scalable font (``ImageFont.load_default(size=...)``, Pillow >= 10.1),
so no font file ships with the pack.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from .imageio import to_uint8 as _to_uint8

#: Neutral light-grey background (RGB), close to an 18 % grey card lifted for print.
NEUTRAL = (232, 232, 228)
TEXT = (25, 25, 25)
PASS_COLOUR = (30, 130, 60)
FAIL_COLOUR = (190, 40, 40)


@dataclass(frozen=True)
class GridLayout:
    """Geometry of a :func:`label_grid` image, all in px.

    Attributes:
        columns: tiles per row.
        tile: side of the square image area of a tile.
        pad: gap around tiles.
        caption: height of the caption area under each tile.
        head: height of the title band (0 without a title).
    """

    columns: int
    tile: int
    pad: int
    caption: int
    head: int = 0

    def size(self, n: int) -> tuple[int, int]:
        """``(width, height)`` of a grid of ``n`` tiles."""
        rows = max(1, -(-n // self.columns))
        return (self.columns * (self.tile + self.pad) + self.pad,
                self.head + rows * (self.tile + self.caption + self.pad) + self.pad)

    def box(self, i: int) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` of tile ``i``'s image area (x1, y1 exclusive)."""
        r, c = divmod(i, self.columns)
        x = self.pad + c * (self.tile + self.pad)
        y = self.head + self.pad + r * (self.tile + self.caption + self.pad)
        return x, y, x + self.tile, y + self.tile


def to_uint8(img: np.ndarray) -> np.ndarray:
    """``[H, W, C]`` uint8 or float 0..1 -> ``[H, W, 3]`` uint8."""
    a = _to_uint8(img)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return np.ascontiguousarray(a[..., :3])


def fit_tile(img: np.ndarray, side: int, background=NEUTRAL) -> Image.Image:
    """``img`` scaled (Lanczos, aspect kept) to fit a ``side`` x ``side``
    square, centred on ``background``."""
    im = Image.fromarray(to_uint8(img))
    scale = side / max(im.width, im.height)
    im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
    tile = Image.new("RGB", (side, side), background)
    tile.paste(im, ((side - im.width) // 2, (side - im.height) // 2))
    return tile


def label_grid(images: list[np.ndarray], captions: list[list[str | tuple[str, tuple]]], layout: GridLayout,
               title: str = "", background=NEUTRAL, font_size: int | None = None) -> np.ndarray:
    """Render images into a captioned grid.

    Args:
        images: ``[H, W, 3]`` uint8 or float 0..1 each.
        captions: per image, lines of text; a line may be ``(text, (r, g, b))``
            to colour it. Lines that do not fit the caption area are dropped.
        layout: the grid geometry.
        title: optional heading.

    Returns:
        ``[H, W, 3]`` uint8 RGB, of size :meth:`GridLayout.size`.
    """
    w, h = layout.size(len(images))
    sheet = Image.new("RGB", (w, h), background)
    d = ImageDraw.Draw(sheet)
    fs = font_size or max(12, min(28, layout.tile // 16))
    font = ImageFont.load_default(size=fs)
    if title and layout.head:
        d.text((layout.pad, (layout.head - fs - 6) // 2 + layout.pad // 2), title, fill=TEXT,
               font=ImageFont.load_default(size=fs + 6))
    line_h = fs + 4
    for i, img in enumerate(images):
        x0, y0, x1, y1 = layout.box(i)
        sheet.paste(fit_tile(img, layout.tile, background), (x0, y0))
        ty = y1 + 4
        for line in (captions[i] if i < len(captions) else []):
            text, colour = (line if isinstance(line, tuple) else (line, TEXT))
            if ty + line_h > y1 + layout.caption:
                break
            # shorten to the tile width, measured with the real font
            while text and d.textlength(text, font=font) > layout.tile:
                text = text[:-2] + "…" if len(text) > 2 else ""
            d.text((x0, ty), text, fill=colour, font=font)
            ty += line_h
    return np.asarray(sheet)


def caption_lines(preset: str | None = None, seed: int | None = None, score: float | None = None,
                  passed: bool | None = None, extra: str | None = None) -> list:
    """Caption lines for a generated image: preset, seed, score (coloured by pass/fail)."""
    lines: list = []
    if preset:
        lines.append(str(preset))
    if seed is not None:
        lines.append(f"seed {seed}")
    if score is not None:
        verdict = "" if passed is None else ("  pass" if passed else "  FAIL")
        colour = TEXT if passed is None else (PASS_COLOUR if passed else FAIL_COLOUR)
        lines.append((f"score {score:.3f}{verdict}", colour))
    elif passed is not None:
        lines.append(("no face", FAIL_COLOUR))
    if extra:
        lines.append(str(extra))
    return lines


def moodboard(images: list[np.ndarray], entries: list[dict] | None = None, columns: int | None = None,
              tile: int = 384, title: str = "") -> np.ndarray:
    """A labelled grid of images.

    Args:
        images: ``[H, W, 3]`` uint8 or float32 0..1 images (at least one).
        entries: per image, a dict with any of ``preset`` (name, or a dict
            with ``name``), ``seed``, ``score`` (cosine similarity, or a dict
            with ``similarity`` and ``passed``), ``passed``, ``caption``.
        columns: tiles per row (default: about square).
        tile: tile side, px (64..2048).

    Returns:
        ``[H, W, 3]`` uint8 RGB.

    Raises:
        ValueError: no images, or ``tile`` out of range.
    """
    if not len(images):
        raise ValueError("moodboard: no images")
    if not 64 <= tile <= 2048:
        raise ValueError(f"moodboard: tile must be 64..2048 px, not {tile}")
    n = len(images)
    columns = columns or int(np.ceil(np.sqrt(n)))
    columns = max(1, min(columns, n))
    entries = list(entries or [])
    caps = []
    for i in range(n):
        e = entries[i] if i < len(entries) else {}
        preset = e.get("preset")
        if isinstance(preset, dict):
            preset = preset.get("name")
        score, passed = e.get("score"), e.get("passed")
        if isinstance(score, dict):
            passed = score.get("passed", passed)
            score = score.get("similarity")
        caps.append(caption_lines(preset, e.get("seed"), score, passed, e.get("caption")))
    fs = max(12, min(28, tile // 16))
    lines = max((len(c) for c in caps), default=0)
    layout = GridLayout(columns, tile, pad=max(8, tile // 32), caption=max(1, lines) * (fs + 4) + 8,
                        head=(fs + 24) if title else 0)
    return label_grid(images, caps, layout, title=title, font_size=fs)
