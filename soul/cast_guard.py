"""Cast guard: several Soul IDs in one image or clip, each face checked against its own.

The drift guard (:mod:`soulid.soul.guard`) scores the largest face of an image
against one Soul ID. A scene with a cast needs more: every face found, each
face given to the cast member it is, and each member judged by its own
threshold.

For each image (or sampled video frame):

1. every face is detected with the cast's common analyzer (embeddings of
   different analyzers are never compared: the cast must share one);
2. the cosine similarity of each face's embedding to each member's unit
   centroid forms an ``[F, M]`` matrix;
3. faces are assigned to members by an optimal one-to-one matching that
   maximises the summed similarity (``scipy.optimize.linear_sum_assignment``);
4. an assigned face **passes** when its similarity reaches its member's
   per-person threshold; a face that fails (or was left unassigned because
   there are more faces than members) is an **unknown face**, and a member
   without a passing face is **missing**;
5. **identity confusion** is flagged when an assigned face is closer to
   another cast member than to its own candidate and passes that member's
   threshold (the other's face is on it: a duplicate or a swap), or when one
   face passes the thresholds of two members;
6. **copy-paste** per assigned face: the similarity to the single nearest
   stored photo embedding minus the similarity to the centroid. A generated
   face that reproduces one reference photo sits on that photo's embedding,
   off the centroid; a new photo of the person sits near the centroid.
   Flagged past :data:`COPY_PASTE_MARGIN` (measured on the fixture photos,
   see docs/cast-guard.md). Needs at least two stored embeddings.

An image **passes** when no member is missing and there is no confusion.
Copy-paste is reported and flagged but does not fail an image.

Videos (:func:`check_cast_video`): the same per sampled frame, plus per
character the similarity series, its minimum and the timestamp of the worst
frame.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .analysis.base import Face, FaceAnalyzer
from .analysis.registry import get_analyzer
from .guard import GuardError, decode_video, sample_frames
from .imageio import to_rgb
from .progress import InterruptFn, ProgressFn, check, report
from .soulfile import AnalyzerIdentity, SoulID

#: Copy-paste margin per analyzer (cosine-similarity units): a face whose
#: similarity to one stored photo exceeds its similarity to the centroid by
#: more than this is flagged. Measured with ``benchmarks/bench_cast_guard.py``
#: on the fixture photos (docs/cast-guard.md): for dlib, distinct held-out
#: photos of a person score at most 0.0013, faces pasted from a stored photo
#: score 0.0014 and above (median 0.0060). Analyzers without a measured value
#: use :data:`DEFAULT_COPY_PASTE_MARGIN`; pass ``copy_paste_margin`` to override.
COPY_PASTE_MARGIN = {"dlib": 0.0015}
DEFAULT_COPY_PASTE_MARGIN = 0.0015


class CastGuardError(GuardError):
    """Bad input to the cast guard: no members, duplicate names, no common analyzer, no images."""


@dataclass
class CastMember:
    """One cast member: a Soul ID and its identity under the cast's analyzer."""

    name: str
    ident: AnalyzerIdentity

    @property
    def threshold(self) -> float:
        return float(self.ident.threshold)


@dataclass
class CastFace:
    """One detected face.

    Attributes:
        box: ``[x0, y0, x1, y1]`` pixels of the analysed image.
        soul: the member this face is (assigned and passed), else None.
        candidate: the member the matching assigned it to, passed or not
            (the face a repair pass should fix); None when unassigned.
        similarity: cosine similarity in [-1, 1] to ``candidate``'s centroid,
            or to the nearest member's when unassigned.
        threshold: ``candidate``'s threshold (None when unassigned).
        passed: ``similarity >= threshold`` for the candidate.
        runner_up: ``(name, similarity)`` of the most similar other member,
            or None for a one-member cast.
        copy_paste: similarity to the nearest stored photo embedding of the
            candidate minus similarity to its centroid, or None (unassigned,
            or fewer than two stored embeddings).
        copy_paste_flagged: ``copy_paste > margin``.
        similarities: every member's similarity to this face.
    """

    box: list[float]
    soul: str | None
    candidate: str | None
    similarity: float
    threshold: float | None
    passed: bool
    runner_up: tuple[str, float] | None
    copy_paste: float | None
    copy_paste_flagged: bool
    similarities: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "box": [round(float(v), 1) for v in self.box],
            "soul": self.soul,
            "candidate": self.candidate,
            "similarity": round(self.similarity, 4),
            "threshold": None if self.threshold is None else round(self.threshold, 4),
            "passed": self.passed,
            "runner_up": None if self.runner_up is None else {"soul": self.runner_up[0],
                                                              "similarity": round(self.runner_up[1], 4)},
            "copy_paste": None if self.copy_paste is None else round(self.copy_paste, 4),
            "copy_paste_flagged": self.copy_paste_flagged,
        }


