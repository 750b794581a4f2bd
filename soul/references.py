"""Reference images out of a Soul ID, for reference-conditioned models.

Today's edit and video models keep a face from reference images fed into the
graph: FLUX Kontext / FLUX.2 through ComfyUI's ``ReferenceLatent``,
Qwen-Image-Edit-2509 through ``TextEncodeQwenImageEditPlus`` (up to three
numbered images), Wan Phantom through ``WanPhantomSubjectToVideo``. A Soul ID
already holds the best material for them: its accepted photos, rated by QA,
with their face boxes and pose classes. This module picks and crops them,
from the ``.soulid`` file alone (no analyzer run).

Selection (:func:`select_references`):

1. **QA rank** (:func:`qa_rank`): rating (perfect > good > poor), then cosine
   similarity of the photo's embedding to the Soul ID's centroid, then face
   size.
2. **Angle diversity**: the best photo of each role in :data:`ROLE_ORDER`
   (front first, then three-quarter left / right, then profile left / right),
   round after round until ``k`` are chosen.
3. **No near-duplicates**: a photo whose difference hash and face embedding
   match an already chosen one (:func:`soulid.soul.create.is_near_duplicate`)
   is skipped.

Roles: the pose class stored with each photo, with the side taken from the
yaw the QA recorded (``qa_report["photos"][*]["pose_angles"]``). Left and
right are the person's own, as a photographer says it: ``three_quarter_right``
is the head turned to the person's right, the nose pointing to the image's
left (yaw > 0 in :mod:`soulid.soul.analysis.pose`); a mirrored photo swaps them.
A photo whose yaw was not recorded keeps the side-less class
(``three_quarter`` / ``profile``).

Cropping (:func:`crop_reference`), around the stored face box:
``face`` (tight square, about 1.6 face widths), ``head`` (head and
shoulders, square, about 2.6 face widths, centred a little below the face),
``portrait`` (3:4, about 3.2 face widths wide, face in the upper third).
Every crop is fitted to one output size.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .create import is_near_duplicate
from .errors import SoulIDError
from .qa import dhash
from .soulfile import SoulID

#: Role order: the first of each is taken before any second photo of a role.
ROLE_ORDER = ("front", "three_quarter_left", "three_quarter_right", "three_quarter",
              "profile_left", "profile_right", "profile")
CROP_MODES = ("face", "head", "portrait")
#: Crop geometry per mode: (crop width in face-box sides, height / width, face centre's
#: height in the crop as a fraction from the top).
_CROP = {"face": (1.6, 1.0, 0.45), "head": (2.6, 1.0, 0.40), "portrait": (3.2, 4.0 / 3.0, 0.33)}
_RATING_RANK = {"perfect": 0, "good": 1, "poor": 2}
#: Output sides are rounded to this multiple (latent grids of 8 / 16 px).
SIZE_MULTIPLE = 16
MIN_SIZE, MAX_SIZE = 64, 4096


class ReferenceSetError(SoulIDError):
    """Bad reference request (no photos, unknown crop mode, size out of range)."""


@dataclass
class ReferenceSet:
    """Chosen, cropped reference images.

    Attributes:
        images: ``[k, H, W, 3]`` uint8 RGB, in the chosen order.
        roles: one role per image (:data:`ROLE_ORDER` names).
        photos: index into ``soul.photos`` of each image.
        sources: the original file name of each photo.
        ratings: the QA rating of each photo.
        crop: the crop mode used.
    """

    images: np.ndarray
    roles: list[str]
    photos: list[int]
    sources: list[str]
    ratings: list[str]
    crop: str
    skipped_duplicates: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        """JSON-able summary (no pixels)."""
        k, h, w = (int(x) for x in self.images.shape[:3])
        return {
            "count": k, "width": w, "height": h, "crop": self.crop,
            "references": [
                {"position": i + 1, "role": r, "photo": p, "source": s, "rating": q}
                for i, (r, p, s, q) in enumerate(zip(self.roles, self.photos, self.sources, self.ratings))
            ],
            "skipped_near_duplicates": self.skipped_duplicates,
        }


def _pose_angles(soul: SoulID) -> dict[str, dict]:
    """Source file name -> the QA's ``pose_angles`` (``{"yaw", "pitch", "roll"}``)."""
    out = {}
    for p in (soul.qa_report or {}).get("photos", []):
        if p.get("pose_angles") and not p.get("excluded") and p.get("rating") != "rejected":
            out[Path(str(p.get("path", ""))).name] = p["pose_angles"]
    return out


