"""The character library log: what made each image of a persona.

Every generation can append an entry to its Soul ID's ``log`` (kept in the
``.soulid`` file's ``manifest.json``) with the prompt, preset, seed, backend,
model, drift-guard score and a small JPEG thumbnail (stored in the archive as
``thumbs/<n>.jpg``, see :mod:`soulid.soul.soulfile`), so months later the
persona can be regenerated the same way.

Entry fields (JSON): ``n`` (1-based, in order), ``time`` (ISO 8601 UTC),
``prompt``, ``negative_prompt``, ``preset`` (``{"name", "family",
"remote_id", "strength"}`` or None), ``seed``, ``backend``, ``model``,
``score`` (``{"similarity", "passed", "threshold", "analyzer"}`` or None),
``size`` (``[width, height]`` px), ``thumb`` (archive member or None),
``extra`` (any JSON-able dict: request id, cost, motion...).

Credentials never go into the log: :func:`append_entry` refuses ``extra``
keys that look like secrets.
"""
from __future__ import annotations

import datetime as _dt
import json
import re
import time

import numpy as np

from .errors import SoulIDError
from .imageio import downscale, encode_jpeg, load_photo, to_rgb
from .soulfile import SoulID

#: Longest side of log thumbnails, px, and their JPEG quality.
THUMB_SIDE = 256
THUMB_QUALITY = 85
_SECRET_KEY = re.compile(r"(key|secret|token|password|authori[sz]ation|credential)", re.I)


class LogError(SoulIDError):
    """A log entry is invalid (field type, non-JSON value, secret-like key)."""


def _preset_info(preset) -> dict | None:
    if preset is None or preset == "":
        return None
    if isinstance(preset, str):
        return {"name": preset, "family": None, "remote_id": None, "strength": None}
    if isinstance(preset, dict):
        return {k: preset.get(k) for k in ("name", "family", "remote_id", "strength")}
    return {"name": getattr(preset, "name", str(preset)), "family": getattr(preset, "family", None),
            "remote_id": getattr(preset, "remote_id", None), "strength": getattr(preset, "strength", None)}


def _score_info(score, soul: SoulID) -> dict | None:
    """Accepts a float similarity, a ScoreResult / GuardEntry, or a dict."""
    if score is None:
        return None
    ana = soul.primary_analyzer if soul.analyzers else None
    thr = soul.analyzer(ana).threshold if ana else None
    if isinstance(score, (int, float)):
        sim, passed = float(score), (None if thr is None else float(score) >= thr)
    elif isinstance(score, dict):
        sim, passed = score.get("similarity"), score.get("passed", score.get("same_person"))
        thr = score.get("threshold", thr)
    else:
        sim = getattr(score, "similarity", None)
        passed = getattr(score, "passed", getattr(score, "same_person", None))
        thr = getattr(score, "threshold", thr)
    return {"similarity": None if sim is None else round(float(sim), 4), "passed": passed,
            "threshold": None if thr is None else round(float(thr), 4), "analyzer": ana}