@dataclass
class CastImageReport:
    """The cast guard's verdict on one image or frame.

    Attributes:
        label: file name, ``frame <n>`` or ``image <i>``.
        faces: every detected face, left to right.
        missing: members with no passing face, in cast order.
        unknown_faces: faces that are no member (failed or unassigned).
        confusions: ``{"kind": "closer_to_other", "face", "soul", "other",
            "similarity", "other_similarity"}`` (the face given to ``soul``
            is ``other``'s: it passes ``other``'s threshold and is closer to
            it), or ``{"kind": "two_members", "face", "souls": [A, B]}``;
            ``face`` indexes :attr:`faces`.
        time: seconds from the clip's start (video frames), else None.
        shape: ``(H, W)`` of the analysed image.
    """

    label: str
    faces: list[CastFace]
    missing: list[str]
    unknown_faces: int
    confusions: list[dict]
    time: float | None = None
    shape: tuple[int, int] = (0, 0)

    @property
    def passed(self) -> bool:
        return not self.missing and not self.confusions

    def face_of(self, name: str) -> CastFace | None:
        """The face assigned to member ``name`` (passed or not), or None."""
        return next((f for f in self.faces if f.candidate == name), None)

    def as_dict(self) -> dict:
        d = {"path": self.label, "faces": [f.as_dict() for f in self.faces], "missing": list(self.missing),
             "unknown_faces": self.unknown_faces, "confusions": self.confusions, "passed": self.passed}
        if self.time is not None:
            d["time"] = round(self.time, 3)
        return d

    def text(self) -> str:
        lines = [f"{self.label}: {'PASS' if self.passed else 'FAIL'}  {len(self.faces)} face(s)"
                 + (f", missing {', '.join(self.missing)}" if self.missing else "")
                 + (f", {self.unknown_faces} unknown face(s)" if self.unknown_faces else "")]
        for i, f in enumerate(self.faces):
            who = f.soul or (f"unknown (as {f.candidate})" if f.candidate else "unknown")
            ru = f"  runner-up {f.runner_up[0]} {f.runner_up[1]:.3f}" if f.runner_up else ""
            cp = ""
            if f.copy_paste is not None:
                cp = f"  copy-paste {f.copy_paste:+.4f}" + (" FLAGGED" if f.copy_paste_flagged else "")
            box = ",".join(str(int(round(v))) for v in f.box)
            lines.append(f"  face {i} [{box}] {who:<24} {f.similarity:.3f} "
                         f"{'PASS' if f.passed else 'FAIL'}{ru}{cp}")
        for c in self.confusions:
            if c["kind"] == "two_members":
                lines.append(f"  confusion: face {c['face']} passes both {' and '.join(c['souls'])}")
            else:
                lines.append(f"  confusion: face {c['face']} (given to {c['soul']}, {c['similarity']:.3f}) is closer "
                             f"to {c['other']} ({c['other_similarity']:.3f})")
        return "\n".join(lines)


