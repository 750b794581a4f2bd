"""``soulid config show | set KEY VALUE | unset KEY``: where the CLI keeps things.

The one setting today is ``library``: point the CLI at ComfyUI's library
(``<ComfyUI>/user/soulid/library``) so that both use the same Soul IDs.
With ``$COMFYUI_PATH`` set that library is found without configuring it.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="show or change where soulid keeps its files (e.g. use ComfyUI's library)")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    s = csub.add_parser("show", help="the library in use and where that choice comes from")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_show)
    s = csub.add_parser("set", help="set KEY (library) to VALUE, e.g. `soulid config set library ~/ComfyUI/user/soulid/library`")
    s.add_argument("key", choices=["library"])
    s.add_argument("value")
    s.set_defaults(func=cmd_set)
    s = csub.add_parser("unset", help="forget KEY (library)")
    s.add_argument("key", choices=["library"])
    s.set_defaults(func=cmd_unset)


def cmd_show(args) -> int:
    from ..soul.library import library_location
    from ..soul.paths import config_dir, data_dir
    from ..soul.settings import load_settings, settings_path

    lib, source = library_location(getattr(args, "library", None))
    info = {
        "library": str(lib),
        "library_source": source,
        "settings_file": str(settings_path()),
        "settings": load_settings(),
        "data_dir": str(data_dir()),
        "config_dir": str(config_dir()),
        "COMFYUI_PATH": os.environ.get("COMFYUI_PATH"),
    }
    if args.json:
        print(json.dumps(info))
    else:
        print(f"library: {lib} (from {source})")
        for k in ("settings_file", "data_dir", "config_dir", "COMFYUI_PATH"):
            print(f"{k}: {info[k] or '-'}")
    return 0


def cmd_set(args) -> int:
    from ..soul.errors import SoulIDError
    from ..soul.settings import set_setting

    p = Path(args.value).expanduser().resolve()
    if p.exists() and not p.is_dir():
        raise SoulIDError(f"library {p}: exists and is not a folder")
    if (p / "main.py").is_file() and (p / "comfy").is_dir():
        p = p / "user" / "soulid" / "library"  # a ComfyUI checkout was named: use its library
    f = set_setting(args.key, str(p))
    print(f"library: {p} (saved in {f})")
    return 0


def cmd_unset(args) -> int:
    from ..soul.settings import set_setting

    f = set_setting(args.key, None)
    print(f"{args.key}: unset (in {f})")
    return 0