def photo_roles(soul: SoulID) -> list[str]:
    """The role of every stored photo (see the module docstring)."""
    angles = _pose_angles(soul)
    roles = []
    for p in soul.photos:
        cls = p.pose_class or "front"
        yaw = (angles.get(p.source) or {}).get("yaw")
        if cls in ("three_quarter", "profile") and yaw is not None and yaw != 0:
            cls = f"{cls}_{'right' if yaw > 0 else 'left'}"
        roles.append(cls)
    return roles


def _embeddings(soul: SoulID) -> tuple[dict[int, np.ndarray], np.ndarray | None]:
    """Photo index -> unit embedding of the primary analyzer, and its unit centroid."""
    if not soul.analyzers:
        return {}, None
    a = soul.analyzer()
    rows = {int(i): np.asarray(a.embeddings[r], dtype=np.float32) for r, i in enumerate(a.photo_indices)}
    return rows, a.unit_centroid


def qa_rank(soul: SoulID) -> list[int]:
    """Photo indices, best first: rating, then similarity to the centroid,
    then face area (stored pixels)."""
    emb, centroid = _embeddings(soul)

    def key(i: int):
        p = soul.photos[i]
        sim = float(emb[i] @ centroid) if i in emb and centroid is not None else 0.0
        box = p.face_box or [0, 0, 0, 0]
        area = max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])
        return (_RATING_RANK.get(p.rating, 3), -round(sim, 3), -area, i)

    return sorted(range(len(soul.photos)), key=key)


def select_references(soul: SoulID, k: int = 3) -> tuple[list[int], list[str], list[int]]:
    """Choose ``k`` photos by QA rank and angle diversity, without near-duplicates.

    Returns:
        ``(photo indices, roles, skipped)`` in the chosen order; ``skipped``
        lists the photos left out as near-duplicates of a chosen one. Fewer
        than ``k`` when the Soul ID has fewer distinct photos.

    Raises:
        ReferenceSetError: ``k < 1`` or the Soul ID holds no photos.
    """
    if k < 1:
        raise ReferenceSetError(f"k={k}: ask for at least one reference image")
    if not soul.photos:
        raise ReferenceSetError(f"Soul ID {soul.name!r} holds no photos to take references from")
    roles = photo_roles(soul)
    emb, _ = _embeddings(soul)
    hashes: dict[int, int] = {}

    def hash_of(i: int) -> int:
        if i not in hashes:
            hashes[i] = dhash(soul.photos[i].rgb())
        return hashes[i]

    buckets: dict[str, list[int]] = {}
    for i in qa_rank(soul):
        buckets.setdefault(roles[i], []).append(i)
    order = [r for r in ROLE_ORDER if r in buckets] + [r for r in buckets if r not in ROLE_ORDER]
    chosen: list[int] = []
    skipped: list[int] = []
    while len(chosen) < k and any(buckets.values()):
        for role in order:
            while buckets[role] and len(chosen) < k:
                i = buckets[role].pop(0)
                if any(is_near_duplicate(hash_of(c), hash_of(i), emb.get(c), emb.get(i)) for c in chosen):
                    skipped.append(i)
                    continue
                chosen.append(i)
                break
    return chosen, [roles[i] for i in chosen], skipped


