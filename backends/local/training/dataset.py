"""The training set: face-centred crops of a Soul ID's accepted photos.

Each photo is assigned the aspect bucket (a ``(width, height)`` of about
``resolution**2`` pixels, sides multiples of 64) nearest to its own aspect
ratio; the largest window of that aspect that fits in the photo is placed
with the stored face box at its centre (clamped to the photo), then resized
to the bucket. With ``flip`` (off by default, as the reference's
``--random_flip``: mirroring teaches an asymmetric face both ways) each crop
is also used mirrored. Photos are the stored JPEGs (longest side <= 1024 px),
decoded with the pack's one image loader.

Each sample keeps what SDXL's size conditioning needs, as diffusers'
``train_dreambooth_lora_sdxl.py`` computes it: the photo's true size
(``original_size``, before any resize, so an upscaled 700 px photo does not
claim 1024 px) and the top-left corner of the crop in the resized photo
(``crop_top_left``; of the mirrored photo for a flipped sample).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ....soul.errors import SoulIDError
from ....soul.soulfile import SoulID, StoredPhoto

#: Aspect ratios (width / height) of the buckets, as in SDXL's training buckets.
BUCKET_ASPECTS = (1.0, 0.75, 4 / 3, 0.6875, 1.4545, 0.5625, 1.7778)
#: Ratings whose photos are trained on: every photo the Soul ID kept (QA-accepted; "rejected" ones are not stored).
ACCEPTED = ("perfect", "good", "poor")


class DatasetError(SoulIDError):
    """No photo to train on (the message says why)."""


@dataclass
class Sample:
    """One training image.

    Attributes:
        rgb: ``[H, W, 3]`` uint8 RGB at the bucket size.
        caption: the text it is trained with.
        photo: index into the Soul ID's photos; flipped: mirrored copy.
        original_size: ``(height, width)`` px of the photo the crop came from.
        crop_top_left: ``(top, left)`` px of the crop in the photo resized by the crop's scale.
    """

    rgb: np.ndarray
    caption: str
    photo: int
    flipped: bool = False
    original_size: tuple[int, int] | None = None
    crop_top_left: tuple[int, int] = (0, 0)

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.shape[1], self.rgb.shape[0]


def buckets(resolution: int) -> list[tuple[int, int]]:
    """``(width, height)`` buckets of about ``resolution**2`` px, multiples of 64."""
    out = []
    for a in BUCKET_ASPECTS:
        w = int(round(resolution * a ** 0.5 / 64)) * 64
        h = int(round(resolution / a ** 0.5 / 64)) * 64
        out.append((max(64, w), max(64, h)))
    return out


def nearest_bucket(width: int, height: int, resolution: int) -> tuple[int, int]:
    a = np.log(width / height)
    return min(buckets(resolution), key=lambda b: abs(np.log(b[0] / b[1]) - a))


def face_crop(rgb: np.ndarray, face_box: list[float] | None, bucket: tuple[int, int]) -> np.ndarray:
    """The largest window of the bucket's aspect in ``rgb``, centred on the
    face box (``[x1, y1, x2, y2]`` px; the image centre when None), resized to
    ``bucket`` (Lanczos). Returns ``[bh, bw, 3]`` uint8 (see :func:`crop_window`)."""
    x0, y0, cw, ch = crop_window(rgb.shape[:2], face_box, bucket)
    bw, bh = bucket
    im = Image.fromarray(rgb).resize((bw, bh), Image.LANCZOS, box=(x0, y0, x0 + cw, y0 + ch))
    return np.asarray(im, dtype=np.uint8)


def crop_window(hw: tuple[int, int], face_box: list[float] | None, bucket: tuple[int, int]):
    """``(x0, y0, width, height)`` px (floats) of :func:`face_crop`'s window in a photo of size ``hw``."""
    h, w = hw
    bw, bh = bucket
    scale = min(w / bw, h / bh)
    cw, ch = bw * scale, bh * scale
    cx, cy = ((face_box[0] + face_box[2]) / 2, (face_box[1] + face_box[3]) / 2) if face_box else (w / 2, h / 2)
    x0 = min(max(cx - cw / 2, 0.0), w - cw)
    y0 = min(max(cy - ch / 2, 0.0), h - ch)
    return x0, y0, cw, ch


def accepted_photos(soul: SoulID) -> list[tuple[int, StoredPhoto]]:
    """``(index, photo)`` of the Soul ID's accepted photos (rating in :data:`ACCEPTED`)."""
    return [(i, p) for i, p in enumerate(soul.photos) if p.rating in ACCEPTED]


def build_samples(soul: SoulID, captions: list[str], resolution: int, flip: bool = False) -> list[Sample]:
    """The training samples of ``soul`` (one per accepted photo, two with ``flip``).

    Args:
        captions: one per accepted photo (:func:`accepted_photos` order).
        resolution: bucket area side, px (1024 for SDXL).

    Raises:
        DatasetError: no accepted photo, or a caption count mismatch.
    """
    photos = accepted_photos(soul)
    if not photos:
        raise DatasetError(f"Soul ID {soul.name!r} has no accepted photo to train on; recreate it from photos that pass QA")
    if len(captions) != len(photos):
        raise DatasetError(f"{len(captions)} caption(s) for {len(photos)} accepted photo(s)")
    out = []
    for (i, p), cap in zip(photos, captions):
        rgb = p.rgb()
        h, w = rgb.shape[:2]
        bucket = nearest_bucket(w, h, resolution)
        crop = face_crop(rgb, p.face_box, bucket)
        x0, y0, cw, _ = crop_window((h, w), p.face_box, bucket)
        k = bucket[0] / cw  # the resize factor of the photo; the resized photo is rw x rh px
        rw, rh = max(bucket[0], int(round(w * k))), max(bucket[1], int(round(h * k)))
        top = min(int(round(y0 * k)), rh - bucket[1])
        left = min(int(round(x0 * k)), rw - bucket[0])
        out.append(Sample(crop, cap, i, original_size=(h, w), crop_top_left=(top, left)))
        if flip:
            mirrored_left = rw - left - bucket[0]
            out.append(Sample(np.ascontiguousarray(crop[:, ::-1]), cap, i, flipped=True, original_size=(h, w),
                              crop_top_left=(top, mirrored_left)))
    return out
