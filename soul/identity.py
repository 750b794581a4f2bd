"""Identity math on unit face embeddings: cosine similarity, centroid, medoid,
robust outlier rejection and the per-person same-person threshold.

All embeddings here are ``[N, D]`` float32 rows of unit length (one
analyzer's space; never mix spaces).

Outliers use the median absolute deviation (Hampel's identifier; Leys et al.,
"Detecting outliers: Do not use standard deviation around the mean, use
absolute deviation around the median", J. Exp. Soc. Psych. 49, 2013) of the
cosine similarities to the set's medoid.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Consistency constant that makes MAD estimate the standard deviation of a normal.
MAD_TO_SIGMA = 1.4826


def unit(v: np.ndarray) -> np.ndarray:
    """Scale ``[D]`` or ``[N, D]`` to unit L2 norm along the last axis (float32)."""
    v = np.asarray(v, dtype=np.float32)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v / np.maximum(n, 1e-12)).astype(np.float32)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """Cosine similarity in [-1, 1] between ``[D]``/``[N, D]`` and ``[D]``/``[M, D]``.

    Returns a float for two vectors, ``[N]`` for matrix-vector, ``[N, M]`` for matrix-matrix.
    """
    r = unit(a) @ unit(b).T
    return float(r) if np.ndim(r) == 0 else r


def centroid(embeddings: np.ndarray) -> np.ndarray:
    """``[D]`` float32 mean of the unit embeddings ``[N, D]`` (norm <= 1)."""
    return np.asarray(embeddings, dtype=np.float32).mean(axis=0)


def medoid_index(embeddings: np.ndarray) -> int:
    """Index of the row with the highest summed cosine similarity to the others."""
    e = unit(embeddings)
    return int(np.argmax((e @ e.T).sum(axis=1)))


@dataclass
class OutlierResult:
    """Result of :func:`find_outliers`.

    Attributes:
        outlier: ``[N]`` bool, True where the row is another person.
        similarity: ``[N]`` cosine similarity of each row to the medoid.
        robust_z: ``[N]`` (median - similarity) / (1.4826 * MAD), floored scale.
        median, mad: the statistics used.
    """

    outlier: np.ndarray
    similarity: np.ndarray
    robust_z: np.ndarray
    median: float
    mad: float


def find_outliers(
    embeddings: np.ndarray,
    same_person_floor: float,
    z_limit: float = 3.5,
    min_scale: float = 0.01,
) -> OutlierResult:
    """Flag embeddings that belong to another person.

    A row is an outlier when its similarity to the medoid is more than
    ``z_limit`` robust standard deviations below the median similarity
    (Hampel / MAD rule, scale floored at ``min_scale`` so that a set of
    near-identical shots does not flag ordinary variation), **and** below
    ``same_person_floor`` plus that margin's half — or simply below
    ``same_person_floor - 0.05``, clearly another person whatever the spread.

    Args:
        embeddings: ``[N, D]`` unit embeddings, N >= 1.
        same_person_floor: the analyzer's default same-person cosine threshold.
        z_limit: robust z above which a row is an outlier (3.5 is Iglewicz &
            Hoaglin's recommendation).
        min_scale: floor of the robust scale, in cosine units.

    With fewer than 3 rows nobody can be outvoted: nothing is flagged.
    """
    e = unit(embeddings)
    n = e.shape[0]
    if n == 0:
        z = np.zeros(0, dtype=np.float32)
        return OutlierResult(np.zeros(0, bool), z, z, 1.0, 0.0)
    m = medoid_index(e)
    sims = e @ e[m]
    med = float(np.median(sims))
    mad = float(np.median(np.abs(sims - med)))
    scale = max(MAD_TO_SIGMA * mad, min_scale)
    z = (med - sims) / scale
    if n < 3:
        return OutlierResult(np.zeros(n, bool), sims, z, med, mad)
    out = (z > z_limit) & (sims < max(same_person_floor, med - 0.1))
    out |= sims < same_person_floor - 0.05
    out[m] = False
    return OutlierResult(out, sims, z, med, mad)


def leave_one_out_similarities(embeddings: np.ndarray) -> np.ndarray:
    """``[N]`` cosine similarity of each row to the centroid of the *other* rows:
    the self-similarity a held-out photo of this person gets. Empty for N < 2."""
    e = unit(embeddings)
    n = e.shape[0]
    if n < 2:
        return np.zeros(0, dtype=np.float32)
    total = e.sum(axis=0)
    rest = unit(total[None, :] - e)
    return np.einsum("nd,nd->n", e, rest).astype(np.float32)


def baseline_and_threshold(
    embeddings: np.ndarray, default_threshold: float, ceiling: float
) -> tuple[dict, float]:
    """This person's self-similarity baseline and same-person threshold.

    The threshold sits below the held-out (leave-one-out) self-similarities:
    ``min(loo_min - 0.02, loo_mean - 3 * max(loo_std, 0.01))``, clipped to
    ``[default_threshold, ceiling]`` so that a very consistent set cannot make
    the threshold stricter than ``ceiling`` and a loose one cannot make it laxer
    than the model's own operating point.

    Returns:
        ``(baseline, threshold)``; baseline is
        ``{"n", "loo_mean", "loo_std", "loo_min"}`` (None values when N < 2).
    """
    loo = leave_one_out_similarities(embeddings)
    if loo.size == 0:
        return {"n": int(len(embeddings)), "loo_mean": None, "loo_std": None, "loo_min": None}, float(
            default_threshold
        )
    mean, std, mn = float(loo.mean()), float(loo.std()), float(loo.min())
    thr = min(mn - 0.02, mean - 3.0 * max(std, 0.01))
    thr = float(np.clip(thr, default_threshold, ceiling))
    return {"n": int(loo.size), "loo_mean": mean, "loo_std": std, "loo_min": mn}, thr
