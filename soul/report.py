"""The QA sheet: every photo of a set with its rating and full reasons, under
a header with the counts per rating, the verdict and why, the pose coverage,
the warnings and the identity check, as an image (PNG / JPEG / ComfyUI IMAGE)
or a self-contained HTML page.

Both come from one model, :class:`QASheet` (:func:`sheet_from_result`,
:func:`sheet_from_soul`); the image is drawn by the pack's one labelled-grid
renderer, :func:`soulid.soul.grid.label_grid`, with Pillow's built-in
scalable font (Pillow >= 10.1), so no font file ships with the pack.
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .grid import GridLayout, label_grid, wrapped_height

#: Tile frame colour per rating (RGB).
RATING_COLOURS = {
    "perfect": (46, 160, 67),
    "good": (56, 132, 220),
    "poor": (200, 130, 0),
    "rejected": (210, 50, 50),
    "excluded": (120, 120, 120),
}
TEXT, MUTED, WARN = (25, 25, 25), (70, 70, 70), (170, 80, 0)
#: Caption font size on a 256 px tile, px (readable at 100 % zoom).
FONT_SIZE = 15


@dataclass
class SheetEntry:
    """One tile: a thumbnail (``[h, w, 3]`` uint8 or None), a label, rating,
    reasons, and the photo's similarity to the set (cosine) when measured."""

    thumb: np.ndarray | None
    label: str
    rating: str
    reasons: list[str]
    excluded: bool = False
    similarity: float | None = None

    @property
    def state(self) -> str:
        return self.rating + (" (excluded)" if self.excluded else "")

    @property
    def colour(self) -> tuple:
        return RATING_COLOURS["excluded" if self.excluded else self.rating]


@dataclass
class QASheet:
    """What a QA sheet shows: a title, the set summary (as
    :func:`soulid.soul.create.summarise` makes it) and one entry per photo."""

    title: str
    entries: list[SheetEntry]
    summary: dict = field(default_factory=dict)
    character: list[str] = field(default_factory=list)
    #: The person's same-person threshold (cosine), the one ``show``, ``score``
    #: and ``guard`` use; None when the sheet has no Soul ID.
    threshold: float | None = None

    def header(self) -> list[tuple[str, tuple]]:
        """The header lines, ``(text, rgb)``: counts, verdict and why, poses,
        identity check, warnings, and the character-library entry (cast
        prompt, views, cross-view similarity, notes) when there is one."""
        s = self.summary or {}
        out: list[tuple[str, tuple]] = []
        if not s:
            return [(f"{len(self.entries)} photo(s); no QA summary stored", MUTED)]
        r = s.get("ratings", {})
        out.append((f"{s.get('photos', len(self.entries))} photos: {s.get('accepted', 0)} accepted, "
                    f"{s.get('rejected', 0)} rejected, {s.get('excluded', 0)} excluded  |  "
                    + ", ".join(f"{k} {r.get(k, 0)}" for k in ("perfect", "good", "poor", "rejected")), TEXT))
        why = "; ".join(s.get("verdict_reasons") or [])
        out.append((f"Verdict: {s.get('verdict', '?')}" + (f": {why}" if why else ""), TEXT))
        poses = s.get("angle_coverage") or {}
        if poses:
            out.append(("Pose coverage: " + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in poses.items()), TEXT))
        o = s.get("outliers") or {}
        if o.get("checked") and o.get("method") == "pairwise":
            out.append((f"Identity: the 2 photos are {o['similarity']:.3f} similar (same-person threshold "
                        f"{o['threshold']:.3f}): " + ("FAILED" if o.get("pairwise_failed") else "passed"),
                        WARN if o.get("pairwise_failed") else TEXT))
        elif o.get("checked"):
            flagged = o.get("outliers") or []
            txt = ", ".join(f"{f['photo']} {f['similarity']:.3f}" for f in flagged) or "none"
            out.append((f"Identity outliers (similarity to the set vs threshold {o.get('threshold', 0):.3f}): {txt}",
                        WARN if flagged else TEXT))
        elif o:
            out.append((f"Identity check: not run ({o.get('reason', '')})", MUTED))
        if self.threshold is not None:
            out.append((f"Same-person threshold {self.threshold:.3f} (what show, score and guard use)", TEXT))
        out += [(f"Warning: {w}", WARN) for w in s.get("warnings", [])]
        out += [(f"Character: {line}", TEXT) for line in self.character]
        return out

    def captions(self, e: SheetEntry) -> list[tuple[str, tuple]]:
        lines = [(e.label, TEXT), (e.state, e.colour)]
        thr = (self.summary.get("outliers") or {}).get("threshold")
        if e.similarity is not None and thr is not None:
            if e.similarity >= 0.9999:  # the medoid itself
                lines.append(("reference photo: the others are compared to it", MUTED))
            else:
                lines.append((f"similar to the reference {e.similarity:.3f} (outlier below {thr:.3f})",
                              WARN if e.similarity < thr else MUTED))
        return lines + [(f"- {r}", MUTED) for r in e.reasons]


