"""API credentials for the cloud providers, and keeping them out of sight.

Where a key comes from, first match wins:

1. environment variables:

   ============  ==============================================================
   provider      variables
   ============  ==============================================================
   higgsfield    ``HF_KEY=KEY_ID:KEY_SECRET``, or ``HF_API_KEY`` + ``HF_API_SECRET``
                 (the names the official SDK reads:
                 https://github.com/higgsfield-ai/higgsfield-client, ``auth.py``)
   wavespeed     ``WAVESPEED_API_KEY`` (https://wavespeed.ai/docs)
   aurashot      ``AURASHOT_API_KEY``
   ============  ==============================================================

2. ``credentials.json`` in the user's config directory
   (:func:`soulid.soul.paths.config_dir`), written by ``soulid login PROVIDER``
   with mode 0600; a file readable by group or others is refused.

Never from a node widget, workflow JSON or image metadata: nothing else in
the pack accepts a key. Shown only through :func:`mask`; :class:`RedactFilter`
scrubs every known key from log records.
"""
from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

from ..soul.errors import SoulIDError
from ..soul.paths import atomic_write_bytes, config_dir

PROVIDERS = ("higgsfield", "wavespeed", "aurashot")
FILE_NAME = "credentials.json"
ENV_HINT = {
    "higgsfield": "HF_KEY=KEY_ID:KEY_SECRET (or HF_API_KEY and HF_API_SECRET)",
    "wavespeed": "WAVESPEED_API_KEY",
    "aurashot": "AURASHOT_API_KEY",
}


class CredentialsMissing(SoulIDError):
    """No key for a provider, or the credentials file is unsafe or unreadable."""


def credentials_path() -> Path:
    """``<config dir>/credentials.json``."""
    return config_dir() / FILE_NAME


def _from_env(provider: str) -> str | None:
    if provider == "higgsfield":
        key = os.environ.get("HF_KEY", "").strip()
        if key:
            return key
        kid, sec = os.environ.get("HF_API_KEY", "").strip(), os.environ.get("HF_API_SECRET", "").strip()
        return f"{kid}:{sec}" if kid and sec else None
    var = {"wavespeed": "WAVESPEED_API_KEY", "aurashot": "AURASHOT_API_KEY"}[provider]
    return os.environ.get(var, "").strip() or None


def _read_file() -> dict:
    p = credentials_path()
    if not p.exists():
        return {}
    mode = stat.S_IMODE(p.stat().st_mode)
    if os.name == "posix" and mode & 0o077:
        raise CredentialsMissing(
            f"{p}: permissions are {mode:04o}; the credentials file must be private (chmod 600 {p})"
        )
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CredentialsMissing(f"{p}: unreadable credentials file ({type(e).__name__})") from None
    if not isinstance(data, dict):
        raise CredentialsMissing(f"{p}: expected a JSON object of provider -> key")
    return data


def get_key(provider: str) -> str:
    """The API key of ``provider`` (Higgsfield: ``"KEY_ID:KEY_SECRET"``).

    Raises:
        ValueError: unknown provider.
        CredentialsMissing: no key in the environment or the credentials file,
            or the file is readable by others.
    """
    if provider not in PROVIDERS:
        raise ValueError(f"provider must be one of {', '.join(PROVIDERS)}, not {provider!r}")
    key = _from_env(provider) or _read_file().get(provider)
    if not key:
        raise CredentialsMissing(
            f"no {provider} API key: set {ENV_HINT[provider]}, or run `soulid login {provider}`"
        )
    remember_secret(key)
    return key


def split_higgsfield(key: str) -> tuple[str, str]:
    """``"KEY_ID:KEY_SECRET"`` -> ``(KEY_ID, KEY_SECRET)`` (the v1 platform headers
    ``hf-api-key`` / ``hf-secret``).

    Raises:
        CredentialsMissing: the key has no ``:``.
    """
    kid, sep, sec = key.partition(":")
    if not sep or not kid or not sec:
        raise CredentialsMissing(f"Higgsfield key {mask(key)} is not of the form KEY_ID:KEY_SECRET")
    return kid, sec


def save_key(provider: str, key: str) -> Path:
    """Store ``key`` for ``provider`` in the credentials file (atomic, mode 0600).

    Raises:
        ValueError: unknown provider or empty key; a Higgsfield key without ``:``.
    """
    if provider not in PROVIDERS:
        raise ValueError(f"provider must be one of {', '.join(PROVIDERS)}, not {provider!r}")
    key = key.strip()
    if not key:
        raise ValueError("empty API key")
    if provider == "higgsfield" and ":" not in key:
        raise ValueError("a Higgsfield key is KEY_ID:KEY_SECRET")
    data = _read_file() if credentials_path().exists() else {}
    data[provider] = key
    p = credentials_path()
    atomic_write_bytes(p, json.dumps(data, indent=1).encode(), mode=0o600)
    return p


def mask(secret: str) -> str:
    """Show at most the first 4 characters: ``"abcd…(36 chars)"``."""
    if not secret:
        return "<empty>"
    return f"{secret[:4]}…({len(secret)} chars)" if len(secret) > 8 else "…"


# ------------------------------------------------------------------ redaction
_KNOWN: set[str] = set()


def remember_secret(key: str) -> None:
    """Register ``key`` (and, for ``id:secret`` keys, both halves) for redaction."""
    for part in {key, *key.split(":")}:
        if len(part) >= 6:
            _KNOWN.add(part)


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by its :func:`mask`."""
    for s in sorted(_KNOWN, key=len, reverse=True):
        if s in text:
            text = text.replace(s, mask(s))
    return text


class RedactFilter(logging.Filter):
    """A logging filter that rewrites records whose text holds a known secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _KNOWN:
            msg = record.getMessage()
            clean = redact(msg)
            if clean != msg:
                record.msg, record.args = clean, None
        return True


def install_log_redaction(*loggers: str) -> None:
    """Attach :class:`RedactFilter` to the named loggers (default: soulid, httpx, httpcore)."""
    for name in loggers or ("soulid", "httpx", "httpcore"):
        lg = logging.getLogger(name)
        if not any(isinstance(f, RedactFilter) for f in lg.filters):
            lg.addFilter(RedactFilter())
