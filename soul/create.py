"""Building a Soul ID from photos: per-photo QA, set-level checks, identity.

:func:`create_soul_id` is the one entry point used by the CLI, the ComfyUI
node and the cloud trainer. It never lets one bad photo sink the set: every
input ends up in the report with a rating and reasons.

Set-level checks, in order: near-duplicate shots (same difference hash and the
same face), identity outliers (median/MAD on cosine similarity to the medoid,
:func:`soulid.soul.identity.find_outliers`), the 80-photo cap (best kept), the
count against the recommended 20-80, angle coverage, and one verdict.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .analysis.registry import get_analyzer, resolve_name
from .errors import PhotoError
from .identity import baseline_and_threshold, find_outliers, unit
from .imageio import iter_photo_paths
from .qa import PhotoQA, assess_photo
from .soulfile import AnalyzerIdentity, SoulID, StoredPhoto

#: Recommended photo count (Higgsfield Soul ID: 20+; at most 80 are kept).
RECOMMENDED_MIN, MAX_PHOTOS = 20, 80
#: Hamming distance between difference hashes at or below which two shots are near-duplicates.
DUPLICATE_HASH_BITS = 6
#: ... provided their faces are this similar (cosine), so look-alike framings of two people differ.
DUPLICATE_FACE_SIM = 0.97

ProgressFn = Callable[[int, int, str], None]
InterruptFn = Callable[[], bool]
PhotoInput = "str | os.PathLike | tuple[str, np.ndarray]"


class Interrupted(Exception):
    """Raised when the ``interrupt`` callable asked to stop."""


@dataclass
class CreateResult:
    """Outcome of :func:`create_soul_id`.

    Attributes:
        soul: the Soul ID, or None when no photo was usable.
        report: the QA report (JSON-able): ``{"photos": [...], "summary": {...}}``.
        photos: per-photo :class:`~soulid.soul.qa.PhotoQA`, in input order.
        analyzer: the concrete analyzer name used.
        seconds: wall time.
    """

    soul: SoulID | None
    report: dict
    photos: list[PhotoQA]
    analyzer: str
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


# ------------------------------------------------------------ analysis pool
_worker_analyzer = None


def _worker_init(name: str) -> None:
    global _worker_analyzer
    _worker_analyzer = get_analyzer(name)


def _worker_assess(item) -> PhotoQA:
    return assess_photo(item, _worker_analyzer)


def _default_workers(n: int) -> int:
    if "folder_paths" in sys.modules:
        # Inside ComfyUI the package is imported under a path-derived module
        # name that a spawned child cannot import; analyse in-process.
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus, n // 4, 8))


def analyze_photos(
    items: list,
    analyzer: str,
    progress: ProgressFn | None = None,
    interrupt: InterruptFn | None = None,
    workers: int | None = None,
) -> list[PhotoQA]:
    """Run :func:`~soulid.soul.qa.assess_photo` on every item, in parallel
    processes when there are enough photos, results in input order.

    Raises:
        Interrupted: ``interrupt()`` returned True (pending work is cancelled).
    """
    n = len(items)
    workers = _default_workers(n) if workers is None else max(1, int(workers))
    out: list[PhotoQA | None] = [None] * n

    def label(i):
        it = items[i]
        return Path(it).name if not isinstance(it, tuple) else str(it[0])

    if workers == 1 or n <= 1:
        a = get_analyzer(analyzer)
        for i, it in enumerate(items):
            if interrupt and interrupt():
                raise Interrupted("Soul ID creation interrupted")
            out[i] = assess_photo(it, a)
            if progress:
                progress(i + 1, n, label(i))
        return out  # type: ignore[return-value]

    # fork shares the analyzer the parent already loaded (no per-worker model
    # load); it is only safe while the parent runs a single thread.
    fork_ok = sys.platform == "linux" and threading.active_count() == 1
    ctx = mp.get_context("fork" if fork_ok else "spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(analyzer,)) as ex:
        futs = {ex.submit(_worker_assess, it): i for i, it in enumerate(items)}
        done_count = 0
        pending = set(futs)
        while pending:
            done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            if interrupt and interrupt():
                for f in pending:
                    f.cancel()
                raise Interrupted("Soul ID creation interrupted")
            for f in done:
                i = futs[f]
                out[i] = f.result()
                done_count += 1
                if progress:
                    progress(done_count, n, label(i))
    return out  # type: ignore[return-value]


# -------------------------------------------------------------- set checks
def _hamming(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


def is_near_duplicate(hash_a: int, hash_b: int, emb_a: np.ndarray | None, emb_b: np.ndarray | None) -> bool:
    """Two shots are near-duplicates when their 64-bit difference hashes
    (:func:`soulid.soul.qa.dhash`) differ in at most :data:`DUPLICATE_HASH_BITS`
    bits and, when both unit face embeddings are given, their cosine
    similarity is at least :data:`DUPLICATE_FACE_SIM` (so look-alike framings
    of two people are not merged)."""
    if _hamming(hash_a, hash_b) > DUPLICATE_HASH_BITS:
        return False
    return emb_a is None or emb_b is None or float(emb_a @ emb_b) >= DUPLICATE_FACE_SIM


def flag_near_duplicates(photos: list[PhotoQA]) -> None:
    """Exclude all but the best photo of each group of near-duplicate shots."""
    cand = [p for p in photos if p.usable and p.dhash is not None and p.embedding is not None]
    cand.sort(key=lambda p: (-{"perfect": 3, "good": 2, "poor": 1}[p.rating], -p.quality))
    kept: list[PhotoQA] = []
    for p in cand:
        twin = next(
            (k for k in kept if is_near_duplicate(k.dhash, p.dhash, k.embedding, p.embedding)),
            None,
        )
        if twin is None:
            kept.append(p)
        else:
            p.exclude(f"near-duplicate of {Path(twin.path).name}")


def flag_identity_outliers(photos: list[PhotoQA], floor: float) -> dict:
    """Exclude photos of another person; returns the outlier statistics."""
    cand = [p for p in photos if p.usable and p.embedding is not None]
    if len(cand) < 3:
        return {"checked": False, "reason": "fewer than 3 usable photos"}
    res = find_outliers(np.stack([p.embedding for p in cand]), same_person_floor=floor)
    for p, out, s, z in zip(cand, res.outlier, res.similarity, res.robust_z):
        p.metrics["similarity_to_medoid"] = round(float(s), 4)
        if out:
            p.exclude(
                f"identity outlier: looks like another person (similarity {s:.3f} to the set, "
                f"median {res.median:.3f}, robust z {z:.1f})"
            )
    return {"checked": True, "median": round(res.median, 4), "mad": round(res.mad, 4)}


def cap_count(photos: list[PhotoQA], max_photos: int) -> int:
    """Keep the best ``max_photos`` usable photos; returns how many were dropped."""
    cand = [p for p in photos if p.usable]
    if len(cand) <= max_photos:
        return 0
    cand.sort(key=lambda p: (-{"perfect": 3, "good": 2, "poor": 1}[p.rating], -p.quality))
    for p in cand[max_photos:]:
        p.exclude(f"over the {max_photos}-photo limit: lower quality than the {max_photos} kept")
    return len(cand) - max_photos


def summarise(photos: list[PhotoQA], max_photos: int = MAX_PHOTOS) -> dict:
    """Set-level summary: counts, ratings, angle coverage, warnings, verdict."""
    used = [p for p in photos if p.usable]
    ratings = {r: sum(1 for p in photos if p.rating == r) for r in ("perfect", "good", "poor", "rejected")}
    poses = {c: sum(1 for p in used if p.pose_class == c) for c in ("front", "three_quarter", "profile")}
    warnings = []
    if 0 < len(used) < RECOMMENDED_MIN:
        warnings.append(
            f"weak persona: {len(used)} usable photo(s); {RECOMMENDED_MIN}-{max_photos} varied photos are recommended"
        )
    if used and poses["three_quarter"] + poses["profile"] == 0:
        warnings.append("no three-quarter or profile views: add photos from other angles")
    elif used and poses["front"] == 0:
        warnings.append("no front view: add a photo facing the camera")
    good = sum(1 for p in used if p.rating in ("perfect", "good"))
    if not used:
        verdict = "unusable"
    elif len(used) >= RECOMMENDED_MIN and good >= RECOMMENDED_MIN // 2 and min(poses["front"], poses["three_quarter"]) > 0:
        verdict = "strong"
    elif good >= 1:
        verdict = "usable"
    else:
        verdict = "weak"
    return {
        "photos": len(photos),
        "accepted": len(used),
        "rejected": ratings["rejected"],
        "excluded": sum(1 for p in photos if p.excluded),
        "ratings": ratings,
        "angle_coverage": poses,
        "recommended": [RECOMMENDED_MIN, max_photos],
        "warnings": warnings,
        "verdict": verdict,
    }


def _keypoint_reference(used: list[PhotoQA], unit_centroid: np.ndarray) -> int:
    """Index into ``used`` of the most frontal, confidently detected photo
    nearest the centroid."""
    best, best_score = 0, -1e9
    for i, p in enumerate(used):
        pose = p.pose or {"yaw": 0.0, "pitch": 0.0}
        score = (
            float(p.embedding @ unit_centroid)
            - abs(pose["yaw"]) / 90.0
            - abs(pose["pitch"]) / 180.0
            + 0.1 * (p.det_score or 0.0)
        )
        if score > best_score:
            best, best_score = i, score
    return best


def expand_inputs(inputs: Iterable) -> tuple[list, list[PhotoQA]]:
    """Split inputs into analysable items and rejected entries (missing paths)."""
    items, bad = [], []
    for it in inputs:
        if isinstance(it, tuple):
            items.append(it)
            continue
        try:
            items += [str(p) for p in iter_photo_paths([it])]
        except PhotoError as e:
            q = PhotoQA(path=str(it))
            q.add("reject", e.reason)
            q.finalise_rating()
            bad.append(q)
    return items, bad


def create_soul_id(
    inputs: Iterable,
    name: str,
    analyzer: str = "auto",
    progress: ProgressFn | None = None,
    interrupt: InterruptFn | None = None,
    workers: int | None = None,
    max_photos: int = MAX_PHOTOS,
) -> CreateResult:
    """Build a Soul ID from photos.

    Args:
        inputs: photo paths, folders (scanned one level deep), and/or
            ``(label, [H, W, 3] uint8 RGB)`` pairs.
        name: the Soul ID's name.
        analyzer: ``auto | dlib | insightface | insightface_buffalo_l``.
        progress: ``progress(done, total, label)`` after each photo.
        interrupt: polled between photos; True stops with :class:`Interrupted`.
        workers: analysis processes (default: one per core, 1 inside ComfyUI).
        max_photos: cap on photos kept (the best are kept).

    Returns:
        :class:`CreateResult`; ``soul`` is None when no photo was usable
        (the report says why for each photo).

    Raises:
        Interrupted: when ``interrupt()`` returned True.
        ModelFilesMissing: the analyzer's model files are missing.
    """
    t0 = time.perf_counter()
    concrete = resolve_name(analyzer)
    az = get_analyzer(concrete)  # load once here: fail fast on missing models
    items, bad = expand_inputs(inputs)
    photos = analyze_photos(items, concrete, progress, interrupt, workers) + bad

    flag_near_duplicates(photos)
    outlier_stats = flag_identity_outliers(photos, floor=az.default_threshold)
    dropped = cap_count(photos, max_photos)
    summary = summarise(photos, max_photos)
    if dropped:
        summary["warnings"].append(f"{dropped} photo(s) over the {max_photos}-photo limit were left out (lowest quality)")
    summary["outliers"] = outlier_stats
    summary["analyzer"] = az.describe()

    used = [p for p in photos if p.usable]
    soul = None
    if used:
        emb = np.stack([p.embedding for p in used]).astype(np.float32)
        norms = np.array([p.embedding_norm for p in used], dtype=np.float32)
        baseline, thr = baseline_and_threshold(emb, az.default_threshold, az.threshold_ceiling)
        ident = AnalyzerIdentity(
            name=az.name,
            model_id=az.model_id,
            embeddings=emb,
            raw_norms=norms,
            photo_indices=list(range(len(used))),
            threshold=thr,
            baseline=baseline,
        )
        stored = []
        for p in used:
            from .imageio import load_photo

            small = load_photo(p.stored_jpeg, label=p.path).rgb
            stored.append(
                StoredPhoto(
                    jpeg=p.stored_jpeg,
                    source=Path(p.path).name,
                    rating=p.rating,
                    pose_class=p.pose_class or "front",
                    width=int(small.shape[1]),
                    height=int(small.shape[0]),
                    original_size=tuple(p.image_size),
                    face_box=[round(v * p.stored_scale, 1) for v in p.face_box] if p.face_box else None,
                )
            )
        k = _keypoint_reference(used, ident.unit_centroid)
        kp = used[k].keypoints * used[k].stored_scale
        keyref = {
            "photo": k,
            "analyzer": az.name,
            "keypoints": [[round(float(x), 2), round(float(y), 2)] for x, y in kp],
            "source": Path(used[k].path).name,
        }
        summary["threshold"] = round(thr, 4)
        summary["baseline"] = baseline
    report = {"photos": [p.as_dict() for p in photos], "summary": summary}
    if used:
        soul = SoulID(
            name=name,
            photos=stored,
            analyzers={az.name: ident},
            qa_report=report,
            keypoint_reference=keyref,
        )
    return CreateResult(
        soul=soul,
        report=report,
        photos=photos,
        analyzer=concrete,
        seconds=time.perf_counter() - t0,
        warnings=summary["warnings"],
    )
