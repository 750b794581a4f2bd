"""``soulid idphoto NAME --backend B --out FILE.png``: the 4-in-1 ID photo
sheet (4 paid generations on a cloud backend), optionally a new Soul ID from
its four views (``--create``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import interrupt_flag, library


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("idphoto", help="make the 4-in-1 ID photo sheet of a Soul ID through a backend")
    p.add_argument("name")
    p.add_argument("--backend", required=True, choices=("higgsfield", "wavespeed", "aurashot", "local"))
    p.add_argument("--out", required=True, metavar="FILE.png")
    p.add_argument("--prompt", default="", help="extra wording for every view (outfit, hair...)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--create", metavar="NEW_NAME", help="also build a new Soul ID from the sheet's four views")
    p.add_argument("--overwrite", action="store_true", help="replace --out and an existing NEW_NAME")
    p.add_argument("--max-usd", type=float, default=None,
                   help="budget for all four views together (default: $SOULID_MAX_USD when set)")
    p.set_defaults(func=cmd_idphoto)


def cmd_idphoto(args) -> int:
    from ..backends.base import get_backend
    from ..backends.idsheet import view_generator
    from ..soul.create import create_soul_id
    from ..soul.errors import LibraryError
    from ..soul.idsheet import make_id_sheet, sheet_inputs
    from ..soul.imageio import encode_png
    from ..soul.paths import atomic_write_bytes

    lib = library(args)
    soul = lib.load(args.name)
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise LibraryError(f"{out}: exists (use --overwrite)")
    if args.create and lib.exists(args.create) and not args.overwrite:
        raise LibraryError(f"Soul ID {args.create!r} exists (use --overwrite)")
    from .common import budget
    from .generation import PAID

    backend = get_backend(args.backend)
    cap = budget(args) if args.backend in PAID else None
    opts: dict = {}
    view = view_generator(backend, soul, options=opts)
    spent = [0.0]

    def generate_view(req, interrupt=None):
        # the budget covers the four paid views together: each may use what is left
        if cap is not None:
            opts["max_usd"] = max(0.0, cap - spent[0])
        image, facts = view(req, interrupt)
        spent[0] += float((facts.get("cost") or {}).get("usd") or 0.0)
        return image, facts

    if args.backend in PAID:
        print(f"{args.backend}: 4 paid generations" + (f", budget ${cap:.2f} for all four" if cap is not None
              else "; no budget set (--max-usd or $SOULID_MAX_USD)"), file=sys.stderr)

    def progress(frac, msg):
        print(msg, file=sys.stderr)

    stop, restore = interrupt_flag()
    try:
        sheet = make_id_sheet(generate_view, prompt=args.prompt, seed=args.seed, progress=progress, interrupt=stop)
    finally:
        restore()
    atomic_write_bytes(out, encode_png(sheet.image))
    print(f"ID sheet written to {out}")
    if args.create:
        res = create_soul_id(sheet_inputs(sheet, args.create), args.create, analyzer=soul.primary_analyzer)
        if res.soul is None:
            print(f"no Soul ID made from the sheet: {res.report.get('warnings')}", file=sys.stderr)
            return 1
        lib.save(res.soul, overwrite=args.overwrite)
        print(f"Soul ID {args.create!r} created from {len(res.soul.photos)} view(s)")
    return 0