def _decode(jpeg: bytes | None) -> np.ndarray | None:
    if not jpeg:
        return None
    try:
        return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    except OSError:
        return None


def _entry(d: dict, thumb: np.ndarray | None) -> SheetEntry:
    sim = (d.get("metrics") or {}).get("similarity_to_medoid")
    return SheetEntry(thumb, Path(d["path"]).name, d["rating"], list(d.get("reasons", [])), bool(d.get("excluded")), sim)


def sheet_from_result(result, title: str = "") -> QASheet:
    """The sheet of a :class:`~soulid.soul.create.CreateResult` (all photos,
    rejected and excluded ones with their thumbnails too)."""
    entries = [_entry(d, _decode(p.thumbnail)) for d, p in zip(result.report["photos"], result.photos)]
    s = result.report.get("summary", {})
    return QASheet(title or f"Soul ID QA: {s.get('verdict', '')}", entries, s,
                   threshold=_person_threshold(getattr(result, "soul", None)))


def _person_threshold(soul) -> float | None:
    ident = next(iter(soul.analyzers.values()), None) if soul is not None and soul.analyzers else None
    return None if ident is None else float(ident.threshold)


def sheet_from_soul(soul) -> QASheet:
    """The sheet of a saved :class:`~soulid.soul.soulfile.SoulID`, from its
    stored QA report and the thumbnails kept with it (``qa/<n>.jpg``). Soul
    IDs made before those thumbnails were kept fall back to their accepted
    photos; the others then show a placeholder."""
    stored = {p.source: p for p in soul.photos}
    entries = []
    for d in soul.qa_report.get("photos", []):
        thumb = _decode(soul.extra_files.get(d.get("thumb") or ""))
        if thumb is None and not d.get("excluded"):
            sp = stored.get(Path(d["path"]).name)
            if sp is not None:
                im = Image.open(io.BytesIO(sp.jpeg)).convert("RGB")
                im.thumbnail((256, 256))
                thumb = np.asarray(im)
        entries.append(_entry(d, thumb))
    if not entries:  # a Soul ID without a report: its photos only
        entries = [SheetEntry(_decode(p.jpeg), p.source, p.rating, []) for p in soul.photos]
    s = soul.qa_report.get("summary", {})
    from .cast import character_lines

    return QASheet(f"Soul ID {soul.name}: {s.get('verdict', 'no QA summary')}", entries, s, character_lines(soul),
                   threshold=_person_threshold(soul))


def sheet_layout(sheet: QASheet, columns: int = 5, tile: int = 256) -> GridLayout:
    """The geometry :func:`render_png` uses: the head fits the wrapped header,
    each caption area the longest wrapped caption (every reason in full)."""
    columns = max(1, min(columns, len(sheet.entries) or 1))
    pad = 14
    caption = max([wrapped_height(sheet.captions(e), tile, FONT_SIZE) for e in sheet.entries]
                  + [3 * (FONT_SIZE + 4)])
    width = columns * (tile + pad) + pad
    head = pad + FONT_SIZE + 20 + wrapped_height(sheet.header(), width - 2 * pad, FONT_SIZE)
    return GridLayout(columns=columns, tile=tile, pad=pad, caption=caption, head=head)


