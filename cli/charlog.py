"""``soulid log NAME [--json] [--moodboard FILE.png]``: the character library log."""
from __future__ import annotations

import argparse
import json
import sys

from .common import library


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("log", help="show a Soul ID's generation log")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p.add_argument("--moodboard", metavar="FILE.png", help="also write a moodboard of the logged thumbnails")
    p.set_defaults(func=cmd_log)


def cmd_log(args) -> int:
    from ..soul.charlog import entries, format_entries, log_moodboard
    from ..soul.paths import atomic_write_bytes
    from ..soul.imageio import encode_png

    soul = library(args).load(args.name)
    if args.json:
        print(json.dumps(entries(soul), indent=1, ensure_ascii=False))
    else:
        print(format_entries(soul))
    if args.moodboard:
        atomic_write_bytes(args.moodboard, encode_png(log_moodboard(soul)))
        print(f"moodboard written to {args.moodboard}", file=sys.stderr)
    return 0
