"""Face analysis with InsightFace model packs (antelopev2, buffalo_l).

The packs are ONNX files that users download themselves (licence: non-commercial
research use, see README). They are looked up, in order, in
``$SOULID_INSIGHTFACE_DIR/models/<pack>/``, ``$SOULID_INSIGHTFACE_DIR/<pack>/``
and each ComfyUI ``models/insightface`` folder's ``models/<pack>/`` (the layout
cubiq's InstantID and IPAdapter nodes use).

Detection is SCRFD (Guo et al., "Sample and Computation Redistribution for
Efficient Face Detection", 2021), recognition ArcFace (Deng et al., CVPR 2019);
both through ``insightface.model_zoo`` so that any 0.7.x or later insightface works.

Embedding spaces: antelopev2 (glintr100) and buffalo_l (w600k_r50) are
different models; a Soul ID records which one produced each embedding.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from ..errors import ModelFilesMissing
from ..paths import models_dirs
from .base import Face, FaceAnalyzer, l2_normalise
from .pose import pose_from_5, pose_from_68

#: Files of each pack: role -> file name.
PACKS: dict[str, dict[str, str]] = {
    "antelopev2": {
        "detection": "scrfd_10g_bnkps.onnx",
        "recognition": "glintr100.onnx",
        "landmark_3d_68": "1k3d68.onnx",
    },
    "buffalo_l": {
        "detection": "det_10g.onnx",
        "recognition": "w600k_r50.onnx",
        "landmark_3d_68": "1k3d68.onnx",
    },
}
REQUIRED_ROLES = ("detection", "recognition")


def candidate_pack_dirs(pack: str) -> list[Path]:
    """Every folder where ``pack`` may live, in search order."""
    out: list[Path] = []
    env = os.environ.get("SOULID_INSIGHTFACE_DIR")
    if env:
        out += [Path(env) / "models" / pack, Path(env) / pack]
    for d in models_dirs("insightface"):
        out.append(d / "models" / pack)
    return out


def find_pack(pack: str) -> Path:
    """Folder holding ``pack``'s required ONNX files.

    Raises:
        ModelFilesMissing: naming every expected path, and pointing out the
            common nested ``<pack>/<pack>/`` mistake when that is what it finds.
        KeyError: unknown pack name.
    """
    files = PACKS[pack]
    dirs = candidate_pack_dirs(pack)
    for d in dirs:
        if all((d / files[r]).is_file() for r in REQUIRED_ROLES):
            return d
    missing = [str(d / files[r]) for d in dirs for r in REQUIRED_ROLES] or [
        f"<ComfyUI>/models/insightface/models/{pack}/{files[r]}" for r in REQUIRED_ROLES
    ]
    hint = []
    for d in dirs:
        nested = d / pack
        if all((nested / files[r]).is_file() for r in REQUIRED_ROLES):
            hint.append(
                f"Found the files one folder too deep in {nested}: move them up into {d} "
                f"(zip archives of {pack} unpack into a nested {pack}/{pack} folder)."
            )
    if not dirs:
        hint.append("Set SOULID_INSIGHTFACE_DIR or COMFYUI_PATH, or run inside ComfyUI.")
    hint.append(
        f"Download the {pack} pack and unzip it so that the .onnx files sit directly in one of these folders."
    )
    raise ModelFilesMissing(f"insightface pack {pack!r}", missing, "\n".join(hint))


def packs_available() -> list[str]:
    """Names of the packs whose required files are present."""
    out = []
    for p in PACKS:
        try:
            find_pack(p)
            out.append(p)
        except ModelFilesMissing:
            pass
    return out


def _providers() -> list[str]:
    import onnxruntime as ort

    avail = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in avail] or avail


class _Kps:
    """The minimal face object ``ArcFaceONNX.get`` and ``Landmark.get`` read."""

    def __init__(self, bbox, kps):
        self.bbox = bbox
        self.kps = kps
        self._d: dict = {}

    def __setitem__(self, k, v):
        self._d[k] = v

    def __getitem__(self, k):
        return self._d[k]

    def get(self, k, default=None):
        return self._d.get(k, default)


class InsightFaceAnalyzer(FaceAnalyzer):
    """SCRFD detection + ArcFace embedding from an InsightFace pack.

    Args:
        pack: ``"antelopev2"`` (InstantID's space) or ``"buffalo_l"``
            (IP-Adapter FaceID's space).
        det_size: detector input size, px (square).
        det_thresh: detection score threshold, 0..1.

    Raises:
        ModelFilesMissing: the pack's files are not found (see :func:`find_pack`).
    """

    name = "insightface"
    embedding_dim = 512
    # ArcFace models verify at cosine ~0.3-0.4 on IJB-C at FAR 1e-4.
    default_threshold = 0.40
    threshold_ceiling = 0.55
    has_68_landmarks = False

    def __init__(self, pack: str = "antelopev2", det_size: int = 640, det_thresh: float = 0.5):
        folder = find_pack(pack)
        from insightface.model_zoo import model_zoo

        files = PACKS[pack]
        providers = _providers()
        self.pack = pack
        self.model_id = f"insightface/{pack}"
        self.name = "insightface" if pack == "antelopev2" else f"insightface_{pack}"
        self._det = model_zoo.get_model(str(folder / files["detection"]), providers=providers)
        self._det.prepare(ctx_id=0, input_size=(det_size, det_size), det_thresh=det_thresh)
        self._rec = model_zoo.get_model(str(folder / files["recognition"]), providers=providers)
        self._rec.prepare(ctx_id=0)
        self.embedding_dim = int(getattr(self._rec, "output_shape", [1, 512])[1])
        lm = folder / files["landmark_3d_68"]
        self._lm = None
        if lm.is_file():
            self._lm = model_zoo.get_model(str(lm), providers=providers)
            self._lm.prepare(ctx_id=0)
            self.has_68_landmarks = True
        self.det_size = det_size
        self._lock = threading.Lock()

    def detect(self, rgb: np.ndarray) -> list[Face]:
        bgr = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)[..., ::-1])
        with self._lock:
            bboxes, kpss = self._det.detect(bgr, max_num=0, metric="default")
            faces = []
            for i in range(bboxes.shape[0]):
                box = bboxes[i, :4].astype(np.float32)
                kps = kpss[i].astype(np.float32) if kpss is not None else None
                f = _Kps(box, kps)
                emb_raw = self._rec.get(bgr, f)
                emb, norm = l2_normalise(emb_raw)
                lm68 = None
                if self._lm is not None:
                    lm3 = self._lm.get(bgr, f)
                    lm68 = np.asarray(lm3)[:, :2].astype(np.float32)
                pose = pose_from_68(lm68, rgb.shape[:2]) if lm68 is not None else pose_from_5(kps)
                faces.append(
                    Face(
                        box=box,
                        det_score=float(bboxes[i, 4]),
                        keypoints=kps,
                        landmarks=lm68,
                        pose=pose,
                        embedding=emb,
                        embedding_norm=norm,
                    )
                )
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces
