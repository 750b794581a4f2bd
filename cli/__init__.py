"""``soulid ...``: the command-line interface, on the same core as the nodes.

Each capability registers its sub-commands from its own module
(:mod:`.identity`, :mod:`.cloud`, :mod:`.generation`, :mod:`.presets`,
:mod:`.workflow`), so that one module per concern holds its argument parsing
and output.

Exit codes: 0 success; 1 a job failed; 2 bad input or nothing could be made;
130 interrupted (Ctrl-C). A closed output pipe (``soulid jobs | head -1``)
ends quietly.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..soul.errors import Interrupted, SoulIDError

#: Modules that each define ``register(subparsers)``; missing ones are skipped.
COMMAND_MODULES = ("identity", "cloud", "generation", "local", "presets", "guard", "charlog", "idphoto", "workflow",
                   "config", "campaign", "native", "cast", "cast_guard")
#: Python modules of the ``local`` extra: a command that needs one of them
#: and finds it missing ends with one line naming the extra.
LOCAL_MODULES = {"torch", "diffusers", "transformers", "accelerate", "peft", "insightface", "onnxruntime"}


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    p = argparse.ArgumentParser(
        prog="soulid",
        description="Soul ID: build a checked, portable identity from photos and reuse it in every generation.",
    )
    p.add_argument("--version", action="version", version=f"soulid {__version__}")
    p.add_argument("--library", metavar="DIR",
                   help="Soul ID library folder, before or after the command "
                        "(default: $SOULID_LIBRARY or the per-user data folder)")
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


def split_library(argv: list[str]) -> tuple[list[str], str | None]:
    """Take the global ``--library DIR`` (or ``--library=DIR``) out of
    ``argv`` wherever it stands, so that it works before and after any
    sub-command. Arguments after ``--`` are left alone."""
    out, lib, i = [], None, 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            out += argv[i:]
            break
        if a == "--library" and i + 1 < len(argv):
            lib, i = argv[i + 1], i + 2
            continue
        if a.startswith("--library="):
            lib, i = a.split("=", 1)[1], i + 1
            continue
        out.append(a)
        i += 1
    return out, lib


def _quiet_stdout() -> None:
    """After a closed pipe: point stdout at /dev/null so that the interpreter's
    final flush does not print a second BrokenPipeError."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    argv, library = split_library(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    args = parser.parse_args(argv)
    if library is not None:
        args.library = library
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        rc = int(args.func(args) or 0)
        sys.stdout.flush()
        return rc
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except (KeyboardInterrupt, Interrupted):
        print("soulid: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as e:
        root = (e.name or "").split(".")[0]
        if root not in LOCAL_MODULES:
            raise
        from ..backends.install import local_extra_command

        print(f"soulid: this command needs the Python package {root!r} of the local extra; "
              f"install it with: {local_extra_command()}", file=sys.stderr)
        return 2
    except SoulIDError as e:
        from .common import shown  # a message may quote a server or a file: no raw terminal escapes

        print(shown(f"soulid: {e}"), file=sys.stderr)
        return 2


