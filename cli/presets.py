"""``soulid presets | motions``.

* ``presets [--family F] [--json] [--refresh]``: the style catalog with each
  preset's family, resolution state (Higgsfield style id or "unresolved") and
  local recipe. Reads the 24 h style-list cache; ``--refresh`` fetches the
  lists through the Higgsfield backend (needs its credentials).
* ``motions [--json] [--refresh]``: local camera moves and Higgsfield motions.
"""
from __future__ import annotations

import argparse
import json
import sys


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
