"""Face analysis with dlib: HOG detector, 68-point shape predictor and the
ResNet-34 face-recognition model (128-D embedding, 99.38% on LFW).

Weights come from the PyPI packages ``dlib-bin`` (the library) and
``face_recognition_models`` (the ``.dat`` files). The latter's ``__init__``
imports ``pkg_resources``, which new setuptools no longer ships, so the model
folder is located with :func:`importlib.util.find_spec` without importing it.

Source: D. E. King, "Dlib-ml: A Machine Learning Toolkit", JMLR 10 (2009);
http://dlib.net/face_recognition.py.html
"""
from __future__ import annotations

import importlib.util
import math
import threading
from pathlib import Path

import numpy as np

from ..errors import ModelFilesMissing
from .base import Face, FaceAnalyzer, l2_normalise
from .pose import _five_from_68, pose_from_68

MODEL_FILES = {
    "landmarks": "shape_predictor_68_face_landmarks.dat",
    "recognition": "dlib_face_recognition_resnet_model_v1.dat",
}


def models_folder() -> Path:
    """Folder holding face_recognition_models' ``.dat`` files.

    Raises:
        ModelFilesMissing: the package is not installed or lacks a file.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    locs = list(spec.submodule_search_locations or []) if spec else []
    folder = Path(locs[0]) / "models" if locs else None
    missing = [
        str(folder / f) if folder else f"face_recognition_models/models/{f}"
        for f in MODEL_FILES.values()
        if folder is None or not (folder / f).is_file()
    ]
    if missing:
        raise ModelFilesMissing(
            "dlib analyzer", missing, "Install them with: pip install face_recognition_models dlib-bin"
        )
    return folder


class DlibAnalyzer(FaceAnalyzer):
    """dlib HOG + 68 landmarks + ResNet embedding, on the CPU.

    Detection runs on a copy scaled so that its longest side is
    ``detect_size`` px (small images are upscaled up to 2x) with ``upsample``
    pyramid steps: at 960 px and no extra step, faces wider than about 8% of
    the photo's longest side are found in ~85 ms; smaller background faces may
    be missed, which only spares them a warning. Landmarks and embeddings are
    computed on the full-resolution image.

    Args:
        detect_size: longest side of the detection image, px.
        upsample: dlib's ``upsample_num_times`` for the HOG detector.
        jitter: dlib's ``num_jitters`` for the embedding (1 = no jitter).
    """

    name = "dlib"
    model_id = "dlib_face_recognition_resnet_model_v1"
    embedding_dim = 128
    # dlib's published operating point is a Euclidean distance of 0.6 between
    # raw descriptors; their norms are ~1.4, so for unit vectors
    # cos = 1 - 0.6**2 / (2 * 1.4**2) ~ 0.91.
    default_threshold = 0.90
    threshold_ceiling = 0.95
    has_68_landmarks = True

    def __init__(self, detect_size: int = 960, upsample: int = 0, jitter: int = 1):
        import dlib  # heavy: imported only when an analyzer is built

        folder = models_folder()
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(str(folder / MODEL_FILES["landmarks"]))
        self._rec = dlib.face_recognition_model_v1(str(folder / MODEL_FILES["recognition"]))
        self.detect_size = int(detect_size)
        self.upsample = int(upsample)
        self.jitter = int(jitter)
        self._lock = threading.Lock()

    def _detect_boxes(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
        import cv2

        h, w = rgb.shape[:2]
        scale = self.detect_size / max(h, w)
        scale = min(scale, 2.0)
        small = rgb if abs(scale - 1) < 1e-3 else cv2.resize(
            rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
            interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
        )
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        rects, scores, _ = self._detector.run(gray, self.upsample, -0.2)
        out = []
        for r, s in zip(rects, scores):
            box = np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], dtype=np.float32) / scale
            out.append((box, 1.0 / (1.0 + math.exp(-2.0 * float(s)))))
        return out

    def detect(self, rgb: np.ndarray) -> list[Face]:
        dlib = self._dlib
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        faces: list[Face] = []
        with self._lock:
            for box, score in self._detect_boxes(rgb):
                rect = dlib.rectangle(
                    int(round(box[0])), int(round(box[1])), int(round(box[2])) - 1, int(round(box[3])) - 1
                )
                shape = self._shape(rgb, rect)
                lm = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
                desc = np.array(self._rec.compute_face_descriptor(rgb, shape, self.jitter), dtype=np.float32)
                emb, norm = l2_normalise(desc)
                faces.append(
                    Face(
                        box=box,
                        det_score=float(score),
                        keypoints=_five_from_68(lm),
                        landmarks=lm,
                        pose=pose_from_68(lm, rgb.shape[:2]),
                        embedding=emb,
                        embedding_norm=norm,
                    )
                )
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces
