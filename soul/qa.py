"""Photo QA: one rating per photo, ``perfect | good | poor | rejected``, with
reasons a person can act on.

Per photo (:func:`assess_photo`): decoding, resolution, one dominant face,
face size, blur (variance of the Laplacian on the face crop; Pech-Pacheco et
al., ICPR 2000), exposure (clipped highlights and shadows on the face), head
pose class, closed eyes (eye aspect ratio, 68-point landmarks only), face cut
by the frame edge. Set-level checks (near-duplicates, identity outliers,
count, angle coverage) live in :mod:`soulid.soul.create`.

Each reason carries a severity: ``reject`` (unusable), ``poor`` (usable for
the local centroid, never uploaded for cloud training), ``good`` (caps the
rating at good), ``info`` (no effect on the rating).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .analysis.base import Face, FaceAnalyzer
from .analysis.pose import eye_aspect_ratio, pose_class
from .errors import PhotoError
from .imageio import Photo, downscale, encode_jpeg, load_photo
from .soulfile import STORED_PHOTO_MAX_SIDE

RATINGS = ("perfect", "good", "poor", "rejected")
_RANK = {"info": -1, "perfect": 0, "good": 1, "poor": 2, "reject": 3, "rejected": 3}

#: Shortest side (px) a photo needs to be rated perfect (Higgsfield's bar).
PERFECT_MIN_SIDE = 960
#: Shortest side (px) below which a photo is poor.
GOOD_MIN_SIDE = 512
#: Face width (px) below which the face is too small to identify well.
MIN_FACE_PX = 80
#: Face width as a fraction of the image width below which the face is small in the frame.
MIN_FACE_FRACTION = 0.08
#: A second face whose area is at least this fraction of the largest makes a group photo.
GROUP_AREA_RATIO = 0.25
#: Laplacian variance on the 256-px face crop: below POOR is blurry, below GOOD is soft.
BLUR_POOR, BLUR_GOOD = 25.0, 60.0
#: Fraction of face pixels clipped (>= 250 or <= 5) above which exposure is poor / imperfect.
CLIP_POOR, CLIP_GOOD = 0.25, 0.08
#: Mean eye aspect ratio below which the eyes are closed.
EAR_CLOSED = 0.15
#: Longest side of the contact-sheet thumbnail, px.
THUMB_SIDE = 256
#: Longest / shortest side above which an image is not a portrait photo (a
#: screenshot strip, a banner): 2.5 admits 16:9 and 2:1 photos, refuses 720x233.
MAX_ASPECT = 2.5
#: Detection score (0..1) below which the face detection is uncertain.
DET_UNCERTAIN = 0.55


@dataclass
class Issue:
    """One finding about a photo. ``severity``: reject | poor | good | info."""

    severity: str
    text: str


@dataclass
class PhotoQA:
    """QA of one photo (JSON-able through :meth:`as_dict`).

    Attributes:
        path: file path or label.
        rating: perfect | good | poor | rejected.
        issues: findings; :attr:`reasons` gives their texts.
        image_size: ``(width, height)`` of the decoded photo, px.
        face_box: ``[x1, y1, x2, y2]`` of the chosen face, px, or None.
        pose: ``{"yaw", "pitch", "roll"}`` degrees, or None.
        pose_class: front | three_quarter | profile, or None.
        metrics: blur, clipping, eye aspect ratio, face fraction...
        embedding: ``[D]`` float32 unit embedding, or None (not serialised).
        embedding_norm: raw norm, or None.
        keypoints: ``[5, 2]`` float32 px, or None.
        stored_jpeg: the photo downscaled to <= 1024 px, JPEG (not serialised).
        stored_scale: stored size / original size.
        thumbnail: JPEG, longest side <= 256 px, for contact sheets (not serialised).
        dhash: 64-bit difference hash of the whole photo (near-duplicate check).
        excluded: True when set-level checks dropped the photo.
        quality: a 0..1 score for ranking photos of the same rating.
    """

    path: str
    rating: str = "rejected"
    issues: list[Issue] = field(default_factory=list)
    image_size: tuple[int, int] | None = None
    face_box: list[float] | None = None
    det_score: float | None = None
    pose: dict | None = None
    pose_class: str | None = None
    metrics: dict = field(default_factory=dict)
    embedding: np.ndarray | None = None
    embedding_norm: float | None = None
    keypoints: np.ndarray | None = None
    stored_jpeg: bytes | None = None
    stored_scale: float = 1.0
    dhash: int | None = None
    thumbnail: bytes | None = None
    excluded: bool = False
    quality: float = 0.0

    @property
    def reasons(self) -> list[str]:
        return [i.text for i in self.issues]

    @property
    def usable(self) -> bool:
        """Not rejected and not excluded by a set-level check."""
        return self.rating != "rejected" and not self.excluded

    def add(self, severity: str, text: str) -> None:
        self.issues.append(Issue(severity, text))

    def exclude(self, text: str) -> None:
        """Drop the photo from the Soul ID for a set-level reason (kept in the report)."""
        self.excluded = True
        self.add("info", f"excluded: {text}")

    def finalise_rating(self) -> None:
        worst = max((_RANK[i.severity] for i in self.issues), default=0)
        self.rating = {-1: "perfect", 0: "perfect", 1: "good", 2: "poor", 3: "rejected"}[worst]

    def as_dict(self) -> dict:
        return {
            "path": self.path,
            "rating": self.rating,
            "reasons": self.reasons,
            "pose": self.pose_class,
            "pose_angles": self.pose,
            "face_box": self.face_box,
            "det_score": None if self.det_score is None else round(self.det_score, 3),
            "image_size": list(self.image_size) if self.image_size else None,
            "metrics": self.metrics,
            "excluded": self.excluded,
        }


def dhash(rgb: np.ndarray, size: int = 8) -> int:
    """64-bit difference hash (Krawetz, "Kind of Like That", 2013) of ``[H, W, 3]`` uint8.

    Written here rather than taking ``imagehash``: that package would add
    SciPy and PyWavelets for a five-line function.
    """
    g = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (size + 1, size), interpolation=cv2.INTER_AREA)
    bits = (g[:, 1:] > g[:, :-1]).flatten()
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def _face_crop(rgb: np.ndarray, box: np.ndarray, side: int = 256) -> np.ndarray:
    h, w = rgb.shape[:2]
    x1, y1, x2, y2 = [int(round(v)) for v in box]
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    if x2 - x1 < 4 or y2 - y1 < 4:
        return np.zeros((side, side, 3), np.uint8)
    return cv2.resize(rgb[y1:y2, x1:x2], (side, side), interpolation=cv2.INTER_AREA)


def _check_faces(qa: PhotoQA, faces: list[Face]) -> Face | None:
    if not faces:
        qa.add("reject", "no face found")
        return None
    main = faces[0]
    others = faces[1:]
    if others:
        big = [f for f in others if f.area >= GROUP_AREA_RATIO * main.area]
        if big:
            qa.add(
                "reject",
                f"group photo: {len(big) + 1} faces of similar size; use photos of this person alone",
            )
        else:
            qa.add("good", f"{len(others)} small background face(s) ignored")
    return main


def _check_resolution(qa: PhotoQA, w: int, h: int) -> None:
    short = min(w, h)
    if short < GOOD_MIN_SIDE:
        qa.add("poor", f"low resolution {w}x{h}: shortest side {short} px (< {GOOD_MIN_SIDE} px)")
    elif short < PERFECT_MIN_SIDE:
        qa.add("good", f"resolution {w}x{h}: shortest side {short} px (perfect needs >= {PERFECT_MIN_SIDE} px)")


def _not_a_photo(qa: PhotoQA, w: int, h: int) -> bool:
    """Refuse images whose shape is no photo's (see :data:`MAX_ASPECT`)."""
    aspect = max(w, h) / max(1, min(w, h))
    if aspect > MAX_ASPECT:
        qa.add("reject", f"not a photo: {w}x{h} is {aspect:.1f}:1 (longer than {MAX_ASPECT:g}:1), "
                         "like a screenshot strip or a banner; use a photo of the person")
        return True
    return False


