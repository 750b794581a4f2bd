"""The face-analyzer interface shared by every backend (dlib, insightface).

A :class:`FaceAnalyzer` turns an RGB image into a list of :class:`Face`
records: box, 5-point keypoints, optional dense landmarks, detection score,
head pose and an identity embedding. Embeddings of different analyzers live in
different spaces and are never compared with each other.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np

#: Order of the 5 keypoints, the InsightFace / ArcFace convention
#: (image left/right as seen by the viewer).
KEYPOINT_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass
class HeadPose:
    """Head pose in degrees. ``yaw`` > 0: the face turns to the image's right;
    ``pitch`` > 0: chin up; ``roll`` > 0: head tilts clockwise in the image."""

    yaw: float
    pitch: float
    roll: float

    def as_dict(self) -> dict:
        return {"yaw": round(self.yaw, 1), "pitch": round(self.pitch, 1), "roll": round(self.roll, 1)}


@dataclass
class Face:
    """One detected face.

    Attributes:
        box: ``[4]`` float32 ``x1, y1, x2, y2`` in pixels of the analysed image;
            may extend past the frame for faces cut by the edge.
        det_score: detector confidence; 0..1 for insightface, dlib's HOG
            margin (about -0.5..3) mapped to 0..1 by a logistic for dlib.
        keypoints: ``[5, 2]`` float32 pixels, order :data:`KEYPOINT_NAMES`.
        landmarks: ``[68, 2]`` float32 pixels (iBUG 300-W layout) or None.
        pose: :class:`HeadPose` in degrees.
        embedding: ``[D]`` float32, L2-normalised identity embedding.
        embedding_norm: L2 norm of the raw embedding before normalisation.
    """

    box: np.ndarray
    det_score: float
    keypoints: np.ndarray
    pose: HeadPose
    embedding: np.ndarray
    embedding_norm: float
    landmarks: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def raw_embedding(self) -> np.ndarray:
        """The embedding before normalisation (``embedding * embedding_norm``)."""
        return self.embedding * np.float32(self.embedding_norm)


def l2_normalise(v: np.ndarray) -> tuple[np.ndarray, float]:
    """Return ``(v / |v|, |v|)`` as float32 and float. ``|v| == 0`` raises ValueError."""
    v = np.asarray(v, dtype=np.float32).reshape(-1)
    n = float(np.linalg.norm(v))
    if not np.isfinite(n) or n <= 0:
        raise ValueError("embedding has zero or non-finite norm")
    return (v / n).astype(np.float32), n


class FaceAnalyzer(abc.ABC):
    """Detects faces and computes identity embeddings.

    Subclasses set :attr:`name` (``"dlib"``, ``"insightface"``),
    :attr:`model_id` (e.g. ``"dlib_face_recognition_resnet_model_v1"``,
    ``"insightface/antelopev2"``) and :attr:`embedding_dim`.
    """

    name: str = ""
    model_id: str = ""
    embedding_dim: int = 0
    #: Cosine similarity at or above which two faces are, by the model's
    #: published operating point, the same person. A Soul ID refines this into a
    #: per-person threshold.
    default_threshold: float = 0.5
    #: Upper bound of a per-person threshold (see soul.identity.baseline_and_threshold).
    threshold_ceiling: float = 0.7
    #: True when :attr:`Face.landmarks` carries 68 points (eye-closure check).
    has_68_landmarks: bool = False

    @abc.abstractmethod
    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Find every face in ``rgb`` (``[H, W, 3]`` uint8 RGB).

        Returns:
            faces sorted by box area, largest first; empty when none.
        """

    def largest_face(self, rgb: np.ndarray) -> Face | None:
        """The largest face in ``rgb``, or None."""
        faces = self.detect(rgb)
        return faces[0] if faces else None

    def describe(self) -> dict:
        return {"name": self.name, "model_id": self.model_id, "embedding_dim": self.embedding_dim}
