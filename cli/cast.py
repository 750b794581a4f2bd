"""``soulid cast | note``: design a character from words (or lock views made
elsewhere) as a Soul ID whose views are checked to be one person, and keep
notes on it in the character library."""
from __future__ import annotations

import argparse
import json
import sys

from ..soul.analysis.registry import ANALYZER_NAMES
from .common import library

#: Backends whose reference-conditioned route draws the angle views.
CAST_BACKENDS = ("higgsfield", "wavespeed", "aurashot")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cast", help="design a new character: front view from words, then 3/4 left, 3/4 right and profile from "
                     "the front; check they are one person and lock them as a Soul ID (origin: cast)",
        description="Exit codes: 0 locked; 1 the views are not one person (the failing view is named with its "
                    "similarity) or a cloud job failed; 2 bad input.")
    p.add_argument("name", help="name of the new Soul ID in the library")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="the character in words (drawn in the front view)")
    src.add_argument("--from-views", nargs="+", metavar="IMAGE",
                     help="views made elsewhere, in order: FRONT [3/4 LEFT] [3/4 RIGHT] [PROFILE]")
    p.add_argument("--backend", default="higgsfield", choices=CAST_BACKENDS,
                   help="route of the angle views: Higgsfield image reference, WaveSpeed Soul image-to-image or "
                        "AuraShot edit (the front view is drawn by --front-backend)")
    p.add_argument("--front-backend", default=None, choices=("higgsfield",),
                   help="draws the front view from the words (default: higgsfield)")
    p.add_argument("--views", type=int, default=4, choices=(2, 3, 4),
                   help="how many views to draw: front, 3/4 left, 3/4 right, profile (default 4)")
    p.add_argument("--attempts", type=int, default=3, help="draws per view before the cast stops (default 3)")
    p.add_argument("--seed", type=int, default=None, help="first seed (default: from the prompt)")
    p.add_argument("--max-usd", type=float, default=None,
                   help="cost cap of the whole cast, redraws included (default: $SOULID_MAX_USD when set)")
    p.add_argument("--analyzer", default="auto", choices=ANALYZER_NAMES)
    p.add_argument("--overwrite", action="store_true", help="replace an existing Soul ID of that name")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_cast)

    p = sub.add_parser("note", help="add a note to a Soul ID's character-library entry (e.g. which lighting works)")
    p.add_argument("name", help="Soul ID name in the library")
    p.add_argument("text", help="the note")
    p.set_defaults(func=cmd_note)


def _out(args, payload: dict, text: str) -> None:
    print(json.dumps(payload) if args.json else text)


def _read_views(paths: list[str]):
    from ..soul.cast import ROLES, CastError
    from ..soul.errors import PhotoError
    from ..soul.imageio import load_photo, safe_label

    if len(paths) > len(ROLES):
        raise CastError(f"--from-views takes at most {len(ROLES)} images (front, 3/4 left, 3/4 right, profile), "
                        f"got {len(paths)}")
    views, sources = [], {}
    for role, path in zip(ROLES, paths):
        try:
            views.append((role, load_photo(path).rgb))
        except PhotoError as e:
            raise CastError(f"--from-views {safe_label(path)}: {e.reason}") from None
        from pathlib import Path

        sources[role] = safe_label(Path(path).name)
    return views, sources


def cmd_cast(args) -> int:
    from ..soul.cast import ROLE_LABELS, CastRecord, NotOnePerson, lock_cast
    from ..soul.imageio import safe_label
    from ..soul.errors import LibraryError
    from ..soul.library import validate_name

    lib = library(args)
    name = validate_name(args.name)
    if lib.exists(name) and not args.overwrite:
        raise LibraryError(f"a Soul ID named {name!r} already exists in {lib.dir}; pass --overwrite to replace it")
    run = None
    try:
        if args.from_views:
            views, sources = _read_views(args.from_views)
            record = CastRecord(backend="views", sources=sources)
        else:
            run = _draw(args)
            if run is None:
                return 1
            views, record = run.views, run.record
        res, chk = lock_cast(views, name, record=record, analyzer=args.analyzer)
    except NotOnePerson as e:
        c = e.check
        payload = {"soul_id": None, "one_person": False, "failing": [v.as_dict() for v in c.failing],
                   "check": c.as_dict(), "error": str(e)}
        if e.record is not None:
            payload["cast"] = e.record.as_dict()
        if args.json:
            print(json.dumps(payload))
        else:
            print(c.text(), file=sys.stderr)
        print(f"soulid: {e}", file=sys.stderr)
        return 1
    path = lib.save(res.soul, overwrite=args.overwrite)
    cast = res.soul.cast
    payload = {"soul_id": {"name": name, "path": str(path), "origin": res.soul.origin,
                           "photos": [p.source for p in res.soul.photos],
                           "threshold": res.report["summary"].get("threshold")},
               "one_person": True, "check": chk.as_dict(), "cast": cast, "warnings": res.warnings,
               "budget": None if run is None else run.budget}
    redrawn = [f"redrawn {ROLE_LABELS.get(d['role'], d['role'])} (seed {d['seed']}): {safe_label(str(d['reason']))}"
               for d in cast.get("redraws", [])]
    text = "\n".join([chk.text(), *redrawn, *(f"warning: {w}" for w in res.warnings),
                      f"locked cast {name!r}: {len(res.soul.photos)} views ({', '.join(p.source for p in res.soul.photos)})"
                      + (f", ${cast['cost_usd']:.2f}" if run is not None else "") + f" -> {path}"])
    _out(args, payload, text)
    return 0


def _draw(args):
    """Draw the views through the backends; None (after printing why) when a cloud job failed."""
    from ..backends.base import get_backend
    from ..backends.cast import cast_views
    from ..backends.engine import Budget, CloudError
    from ..soul.cast import ROLES
    from .common import interrupt_flag, progress_printer
    from .generation import budget

    cap = budget(args)
    edit = get_backend(args.backend)
    front = edit if args.front_backend in (None, args.backend) and args.backend == "higgsfield" \
        else get_backend(args.front_backend or "higgsfield")
    stop, restore = interrupt_flag()
    spend = Budget(cap, "cast budget")
    try:
        return cast_views(edit, args.prompt, front_backend=front, roles=ROLES[:args.views], seed=args.seed,
                          attempts=args.attempts, budget=spend, analyzer=args.analyzer,
                          progress=progress_printer(args.json), interrupt=stop)
    except CloudError as e:
        print(f"soulid: cast {args.name!r}: {e} (spent ${spend.spent:.2f})", file=sys.stderr)
        return None
    finally:
        restore()
        for b in {id(edit): edit, id(front): front}.values():
            b.close()


def cmd_note(args) -> int:
    from ..soul.cast import add_note
    from ..soul.errors import SoulIDError

    lib = library(args)
    soul = lib.load(args.name)
    if not add_note(soul, args.text):
        raise SoulIDError("note: the text is empty")
    lib.save(soul, overwrite=True)
    print(f"{soul.name}: note {len(soul.notes)} saved")
    return 0