@dataclass
class CastVideoReport:
    """The cast guard's verdict on a clip's sampled frames.

    Attributes:
        label: the file name.
        frames: one :class:`CastImageReport` per sampled frame (with ``time``).
        characters: per member ``{"similarities": [float|None per frame],
            "times": [s], "minimum": float|None, "worst_time": s|None,
            "passed": bool}``; a frame without the member's face counts as its
            worst (similarity None).
    """

    label: str
    frames: list[CastImageReport]
    characters: dict[str, dict]

    @property
    def passed(self) -> bool:
        return all(f.passed for f in self.frames)

    @property
    def worst_frame(self) -> CastImageReport:
        """The frame of the lowest character minimum (first failing frame when none has a face)."""
        worst = None
        for c in self.characters.values():
            if c["worst_time"] is None:
                continue
            sim = -2.0 if c["worst_similarity"] is None else c["worst_similarity"]
            if worst is None or sim < worst[0]:
                worst = (sim, c["worst_time"])
        if worst is None:
            return self.frames[0]
        return next(f for f in self.frames if f.time == worst[1])

    def as_dict(self) -> dict:
        w = self.worst_frame
        missing = sorted({m for f in self.frames for m in f.missing},
                         key=lambda m: list(self.characters).index(m))
        conf = [dict(c, time=round(f.time, 3)) for f in self.frames for c in f.confusions]
        return {"path": self.label, "faces": [x.as_dict() for x in w.faces], "worst_frame_time": round(w.time, 3),
                "missing": missing, "unknown_faces": max(f.unknown_faces for f in self.frames),
                "confusions": conf, "passed": self.passed,
                "characters": {k: {"similarities": [None if s is None else round(s, 4) for s in v["similarities"]],
                                   "times": [round(t, 3) for t in v["times"]],
                                   "minimum": None if v["minimum"] is None else round(v["minimum"], 4),
                                   "worst_time": None if v["worst_time"] is None else round(v["worst_time"], 3),
                                   "passed": v["passed"]} for k, v in self.characters.items()},
                "frames": [f.as_dict() for f in self.frames]}

    def text(self) -> str:
        lines = [f"{self.label}: {'PASS' if self.passed else 'FAIL'}  {len(self.frames)} frame(s) checked"]
        for k, v in self.characters.items():
            m = "no face" if v["minimum"] is None else f"{v['minimum']:.3f}"
            wt = "-" if v["worst_time"] is None else f"{v['worst_time']:.2f} s"
            lines.append(f"  {k:<20} minimum {m}  worst frame at {wt}  {'PASS' if v['passed'] else 'FAIL'}")
        return "\n".join(lines)