def _check_face_quality(qa: PhotoQA, rgb: np.ndarray, face: Face, analyzer: FaceAnalyzer) -> None:
    h, w = rgb.shape[:2]
    fw = face.width
    qa.metrics["face_width_px"] = round(fw, 1)
    qa.metrics["face_fraction"] = round(fw / w, 3)
    if fw < MIN_FACE_PX:
        qa.add("poor", f"face is only {fw:.0f} px wide (needs >= {MIN_FACE_PX} px)")
    elif fw / w < MIN_FACE_FRACTION:
        qa.add("good", f"face is small in the frame ({fw / w:.0%} of the width)")

    # Cut by the frame edge: box past the border by more than 5% of the face,
    # or landmarks outside the image.
    b = face.box
    margin = 0.05 * max(fw, face.height)
    cut = []
    if b[0] < -margin:
        cut.append("left")
    if b[1] < -margin:
        cut.append("top")
    if b[2] > w + margin:
        cut.append("right")
    if b[3] > h + margin:
        cut.append("bottom")
    pts = face.landmarks if face.landmarks is not None else face.keypoints
    if pts is not None:
        out = (pts[:, 0] < 0) | (pts[:, 0] >= w) | (pts[:, 1] < 0) | (pts[:, 1] >= h)
        if out.any() and not cut:
            cut.append("edge")
    if cut:
        qa.add("poor", f"face cut by the frame ({', '.join(cut)}): part of the face is missing")

    crop = _face_crop(rgb, face.box)
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    blur = float(cv2.Laplacian(gray, cv2.CV_64F).var())
    qa.metrics["sharpness"] = round(blur, 1)
    if blur < BLUR_POOR:
        qa.add("poor", f"face is blurry (sharpness {blur:.0f} < {BLUR_POOR:.0f})")
    elif blur < BLUR_GOOD:
        qa.add("good", f"face is slightly soft (sharpness {blur:.0f} < {BLUR_GOOD:.0f})")

    hi = float((gray >= 250).mean())
    lo = float((gray <= 5).mean())
    qa.metrics["clipped_highlights"] = round(hi, 3)
    qa.metrics["clipped_shadows"] = round(lo, 3)
    for frac, what in ((hi, "highlights"), (lo, "shadows")):
        if frac > CLIP_POOR:
            qa.add("poor", f"bad exposure: {frac:.0%} of the face is clipped {what}")
        elif frac > CLIP_GOOD:
            qa.add("good", f"uneven exposure: {frac:.0%} of the face is clipped {what}")

    pc = pose_class(face.pose)
    qa.pose_class = pc
    qa.pose = face.pose.as_dict()
    if pc == "profile":
        qa.add("info", f"profile view (yaw {face.pose.yaw:+.0f} deg)")
    if abs(face.pose.pitch) > 30:
        qa.add("good", f"head tilted {'up' if face.pose.pitch > 0 else 'down'} ({face.pose.pitch:+.0f} deg)")

    if analyzer.has_68_landmarks and face.landmarks is not None and len(face.landmarks) == 68:
        ear = eye_aspect_ratio(face.landmarks)
        qa.metrics["eye_aspect_ratio"] = round(ear, 3)
        if ear < EAR_CLOSED:
            qa.add("poor", f"eyes look closed (eye aspect ratio {ear:.2f} < {EAR_CLOSED})")

    if face.det_score < DET_UNCERTAIN:
        qa.add("good", f"face detection is uncertain (score {face.det_score:.2f})")