def output_size(size: int, crop: str) -> tuple[int, int]:
    """``(height, width)`` px of references of ``size`` (the longest side) in ``crop`` mode."""
    if crop not in CROP_MODES:
        raise ReferenceSetError(f"crop {crop!r}: use one of {', '.join(CROP_MODES)}")
    if not MIN_SIZE <= int(size) <= MAX_SIZE:
        raise ReferenceSetError(f"size {size}: must be {MIN_SIZE}..{MAX_SIZE} px")
    _, aspect, _ = _CROP[crop]
    h = max(SIZE_MULTIPLE, int(size) // SIZE_MULTIPLE * SIZE_MULTIPLE)
    w = max(SIZE_MULTIPLE, int(round(h / aspect / SIZE_MULTIPLE)) * SIZE_MULTIPLE)
    return h, w


def crop_reference(rgb: np.ndarray, face_box: list[float] | None, size: int = 1024,
                   crop: str = "head") -> np.ndarray:
    """Crop ``[H, W, 3]`` uint8 around ``face_box`` (``[x1, y1, x2, y2]`` px)
    in ``crop`` mode and resize to :func:`output_size`.

    The crop window keeps the target aspect ratio; it is moved (never padded)
    to stay inside the photo and shrunk when the photo is too small for it.
    Without a face box the window is centred on the photo.

    Returns:
        ``[h, w, 3]`` uint8 (``(h, w) = output_size(size, crop)``).
    """
    out_h, out_w = output_size(size, crop)
    ih, iw = rgb.shape[:2]
    widths, _, face_y = _CROP[crop]
    aspect = out_h / out_w
    if face_box:
        x1, y1, x2, y2 = (float(v) for v in face_box)
        side = max(x2 - x1, y2 - y1, 1.0)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        cw = side * widths
    else:
        cx, cy, cw, face_y = iw / 2, ih / 2, float(iw), 0.5
    ch = cw * aspect
    scale = min(1.0, iw / cw, ih / ch)  # shrink to fit inside the photo
    cw, ch = cw * scale, ch * scale
    left = min(max(cx - cw / 2, 0.0), iw - cw)
    top = min(max(cy - ch * face_y, 0.0), ih - ch)
    x0, y0 = int(round(left)), int(round(top))
    x1_, y1_ = min(iw, x0 + max(1, int(round(cw)))), min(ih, y0 + max(1, int(round(ch))))
    window = rgb[y0:y1_, x0:x1_]
    interp = cv2.INTER_AREA if window.shape[1] > out_w else cv2.INTER_LANCZOS4
    return np.ascontiguousarray(cv2.resize(window, (out_w, out_h), interpolation=interp))


def reference_images(soul: SoulID, k: int = 3, size: int = 1024, crop: str = "head",
                     all_photos: bool = False) -> ReferenceSet:
    """The Soul ID's reference images, chosen and cropped.

    Args:
        soul: the Soul ID (its stored photos are used; nothing is re-analysed).
        k: how many (ignored with ``all_photos``).
        size: longest side of every output image, px (rounded down to a
            multiple of 16).
        crop: ``face | head | portrait``.
        all_photos: every accepted photo in QA-rank order, near-duplicates
            included (a training set), instead of the diverse top ``k``.

    Returns:
        :class:`ReferenceSet` with ``images`` ``[n, H, W, 3]`` uint8.

    Raises:
        ReferenceSetError: bad ``k``, ``size`` or ``crop``, or no photos.
    """
    output_size(size, crop)  # validate before decoding anything
    if all_photos:
        if not soul.photos:
            raise ReferenceSetError(f"Soul ID {soul.name!r} holds no photos to take references from")
        idx = qa_rank(soul)
        roles_all = photo_roles(soul)
        roles, skipped = [roles_all[i] for i in idx], []
    else:
        idx, roles, skipped = select_references(soul, k)
    imgs = [crop_reference(soul.photos[i].rgb(), soul.photos[i].face_box, size, crop) for i in idx]
    return ReferenceSet(
        images=np.stack(imgs),
        roles=roles,
        photos=idx,
        sources=[soul.photos[i].source for i in idx],
        ratings=[soul.photos[i].rating for i in idx],
        crop=crop,
        skipped_duplicates=skipped,
    )
