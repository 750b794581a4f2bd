"""``soulid presets | motions | guard | log | idphoto``.

* ``presets [--family F] [--json] [--refresh]``: the style catalog with each
  preset's family, resolution state (Higgsfield style id or "unresolved") and
  local recipe. Reads the 24 h style-list cache; ``--refresh`` fetches the
  lists through the Higgsfield backend (needs its credentials).
* ``motions [--json] [--refresh]``: local camera moves and Higgsfield motions.
* ``guard --soul NAME IMAGE_OR_VIDEO... [--json] [--frames N]``: drift guard
  report; exit status 1 when any image fails. Several ``--soul``: the cast
  guard (:mod:`.cast_guard`).
* ``log NAME [--json] [--moodboard FILE.png]``: the character library log.
* ``idphoto NAME --backend B --out FILE.png``: the 4-in-1 ID photo sheet
  (4 paid generations on a cloud backend).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path



def library(args):
    from ..soul.library import Library

    return Library(getattr(args, "library", None))


def _interrupt_flag():
    from .common import interrupt_flag

    return interrupt_flag()


def _higgsfield_fetch():
    """The Higgsfield backend's authenticated list GET, or (None, reason)."""
    from ..backends.base import get_backend
    from ..soul.errors import SoulIDError

    try:
        hb = get_backend("higgsfield")
    except SoulIDError as e:  # credentials missing...
        return None, str(e)
    return getattr(hb, "get_list", None) or hb._get_list, ""


def register(sub: argparse._SubParsersAction) -> None:
    from ..soul.presets import FAMILIES

    p = sub.add_parser("presets", help="list the style presets, or `presets show NAME` for one")
    p.add_argument("action", nargs="?", choices=("list", "show"), default="list")
    p.add_argument("name", nargs="?", help="preset name or id (with show)")
    p.add_argument("--family", choices=FAMILIES, default=None)
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.add_argument("--long", action="store_true", help="also print each preset's local recipe (as `show` does)")
    p.add_argument("--refresh", action="store_true", help="fetch Higgsfield's style lists now (needs credentials)")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("motions", help="list the motion presets for DoP Animate")
    p.add_argument("--json", action="store_true")
    p.add_argument("--refresh", action="store_true", help="fetch Higgsfield's motions list now (needs credentials)")
    p.set_defaults(func=cmd_motions)

    p = sub.add_parser("guard", help="drift guard: score images or a video's frames against a Soul ID")
    p.add_argument("--soul", required=True, action="append", metavar="NAME",
                   help="Soul ID in the library; repeat for a cast (every face checked against its own Soul ID)")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_VIDEO")
    p.add_argument("--frames", type=int, default=16, help="frames sampled per video (default 16)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--copy-paste-margin", type=float, default=None,
                   help="cast guard: flag a face this much closer to one stored photo than to the centroid")
    p.set_defaults(func=cmd_guard)

    p = sub.add_parser("log", help="show a Soul ID's generation log")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p.add_argument("--moodboard", metavar="FILE.png", help="also write a moodboard of the logged thumbnails")
    p.set_defaults(func=cmd_log)

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


def cmd_presets(args) -> int:
    from ..soul.presets import CACHE_FILE, get_preset, load_presets, read_cache, resolve_remote_ids

    if args.action == "show" and not args.name:
        print("soulid: presets show needs a preset NAME (see `soulid presets`)", file=sys.stderr)
        return 2
    presets = load_presets(args.family)
    note, failed = "", False
    if args.refresh:
        fetch, why = _higgsfield_fetch()
        res = resolve_remote_ids(fetch, load_presets(args.family, with_cached_ids=False), refresh=True)
        presets, note = res.presets, (f"style lists: {res.source}" + (f" ({res.error or why})" if res.error or why else ""))
        failed = fetch is None or bool(res.error)
    elif read_cache(CACHE_FILE, max_age=None) is None:
        note = "style lists not fetched yet: ids unresolved (run `soulid presets --refresh` with Higgsfield credentials)"
    if args.action == "show":
        presets = [get_preset(args.name, presets=presets)]
    if args.json:
        print(json.dumps([p.to_dict() for p in presets], indent=1, ensure_ascii=False))
    else:
        for p in presets:
            state = f"id {p.remote_id}" if p.resolved else "unresolved"
            print(f"{p.name}  [{p.family}]  {state}  aspect {p.aspect}  guidance {p.guidance:g}"
                  + ("  (user)" if p.source != "catalog" else ""))
            if args.long or args.action == "show":
                for k, v in p.recipe().items():
                    if k not in ("aspect", "guidance") and v:
                        print(f"    {k:<9} {v}")
        print(f"{len(presets)} preset(s), {sum(p.resolved for p in presets)} resolved", file=sys.stderr)
    if note:
        print(note, file=sys.stderr)
    if failed:
        print("soulid: presets --refresh: the style lists could not be fetched (see above)", file=sys.stderr)
        return 1
    return 0


def cmd_motions(args) -> int:
    from ..soul.motions import list_motions, local_moves, provider_names

    fetch, why = _higgsfield_fetch() if args.refresh else (None, "")
    motions, source, err = list_motions(fetch, refresh=args.refresh)
    if args.json:
        print(json.dumps([m.to_dict() for m in motions], indent=1, ensure_ascii=False))
    else:
        moves = local_moves()
        for m in motions:
            if m.remote_id:
                state = f"= {m.remote_name} (id {m.remote_id})"
            elif m.name in moves:  # offline: the static mapping, ids after --refresh
                state = "= " + " / ".join(provider_names(moves[m.name])) + " (id after --refresh)"
            else:
                state = "unresolved"
            print(f"{m.name:<18} [{m.kind}]  {state}  {m.description}")
    if args.refresh or source == "offline":
        print(f"motions list: {source}" + (f" ({err or why})" if err or why else ""), file=sys.stderr)
    return 0


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

    stop, restore = _interrupt_flag()
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
