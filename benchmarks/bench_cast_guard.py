"""Benchmark: the cast guard on composite scenes of real photos.

Takes any folder with one sub-folder of photos per person (the fixture faces
by default; your own cast works the same). For every person with two or more
usable photos, the most distinct photo (lowest similarity to the others) is
held out for the scenes and a Soul ID is built from the rest through the real
create path. Scenes are pasted side by side with Pillow:

* ``pair``: two members side by side, in both orders (every ordered pair);
* ``trio``: three members (one order per combination);
* ``stranger``: a member next to a person who is not in the cast, which must
  name the other member missing and the stranger as an unknown face;
* ``duplicate``: one member's face twice, which must name the other member
  missing and flag identity confusion.

It reports assignment accuracy (member faces given to the right Soul ID and
passing), scene pass rate, missing and confusion detection, time per image,
and the copy-paste score of faces pasted from a stored photo versus held-out
photos (the margin :data:`soulid.soul.cast_guard.COPY_PASTE_MARGIN` comes
from this split). ``--markdown`` prints the tables for docs/cast-guard.md.

    python benchmarks/bench_cast_guard.py [--photos DIR] [--analyzer dlib] [--max-pairs N] [--markdown]
"""
from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PHOTOS = REPO.parent / "shared" / "fixtures" / "faces"
SKIP_FOLDERS = {"group", "hard"}


def composite(panels: list[np.ndarray], height: int = 420) -> np.ndarray:
    """``[H, W, 3]`` uint8 photos side by side, each scaled to ``height``, on grey."""
    ims = [Image.fromarray(p) for p in panels]
    ims = [im.resize((max(1, round(im.width * height / im.height)), height), Image.LANCZOS) for im in ims]
    canvas = Image.new("RGB", (sum(i.width for i in ims) + 20 * (len(ims) + 1), height + 40), (128, 128, 128))
    x = 20
    for im in ims:
        canvas.paste(im, (x, 20))
        x += im.width + 20
    return np.asarray(canvas)