def render_png(sheet: QASheet, columns: int = 5, tile: int = 256) -> np.ndarray:
    """The sheet as one ``[H, W, 3]`` uint8 RGB image: the header, then one
    tile per photo (grid :func:`sheet_layout`) framed in its rating's colour
    with its name, rating, similarity and every reason wrapped to the tile width."""
    layout = sheet_layout(sheet, columns, tile)
    return label_grid([e.thumb for e in sheet.entries], [sheet.captions(e) for e in sheet.entries], layout,
                      title=sheet.title, background=(250, 250, 248), font_size=FONT_SIZE, wrap=True,
                      frames=[e.colour for e in sheet.entries], header=sheet.header())


def render_html(sheet: QASheet) -> str:
    """The sheet as a self-contained HTML page (thumbnails inlined as base64
    JPEG): the same header lines and per-photo facts as :func:`render_png`."""
    esc = html.escape

    def css(rgb):
        return "#%02x%02x%02x" % rgb

    head = "".join(f'<li style="color:{css(c)}">{esc(t)}</li>' for t, c in sheet.header())
    cards = []
    for e in sheet.entries:
        if e.thumb is not None:
            buf = io.BytesIO()
            Image.fromarray(e.thumb).save(buf, format="JPEG", quality=85)
            img = f'<img alt="{esc(e.label)}" src="data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode()}">'
        else:
            img = '<div class="ph">no preview</div>'
        lines = "".join(f'<li style="color:{css(c)}">{esc(t.removeprefix("- "))}</li>' for t, c in sheet.captions(e)[2:])
        cards.append(
            f'<figure style="border-color:{css(e.colour)}">{img}<figcaption><b>{esc(e.label)}</b>'
            f'<div class="state" style="color:{css(e.colour)}">{esc(e.state)}</div><ul>{lines}</ul>'
            "</figcaption></figure>"
        )
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{esc(sheet.title)}</title><style>"
        "body{font:15px/1.45 system-ui,sans-serif;margin:2em;background:#fafaf8;color:#191919}"
        "header ul{list-style:none;padding:0}main{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:16px}"
        "figure{margin:0;border:4px solid;border-radius:6px;padding:8px;background:#fff}"
        "figure img{width:100%;height:auto;display:block}.ph{height:200px;background:#ccc;display:flex;"
        "align-items:center;justify-content:center}.state{font-weight:bold}figcaption ul{padding-left:1.1em;margin:.3em 0}"
        f"</style></head><body><header><h1>{esc(sheet.title)}</h1><ul>{head}</ul></header>"
        f"<main>{''.join(cards)}</main></body></html>\n"
    )


def encode_sheet(sheet: QASheet, suffix: str) -> bytes:
    """The sheet as the bytes of a ``.png``, ``.jpg``/``.jpeg`` or ``.html``/``.htm`` file.

    Raises:
        ValueError: another suffix (naming the ones accepted).
    """
    suffix = suffix.lower()
    if suffix in (".html", ".htm"):
        return render_html(sheet).encode("utf-8")
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(suffix)
    if fmt is None:
        raise ValueError(f"QA sheet: cannot write {suffix or 'a file without a suffix'}; use .png, .jpg or .html")
    buf = io.BytesIO()
    Image.fromarray(render_png(sheet)).save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


# Older names, kept for callers outside the CLI.
def entries_from_result(result) -> list[SheetEntry]:
    """Entries of :func:`sheet_from_result`."""
    return sheet_from_result(result).entries


def entries_from_soul(soul) -> list[SheetEntry]:
    """Entries of :func:`sheet_from_soul`."""
    return sheet_from_soul(soul).entries


def contact_sheet(entries: list[SheetEntry], columns: int = 5, tile: int = 256, title: str = "",
                  summary: dict | None = None) -> np.ndarray:
    """:func:`render_png` of entries (``[H, W, 3]`` uint8)."""
    return render_png(QASheet(title, entries, summary or {}), columns, tile)


def html_report(entries: list[SheetEntry], title: str, summary: dict | None = None) -> str:
    """:func:`render_html` of entries."""
    return render_html(QASheet(title, entries, summary or {}))
