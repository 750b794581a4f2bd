"""Soul Cast through a cloud backend: the front view from words, the other
views *from the front view* through the backend's reference-conditioned route,
each checked against the others (:func:`soulid.soul.cast.judge`) and redrawn
with a new seed when it is not the same person.

Routes:

* front view (text to image): Higgsfield Soul's generic route
  (:meth:`~.higgsfield.HiggsfieldBackend.generate` without a Soul ID);
  WaveSpeed and AuraShot have no text-to-image without an identity, so their
  front view comes from ``front_backend`` (Higgsfield by default);
* the other views: the backend's edit (Higgsfield: the front as
  ``image_reference``; WaveSpeed: Soul image-to-image; AuraShot: edit with
  the front view as face reference).

Every call goes through the backend's job engine with one shared
:class:`~.engine.Budget`: a ledger entry before every paid call, one payment
per request (a rerun of the same cast with the same seeds reuses the ledger's
results), and the budget refused before a call that would exceed it
(:class:`~.engine.CostLimit`).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from ..soul.analysis.registry import get_analyzer, resolve_name
from ..soul.cast import (ROLE_LABELS, ROLES, CastCheck, CastError, CastRecord, NotOnePerson, embed_views, judge,
                         role_prompt)
from ..soul.idsheet import NEGATIVE
from ..soul.imageio import to_float01, to_uint8
from ..soul.progress import InterruptFn, ProgressFn, check, report
from .base import EditRequest, GenerateRequest
from .engine import Budget

#: Backends whose own route makes the front view from words.
TEXT_TO_IMAGE = ("higgsfield",)
#: How far an angle edit may move from the front view (0 keeps it, 1 redraws freely).
EDIT_STRENGTH = 0.6
#: Seed step between roles, so no two views share a seed.
ROLE_SEED_STEP = 7919


@dataclass
class CastRun:
    """The views of a cast and what made them.

    Attributes:
        views: ``[(role, [H, W, 3] uint8)]`` in :data:`~soulid.soul.cast.ROLES` order.
        record: prompt, backend, seeds, request ids, attempts, redraws, cost.
        check: the cross-view check of the kept views.
        budget: ``Budget.summary()`` at the end.
    """

    views: list
    record: CastRecord
    check: CastCheck
    budget: dict = field(default_factory=dict)


def default_seed(prompt: str) -> int:
    """The seed a cast starts from when none is given: from the prompt, so
    that the same cast run again asks for the same views (and reuses them)."""
    return int.from_bytes(hashlib.sha256(prompt.strip().encode("utf-8")).digest()[:4], "big") % (2**31 - 1)


def _usd(cost: dict | None) -> float:
    try:
        return float((cost or {}).get("usd") or 0.0)
    except (TypeError, ValueError):
        return 0.0


def cast_views(backend, prompt: str, *, front_backend=None, roles: tuple[str, ...] = ROLES, seed: int | None = None,
               attempts: int = 3, budget: Budget | None = None, strength: float = EDIT_STRENGTH,
               analyzer: str = "auto", quality: str = "1080p", options: dict | None = None,
               progress: ProgressFn | None = None, interrupt: InterruptFn | None = None) -> CastRun:
    """Draw and check the views of a new character.

    Args:
        backend: a cloud backend (:func:`~.base.get_backend`) whose ``edit``
            makes the angle views from the front view.
        prompt: the character in words (drawn once, in the front view).
        front_backend: the backend that draws the front view (default:
            ``backend`` when it has text to image, see :data:`TEXT_TO_IMAGE`).
        roles: views to make, ``"front"`` first.
        seed: first seed (default :func:`default_seed`); view ``i``, draw
            ``k`` uses ``seed + 7919 * i + k``.
        attempts: draws per view, >= 1; a view that is not the same person
            is redrawn with the next seed until this many were made.
        budget: shared cost cap (default: no cap, spending still counted).
        strength: edit strength of the angle views, 0..1.
        options: extra request options for every call (``{"new": True}``:
            pay for fresh runs even where the ledger has these requests).

    Raises:
        NotOnePerson: a view still failed after ``attempts`` draws (names it
            with its similarity); the front view has no face.
        CastError: bad arguments; CloudError (CostLimit...) from the engine.
    """
    prompt = (prompt or "").strip()
    if not prompt:
        raise CastError("--prompt: describe the character in words")
    if attempts < 1:
        raise CastError(f"--attempts must be 1 or more, not {attempts}")
    roles = tuple(roles)
    if not roles or roles[0] != "front" or any(r not in ROLES for r in roles) or len(set(roles)) != len(roles):
        raise CastError(f"roles must start with the front view and be among {', '.join(ROLES)}")
    front_backend = front_backend or backend
    if front_backend.name not in TEXT_TO_IMAGE:
        raise CastError(f"{front_backend.name} draws no image from words alone; draw the front view with "
                        f"{' or '.join(TEXT_TO_IMAGE)} (--front-backend)")
    seed = default_seed(prompt) if seed is None else int(seed)
    budget = budget if budget is not None else Budget(None, "cast budget")
    az = get_analyzer(resolve_name(analyzer))
    rec = CastRecord(prompt=prompt, backend=backend.name if front_backend is backend
                     else f"{front_backend.name}+{backend.name}")
    total = len(roles)
    extra = {k: v for k, v in (options or {}).items() if k != "budget"}

    def note(role: str, s: int, res, k: int) -> np.ndarray:
        rec.seeds[role], rec.request_ids[role], rec.attempts[role] = s, res.request_id or None, k + 1
        rec.cost_usd += _usd(res.cost)
        return to_uint8(np.asarray(res.images[0]))

    # the front view, from the words
    check(interrupt, "cast front view")
    report(progress, 0.0, "cast: front view")
    res = front_backend.generate(GenerateRequest(prompt=role_prompt("front", prompt), soul=None, aspect="3:4",
                                                 quality=quality, seed=seed, negative_prompt=NEGATIVE,
                                                 options={**extra, "budget": budget}), interrupt=interrupt)
    front = note("front", seed, res, 0)
    kept = [("front", front)]
    emb = embed_views(kept, az, interrupt)
    if emb[0] is None:
        chk = judge(["front"], emb, az.default_threshold, az.threshold_ceiling, az.name)
        raise NotOnePerson("the front view has no face the analyzer can find; try other words or --seed", chk, rec)
    front_in = to_float01(front)
    face = {"face_reference": front_in} if backend.name == "aurashot" else {}  # AuraShot's edit takes the face apart
    chk = judge(["front"], emb, az.default_threshold, az.threshold_ceiling, az.name)
    for i, role in enumerate(roles[1:], start=1):
        for k in range(attempts):
            s = seed + ROLE_SEED_STEP * i + k
            check(interrupt, f"cast {ROLE_LABELS[role]} view")
            report(progress, i / total, f"cast: {ROLE_LABELS[role]} view" + (f" (draw {k + 1})" if k else ""))
            res = backend.edit(EditRequest(image=front_in, prompt=role_prompt(role), soul=None, strength=strength,
                                           quality=quality, seed=s, negative_prompt=NEGATIVE,
                                           options={**extra, "budget": budget, **face}), interrupt=interrupt)
            img = note(role, s, res, k)
            e = embed_views([(role, img)], az, interrupt)[0]
            chk = judge([r for r, _ in kept] + [role], emb + [e], az.default_threshold, az.threshold_ceiling,
                        az.name)
            if chk.one_person:
                kept.append((role, img))
                emb.append(e)
                break
            v = chk.view(role)
            rec.redraws.append({"role": role, "seed": s, "request_id": res.request_id or None,
                                "similarity_to_front": None if v.similarity_to_front is None
                                else round(v.similarity_to_front, 4),
                                "reason": v.reason or "; ".join(f"{f.label}: {f.reason}" for f in chk.failing)})
        else:
            raise NotOnePerson(f"{chk.message()} (after {attempts} draw{'s' if attempts > 1 else ''}; "
                               "raise --attempts, or change the words or --seed)", chk, rec)
    report(progress, 1.0, "cast: views done")
    return CastRun(kept, rec, chk, budget.summary())


__all__ = ["TEXT_TO_IMAGE", "CastRun", "cast_views", "default_seed"]
