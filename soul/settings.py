"""User settings of the pack (``soulid config``): a small JSON file,
``<config dir>/settings.json``, written 0600.

Known keys: ``library`` (the Soul ID library folder the CLI uses, e.g.
ComfyUI's ``<ComfyUI>/user/soulid/library``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import SoulIDError
from .paths import atomic_write_bytes, config_dir

#: Settings ``soulid config set`` accepts, with what each means.
KNOWN = {"library": "Soul ID library folder used by the CLI (e.g. <ComfyUI>/user/soulid/library)"}


def settings_path() -> Path:
    return config_dir() / "settings.json"


def load_settings() -> dict:
    """All settings (an empty dict when none were saved).

    Raises:
        SoulIDError: the file exists but is unreadable or not a JSON object.
    """
    p = settings_path()
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise SoulIDError(f"{p}: cannot read the soulid settings ({e.strerror or e})") from None
    try:
        d = json.loads(raw)
    except ValueError as e:
        raise SoulIDError(f"{p}: soulid settings are corrupt ({e}); fix or delete the file") from None
    if not isinstance(d, dict):
        raise SoulIDError(f"{p}: soulid settings must be a JSON object")
    return d


def get_setting(key: str) -> str | None:
    v = load_settings().get(key)
    return v if isinstance(v, str) and v else None


def set_setting(key: str, value: str | None) -> Path:
    """Save (or with ``value=None`` remove) setting ``key``; returns the file.

    Raises:
        SoulIDError: unknown key.
    """
    if key not in KNOWN:
        raise SoulIDError(f"unknown setting {key!r}; known: {', '.join(KNOWN)}")
    d = load_settings()
    if value is None:
        d.pop(key, None)
    else:
        d[key] = os.fspath(value)
    p = settings_path()
    atomic_write_bytes(p, json.dumps(d, indent=1).encode(), mode=0o600)
    return p
