"""``soulid guard --soul A --soul B [--soul C] FILES... [--json]``: the cast guard.

Every face of each image (or of a video's sampled frames) is assigned to one
of the Soul IDs and checked against that Soul ID's own threshold
(:mod:`soulid.soul.cast_guard`). ``--json`` prints a list with one object per
file. Exit status: 0 when every character passes in every file, 1 when any
character fails or is missing (or faces are confused), 2 on bad input.
"""
from __future__ import annotations

import json
from pathlib import Path



def cmd_cast_guard(args, library) -> int:
    from ..soul.cast_guard import Cast, check_cast_video
    from ..soul.imageio import load_photo
    from .presets import VIDEO_SUFFIXES

    souls = [library.load(n) for n in args.soul]
    cast = Cast(souls, copy_paste_margin=args.copy_paste_margin)
    reports = []
    for item in args.inputs:
        p = Path(item)
        if p.suffix.lower() in VIDEO_SUFFIXES:
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
