"""The cast guard on the command line.

* ``soulid guard --soul A --soul B [--soul C] FILES... [--json]``: every face
  of each image (or of a video's sampled frames) is assigned to one of the
  Soul IDs and checked against that Soul ID's own threshold
  (:mod:`soulid.soul.cast_guard`). ``--json`` prints a list with one object
  per file. (The ``guard`` sub-command is registered in :mod:`.presets`; it
  calls :func:`cmd_cast_guard` when given several ``--soul``.)
* ``soulid cast-edit SCENE --soul A --soul B --backend B --out F.png``: two
  characters in one image through a cloud backend, one identity edit per
  character (:mod:`soulid.backends.cast_edit`), checked by the cast guard.

Exit status: 0 when every character passes in every file, 1 when any
character fails or is missing (or faces are confused), 2 on bad input.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cast-edit", help="two or more Soul IDs in one image: one cloud identity edit per character, "
                                         "every face checked by the cast guard")
    p.add_argument("scene", metavar="SCENE", help="an image with one face per character (group shot, layout...)")
    p.add_argument("--soul", required=True, action="append", metavar="NAME",
                   help="Soul ID in the library, in placement order; repeat per character")
    p.add_argument("--backend", required=True, choices=("higgsfield", "wavespeed", "aurashot"))
    p.add_argument("--out", required=True, metavar="FILE.png")
    p.add_argument("--prompt", default="the same person, same face, same light and pose as the picture",
                   help="wording for every edit (e.g. the scene)")
    p.add_argument("--placement", choices=("left_to_right", "match"), default="left_to_right",
                   help="characters onto the largest faces left to right, or onto the faces the guard assigns")
    p.add_argument("--only-failing", action="store_true", help="edit only the characters that do not pass yet")
    p.add_argument("--strength", type=float, default=0.6, help="edit strength 0..1")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--max-usd", type=float, default=None,
                   help="budget for all edits together (default: $SOULID_MAX_USD when set)")
    p.add_argument("--overwrite", action="store_true", help="replace --out")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_cast_edit)



def cmd_cast_guard(args, library) -> int:
    from ..soul.cast_guard import Cast, check_cast_video
    from ..soul.imageio import load_photo
    from ..soul.guard import VIDEO_EXTENSIONS

    souls = [library.load(n) for n in args.soul]
    cast = Cast(souls, copy_paste_margin=args.copy_paste_margin)
    reports = []
    for item in args.inputs:
        p = Path(item)
        if p.suffix.lower() in VIDEO_EXTENSIONS:
            reports.append(check_cast_video(cast, p, max_frames=args.frames, label=str(item)))
        else:
            reports.append(cast.check_image(load_photo(p).rgb, str(item)))
    if args.json:
        print(json.dumps([r.as_dict() for r in reports], indent=1))
    else:
        print(f"cast: {', '.join(f'{m.name} (threshold {m.threshold:.3f})' for m in cast.members)}; "
              f"analyzer {cast.analyzer.name}")
        print("\n".join(r.text() for r in reports))
    return 0 if all(r.passed for r in reports) else 1


def cmd_cast_edit(args) -> int:
    from ..backends.base import get_backend
    from ..backends.cast_edit import compose_cast_edits
    from ..soul.errors import LibraryError
    from ..soul.imageio import encode_png, load_photo, to_uint8
    from ..soul.library import Library
    from ..soul.paths import atomic_write_bytes
    from .common import interrupt_flag
    from .generation import budget

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise LibraryError(f"{out}: exists (use --overwrite)")
    lib = Library(getattr(args, "library", None))
    souls = [lib.load(n) for n in args.soul]
    scene = load_photo(args.scene).rgb
    stop, restore = interrupt_flag()
    try:
        res = compose_cast_edits(get_backend(args.backend), souls, scene, args.prompt, placement=args.placement,
                                 only_failing=args.only_failing, strength=args.strength, seed=args.seed,
                                 max_usd=budget(args), progress=lambda f, m: print(m, file=sys.stderr),
                                 interrupt=stop)
    finally:
        restore()
    atomic_write_bytes(out, encode_png(to_uint8(res.image)))
    if args.json:
        print(json.dumps(dict(res.as_dict(), path=str(out)), indent=1))
    else:
        print(res.after.text())
        print(f"{len(res.edits)} identity edit(s), ${res.cost_usd:.4f}; written to {out}")
    return 0 if res.after.passed else 1
