"""Two (or more) characters in one image through a cloud backend: composed
per-character identity edits, every face checked by the cast guard.

No provider in soulid takes several Soul IDs in one request, so the route
composes one identity edit per character:

1. the scene (any image with one face per character: a generated group shot,
   a photo, a layout with stand-ins) is checked by the cast guard
   (:mod:`soulid.soul.cast_guard`), which says which face is whose;
2. for each character, the region around its face (the face box grown by
   ``context`` of its size on every side) is cropped and sent to the backend's
   identity edit (``Backend.edit`` with that character's Soul ID: Higgsfield
   Soul with the crop as image reference, WaveSpeed Soul image-to-image, or
   AuraShot edit with the Soul ID's face photo);
3. each edited crop is resized back and blended into its region with a
   feathered mask;
4. the result is checked again by the cast guard: every face against its own
   Soul ID.

Cost per image: one paid edit per character edited (two for two characters;
with ``only_failing`` only the characters that do not already pass), each
estimated and reserved in one shared :class:`~soulid.backends.engine.Budget`
(``max_usd``) before it is submitted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..soul.cast_guard import Cast, CastGuardError, CastImageReport
from ..soul.imageio import to_float01, to_uint8
from ..soul.progress import InterruptFn, ProgressFn, check, report
from ..soul.soulfile import SoulID
from .base import Backend, EditRequest
from .engine import Budget

PLACEMENTS = ("left_to_right", "match")


@dataclass
class CastEditResult:
    """Result of :func:`compose_cast_edits`.

    Attributes:
        image: ``[H, W, 3]`` float32 0..1, the scene with every edited face.
        before: the cast guard's report on the input scene.
        after: its report on the result (every face against its own Soul ID).
        edits: per edited character ``{"soul", "box" [x0, y0, x1, y1] px of the
            edited region, "request_id", "cost" {"credits", "usd"}}``.
        budget: the shared budget's state (``max_usd``, ``spent_usd``...).
    """

    image: np.ndarray
    before: CastImageReport
    after: CastImageReport
    edits: list[dict] = field(default_factory=list)
    budget: dict = field(default_factory=dict)

    @property
    def cost_usd(self) -> float:
        return float(sum(float((e.get("cost") or {}).get("usd") or 0.0) for e in self.edits))

    def as_dict(self) -> dict:
        return {"before": self.before.as_dict(), "after": self.after.as_dict(), "edits": self.edits,
                "cost_usd": round(self.cost_usd, 4), "budget": self.budget, "passed": self.after.passed}


def _region(box, shape, context: float) -> tuple[int, int, int, int]:
    h, w = shape
    x0, y0, x1, y1 = box
    gx, gy = (x1 - x0) * context, (y1 - y0) * context
    return (max(0, int(x0 - gx)), max(0, int(y0 - gy)), min(w, int(np.ceil(x1 + gx))), min(h, int(np.ceil(y1 + gy))))


def _feather(h: int, w: int, frac: float = 0.12) -> np.ndarray:
    """``[h, w, 1]`` float32 blend weights: 1 inside, ramping to 0 over ``frac`` of each side at the edges."""
    ry = np.minimum(np.arange(h) + 1, np.arange(h)[::-1] + 1) / max(1.0, h * frac)
    rx = np.minimum(np.arange(w) + 1, np.arange(w)[::-1] + 1) / max(1.0, w * frac)
    return np.clip(np.minimum(ry[:, None], rx[None, :]), 0, 1).astype(np.float32)[..., None]


def _faces_for(cast: Cast, rep: CastImageReport, placement: str) -> dict[str, list[float]]:
    """Character name -> face box in the scene."""
    if placement == "match":
        boxes = {m.name: rep.face_of(m.name).box for m in cast.members if rep.face_of(m.name) is not None}
    else:  # the largest len(cast) faces, read left to right, in cast order
        big = sorted(rep.faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), reverse=True)
        chosen = sorted(big[: len(cast.members)], key=lambda f: f.box[0])
        boxes = {m.name: f.box for m, f in zip(cast.members, chosen)}
    lacking = [m.name for m in cast.members if m.name not in boxes]
    if lacking:
        raise CastGuardError(f"the scene has {len(rep.faces)} face(s), none to place {', '.join(lacking)} on: "
                             "give it one face per character")
    return boxes


def compose_cast_edits(backend: Backend, souls: Sequence[SoulID], scene: np.ndarray, prompt: str, *,
                       placement: str = "left_to_right", only_failing: bool = False, strength: float = 0.6,
                       context: float = 1.0, seed: int | None = None, max_usd: float | None = None,
                       quality: str = "1080p", progress: ProgressFn | None = None,
                       interrupt: InterruptFn | None = None) -> CastEditResult:
    """Put each Soul ID's identity on its own face of ``scene`` through ``backend.edit``.

    Args:
        backend: a cloud backend with ``edit`` (higgsfield, wavespeed, aurashot).
        souls: the characters, in order (two or more; one works too).
        scene: ``[H, W, 3]`` uint8 or float32 0..1 with one face per character.
        prompt: wording for every edit (e.g. the scene's description).
        placement: ``left_to_right`` (character i on the i-th of the largest
            faces from the left) or ``match`` (each character on the face the
            cast guard assigns it: repairs a scene that is nearly right).
        only_failing: edit only the characters that do not pass in ``scene``.
        strength: edit strength 0..1 (backend semantics).
        context: the edited region is the face box grown by this share of its
            size on every side (head and shoulders at 1.0).
        seed: each character's edit uses ``seed + i`` (None: the backend's).
        max_usd: one budget for all edits together (None: no cap).

    Returns:
        :class:`CastEditResult`; ``after`` is the cast guard's verdict.

    Raises:
        CastGuardError: bad cast, placement, or a character without a face to
            go on.
        Interrupted: ``interrupt()`` returned True between edits.
        CloudError subclasses: from the backend (CostLimit when over budget).
    """
    if placement not in PLACEMENTS:
        raise CastGuardError(f"placement must be one of {', '.join(PLACEMENTS)}, not {placement!r}")
    cast = Cast(souls)
    img = to_float01(np.asarray(scene)[..., :3]).copy()
    before = cast.check_image(to_uint8(img), "scene")
    boxes = _faces_for(cast, before, placement)
    budget = Budget(max_usd, label="cast edit budget")
    edits = []
    todo = [(i, s) for i, s in enumerate(souls) if not (only_failing and s.name not in before.missing)]
    for k, (i, soul) in enumerate(todo):
        check(interrupt, f"cast edit, character {k + 1} of {len(todo)}")
        x0, y0, x1, y1 = _region(boxes[soul.name], img.shape[:2], context)
        crop = np.ascontiguousarray(img[y0:y1, x0:x1])
        report(progress, k / max(1, len(todo)), f"{backend.name}: identity edit {k + 1}/{len(todo)} ({soul.name})")
        res = backend.edit(EditRequest(image=crop, prompt=prompt, soul=soul, strength=strength, quality=quality,
                                       seed=None if seed is None else seed + i, options={"budget": budget}),
                           None, interrupt)
        out = _fit(np.asarray(res.images[0], dtype=np.float32), y1 - y0, x1 - x0)
        wgt = _feather(y1 - y0, x1 - x0)
        img[y0:y1, x0:x1] = out * wgt + img[y0:y1, x0:x1] * (1 - wgt)
        edits.append({"soul": soul.name, "box": [x0, y0, x1, y1], "request_id": res.request_id,
                      "cost": dict(res.cost or {})})
    report(progress, 1.0, "cast guard on the result")
    after = cast.check_image(to_uint8(img), "result")
    return CastEditResult(img, before, after, edits, budget.summary())


def _fit(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Resize ``[h', w', 3]`` float32 to ``[h, w, 3]`` (OpenCV area / linear)."""
    import cv2

    if a.shape[:2] == (h, w):
        return a
    interp = cv2.INTER_AREA if a.shape[0] > h else cv2.INTER_LINEAR
    return cv2.resize(a, (w, h), interpolation=interp)
