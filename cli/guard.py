"""``soulid guard --soul NAME IMAGE_OR_VIDEO... [--json] [--frames N]``: the
drift guard report; exit status 1 when any image fails. Several ``--soul``:
the cast guard (:mod:`.cast_guard`), every face against its own Soul ID.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import library


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("guard", help="drift guard: score images or a video's frames against a Soul ID")
    p.add_argument("--soul", required=True, action="append", metavar="NAME",
                   help="Soul ID in the library; repeat for a cast (every face checked against its own Soul ID)")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_VIDEO")
    p.add_argument("--frames", type=int, default=16, help="frames sampled per video (default 16)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--copy-paste-margin", type=float, default=None,
                   help="cast guard: flag a face this much closer to one stored photo than to the centroid")
    p.set_defaults(func=cmd_guard)


def cmd_guard(args) -> int:
    from ..soul.guard import VIDEO_EXTENSIONS, check_images, check_video
    from ..soul.imageio import load_photo

    if len(args.soul) > 1:
        from .cast_guard import cmd_cast_guard

        return cmd_cast_guard(args, library(args))
    soul = library(args).load(args.soul[0])
    reports = []
    images, labels = [], []
    for item in args.inputs:
        p = Path(item)
        if p.suffix.lower() in VIDEO_EXTENSIONS:
            rep = check_video(soul, p, max_frames=args.frames)
            for e in rep.entries:
                e.label = f"{p.name} {e.label}"
            reports.append(rep)
        else:
            images.append(load_photo(p).rgb)
            labels.append(p.name)
    if images:
        reports.insert(0, check_images(soul, images, labels))
    if args.json:
        out = [r.as_dict() for r in reports]
        print(json.dumps(out[0] if len(out) == 1 else out, indent=1))
    else:
        print("\n".join(r.text() for r in reports))
    return 0 if all(r.all_passed for r in reports) else 1
