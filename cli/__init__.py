"""``soulid ...``: the command-line interface, on the same core as the nodes.

Each capability registers its sub-commands from its own module
(:mod:`.identity`, :mod:`.cloud`, :mod:`.local`, :mod:`.presets`), so that one
module per concern holds its argument parsing and output.

Exit codes: 0 success; 1 a job failed; 2 bad input or nothing could be made.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ..soul.errors import SoulIDError

#: Modules that each define ``register(subparsers)``; missing ones are skipped.
COMMAND_MODULES = ("identity", "cloud", "generation", "local", "presets", "workflow", "native")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    p = argparse.ArgumentParser(
        prog="soulid",
        description="Soul ID: build a checked, portable identity from photos and reuse it in every generation.",
    )
    p.add_argument("--version", action="version", version=f"soulid {__version__}")
    p.add_argument("--library", metavar="DIR", help="Soul ID library folder (default: $SOULID_LIBRARY or the per-user data folder)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for mod in COMMAND_MODULES:
        try:
            m = importlib.import_module(f"{__package__}.{mod}")
        except ModuleNotFoundError as e:
            if e.name == f"{__package__}.{mod}":
                continue
            raise
        m.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except SoulIDError as e:
        print(f"soulid: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("soulid: interrupted", file=sys.stderr)
        return 130
