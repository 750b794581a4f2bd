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
the pack accepts a key. Shown only through :func:`mask`; :func:`redact` scrubs
every known key (and anything shaped like an auth header) from text before
it is logged, stored in the job ledger or raised; :func:`install_log_redaction`
applies it to every log record of the process.
"""
from __future__ import annotations

import json
import logging
import os
import re
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


def _env_source(provider: str) -> tuple[str | None, str]:
    """``(key or None, the environment variable(s) it came from)``."""
    if provider == "higgsfield":
        key = os.environ.get("HF_KEY", "").strip()
        if key:
            return key, "HF_KEY"
        kid, sec = os.environ.get("HF_API_KEY", "").strip(), os.environ.get("HF_API_SECRET", "").strip()
        return (f"{kid}:{sec}" if kid and sec else None), "HF_API_KEY/HF_API_SECRET"
    var = {"wavespeed": "WAVESPEED_API_KEY", "aurashot": "AURASHOT_API_KEY"}[provider]
    return os.environ.get(var, "").strip() or None, var


def _from_env(provider: str) -> str | None:
    return _env_source(provider)[0]


def key_source(provider: str) -> str:
    """Where :func:`get_key` finds ``provider``'s key, in words for messages:
    ``"the environment variable HF_KEY"``, ``"<path>/credentials.json"`` or
    ``"nowhere"``. Never raises."""
    if provider not in PROVIDERS:
        return "nowhere"
    key, var = _env_source(provider)
    if key:
        return f"the environment variable {var}"
    try:
        return str(credentials_path()) if _read_file().get(provider) else "nowhere"
    except CredentialsMissing:
        return "nowhere"


def remember_configured_keys() -> None:
    """Register every key found in the environment or the credentials file for
    redaction (for commands that print stored provider text without building a
    backend, e.g. ``soulid jobs list``). Never raises."""
    for p in PROVIDERS:
        key = _from_env(p)
        if key:
            remember_secret(key)
    try:
        for v in _read_file().values():
            if isinstance(v, str) and v:
                remember_secret(v)
    except CredentialsMissing:
        pass


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


def forget_key(provider: str) -> bool:
    """Remove ``provider``'s key from the credentials file (atomic, mode 0600).
    Returns whether there was one. A key in the environment is not touched.

    Raises:
        ValueError: unknown provider.
    """
    if provider not in PROVIDERS:
        raise ValueError(f"provider must be one of {', '.join(PROVIDERS)}, not {provider!r}")
    data = _read_file()
    if provider not in data:
        return False
    del data[provider]
    atomic_write_bytes(credentials_path(), json.dumps(data, indent=1).encode(), mode=0o600)
    return True


def mask(secret: str) -> str:
    """Show at most the first 4 characters: ``"abcd…(36 chars)"``."""
    if not secret:
        return "<empty>"
    return f"{secret[:4]}…({len(secret)} chars)" if len(secret) > 8 else "…"


# ------------------------------------------------------------------ redaction
_KNOWN: set[str] = set()
#: Credentials that look like credentials even when not registered: the value
#: after ``Authorization: Key|Bearer``, ``hf-secret`` / ``hf-api-key`` headers
#: and ``api_key=`` style fields.
_PATTERNS = (
    re.compile(r"(?i)\bbearer\s+([A-Za-z0-9_\-.+/=]{12,})"),
    re.compile(r"\bKey\s+([A-Za-z0-9_\-.]{6,}:[A-Za-z0-9_\-.]{6,})"),
    re.compile(r"(?i)\b(?:hf-secret|hf-api-key|x-api-key|authorization)[\"']?\s*[:=]\s*[\"']?"
               r"(?:key\s+|bearer\s+)?([A-Za-z0-9_\-.:+/=]{6,})"),
)


def remember_secret(key: str) -> None:
    """Register ``key`` (and, for ``id:secret`` keys, both halves) for redaction."""
    for part in {key, *key.split(":")}:
        if len(part) >= 6:
            _KNOWN.add(part)


def redact(text: str) -> str:
    """``text`` with every registered secret, and every value that looks like
    a credential (``Authorization: Key ...``, ``Bearer ...``, ``hf-secret: ...``),
    replaced by its :func:`mask`."""
    if not isinstance(text, str):
        text = str(text)
    for s in sorted(_KNOWN, key=len, reverse=True):
        if s in text:
            text = text.replace(s, mask(s))
    for pat in _PATTERNS:
        text = pat.sub(lambda m: m.group(0).replace(m.group(1), mask(m.group(1))) if "…" not in m.group(1) else m.group(0), text)
    return text


def _scrub(record: logging.LogRecord) -> None:
    """Rewrite ``record`` in place so that no known secret survives in its
    message, arguments or traceback text."""
    if getattr(record, "_soulid_redacted", False):
        return
    record._soulid_redacted = True
    try:
        msg = record.getMessage()
    except Exception:  # a broken format string is logging's to report, not ours
        return
    clean = redact(msg)
    if clean != msg:
        record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        import traceback

        record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)


class RedactFilter(logging.Filter):
    """A logging filter that rewrites records whose text holds a known secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        _scrub(record)
        return True


def install_log_redaction(*loggers: str) -> None:
    """Redact every log record of the process before any handler sees it.

    A logger's filter does not apply to records propagated from its children
    (``soulid.cloud`` -> ``soulid``), so redaction is installed as a
    :func:`logging.setLogRecordFactory` wrapper: every record made by any
    logger (``soulid``, ``soulid.*``, ``httpx``, ``httpcore`` and all others)
    is scrubbed when it is created. :class:`RedactFilter` is also attached to
    ``loggers`` (default: soulid, httpx, httpcore) for records built by hand.
    Idempotent.
    """
    old = logging.getLogRecordFactory()
    if not getattr(old, "_soulid_redacts", False):
        def factory(*args, **kwargs):
            rec = old(*args, **kwargs)
            _scrub(rec)
            return rec

        factory._soulid_redacts = True
        logging.setLogRecordFactory(factory)
    for name in loggers or ("soulid", "httpx", "httpcore"):
        lg = logging.getLogger(name)
        if not any(isinstance(f, RedactFilter) for f in lg.filters):
            lg.addFilter(RedactFilter())
