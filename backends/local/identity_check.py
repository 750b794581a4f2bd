"""Per-frame identity check of a clip against a Soul ID.

Every ``stride``-th frame is decoded (PyAV) and scored with
:func:`soulid.soul.score.score_images`: cosine similarity of the largest face
to the Soul ID's centroid, in the space of the analyzer the Soul ID was built
with. The summary gives min and mean similarity over frames with a face, how
many frames had none, and whether every scored frame is the same person.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ...soul.analysis.base import FaceAnalyzer
from ...soul.errors import SoulIDError
from ...soul.score import score_images
from ...soul.soulfile import SoulID


@dataclass
class ClipIdentity:
    """Identity over a clip.

    Attributes:
        frames: frame indices scored.
        similarity: per scored frame, cosine similarity in [-1, 1] or None (no face).
        min, mean: over frames with a face (None when no frame had one).
        no_face: frames without a face.
        threshold: the Soul ID's same-person threshold.
        same_person: every frame with a face is at or above the threshold
            (None when no frame had a face).
    """

    frames: list[int]
    similarity: list[float | None]
    min: float | None
    mean: float | None
    no_face: int
    threshold: float
    same_person: bool | None
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        r = lambda v: None if v is None else round(float(v), 4)  # noqa: E731
        return {"frames": len(self.frames), "min": r(self.min), "mean": r(self.mean), "no_face": self.no_face,
                "threshold": r(self.threshold), "same_person": self.same_person,
                "per_frame": [r(s) for s in self.similarity]}


def read_frames(path: str | os.PathLike, stride: int = 1, max_frames: int | None = None) -> tuple[list[int], list[np.ndarray]]:
    """Decode every ``stride``-th frame of a video as ``[H, W, 3]`` uint8 RGB.

    Raises:
        SoulIDError: the file cannot be opened or has no video stream.
    """
    import av

    idx, frames = [], []
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise SoulIDError(f"{path}: no video stream")
            for i, f in enumerate(c.decode(video=0)):
                if i % stride == 0:
                    idx.append(i)
                    frames.append(f.to_ndarray(format="rgb24"))
                    if max_frames and len(frames) >= max_frames:
                        break
    except av.error.FFmpegError as e:
        raise SoulIDError(f"{path}: cannot read video ({e})") from None
    return idx, frames


def summarise(soul: SoulID, frames: list[int], sims: list[float | None], analyzer_name: str) -> ClipIdentity:
    thr = soul.analyzer(analyzer_name).threshold
    vals = [s for s in sims if s is not None]
    return ClipIdentity(
        frames=frames, similarity=sims,
        min=min(vals) if vals else None, mean=float(np.mean(vals)) if vals else None,
        no_face=sum(s is None for s in sims), threshold=thr,
        same_person=(min(vals) >= thr) if vals else None,
        extra={"analyzer": analyzer_name},
    )


def check_clip(path: str | os.PathLike, soul: SoulID, analyzer: FaceAnalyzer | None = None,
               stride: int = 6, max_frames: int | None = 64) -> ClipIdentity:
    """Score every ``stride``-th frame (default: 4 per second at 24 fps) of the
    clip at ``path`` against ``soul``; see :class:`ClipIdentity`.

    Raises:
        SoulIDError: unreadable video.
        ValueError: ``analyzer`` is of another space than the Soul ID's.
    """
    from ...soul.score import analyzer_for

    az = analyzer_for(soul, analyzer)
    idx, frames = read_frames(path, stride, max_frames)
    results = score_images(soul, frames, az, labels=[str(i) for i in idx])
    return summarise(soul, idx, [r.similarity for r in results], az.name)
