"""Choosing a face analyzer by name.

``"auto"`` picks insightface (antelopev2, then buffalo_l) when its model files
are present and falls back to dlib, which installs from PyPI and always works.
Analyzers are cached per process: loading models takes seconds.
"""
from __future__ import annotations

import threading

from .base import FaceAnalyzer

ANALYZER_NAMES = ("auto", "dlib", "insightface", "insightface_buffalo_l")
_cache: dict[str, FaceAnalyzer] = {}
_lock = threading.Lock()


def available_analyzers() -> list[str]:
    """Concrete analyzer names usable on this machine now."""
    from .insightface_analyzer import packs_available

    out = []
    packs = packs_available()
    if "antelopev2" in packs:
        out.append("insightface")
    if "buffalo_l" in packs:
        out.append("insightface_buffalo_l")
    out.append("dlib")
    return out


def resolve_name(name: str = "auto") -> str:
    """Turn ``"auto"`` into a concrete analyzer name; check the others.

    Raises:
        ValueError: unknown name.
    """
    if name not in ANALYZER_NAMES:
        raise ValueError(f"analyzer must be one of {', '.join(ANALYZER_NAMES)}, not {name!r}")
    if name == "auto":
        return available_analyzers()[0]
    return name


def get_analyzer(name: str = "auto") -> FaceAnalyzer:
    """Build (or reuse) the analyzer called ``name``.

    Args:
        name: ``auto | dlib | insightface | insightface_buffalo_l``.

    Raises:
        ValueError: unknown name.
        ModelFilesMissing: the analyzer's model files are missing.
    """
    concrete = resolve_name(name)
    with _lock:
        if concrete not in _cache:
            if concrete == "dlib":
                from .dlib_analyzer import DlibAnalyzer

                _cache[concrete] = DlibAnalyzer()
            else:
                from .insightface_analyzer import InsightFaceAnalyzer

                pack = "antelopev2" if concrete == "insightface" else "buffalo_l"
                _cache[concrete] = InsightFaceAnalyzer(pack=pack)
        return _cache[concrete]
