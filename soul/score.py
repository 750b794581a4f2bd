"""Scoring images against a Soul ID: cosine similarity of the largest face to
the Soul ID's centroid, and a same-person verdict from the person's own
threshold (:mod:`soulid.soul.identity`). Always uses the analyzer the Soul ID
was built with: embeddings of different analyzers are not comparable.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .analysis.base import Face, FaceAnalyzer
from .analysis.registry import get_analyzer
from .errors import PhotoError
from .imageio import load_photo
from .soulfile import SoulID


@dataclass
class ScoreResult:
    """Score of one image.

    Attributes:
        similarity: cosine similarity in [-1, 1] to the Soul ID centroid, or
            None when no face was found / the image could not be read.
        same_person: ``similarity >= threshold``, or None.
        threshold: the person's threshold used.
        reason: why ``similarity`` is None, else "".
        face_box: ``[x1, y1, x2, y2]`` px of the scored face, or None.
        label: file name or index.
    """

    similarity: float | None
    same_person: bool | None
    threshold: float
    reason: str = ""
    face_box: list[float] | None = None
    label: str = ""

    def as_dict(self) -> dict:
        return {
            "path": self.label,
            "similarity": None if self.similarity is None else round(self.similarity, 4),
            "same_person": self.same_person,
            "threshold": round(self.threshold, 4),
            "reason": self.reason or None,
            "face_box": self.face_box,
        }


def analyzer_for(soul: SoulID, analyzer: FaceAnalyzer | None = None) -> FaceAnalyzer:
    """The analyzer matching the Soul ID's primary embeddings.

    Raises:
        ValueError: ``analyzer`` is of another kind than the Soul ID's.
    """
    if analyzer is None:
        return get_analyzer(soul.primary_analyzer)
    if analyzer.name not in soul.analyzers:
        raise ValueError(
            f"Soul ID {soul.name!r} has no {analyzer.name!r} embeddings (has {', '.join(soul.analyzers)}); "
            "scores from different analyzers are not comparable"
        )
    return analyzer


def score_faces(soul: SoulID, faces: list[Face], analyzer_name: str, label: str = "") -> ScoreResult:
    """Score the largest of ``faces`` (already detected by ``analyzer_name``)."""
    ident = soul.analyzer(analyzer_name)
    if not faces:
        return ScoreResult(None, None, ident.threshold, "no face found", None, label)
    f = faces[0]
    sim = float(np.dot(f.embedding, ident.unit_centroid))
    return ScoreResult(sim, sim >= ident.threshold, ident.threshold, "", [round(float(v), 1) for v in f.box], label)


def score_images(
    soul: SoulID, images: list[np.ndarray], analyzer: FaceAnalyzer | None = None, labels: list[str] | None = None
) -> list[ScoreResult]:
    """Score each ``[H, W, 3]`` uint8 RGB image against ``soul``."""
    az = analyzer_for(soul, analyzer)
    out = []
    for i, img in enumerate(images):
        lab = labels[i] if labels else str(i)
        out.append(score_faces(soul, az.detect(np.ascontiguousarray(img[..., :3], dtype=np.uint8)), az.name, lab))
    return out


def score_paths(soul: SoulID, paths: list[str | os.PathLike], analyzer: FaceAnalyzer | None = None) -> list[ScoreResult]:
    """Score image files; an unreadable file gets ``similarity=None`` and its reason."""
    az = analyzer_for(soul, analyzer)
    thr = soul.analyzer(az.name).threshold
    out = []
    for p in paths:
        try:
            rgb = load_photo(p).rgb
        except PhotoError as e:
            out.append(ScoreResult(None, None, thr, e.reason, None, str(p)))
            continue
        out.append(score_faces(soul, az.detect(rgb), az.name, str(p)))
    return out