def load_people(root: Path, analyzer) -> dict[str, list[tuple[str, np.ndarray, np.ndarray]]]:
    """Per person, ``(file name, rgb, embedding of the largest face)`` of each usable photo."""
    from soulid.soul.errors import PhotoError
    from soulid.soul.imageio import downscale, iter_photo_paths, load_photo

    people = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in SKIP_FOLDERS):
        rows = []
        for p in iter_photo_paths([d]):
            try:
                rgb = downscale(load_photo(p).rgb, 1024)
            except PhotoError:
                continue
            f = analyzer.largest_face(rgb)
            if f is not None:
                rows.append((p.name, rgb, f.embedding))
        if rows:
            people[d.name] = rows
    return people


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def split(rows):
    """Hold out the most distinct photo (lowest best similarity to the others)."""
    emb = np.stack([r[2] for r in rows])
    sim = emb @ emb.T
    np.fill_diagonal(sim, -2)
    k = int(np.argmin(sim.max(axis=1)))
    return rows[k], [r for i, r in enumerate(rows) if i != k]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="one sub-folder of photos per person")
    ap.add_argument("--analyzer", default="dlib")
    ap.add_argument("--max-pairs", type=int, default=0, help="cap on ordered pairs (0 = all)")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()

    from soulid.soul.analysis import get_analyzer
    from soulid.soul.cast_guard import Cast
    from soulid.soul.create import create_soul_id

    az = get_analyzer(args.analyzer)
    people = load_people(args.photos, az)
    cast_people = {n: rows for n, rows in people.items() if len(rows) >= 2}
    souls, held, stored = {}, {}, {}
    for name, rows in cast_people.items():
        h, rest = split(rows)
        res = create_soul_id([(r[0], r[1]) for r in rest], name, analyzer=az.name, workers=1)
        if res.soul is None:
            continue
        souls[name], held[name], stored[name] = res.soul, h, rest
    names = sorted(souls)
    if len(names) < 2:
        raise SystemExit(f"{args.photos}: need two people with two or more usable photos each")

    counts = {k: [0, 0] for k in ("assigned", "pair_pass", "trio_pass", "missing", "confusion")}
    times = []
    cp_pasted, cp_fresh = [], []

    def run(cast, panels):
        img = composite(panels)
        t = time.perf_counter()
        rep = cast.check_image(img)
        times.append(time.perf_counter() - t)
        return rep

    def score_members(rep, order, key):
        for n in order:
            counts["assigned"][1] += 1
            f = rep.face_of(n)
            counts["assigned"][0] += bool(f is not None and f.soul == n)
        counts[key][1] += 1
        counts[key][0] += rep.passed and [f.soul for f in rep.faces if f.soul] == list(order)

    pairs = list(itertools.permutations(names, 2))
    if args.max_pairs:
        pairs = pairs[: args.max_pairs]
    for a, b in pairs:
        cast = Cast([souls[a], souls[b]])
        score_members(run(cast, [held[a][1], held[b][1]]), [a, b], "pair_pass")
        for s in [n for n in people if n not in (a, b)]:
            rep = run(cast, [held[a][1], (held[s] if s in held else people[s][0])[1]])
            counts["missing"][1] += 1
            counts["missing"][0] += rep.missing == [b] and rep.unknown_faces >= 1
        rep = run(cast, [held[a][1], held[a][1]])
        counts["confusion"][1] += 1
        counts["confusion"][0] += b in rep.missing and any(c["kind"] == "closer_to_other" and c["other"] == a
                                                          for c in rep.confusions)
        # copy-paste: a face pasted from one of a's stored photos vs a's held-out photo
        if len(stored[a]) >= 2:
            for ph in stored[a]:
                f = run(cast, [ph[1], held[b][1]]).face_of(a)
                if f is not None and f.copy_paste is not None:
                    cp_pasted.append((a, ph[0], f.copy_paste))
            f = run(cast, [held[a][1], held[b][1]]).face_of(a)
            if f is not None and f.copy_paste is not None:
                cp_fresh.append((a, held[a][0], f.copy_paste))
    for trio in itertools.combinations(names, 3):
        cast = Cast([souls[n] for n in trio])
        score_members(run(cast, [held[n][1] for n in trio]), list(trio), "trio_pass")

    def pct(k):
        ok, n = counts[k]
        return f"{ok}/{n} ({100 * ok / n:.0f}%)" if n else "-"

    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{_cpu_name()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, " \
              f"Python {platform.python_version()}"
    lines = [f"Cast guard benchmark ({az.name}), {when}; {machine}",
             f"cast members: {', '.join(f'{n} ({len(stored[n])} stored, held out {held[n][0]})' for n in names)}",
             "",
             "| measure | result |", "|---|---|",
             f"| assignment accuracy (member faces to the right Soul ID, passing) | {pct('assigned')} |",
             f"| two-person scenes passed (both orders) | {pct('pair_pass')} |",
             f"| three-person scenes passed | {pct('trio_pass')} |",
             f"| missing detection (member replaced by a stranger) | {pct('missing')} |",
             f"| confusion detection (one face duplicated) | {pct('confusion')} |",
             f"| time per image (median / max) | {statistics.median(times):.2f} s / {max(times):.2f} s "
             f"over {len(times)} images |"]
    if cp_pasted and cp_fresh:
        pv, fv = [c for *_, c in cp_pasted], [c for *_, c in cp_fresh]
        lines += ["", "| copy-paste score | n | min | median | max |", "|---|---|---|---|---|",
                  f"| face pasted from a stored photo | {len(pv)} | {min(pv):+.4f} | {statistics.median(pv):+.4f} "
                  f"| {max(pv):+.4f} |",
                  f"| held-out photo of the same person | {len(fv)} | {min(fv):+.4f} | "
                  f"{statistics.median(fv):+.4f} | {max(fv):+.4f} |"]
        from soulid.soul.cast_guard import COPY_PASTE_MARGIN, DEFAULT_COPY_PASTE_MARGIN

        m = COPY_PASTE_MARGIN.get(az.name, DEFAULT_COPY_PASTE_MARGIN)
        lines.append(f"\nmargin {m:+.4f}: pasted faces flagged {sum(v > m for v in pv)}/{len(pv)}, "
                     f"held-out photos flagged {sum(v > m for v in fv)}/{len(fv)}")
    print("\n".join(lines if args.markdown else [ln.replace("| ", "").replace(" |", "") for ln in lines]))


if __name__ == "__main__":
    main()