def append_entry(soul: SoulID, prompt: str, image: np.ndarray | None = None, preset=None, seed: int | None = None,
                 backend: str = "", model: str = "", score=None, negative_prompt: str = "",
                 extra: dict | None = None, now: float | None = None) -> dict:
    """Append one generation to ``soul.log`` (in memory; save the Soul ID after).

    Args:
        image: the generated image, ``[H, W, 3]`` uint8 or float 0..1, for the
            thumbnail (longest side :data:`THUMB_SIDE` px); None for no thumbnail.
        preset: a preset name, a :class:`soulid.soul.presets.StylePreset` or a dict.
        score: a cosine similarity, a ``ScoreResult``/``GuardEntry``, or a dict.
        extra: more JSON-able facts (request id, cost...).

    Returns:
        the entry dict.

    Raises:
        LogError: ``extra`` is not JSON-able or has a secret-like key, or
            ``seed`` is not an integer.
    """
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise LogError(f"log entry field 'seed' must be an integer, not {seed!r}")
    extra = dict(extra or {})
    bad = [k for k in extra if _SECRET_KEY.search(str(k))]
    if bad:
        raise LogError(f"log entry field 'extra' has secret-like key(s) {', '.join(bad)}: credentials are never logged")
    try:
        json.dumps(extra)
    except (TypeError, ValueError) as e:
        raise LogError(f"log entry field 'extra' is not JSON-serialisable ({e})") from None
    n = max([int(e.get("n", 0)) for e in soul.log] + [0]) + 1
    thumb, size = None, None
    if image is not None:
        a = to_rgb(image, error=LogError)
        size = [int(a.shape[1]), int(a.shape[0])]
        thumb = f"thumbs/{n}.jpg"
        soul.extra_files[thumb] = encode_jpeg(downscale(a, THUMB_SIDE), quality=THUMB_QUALITY)
    t = _dt.datetime.fromtimestamp(time.time() if now is None else now, _dt.timezone.utc)
    entry = {
        "n": n,
        "time": t.isoformat(timespec="seconds"),
        "prompt": str(prompt),
        "negative_prompt": str(negative_prompt or ""),
        "preset": _preset_info(preset),
        "seed": None if seed is None else int(seed),
        "backend": str(backend),
        "model": str(model),
        "score": _score_info(score, soul),
        "size": size,
        "thumb": thumb,
        "extra": extra,
    }
    soul.log.append(entry)
    return entry


def log_generation(library, name: str, prompt: str, **kwargs) -> dict:
    """Load Soul ID ``name`` from ``library``, :func:`append_entry`, save it
    back atomically (``overwrite=True``). Keyword arguments as :func:`append_entry`."""
    soul = library.load(name)
    entry = append_entry(soul, prompt, **kwargs)
    library.save(soul, overwrite=True)
    return entry


def entries(soul: SoulID) -> list[dict]:
    """The log, oldest first (copies)."""
    return [dict(e) for e in soul.log]


def thumbnail(soul: SoulID, entry: dict) -> np.ndarray | None:
    """Decode an entry's thumbnail to ``[h, w, 3]`` uint8, or None if it has none."""
    name = entry.get("thumb")
    if not name or name not in soul.extra_files:
        return None
    return load_photo(soul.extra_files[name], label=f"{soul.name}:{name}").rgb


def format_entries(soul: SoulID) -> str:
    """A human-readable table of the log."""
    if not soul.log:
        return f"Soul ID {soul.name!r}: no generations logged yet"
    lines = [f"Soul ID {soul.name!r}: {len(soul.log)} generation(s)"]
    for e in soul.log:
        p = (e.get("preset") or {}).get("name") or "-"
        sc = e.get("score") or {}
        sim = "-" if sc.get("similarity") is None else f"{sc['similarity']:.3f}{'' if sc.get('passed') else ' FAIL'}"
        seed = "-" if e.get("seed") is None else e["seed"]
        lines.append(f"#{e.get('n')} {e.get('time', '')}  {e.get('backend') or '-'}/{e.get('model') or '-'}  "
                     f"preset {p}  seed {seed}  score {sim}")
        lines.append(f"    {e.get('prompt', '')}")
    return "\n".join(lines)


def log_moodboard(soul: SoulID, last: int | None = None, tile: int = 256) -> np.ndarray:
    """A moodboard of the logged thumbnails (preset, seed, score captions).

    Raises:
        LogError: no entry has a thumbnail.
    """
    from .grid import moodboard

    es = [e for e in soul.log if thumbnail(soul, e) is not None]
    if last:
        es = es[-last:]
    if not es:
        raise LogError(f"Soul ID {soul.name!r}: no logged generation has a thumbnail")
    return moodboard([thumbnail(soul, e) for e in es], es, tile=tile, title=f"{soul.name}: generation log")


__all__ = ["append_entry", "log_generation", "entries", "thumbnail", "format_entries", "log_moodboard", "LogError"]