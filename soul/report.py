"""QA contact sheets: every photo of a set with its rating and reasons, as an
image (PNG / ComfyUI IMAGE) or a self-contained HTML page.

Text is drawn with Pillow's built-in scalable font (Pillow >= 10.1), so no
font file ships with the pack.
"""
from __future__ import annotations

import base64
import html
import io
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

#: Tile border colour per rating (RGB).
RATING_COLOURS = {
    "perfect": (46, 160, 67),
    "good": (56, 132, 220),
    "poor": (230, 160, 20),
    "rejected": (210, 50, 50),
    "excluded": (140, 140, 140),
}


@dataclass
class SheetEntry:
    """One tile: a thumbnail (``[h, w, 3]`` uint8 or None), a label, rating and reasons."""

    thumb: np.ndarray | None
    label: str
    rating: str
    reasons: list[str]
    excluded: bool = False


def _decode(jpeg: bytes | None) -> np.ndarray | None:
    if not jpeg:
        return None
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


def entries_from_result(result) -> list[SheetEntry]:
    """Tiles from a :class:`~soulid.soul.create.CreateResult` (all photos, rejected ones too)."""
    return [
        SheetEntry(_decode(p.thumbnail), Path(p.path).name, p.rating, p.reasons, p.excluded) for p in result.photos
    ]


def entries_from_soul(soul) -> list[SheetEntry]:
    """Tiles from a saved :class:`~soulid.soul.soulfile.SoulID`: stored photos
    with their thumbnails, the others (rejected or excluded at creation) as text tiles."""
    stored = {p.source: p for p in soul.photos}
    out = []
    for e in soul.qa_report.get("photos", []):
        name = Path(e["path"]).name
        sp = stored.get(name)
        thumb = None
        if sp is not None and not e.get("excluded"):
            im = Image.open(io.BytesIO(sp.jpeg)).convert("RGB")
            im.thumbnail((256, 256))
            thumb = np.asarray(im)
        out.append(SheetEntry(thumb, name, e["rating"], e.get("reasons", []), bool(e.get("excluded"))))
    if not out:  # a Soul ID without a report: its photos only
        for p in soul.photos:
            out.append(SheetEntry(_decode(p.jpeg), p.source, p.rating, []))
    return out


def contact_sheet(
    entries: list[SheetEntry], columns: int = 5, tile: int = 256, title: str = ""
) -> np.ndarray:
    """Render tiles into one ``[H, W, 3]`` uint8 RGB image.

    Each tile shows the thumbnail (or a grey box when unreadable) framed in the
    rating's colour, with the file name, rating and up to four reasons below.
    """
    columns = max(1, min(columns, len(entries) or 1))
    font = ImageFont.load_default(size=14)
    bold = ImageFont.load_default(size=16)
    text_h = 118
    pad = 10
    head = 40 if title else 0
    rows = (len(entries) + columns - 1) // columns or 1
    W = columns * (tile + pad) + pad
    H = head + rows * (tile + text_h + pad) + pad
    sheet = Image.new("RGB", (W, H), (250, 250, 248))
    d = ImageDraw.Draw(sheet)
    if title:
        d.text((pad, 10), title, fill=(20, 20, 20), font=ImageFont.load_default(size=22))
    for i, e in enumerate(entries):
        r, c = divmod(i, columns)
        x = pad + c * (tile + pad)
        y = head + pad + r * (tile + text_h + pad)
        colour = RATING_COLOURS["excluded" if e.excluded else e.rating]
        d.rectangle([x - 3, y - 3, x + tile + 2, y + tile + 2], outline=colour, width=4)
        if e.thumb is not None:
            im = Image.fromarray(e.thumb)
            im.thumbnail((tile, tile))
            sheet.paste(im, (x + (tile - im.width) // 2, y + (tile - im.height) // 2))
        else:
            d.rectangle([x, y, x + tile - 1, y + tile - 1], fill=(225, 225, 225))
            d.text((x + 10, y + tile // 2 - 8), "no preview", fill=(90, 90, 90), font=font)
        state = e.rating + (" (excluded)" if e.excluded else "")
        d.text((x, y + tile + 6), e.label[:34], fill=(20, 20, 20), font=bold)
        d.text((x, y + tile + 26), state, fill=colour, font=bold)
        ty = y + tile + 46
        for reason in e.reasons[:4]:
            line = textwrap.shorten(reason, width=40, placeholder="...")
            d.text((x, ty), line, fill=(60, 60, 60), font=font)
            ty += 17
    return np.asarray(sheet)


def html_report(entries: list[SheetEntry], title: str, summary: dict | None = None) -> str:
    """A self-contained HTML page (thumbnails inlined as base64 JPEG)."""
    rows = []
    for e in entries:
        img = ""
        if e.thumb is not None:
            buf = io.BytesIO()
            Image.fromarray(e.thumb).save(buf, format="JPEG", quality=85)
            img = f'<img src="data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode()}" width="160">'
        colour = "#%02x%02x%02x" % RATING_COLOURS["excluded" if e.excluded else e.rating]
        reasons = "".join(f"<li>{html.escape(r)}</li>" for r in e.reasons)
        rows.append(
            f"<tr><td>{img}</td><td>{html.escape(e.label)}</td>"
            f'<td style="color:{colour};font-weight:bold">{html.escape(e.rating)}{" (excluded)" if e.excluded else ""}</td>'
            f"<td><ul>{reasons}</ul></td></tr>"
        )
    summ = ""
    if summary:
        items = "".join(
            f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>"
            for k, v in summary.items()
            if k in ("verdict", "photos", "accepted", "rejected", "excluded", "angle_coverage", "warnings", "threshold")
        )
        summ = f"<ul>{items}</ul>"
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td{vertical-align:top;padding:6px;border-bottom:1px solid #ddd}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>{summ}"
        "<table><tr><th>photo</th><th>file</th><th>rating</th><th>reasons</th></tr>"
        + "".join(rows)
        + "</table></body></html>"
    )