def _quality(qa: PhotoQA) -> float:
    """0..1 ranking score within a rating: resolution, sharpness, frontal-ness."""
    m = qa.metrics
    res = min(1.0, min(qa.image_size or (0, 0)) / PERFECT_MIN_SIDE)
    sharp = min(1.0, m.get("sharpness", 0.0) / (4 * BLUR_GOOD))
    face = min(1.0, m.get("face_width_px", 0.0) / 300.0)
    det = qa.det_score or 0.0
    return round(0.3 * res + 0.3 * sharp + 0.2 * face + 0.2 * det, 4)


def assess_photo(
    source: str | os.PathLike | tuple[str, np.ndarray] | Photo,
    analyzer: FaceAnalyzer,
    keep_photo: bool = True,
) -> PhotoQA:
    """Rate one photo. Never raises for bad input: problems become reasons.

    Args:
        source: a path, a ``(label, [H, W, 3] uint8)`` pair, or a decoded :class:`Photo`.
        analyzer: the face analyzer (its embedding is kept on the result).
        keep_photo: also keep the photo downscaled to <= 1024 px as JPEG.

    Returns:
        :class:`PhotoQA` with rating, reasons, face box, pose, embedding.
    """
    if isinstance(source, Photo):
        label = source.source
    elif isinstance(source, tuple):
        label = str(source[0])
    else:
        label = str(source)
    qa = PhotoQA(path=label)
    try:
        if isinstance(source, Photo):
            photo = source
        elif isinstance(source, tuple):
            rgb = np.asarray(source[1])
            if rgb.ndim != 3 or rgb.shape[2] < 3 or rgb.dtype != np.uint8:
                raise PhotoError(label, f"expected an [H, W, 3] uint8 image, got {rgb.shape} {rgb.dtype}")
            photo = Photo(rgb=np.ascontiguousarray(rgb[..., :3]), source=label, format="array")
        else:
            photo = load_photo(source, label=Path(source).name)
    except PhotoError as e:
        qa.add("reject", e.reason)
        qa.finalise_rating()
        return qa
    for note in photo.notes:
        qa.add("info", note)
    rgb = photo.rgb
    qa.image_size = (photo.width, photo.height)
    qa.dhash = dhash(rgb)
    small = downscale(rgb, STORED_PHOTO_MAX_SIDE)
    qa.thumbnail = encode_jpeg(downscale(small, THUMB_SIDE), quality=85)
    _check_resolution(qa, photo.width, photo.height)
    if _not_a_photo(qa, photo.width, photo.height):
        qa.finalise_rating()
        return qa
    try:
        faces = analyzer.detect(rgb)
    except Exception as e:  # a model error on one photo must not sink the batch
        qa.add("reject", f"face analysis failed ({type(e).__name__}: {e})")
        qa.finalise_rating()
        return qa
    qa.metrics["faces"] = len(faces)
    face = _check_faces(qa, faces)
    if face is not None:
        qa.face_box = [round(float(v), 1) for v in face.box]
        qa.det_score = float(face.det_score)
        qa.embedding = face.embedding
        qa.embedding_norm = float(face.embedding_norm)
        qa.keypoints = face.keypoints
        _check_face_quality(qa, rgb, face, analyzer)
    qa.finalise_rating()
    qa.quality = _quality(qa) if qa.rating != "rejected" else 0.0
    if keep_photo and qa.rating != "rejected":
        qa.stored_scale = small.shape[1] / rgb.shape[1]
        qa.stored_jpeg = encode_jpeg(small)
    return qa
