"""Helpers shared by the identity tests (cached dlib analyzer and QA)."""
from __future__ import annotations

import functools
from pathlib import Path

from soulid.soul.analysis import get_analyzer
from soulid.soul.qa import PhotoQA, assess_photo


def assess(path: Path) -> PhotoQA:
    return assess_photo(str(path), get_analyzer("dlib"))


@functools.lru_cache(maxsize=None)
def obama_split(root: str) -> tuple[list[Path], list[Path]]:
    """Obama photos used for creation and the ones held out for scoring."""
    folder = Path(root) / "obama"
    held_out = [folder / n for n in ("obama3.jpg", "obama4.jpg", "obama2.jpg")]
    build = [p for p in sorted(folder.iterdir()) if p not in held_out]
    return build, held_out
