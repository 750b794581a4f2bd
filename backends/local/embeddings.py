"""The identity embedding each local method needs, taken from a Soul ID.

Two embedding spaces, never mixed:

* ``instantid``: the **antelopev2** (glintr100) ArcFace embedding, *raw*
  (unnormalised, norm ~20-30), as InstantID was trained
  (Wang et al., "InstantID: Zero-shot Identity-Preserving Generation in
  Seconds", 2024, https://github.com/instantX-research/InstantID); stored in a
  Soul ID under the analyzer name ``insightface``.
* ``faceid_plusv2``: the **buffalo_l** (w600k_r50) ArcFace embedding,
  L2-normalised, as IP-Adapter FaceID was trained
  (https://huggingface.co/h94/IP-Adapter-FaceID); analyzer ``insightface_buffalo_l``.

When the Soul ID lacks the analyzer a method needs, :func:`identity_embedding`
computes it from the photos stored in the Soul ID and caches it back into the
Soul ID (and its file, when given one).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ...soul.analysis.base import FaceAnalyzer
from ...soul.errors import SoulIDError
from ...soul.identity import baseline_and_threshold
from ...soul.soulfile import AnalyzerIdentity, SoulID


class EmbeddingError(SoulIDError):
    """The Soul ID's embedding cannot drive this method (wrong space or size,
    no face in the stored photos)."""


@dataclass(frozen=True)
class Space:
    """An embedding space: the analyzer name in a Soul ID, its model id, its
    size, and whether the method wants the raw (unnormalised) vector."""

    analyzer: str
    model_id: str
    dim: int
    raw: bool


SPACES = {
    "instantid": Space("insightface", "insightface/antelopev2", 512, raw=True),
    "faceid_plusv2": Space("insightface_buffalo_l", "insightface/buffalo_l", 512, raw=False),
}


def space_for(method: str) -> Space:
    if method not in SPACES:
        raise ValueError(f"method must be one of {', '.join(SPACES)}, not {method!r}")
    return SPACES[method]


def compute_identity(soul: SoulID, analyzer: FaceAnalyzer) -> AnalyzerIdentity:
    """Embed the largest face of every photo stored in ``soul`` with ``analyzer``.

    Returns:
        an :class:`AnalyzerIdentity` (unit rows ``[N, D]`` float32, raw norms,
        photo indices, per-person threshold from the held-out self-similarity).

    Raises:
        EmbeddingError: no stored photo has a face for this analyzer.
    """
    rows, norms, idx = [], [], []
    for i, p in enumerate(soul.photos):
        face = analyzer.largest_face(p.rgb())
        if face is None:
            continue
        rows.append(np.asarray(face.embedding, np.float32))
        norms.append(float(face.embedding_norm))
        idx.append(i)
    if not rows:
        raise EmbeddingError(
            f"Soul ID {soul.name!r}: {analyzer.name} found no face in its {len(soul.photos)} stored photo(s)"
        )
    emb = np.stack(rows)
    ceiling = getattr(analyzer, "threshold_ceiling", max(0.8, analyzer.default_threshold))
    baseline, thr = baseline_and_threshold(emb, analyzer.default_threshold, ceiling)
    return AnalyzerIdentity(analyzer.name, analyzer.model_id, emb, np.asarray(norms, np.float32), idx, thr, baseline)


def identity_embedding(soul: SoulID, method: str, analyzer: FaceAnalyzer | None = None,
                       save_to: str | os.PathLike | None = None) -> np.ndarray:
    """The embedding ``method`` conditions on, ``[512]`` float32.

    ``instantid``: unit centroid x mean raw norm of the antelopev2 embeddings
    (:attr:`AnalyzerIdentity.raw_centroid`). ``faceid_plusv2``: the unit
    centroid of the buffalo_l embeddings.

    Args:
        soul: the identity.
        method: ``instantid | faceid_plusv2``.
        analyzer: analyzer to compute a missing embedding with (default:
            :func:`soulid.soul.analysis.get_analyzer` of the method's space);
            it must be of that space.
        save_to: a ``.soulid`` path to rewrite (atomically) after computing.

    Raises:
        EmbeddingError: the stored embedding has the wrong size or model, or
            ``analyzer`` is of another space.
        ModelFilesMissing: the insightface pack needed to compute it is missing.
    """
    sp = space_for(method)
    ident = soul.analyzers.get(sp.analyzer)
    if ident is None:
        if analyzer is None:
            from ...soul.analysis import get_analyzer

            analyzer = get_analyzer(sp.analyzer)
        if analyzer.name != sp.analyzer or (analyzer.model_id and analyzer.model_id != sp.model_id):
            raise EmbeddingError(
                f"{method} needs {sp.model_id} embeddings ({sp.analyzer}); analyzer {analyzer.name!r} "
                f"({analyzer.model_id}) is another embedding space"
            )
        ident = compute_identity(soul, analyzer)
        soul.analyzers[sp.analyzer] = ident
        if save_to is not None:
            soul.save(save_to)
    if ident.model_id != sp.model_id:
        raise EmbeddingError(
            f"Soul ID {soul.name!r}: analyzer {sp.analyzer!r} holds {ident.model_id!r} embeddings; "
            f"{method} needs {sp.model_id!r}"
        )
    dim = int(ident.embeddings.shape[-1]) if ident.embeddings.ndim == 2 else -1
    if dim != sp.dim or ident.embeddings.shape[0] == 0:
        raise EmbeddingError(
            f"Soul ID {soul.name!r}: {sp.analyzer} embeddings are {tuple(ident.embeddings.shape)}; "
            f"{method} needs [N, {sp.dim}] ({sp.model_id})"
        )
    vec = ident.raw_centroid if sp.raw else ident.unit_centroid
    if not np.all(np.isfinite(vec)):
        raise EmbeddingError(f"Soul ID {soul.name!r}: {sp.analyzer} embedding is not finite")
    return vec.astype(np.float32)


def reference_keypoints(soul: SoulID) -> tuple[np.ndarray, np.ndarray] | None:
    """``(photo [H, W, 3] uint8, keypoints [5, 2] float32 px)`` of the Soul ID's
    keypoint reference, or None when it has none."""
    ref = soul.keypoint_reference
    if not ref or "keypoints" not in ref:
        return None
    i = int(ref.get("photo", 0))
    if not 0 <= i < len(soul.photos):
        return None
    kps = np.asarray(ref["keypoints"], np.float32)
    if kps.shape != (5, 2):
        raise EmbeddingError(f"Soul ID {soul.name!r}: keypoint_reference.keypoints must be [5, 2], got {kps.shape}")
    return soul.photos[i].rgb(), kps


def aligned_face(rgb: np.ndarray, keypoints: np.ndarray, size: int = 224) -> np.ndarray:
    """ArcFace-aligned square face crop ``[size, size, 3]`` uint8 from 5 keypoints
    (insightface ``face_align.norm_crop``: a similarity transform onto the
    ArcFace template), the CLIP input of IP-Adapter FaceID Plus."""
    from insightface.utils import face_align

    return face_align.norm_crop(np.ascontiguousarray(rgb), landmark=np.asarray(keypoints, np.float32), image_size=size)


def face_crop_for_clip(soul: SoulID, analyzer: FaceAnalyzer | None = None, size: int = 224) -> np.ndarray:
    """The aligned face crop of the Soul ID's keypoint reference (or, without
    one, of the first stored photo where ``analyzer`` finds a face).

    Raises:
        EmbeddingError: no keypoints and no face found.
    """
    ref = reference_keypoints(soul)
    if ref is not None:
        return aligned_face(ref[0], ref[1], size)
    if analyzer is not None:
        for p in soul.photos:
            rgb = p.rgb()
            face = analyzer.largest_face(rgb)
            if face is not None:
                return aligned_face(rgb, face.keypoints, size)
    raise EmbeddingError(f"Soul ID {soul.name!r} has no keypoint reference and no face was found for the CLIP crop")