class Cast:
    """A cast: Soul IDs that share one analyzer.

    Args:
        souls: two or more (one is allowed) Soul IDs with distinct names.
        analyzer: analyzer to use; default the first Soul ID's primary
            analyzer when every member has it, else the first analyzer all
            members share.
        copy_paste_margin: override :data:`COPY_PASTE_MARGIN`.

    Raises:
        CastGuardError: no Soul IDs, duplicate names, or no analyzer common
            to all members.
    """

    def __init__(self, souls: Sequence[SoulID], analyzer: FaceAnalyzer | str | None = None,
                 copy_paste_margin: float | None = None):
        souls = list(souls)
        if not souls:
            raise CastGuardError("the cast guard needs at least one Soul ID")
        names = [s.name for s in souls]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise CastGuardError(f"Soul ID {dup[0]!r} is in the cast twice")
        if isinstance(analyzer, FaceAnalyzer):
            az, name = analyzer, analyzer.name
        else:
            name = analyzer or _common_analyzer(souls)
            az = None
        lacking = [s.name for s in souls if name not in s.analyzers]
        if lacking:
            raise CastGuardError(f"Soul ID {lacking[0]!r} has no {name!r} embeddings; every cast member needs the "
                                 "same analyzer (embeddings of different analyzers are not comparable)")
        self.analyzer = az or get_analyzer(name)
        self.members = [CastMember(s.name, s.analyzer(name)) for s in souls]
        self.margin = float(copy_paste_margin if copy_paste_margin is not None
                            else COPY_PASTE_MARGIN.get(name, DEFAULT_COPY_PASTE_MARGIN))
        self._centroids = np.stack([m.ident.unit_centroid for m in self.members])  # [M, D]

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    def judge(self, faces: list[Face], label: str = "", shape: tuple[int, int] = (0, 0),
              time: float | None = None) -> CastImageReport:
        """Assign already-detected ``faces`` to the cast and judge them."""
        from scipy.optimize import linear_sum_assignment

        faces = sorted(faces, key=lambda f: (float(f.box[0]), float(f.box[1])))
        names, M = self.names, len(self.members)
        if not faces:
            return CastImageReport(label, [], list(names), 0, [], time, shape)
        S = np.stack([f.embedding for f in faces]).astype(np.float32) @ self._centroids.T  # [F, M]
        rows, cols = linear_sum_assignment(S, maximize=True)
        assigned = {int(r): int(c) for r, c in zip(rows, cols)}
        out, confusions = [], []
        for i, f in enumerate(faces):
            sims = S[i]
            j = assigned.get(i)
            order = [int(k) for k in np.argsort(-sims)]
            if j is None:
                cand, sim, thr, passed = None, float(sims[order[0]]), None, False
                ru_k = order[1] if M > 1 else None
            else:
                m = self.members[j]
                cand, sim, thr = m.name, float(sims[j]), m.threshold
                passed = sim >= thr
                ru_k = next((k for k in order if k != j), None)
                if order[0] != j and sims[order[0]] >= self.members[order[0]].threshold:
                    confusions.append({"kind": "closer_to_other", "face": i, "soul": cand, "other": names[order[0]],
                                       "similarity": round(sim, 4), "other_similarity": round(float(sims[order[0]]), 4)})
            both = [names[k] for k in range(M) if sims[k] >= self.members[k].threshold]
            if len(both) > 1:
                confusions.append({"kind": "two_members", "face": i, "souls": both})
            cp, flagged = None, False
            if j is not None and self.members[j].ident.embeddings.shape[0] >= 2:
                cp = float(np.max(self.members[j].ident.embeddings @ f.embedding)) - sim
                flagged = cp > self.margin
            out.append(CastFace([float(v) for v in f.box], cand if passed else None, cand, sim, thr, bool(passed),
                                None if ru_k is None else (names[ru_k], float(sims[ru_k])), cp, flagged,
                                {names[k]: float(sims[k]) for k in range(M)}))
        present = {f.soul for f in out if f.soul}
        missing = [n for n in names if n not in present]
        unknown = sum(1 for f in out if f.soul is None)
        return CastImageReport(label, out, missing, unknown, confusions, time, shape)

    def check_image(self, image: np.ndarray, label: str = "image", time: float | None = None) -> CastImageReport:
        """Detect every face of one ``[H, W, 3]`` uint8 (or float 0..1) RGB image and judge it.

        Raises:
            GuardError: the image has the wrong shape.
        """
        rgb = to_rgb(image, what=label, error=GuardError)
        return self.judge(self.detect(rgb), label, rgb.shape[:2], time)

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Every face of ``rgb`` (``[H, W, 3]`` uint8).

        Analyzers detect on a downscaled copy (dlib: 960 px longest side), which
        misses the smaller faces of a wide group shot. When fewer faces than
        cast members are found, detection runs again on overlapping strips
        along the longer side (at least one per member and about square, each
        half again as wide as its share) and faces not already found (less
        than half of the smaller box inside another) are added, with boxes in
        the full image's pixels.
        """
        faces = list(self.analyzer.detect(rgb))
        n = len(self.members)
        if len(faces) >= n or n < 2:
            return faces
        h, w = rgb.shape[:2]
        side = max(h, w)
        count = max(n, int(np.ceil(side / max(1, min(h, w)))))
        step = side / count
        span = min(side, int(round(step * 1.5)))
        for k in range(count):
            a = int(round(min(max(0.0, k * step - (span - step) / 2), side - span)))
            tile = rgb[:, a:a + span] if w >= h else rgb[a:a + span]
            for f in self.analyzer.detect(np.ascontiguousarray(tile)):
                off = np.array([a, 0, a, 0] if w >= h else [0, a, 0, a], np.float32)
                f.box = f.box + off
                f.keypoints = f.keypoints + off[:2]
                if f.landmarks is not None:
                    f.landmarks = f.landmarks + off[:2]
                if all(_overlap(f.box, g.box) < 0.5 for g in faces):
                    faces.append(f)
        return faces


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection of two ``[x0, y0, x1, y1]`` boxes over the smaller one's area (0..1): a face
    seen whole in one strip and cut at the edge of another is one face."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(ix * iy / small) if small > 0 else 0.0


def _common_analyzer(souls: Sequence[SoulID]) -> str:
    first = souls[0].primary_analyzer
    if all(first in s.analyzers for s in souls):
        return first
    for name in souls[0].analyzers:
        if all(name in s.analyzers for s in souls):
            return name
    have = "; ".join(f"{s.name}: {', '.join(s.analyzers)}" for s in souls)
    raise CastGuardError(f"the cast's Soul IDs share no analyzer ({have}); embeddings of different analyzers are "
                         "not comparable: rebuild one Soul ID with the other's analyzer")


def _each(cast: Cast, items, progress: ProgressFn | None, interrupt: InterruptFn | None) -> list[CastImageReport]:
    """``cast.check_image`` over ``(image, label, time)`` items, with progress and interrupt."""
    out = []
    for i, (im, lab, t) in enumerate(items):
        check(interrupt, f"cast guard, image {i + 1} of {len(items)}")
        out.append(cast.check_image(im, lab, t))
        report(progress, (i + 1) / len(items), f"cast guard: {lab} checked")
    return out


def check_cast_images(cast: Cast, images: Sequence[np.ndarray] | np.ndarray, labels: Sequence[str] | None = None,
                      progress: ProgressFn | None = None, interrupt: InterruptFn | None = None
                      ) -> list[CastImageReport]:
    """Judge each image (``[H, W, 3]`` uint8 or float 0..1, or a ``[B, H, W, 3]`` batch).

    Raises:
        CastGuardError: no images.
        GuardError: an image of the wrong shape.
        Interrupted: ``interrupt()`` returned True between images.
    """
    imgs = list(images)
    if not imgs:
        raise CastGuardError("no images to check")
    labels = list(labels) if labels else [f"image {i}" for i in range(len(imgs))]
    return _each(cast, [(im, labels[i], None) for i, im in enumerate(imgs)], progress, interrupt)


def check_cast_frames(cast: Cast, frames: Sequence[np.ndarray], times: Sequence[float], label: str = "video",
                      progress: ProgressFn | None = None, interrupt: InterruptFn | None = None) -> CastVideoReport:
    """Judge a clip's frames (already sampled) with their timestamps in seconds.

    Raises:
        CastGuardError: no frames.
        Interrupted: ``interrupt()`` returned True between frames.
    """
    if len(frames) == 0:
        raise CastGuardError(f"{label}: no frames to check")
    reps = _each(cast, [(fr, f"frame {i}", float(t)) for i, (fr, t) in enumerate(zip(frames, times))],
                 progress, interrupt)
    chars = {}
    for m in cast.members:
        sims = []
        for r in reps:
            f = r.face_of(m.name)
            sims.append(None if f is None else f.similarity)
        seen = [s for s in sims if s is not None]
        if any(s is None for s in sims):
            k = sims.index(None)
        else:
            k = int(np.argmin(sims))
        chars[m.name] = {"similarities": sims, "times": [r.time for r in reps],
                         "minimum": min(seen) if seen else None, "worst_time": reps[k].time,
                         "worst_similarity": sims[k], "passed": all(m.name not in r.missing for r in reps)}
    return CastVideoReport(label, reps, chars)


def check_cast_video(cast: Cast, path: str | os.PathLike, max_frames: int = 16,
                     label: str | None = None) -> CastVideoReport:
    """Judge ``max_frames`` evenly spaced frames of a video file (PyAV); ``label`` defaults to the file name.

    Raises:
        GuardError: missing or undecodable file, no video stream.
    """
    frames, times = decode_video(path)
    picked, labels = sample_frames(frames, max_frames)
    idx = [int(lab.split()[1]) for lab in labels]
    return check_cast_frames(cast, picked, [times[i] for i in idx], label or Path(path).name)


def face_masks(report: CastImageReport, names: Sequence[str], grow: float = 0.15) -> np.ndarray:
    """Per-member face masks: ``[len(names), H, W]`` float32 0/1, the box of the
    face assigned to each member (passed or not: the face a repair pass should
    inpaint), grown by ``grow`` of its size on each side; zeros when the member
    has no face."""
    h, w = report.shape
    out = np.zeros((len(names), h, w), np.float32)
    for k, n in enumerate(names):
        f = report.face_of(n)
        if f is None:
            continue
        x0, y0, x1, y1 = f.box
        gx, gy = (x1 - x0) * grow, (y1 - y0) * grow
        xa, ya = max(0, int(np.floor(x0 - gx))), max(0, int(np.floor(y0 - gy)))
        xb, yb = min(w, int(np.ceil(x1 + gx))), min(h, int(np.ceil(y1 + gy)))
        if xb > xa and yb > ya:
            out[k, ya:yb, xa:xb] = 1.0
    return out


def pick_best(reports: Sequence[CastImageReport]) -> int | None:
    """Index of the image to keep: among images where every member passes, the
    one with the highest lowest-member similarity; None when none passes."""
    best = None
    for i, r in enumerate(reports):
        if not r.passed:
            continue
        low = min((f.similarity for f in r.faces if f.soul), default=-2.0)
        if best is None or low > best[0]:
            best = (low, i)
    return None if best is None else best[1]


__all__ = ["COPY_PASTE_MARGIN", "Cast", "CastFace", "CastGuardError", "CastImageReport", "CastVideoReport",
           "check_cast_frames", "check_cast_images", "check_cast_video", "face_masks", "pick_best"]
