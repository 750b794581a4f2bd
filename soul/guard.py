"""Identity drift guard: did the face hold?

Scores generated images (or a clip's frames) against a Soul ID with the
analyzer the Soul ID was built with (:func:`soulid.soul.score.score_images`:
cosine similarity of the largest face's embedding to the Soul ID's centroid)
and judges each against the person's own threshold.

Two modes:

* **report** (:func:`check_images`, :func:`check_video`): similarity and
  pass/fail per image; no face counts as a fail.
* **best-of-N** (:func:`best_of_n`): call ``generate_candidate(i)`` for
  ``i = 0..N-1`` and keep the best. By default it **stops at the first
  candidate that passes**: every candidate is a paid generation on a cloud
  backend, and a pass is by definition good enough. With
  ``stop_at_first_pass=False`` all N are generated and the highest-scoring
  passing candidate is kept. When none passes, the highest-scoring candidate
  is returned with ``passed=False`` so the caller decides (the node warns).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .analysis.base import FaceAnalyzer
from .errors import SoulIDError
from .imageio import to_rgb
from .progress import InterruptFn, ProgressFn
from .score import ScoreResult, analyzer_for, score_images
from .soulfile import SoulID



class GuardError(SoulIDError):
    """Bad input to the drift guard (no images, unreadable video, N < 1...)."""


@dataclass
class GuardEntry:
    """One scored image.

    Attributes:
        index: position in the input (candidate number in best-of-N).
        label: file name, ``frame <n>`` or ``candidate <i>``.
        similarity: cosine similarity in [-1, 1] to the Soul ID centroid, or
            None when no face was found.
        passed: ``similarity >= threshold`` (False when no face).
        reason: why ``similarity`` is None, else "".
        face_box: ``[x1, y1, x2, y2]`` px, or None.
    """

    index: int
    label: str
    similarity: float | None
    passed: bool
    reason: str = ""
    face_box: list[float] | None = None

    def as_dict(self) -> dict:
        return {"index": self.index, "label": self.label,
                "similarity": None if self.similarity is None else round(self.similarity, 4),
                "passed": self.passed, "reason": self.reason or None, "face_box": self.face_box}


@dataclass
class GuardReport:
    """Scores of a set of images against one Soul ID.

    Attributes:
        soul: the Soul ID's name.
        analyzer: analyzer used (the Soul ID's own).
        threshold: the person's same-person cosine-similarity threshold.
        mode: ``"report"`` or ``"best_of_n"``.
        entries: one per image (per attempt in best-of-N).
        best: index into ``entries`` of the kept candidate (best-of-N), else
            of the highest-scoring image; None when no face anywhere.
    """

    soul: str
    analyzer: str
    threshold: float
    mode: str
    entries: list[GuardEntry] = field(default_factory=list)
    best: int | None = None

    @property
    def passed(self) -> int:
        return sum(e.passed for e in self.entries)

    @property
    def all_passed(self) -> bool:
        return bool(self.entries) and all(e.passed for e in self.entries)

    @property
    def similarities(self) -> list[float | None]:
        return [e.similarity for e in self.entries]

    def as_dict(self) -> dict:
        return {"soul": self.soul, "analyzer": self.analyzer, "threshold": round(self.threshold, 4),
                "mode": self.mode, "passed": self.passed, "total": len(self.entries),
                "all_passed": self.all_passed, "best": self.best, "entries": [e.as_dict() for e in self.entries]}

    def text(self) -> str:
        """A human-readable summary, one line per image."""
        lines = [f"Soul ID {self.soul!r} ({self.analyzer}, threshold {self.threshold:.3f}), mode {self.mode}: "
                 f"{self.passed}/{len(self.entries)} passed"]
        for i, e in enumerate(self.entries):
            sim = "  -   " if e.similarity is None else f"{e.similarity:.3f}"
            mark = "PASS" if e.passed else "FAIL"
            best = "  <- kept" if self.mode == "best_of_n" and i == self.best else ""
            why = f" ({e.reason})" if e.reason else ""
            lines.append(f"  {e.label:<24} {sim}  {mark}{why}{best}")
        return "\n".join(lines)


def _entry(i: int, label: str, r: ScoreResult) -> GuardEntry:
    return GuardEntry(i, label, r.similarity, bool(r.same_person), r.reason, r.face_box)


def _best(entries: list[GuardEntry], passing_only: bool) -> int | None:
    cands = [(e.similarity, i) for i, e in enumerate(entries)
             if e.similarity is not None and (e.passed or not passing_only)]
    return max(cands)[1] if cands else None


def check_images(soul: SoulID, images: list[np.ndarray] | np.ndarray, labels: list[str] | None = None,
                 analyzer: FaceAnalyzer | None = None) -> GuardReport:
    """Report mode: score each image against ``soul``.

    Args:
        images: ``[H, W, 3]`` uint8 RGB images or float32 0..1, or one
            ``[B, H, W, 3]`` batch.
        labels: a name per image (default ``image <i>``).
        analyzer: must be of the Soul ID's kind (default: the Soul ID's own).

    Raises:
        GuardError: no images, or an image of the wrong shape.
        ValueError: ``analyzer`` is not one the Soul ID has embeddings of.
    """
    imgs = list(images)
    if not imgs:
        raise GuardError("no images to check")
    labels = labels or [f"image {i}" for i in range(len(imgs))]
    az = analyzer_for(soul, analyzer)
    arrs = [to_rgb(im, what=labels[i], error=GuardError) for i, im in enumerate(imgs)]
    results = score_images(soul, arrs, az, labels)
    entries = [_entry(i, labels[i], r) for i, r in enumerate(results)]
    return GuardReport(soul.name, az.name, soul.analyzer(az.name).threshold, "report", entries,
                       _best(entries, passing_only=False))


def video_frames(path: str | os.PathLike, max_frames: int = 16) -> tuple[list[np.ndarray], list[str]]:
    """Decode up to ``max_frames`` evenly spaced frames of a video with PyAV.

    Returns:
        ``(frames, labels)``: ``[H, W, 3]`` uint8 RGB frames and ``"frame <n>"`` labels.

    Raises:
        GuardError: missing or undecodable file, or no video stream.
    """
    return sample_frames(decode_video(path)[0], max_frames)


#: Clip file extensions the guard decodes as video (PyAV); anything else is read as a photo.
VIDEO_EXTENSIONS = {".mp4", ".mov", ".webm", ".mkv", ".avi", ".gif"}


def decode_video(path: str | os.PathLike) -> tuple[list[np.ndarray], list[float]]:
    """Decode every frame of a video with PyAV.

    Returns:
        ``(frames, times)``: ``[H, W, 3]`` uint8 RGB frames and each frame's
        presentation time in seconds from the stream's start.

    Raises:
        GuardError: missing or undecodable file, or no video stream.
    """
    import av

    p = Path(path)
    if not p.is_file():
        raise GuardError(f"{p}: no such video file")
    frames, times = [], []
    try:
        with av.open(str(p)) as c:
            if not c.streams.video:
                raise GuardError(f"{p.name}: has no video stream")
            s = c.streams.video[0]
            rate = float(s.average_rate or s.guessed_rate or 0) or None
            start = None
            for i, f in enumerate(c.decode(video=0)):
                frames.append(f.to_ndarray(format="rgb24"))
                t = f.time if f.time is not None else (i / rate if rate else float(i))
                start = t if start is None else start
                times.append(float(t - start))
    except av.error.FFmpegError as e:
        raise GuardError(f"{p.name}: cannot decode video ({e})") from None
    if not frames:
        raise GuardError(f"{p.name}: no frames could be decoded")
    return frames, times


def sample_frames(frames: list[np.ndarray] | np.ndarray, max_frames: int = 16) -> tuple[list[np.ndarray], list[str]]:
    """Up to ``max_frames`` evenly spaced frames (first and last included) with ``"frame <n>"`` labels."""
    n = len(frames)
    if n == 0:
        raise GuardError("the video has no frames")
    idx = np.unique(np.linspace(0, n - 1, min(max(1, max_frames), n)).round().astype(int))
    return [np.asarray(frames[i]) for i in idx], [f"frame {i}" for i in idx]


def check_video(soul: SoulID, path: str | os.PathLike, max_frames: int = 16,
                analyzer: FaceAnalyzer | None = None) -> GuardReport:
    """Report mode on ``max_frames`` evenly spaced frames of a video file."""
    frames, labels = video_frames(path, max_frames)
    return check_images(soul, frames, labels, analyzer)


@dataclass
class BestOfN:
    """Result of :func:`best_of_n`.

    Attributes:
        image: the kept candidate (as returned by ``generate_candidate``), or
            None when no candidate had a face.
        index: its candidate number, or None.
        passed: whether the kept candidate passed the threshold.
        report: every attempt's score (``mode == "best_of_n"``).
        candidates: every generated candidate, in order.
    """

    image: object | None
    index: int | None
    passed: bool
    report: GuardReport
    candidates: list = field(default_factory=list)

    @property
    def attempts(self) -> int:
        return len(self.report.entries)


def best_of_n(soul: SoulID, generate_candidate: Callable[[int], np.ndarray], n: int,
              stop_at_first_pass: bool = True, analyzer: FaceAnalyzer | None = None,
              progress: ProgressFn | None = None, interrupt: InterruptFn | None = None) -> BestOfN:
    """Generate up to ``n`` candidates and keep the best that passes.

    Args:
        generate_candidate: ``i -> [H, W, 3]`` image (uint8, or float 0..1);
            called with ``i = 0, 1, ...`` (use it to vary the seed).
        n: most candidates to generate (>= 1).
        stop_at_first_pass: stop as soon as one passes (default, saves paid
            generations); False generates all ``n`` and keeps the
            highest-scoring passing one.
        interrupt: polled before each candidate; True stops early with what
            was scored so far.

    Returns:
        :class:`BestOfN`. When none passes, the highest-scoring candidate
        (``passed=False``); when no candidate had a face, ``image=None``.

    Raises:
        GuardError: ``n`` < 1.
    """
    if n < 1:
        raise GuardError(f"best-of-N needs N >= 1, not {n}")
    az = analyzer_for(soul, analyzer)
    thr = soul.analyzer(az.name).threshold
    report = GuardReport(soul.name, az.name, thr, "best_of_n")
    cands = []
    for i in range(n):
        if interrupt is not None and interrupt():
            break
        img = generate_candidate(i)
        cands.append(img)
        label = f"candidate {i}"
        r = score_images(soul, [to_rgb(img, what=label, error=GuardError)], az, [label])[0]
        report.entries.append(_entry(i, label, r))
        if progress is not None:
            sim = "no face" if r.similarity is None else f"{r.similarity:.3f}"
            progress((i + 1) / n, f"candidate {i + 1}/{n}: {sim}")
        if stop_at_first_pass and r.same_person:
            break
    best = _best(report.entries, passing_only=True)
    passed = best is not None
    if best is None:
        best = _best(report.entries, passing_only=False)
    report.best = best
    return BestOfN(None if best is None else cands[best], best, passed, report, cands)
