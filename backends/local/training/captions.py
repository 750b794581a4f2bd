"""Training captions: one per photo, ``"<trigger> <class word>, <pose> view"``.

The caption ties the persona to a rare trigger token (so the base model's own
idea of "a person" is not overwritten) and names the pose class the Soul ID
stored for the photo (``front``, ``three_quarter_left``...), so that head turns
are learned as such. Captions are editable: pass a list, or a text file with
one caption per line (in the Soul ID's photo order).
"""
from __future__ import annotations

import os
from pathlib import Path

from ....soul.errors import SoulIDError

#: Default trigger token: rare in CLIP's vocabulary, so it carries little prior meaning.
DEFAULT_TRIGGER = "ohwx"
DEFAULT_CLASS_WORD = "person"


class CaptionError(SoulIDError):
    """Captions do not fit the photos (wrong count, empty line, unreadable file)."""


def default_caption(trigger: str, class_word: str, pose_class: str) -> str:
    """``"ohwx person, front view"``; the pose class ``unknown`` is left out."""
    pose = (pose_class or "").replace("_", " ").strip()
    base = f"{trigger} {class_word}".strip()
    return f"{base}, {pose} view" if pose and pose != "unknown" else base


def build_captions(pose_classes: list[str], trigger: str = DEFAULT_TRIGGER, class_word: str = DEFAULT_CLASS_WORD,
                   captions: list[str] | str | os.PathLike | None = None) -> list[str]:
    """One caption per photo.

    Args:
        pose_classes: the stored photos' pose classes, in order.
        trigger: trigger token; class_word: e.g. ``person``, ``man``, ``woman``.
        captions: None (build the defaults), a list of str, or a path to a
            UTF-8 text file with one caption per line (blank lines ignored).
            A caption without the trigger token gets it prepended.

    Raises:
        CaptionError: the count does not match the photos, or the file is unreadable.
    """
    if captions is None:
        return [default_caption(trigger, class_word, p) for p in pose_classes]
    if isinstance(captions, (str, os.PathLike)):
        try:
            lines = Path(captions).read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise CaptionError(f"{captions}: cannot read captions ({e.strerror})") from None
        captions = [ln.strip() for ln in lines if ln.strip()]
        label = str(captions)
    else:
        label = "captions"
    captions = [str(c).strip() for c in captions]
    if len(captions) != len(pose_classes):
        raise CaptionError(f"{label}: {len(captions)} caption(s) for {len(pose_classes)} photo(s); give one per photo")
    if any(not c for c in captions):
        raise CaptionError(f"{label}: empty caption at line {captions.index('') + 1}")
    return [c if trigger in c.split() or c.startswith(trigger) else f"{trigger} {c}" for c in captions]
