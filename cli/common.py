"""What several CLI commands share: the library, the budget and user
defaults, and the terminal's progress printer and Ctrl-C flag. Command
modules import from here, never from each other's helpers (no import
circle between them)."""
from __future__ import annotations

import os
import sys
from pathlib import Path


def shown(text: object) -> str:
    """``text`` safe to print on a terminal: each line's control characters
    (ANSI escapes, bidi overrides...) become ``\\x1b``-style escapes
    (:func:`soulid.soul.imageio.safe_label`); line breaks are kept. For
    anything a server, a file or its metadata chose."""
    from ..soul.imageio import safe_label

    return "\n".join(safe_label(line) for line in str(text).split("\n"))


def library(args):
    """The Soul ID library ``--library`` names, else the configured one."""
    from ..soul.library import Library

    return Library(getattr(args, "library", None))


#: Words that end a job's progress: the line is finished there on a terminal.
_FINAL = ("succeeded", "failed", "canceled", "cancelled", "done", "saved")


def progress_printer(quiet: bool = False):
    """A progress callback printing changed messages to stderr: on a terminal
    one line that overwrites itself (finished at 100 % or a final word),
    otherwise one line per change (logs, pipes)."""
    last = [""]
    tty = sys.stderr.isatty()

    def cb(frac, msg):
        if msg == last[0] or quiet:
            return
        last[0] = msg
        if not tty:
            print(f"  {msg}", file=sys.stderr, flush=True)
            return
        pct = f"{100 * frac:3.0f}% " if frac is not None else ""
        final = (frac is not None and frac >= 1.0) or any(w in msg for w in _FINAL)
        sys.stderr.write(f"\r\x1b[K  {pct}{msg}" + ("\n" if final else ""))
        sys.stderr.flush()

    return cb


def interrupt_flag():
    """``(interrupt callable, restore)``: Ctrl-C sets a flag the job engine sees
    (so a queued job is canceled at the provider) instead of killing the process."""
    import signal
    import threading

    ev = threading.Event()
    try:
        old = signal.signal(signal.SIGINT, lambda *_: ev.set())
    except ValueError:  # not the main thread
        return ev.is_set, lambda: None
    return ev.is_set, lambda: signal.signal(signal.SIGINT, old)


def load_soul(args, ref: str):
    """A Soul ID by library name, or from a ``.soulid`` file path."""
    from ..soul.soulfile import SUFFIX, SoulID

    p = Path(ref)
    if ref.endswith(SUFFIX) and p.is_file():
        return SoulID.load(p)
    return library(args).load(ref)


def configured(name: str) -> str | None:
    """A user default: ``$SOULID_<NAME>``, else the configuration file's
    value when :mod:`soulid.cli.config` offers one (``get(name)``)."""
    v = os.environ.get(f"SOULID_{name.upper()}")
    if v:
        return v
    try:
        from . import config  # optional: the configuration commands
    except ImportError:
        return None
    get = getattr(config, "get", None)
    try:
        v = get(name) if get is not None else None
    except Exception:  # a broken config file must not stop a command that names everything itself
        return None
    return None if v in (None, "") else str(v)


def budget(args) -> float | None:
    """The cost cap in US dollars for this command: ``--max-usd``, else the
    configured default budget (``$SOULID_MAX_USD``), else None. The one place
    the CLI reads a budget, so that the engine's budget type can replace it."""
    from ..soul.errors import SoulIDError

    if args.max_usd is not None:
        return float(args.max_usd)
    v = configured("max_usd")
    if v is None:
        return None
    try:
        return float(v)
    except ValueError:
        raise SoulIDError(f"$SOULID_MAX_USD must be a number of US dollars, not {v!r}") from None
