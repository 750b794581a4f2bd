"""Moodboards: a labelled grid of images with captions (preset, seed, score).

:func:`label_grid` is the pack's one labelled-grid renderer (the ID photo
sheet and the QA contact sheet of :mod:`soulid.soul.report` use it too):
each image is fitted, aspect kept, into a square tile on a neutral
background, with caption lines under it. Text is drawn with Pillow's
built-in scalable font (``ImageFont.load_default(size=...)``, Pillow >= 10.1),
so no font file ships with the pack.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from .imageio import to_rgb

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


def fit_tile(img: np.ndarray, side: int, background=NEUTRAL) -> Image.Image:
    """``img`` scaled (Lanczos, aspect kept) to fit a ``side`` x ``side``
    square, centred on ``background``."""
    im = Image.fromarray(to_rgb(img))
    scale = side / max(im.width, im.height)
    im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
    tile = Image.new("RGB", (side, side), background)
    tile.paste(im, ((side - im.width) // 2, (side - im.height) // 2))
    return tile


def wrap_text(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    """Split ``text`` into lines no wider than ``width`` px in ``font``
    (breaking at spaces, and inside words longer than a line)."""
    lines: list[str] = []
    cur = ""
    for word in str(text).split():
        trial = f"{cur} {word}" if cur else word
        if draw.textlength(trial, font=font) <= width:
            cur = trial
            continue
        if cur:
            lines.append(cur)
        while draw.textlength(word, font=font) > width and len(word) > 1:
            k = len(word)
            while k > 1 and draw.textlength(word[:k], font=font) > width:
                k -= 1
            lines.append(word[:k])
            word = word[k:]
        cur = word
    if cur:
        lines.append(cur)
    return lines


def _lines(captions, draw, font, width: int, wrap: bool) -> list[tuple[str, tuple]]:
    out = []
    for line in captions:
        text, colour = (line if isinstance(line, tuple) else (line, TEXT))
        if wrap:
            out += [(t, colour) for t in wrap_text(draw, text, font, width)]
        else:
            while text and draw.textlength(text, font=font) > width:  # shorten, measured with the real font
                text = text[:-2] + "…" if len(text) > 2 else ""
            out.append((text, colour))
    return out


def wrapped_height(lines: list, width: int, font_size: int) -> int:
    """Height in px that :func:`label_grid` needs for ``lines`` wrapped to ``width``."""
    d = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    font = ImageFont.load_default(size=font_size)
    return len(_lines(lines, d, font, width, True)) * (font_size + 4) + 8


def label_grid(images: list[np.ndarray | None], captions: list[list[str | tuple[str, tuple]]], layout: GridLayout,
               title: str = "", background=NEUTRAL, font_size: int | None = None, wrap: bool = False,
               frames: list[tuple | None] | None = None, header: list | None = None,
               placeholder: str = "no preview") -> np.ndarray:
    """Render images into a captioned grid: the one labelled-grid renderer of
    the pack (moodboards, the ID photo sheet, the QA contact sheet).

    Args:
        images: ``[H, W, 3]`` uint8 or float 0..1 each; None draws a grey
            box with ``placeholder`` text.
        captions: per image, lines of text; a line may be ``(text, (r, g, b))``
            to colour it. Lines that do not fit the caption area are dropped.
        layout: the grid geometry.
        title: optional heading (drawn in the head band).
        wrap: wrap long caption lines to the tile width (else shorten with "…").
        frames: per image, an RGB colour for a 4 px frame around the tile, or None.
        header: lines under the title (same forms as captions), wrapped to
            the grid width; ``layout.head`` must leave room for them.

    Returns:
        ``[H, W, 3]`` uint8 RGB, of size :meth:`GridLayout.size`.
    """
    w, h = layout.size(len(images))
    sheet = Image.new("RGB", (w, h), background)
    d = ImageDraw.Draw(sheet)
    fs = font_size or max(12, min(28, layout.tile // 16))
    font = ImageFont.load_default(size=fs)
    line_h = fs + 4
    if title and layout.head:
        ty = (layout.head - fs - 6) // 2 + layout.pad // 2 if not header else layout.pad
        d.text((layout.pad, ty), title, fill=TEXT, font=ImageFont.load_default(size=fs + 6))
        ty += fs + 14
        for text, colour in _lines(header or [], d, font, w - 2 * layout.pad, True):
            if ty + line_h > layout.head:
                break
            d.text((layout.pad, ty), text, fill=colour, font=font)
            ty += line_h
    for i, img in enumerate(images):
        x0, y0, x1, y1 = layout.box(i)
        if img is None:
            d.rectangle([x0, y0, x1 - 1, y1 - 1], fill=(205, 205, 202))
            d.text((x0 + 10, (y0 + y1) // 2 - fs // 2), placeholder, fill=(90, 90, 90), font=font)
        else:
            sheet.paste(fit_tile(img, layout.tile, background), (x0, y0))
        colour = frames[i] if frames and i < len(frames) else None
        if colour is not None:
            d.rectangle([x0 - 3, y0 - 3, x1 + 2, y1 + 2], outline=colour, width=4)
        ty = y1 + (6 if frames else 4)
        for text, colour in _lines(captions[i] if i < len(captions) else [], d, font, layout.tile, wrap):
            if ty + line_h > y1 + layout.caption:
                break
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
