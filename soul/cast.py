"""Soul Cast: check that a character's views show one person, and lock them as a Soul ID.

A cast is up to four views of one (usually invented) character, in role order
:data:`ROLES`: the front view, a three-quarter view turned to the image's
left, one turned to the right, and a profile. The later views are normally
made *from* the front view (a reference-conditioned edit), so the front view
is the anchor.

:func:`check_views` embeds the largest face of every view with one analyzer
and applies the drift guard's same-person logic (:mod:`soulid.soul.guard`,
:mod:`soulid.soul.identity`) across the views:

1. the cross-view **similarity matrix** (cosine similarity of the unit face
   embeddings, ``[V, V]``);
2. every pair must reach the analyzer's same-person threshold (the floor of
   every per-person threshold, e.g. 0.90 for dlib, 0.40 for insightface);
3. every view, scored against the centroid of the *other* views (the Soul ID
   the others would make), must reach the **per-person threshold** those
   views give (:func:`~soulid.soul.identity.baseline_and_threshold`, as a
   Soul ID's own threshold is made).

When a check fails, the view with the lowest mean similarity to the others is
named as the failing one (with two views left: the non-front one, the front
view is the anchor), taken out, and the check repeats on the rest; a view
without a face fails with that reason. :func:`lock_cast` then builds the Soul
ID from the views through the usual QA (:func:`soulid.soul.create.create_soul_id`),
marks it ``origin="cast"`` and stores the matrix and what made the views
(:class:`CastRecord`).

The core does no network I/O and knows no backend: views come in as images.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .analysis.base import FaceAnalyzer
from .analysis.registry import get_analyzer, resolve_name
from .errors import SoulIDError
from .identity import baseline_and_threshold, leave_one_out_similarities, unit
from .imageio import downscale, safe_label, to_uint8
from .progress import InterruptFn, ProgressFn, check, report

#: View roles in order; the first is the anchor.
ROLES: tuple[str, ...] = ("front", "three_quarter_left", "three_quarter_right", "profile")
#: How each role is printed.
ROLE_LABELS = {"front": "front", "three_quarter_left": "3/4 left", "three_quarter_right": "3/4 right",
               "profile": "profile"}
#: Head yaw each role asks for, degrees (> 0: turned toward the image's right; see
#: :class:`soulid.soul.analysis.HeadPose`).
ROLE_YAW = {"front": 0.0, "three_quarter_left": -45.0, "three_quarter_right": 45.0, "profile": 90.0}
#: Pose wording of each role; the front view is drawn from the user's words,
#: the others are edits *of the front view* that only turn the head.
ROLE_PROMPTS = {
    "front": "head-and-shoulders portrait facing the camera straight on, neutral expression, eyes open "
             "looking into the lens",
    "three_quarter_left": "the same person, same face, hair, clothes and light; head turned 45 degrees toward the "
                          "left of the frame, three-quarter view, both eyes visible",
    "three_quarter_right": "the same person, same face, hair, clothes and light; head turned 45 degrees toward "
                           "the right of the frame, three-quarter view, both eyes visible",
    "profile": "the same person, same face, hair, clothes and light; head turned 90 degrees, pure side profile",
}
#: Longest side views are analysed at, px.
ANALYSIS_SIDE = 1024


def role_prompt(role: str, prompt: str = "") -> str:
    """The full prompt of one view: the character's words (front view only:
    the others are edits of it), the pose wording, the ID sheet's even look
    (:data:`soulid.soul.idsheet.BASE_PROMPT`)."""
    from .idsheet import BASE_PROMPT

    words = prompt.strip() if role == "front" else ""
    return ", ".join(p for p in (words, ROLE_PROMPTS[role], BASE_PROMPT) if p)


class CastError(SoulIDError):
    """Bad input to a cast (no views, a role twice, an unknown role, a wrong image shape)."""


class NotOnePerson(SoulIDError):
    """The views do not show one person; :attr:`check` names the failing view(s)."""

    def __init__(self, message: str, check: "CastCheck", record: "CastRecord | None" = None):
        super().__init__(message)
        self.check = check
        self.record = record


@dataclass
class ViewScore:
    """One view's place in the cross-view check.

    Attributes:
        role: one of :data:`ROLES`.
        similarity_to_front: cosine similarity in [-1, 1] to the front view
            (1.0 for the front itself), or None (no face in either).
        similarity_to_others: cosine similarity to the unit centroid of the
            other views that have a face, or None.
        passed: the view is one of the same person.
        reason: why it failed, else "".
    """

    role: str
    similarity_to_front: float | None
    similarity_to_others: float | None
    passed: bool
    reason: str = ""

    @property
    def label(self) -> str:
        return ROLE_LABELS.get(self.role, self.role)

    def as_dict(self) -> dict:
        r = (lambda v: None if v is None else round(float(v), 4))
        return {"role": self.role, "similarity_to_front": r(self.similarity_to_front),
                "similarity_to_others": r(self.similarity_to_others), "passed": self.passed,
                "reason": self.reason or None}


@dataclass
class CastCheck:
    """Result of :func:`check_views`.

    Attributes:
        roles: the roles checked, in :data:`ROLES` order.
        analyzer: analyzer name.
        pair_threshold: the analyzer's same-person cosine threshold (pairs).
        threshold: the per-person threshold of the views kept (from their
            leave-one-out self-similarities, clipped to the analyzer's range).
        matrix: ``[V, V]`` cosine similarities (NaN where a view has no face).
        views: one :class:`ViewScore` per role.
    """

    roles: list[str]
    analyzer: str
    pair_threshold: float
    threshold: float
    matrix: np.ndarray
    views: list[ViewScore] = field(default_factory=list)

    @property
    def one_person(self) -> bool:
        return bool(self.views) and all(v.passed for v in self.views)

    @property
    def failing(self) -> list[ViewScore]:
        return [v for v in self.views if not v.passed]

    def view(self, role: str) -> ViewScore:
        return next(v for v in self.views if v.role == role)

    def matrix_dict(self) -> dict:
        """``{"roles": [...], "cosine": [[...]]}`` (JSON-able; None where no face)."""
        rows = [[None if not np.isfinite(x) else round(float(x), 4) for x in row] for row in self.matrix]
        return {"roles": list(self.roles), "cosine": rows}

    def as_dict(self) -> dict:
        return {"one_person": self.one_person, "analyzer": self.analyzer,
                "pair_threshold": round(self.pair_threshold, 4), "threshold": round(self.threshold, 4),
                "similarity": self.matrix_dict(), "views": [v.as_dict() for v in self.views],
                "failing": [v.role for v in self.failing]}

    def message(self) -> str:
        """One line: which view is not the same person, and its similarities."""
        if self.one_person:
            return f"the {len(self.views)} views show one person (threshold {self.threshold:.3f})"
        parts = []
        for v in self.failing:
            if v.similarity_to_front is None:
                parts.append(f"{v.label} view: {v.reason}")
            else:
                parts.append(f"{v.label} view is not the same person: {v.reason}")
        return "; ".join(parts)

    def text(self) -> str:
        """The matrix and the per-view verdicts, for a terminal."""
        labs = [ROLE_LABELS.get(r, r) for r in self.roles]
        lines = [f"cross-view cosine similarity ({self.analyzer}; same-person threshold {self.pair_threshold:.3f}, "
                 f"this character's {self.threshold:.3f})", " " * 11 + "".join(f"{lab:>11s}" for lab in labs)]
        for lab, row in zip(labs, self.matrix):
            lines.append(f"{lab:>11s}" + "".join(f"{'-' if not np.isfinite(x) else f'{x:.3f}':>11s}" for x in row))
        for v in self.views:
            mark = "PASS" if v.passed else "FAIL"
            lines.append(f"  {v.label:<10s} {mark}" + (f"  {v.reason}" if v.reason else ""))
        return "\n".join(lines)


def normalise_views(views) -> list[tuple[str, np.ndarray]]:
    """``[(role, [H, W, 3] uint8)]`` in :data:`ROLES` order from a dict
    ``{role: image}`` or a sequence of images (taken as the first roles) or
    of ``(role, image)`` pairs. Images may be uint8 or float 0..1.

    Raises:
        CastError: no views, more than four, an unknown role or one twice,
            no front view, or an image that is not ``[H, W, 3|4]``.
    """
    if isinstance(views, dict):
        pairs = list(views.items())
    else:
        seq = list(views)
        if seq and isinstance(seq[0], tuple):
            pairs = [(str(r), im) for r, im in seq]
        else:
            if len(seq) > len(ROLES):
                raise CastError(f"a cast has at most {len(ROLES)} views ({', '.join(ROLES)}), got {len(seq)}")
            pairs = list(zip(ROLES, seq))
    if not pairs:
        raise CastError("a cast needs at least the front view")
    seen = set()
    for r, _ in pairs:
        if r not in ROLES:
            raise CastError(f"unknown view role {r!r} (roles: {', '.join(ROLES)})")
        if r in seen:
            raise CastError(f"view role {r!r} given twice")
        seen.add(r)
    if "front" not in seen:
        raise CastError("a cast needs the front view (the anchor the other views are checked against)")
    out = []
    for r, im in sorted(pairs, key=lambda p: ROLES.index(p[0])):
        a = np.asarray(im)
        if a.ndim != 3 or a.shape[2] not in (3, 4) or min(a.shape[:2]) < 1:
            raise CastError(f"{ROLE_LABELS[r]} view: expected an [H, W, 3] image, got shape {tuple(a.shape)}")
        out.append((r, np.ascontiguousarray(to_uint8(a)[..., :3])))
    return out


def _blame(keep: list[int], S: np.ndarray) -> int:
    """Index (into the views) of the one to take out: the lowest mean
    similarity to the rest; with two left, the non-front one (index 0 is the anchor)."""
    if len(keep) == 2:
        return keep[1] if keep[0] == 0 else max(keep)
    means = [(float(np.mean([S[i, j] for j in keep if j != i])), -i, i) for i in keep]
    return min(means)[2]


def judge(roles: list[str], embeddings: list[np.ndarray | None], pair_threshold: float, ceiling: float,
          analyzer: str = "") -> CastCheck:
    """The cross-view check on already computed unit embeddings (see the module docstring).

    Args:
        roles: one per view, in :data:`ROLES` order, ``roles[0] == "front"``.
        embeddings: ``[D]`` unit float32 face embedding per view, None for no face.
        pair_threshold: the analyzer's same-person cosine threshold.
        ceiling: the analyzer's strictest per-person threshold.
    """
    n = len(roles)
    have = [i for i in range(n) if embeddings[i] is not None]
    S = np.full((n, n), np.nan, np.float32)
    if have:
        E = unit(np.stack([embeddings[i] for i in have]))
        S[np.ix_(have, have)] = E @ E.T
    reasons: dict[int, str] = {i: "no face found" for i in range(n) if embeddings[i] is None}
    keep = list(have)
    thr = float(pair_threshold)
    while len(keep) >= 2:
        E = unit(np.stack([embeddings[i] for i in keep]))
        _, thr = baseline_and_threshold(E, pair_threshold, ceiling)
        sub = S[np.ix_(keep, keep)]
        loo = leave_one_out_similarities(E)
        if sub.min() >= pair_threshold and loo.min() >= thr:
            break
        bad = _blame(keep, S)
        pos = keep.index(bad)
        worst = min((float(S[bad, j]), j) for j in keep if j != bad)
        reasons[bad] = (f"similarity {S[bad, 0]:.3f} to the front view, {loo[pos]:.3f} to the other views; "
                        f"lowest {worst[0]:.3f} (to the {ROLE_LABELS.get(roles[worst[1]], roles[worst[1]])} view); "
                        f"the same-person threshold is {pair_threshold:.3f}")
        if bad == 0 and 0 in keep:
            reasons[bad] = reasons[bad].replace(f"similarity {S[bad, 0]:.3f} to the front view, ", "similarity ")
        keep.remove(bad)
    if len(keep) == 1:
        thr = float(pair_threshold)
    views = []
    for i, r in enumerate(roles):
        others = [j for j in have if j != i]
        to_front = None if not np.isfinite(S[i, 0]) else float(S[i, 0])
        to_others = None
        if embeddings[i] is not None and others:
            to_others = float(unit(embeddings[i]) @ unit(np.stack([embeddings[j] for j in others]).mean(axis=0)))
        views.append(ViewScore(r, to_front, to_others, i not in reasons, reasons.get(i, "")))
    return CastCheck(list(roles), analyzer, float(pair_threshold), float(thr), S, views)


def embed_views(views: list[tuple[str, np.ndarray]], analyzer: FaceAnalyzer,
                interrupt: InterruptFn | None = None) -> list[np.ndarray | None]:
    """The largest face's unit embedding per view (None: no face), views
    analysed at most :data:`ANALYSIS_SIDE` px on the longest side."""
    out = []
    for r, img in views:
        check(interrupt, f"{ROLE_LABELS.get(r, r)} view")
        f = analyzer.largest_face(downscale(img, ANALYSIS_SIDE))
        out.append(None if f is None else np.asarray(f.embedding, np.float32))
    return out


def check_views(views, analyzer: str | FaceAnalyzer = "auto", interrupt: InterruptFn | None = None) -> CastCheck:
    """Do the views show one person?

    Args:
        views: see :func:`normalise_views` (front first; up to four).
        analyzer: ``auto | dlib | insightface | insightface_buffalo_l`` or a
            loaded :class:`~soulid.soul.analysis.base.FaceAnalyzer`.

    Returns:
        :class:`CastCheck` (``one_person``, the matrix, the failing views
        with their similarities).

    Raises:
        CastError: bad views; ModelFilesMissing: the analyzer's files are missing.
    """
    vs = normalise_views(views)
    az = analyzer if isinstance(analyzer, FaceAnalyzer) else get_analyzer(resolve_name(analyzer))
    emb = embed_views(vs, az, interrupt)
    return judge([r for r, _ in vs], emb, az.default_threshold, az.threshold_ceiling, az.name)


@dataclass
class CastRecord:
    """What made a cast (stored in the Soul ID as ``manifest.cast``).

    Attributes:
        prompt: the words the front view was made from ("" for views made elsewhere).
        backend: ``higgsfield | wavespeed | aurashot | comfyui | views``.
        seeds: role -> seed of the kept view.
        request_ids: role -> the provider's request id of the kept view.
        attempts: role -> how many draws the role took.
        redraws: ``[{"role", "seed", "request_id", "similarity_to_front", "reason"}]``
            of the views that were redrawn.
        cost_usd: what the cast cost, US dollars.
        sources: role -> file name the view came from (``--from-views``).
    """

    prompt: str = ""
    backend: str = "views"
    seeds: dict = field(default_factory=dict)
    request_ids: dict = field(default_factory=dict)
    attempts: dict = field(default_factory=dict)
    redraws: list = field(default_factory=list)
    cost_usd: float = 0.0
    sources: dict = field(default_factory=dict)

    def as_dict(self, check: CastCheck | None = None) -> dict:
        d = {"prompt": self.prompt, "backend": self.backend, "seeds": dict(self.seeds),
             "request_ids": dict(self.request_ids), "attempts": dict(self.attempts),
             "redraws": list(self.redraws), "cost_usd": round(float(self.cost_usd), 4),
             "sources": dict(self.sources), "locked": time.time()}
        if check is not None:
            d.update(roles=list(check.roles), analyzer=check.analyzer, threshold=round(check.threshold, 4),
                     similarity=check.matrix_dict()["cosine"])
        return d


def lock_cast(views, name: str, *, record: CastRecord | None = None, analyzer: str = "auto",
              progress: ProgressFn | None = None, interrupt: InterruptFn | None = None):
    """Check the views and build the Soul ID from them.

    The views go through the usual QA (:func:`~soulid.soul.create.create_soul_id`),
    in role order, each named ``<role>.png``. The Soul ID gets
    ``origin="cast"`` and ``cast`` = ``record`` plus the check (roles,
    matrix, threshold).

    Returns:
        ``(CreateResult, CastCheck)``.

    Raises:
        NotOnePerson: the views are not one person (nothing is built).
        CastError: bad views; SoulIDError: no view passed QA.
    """
    from .create import create_soul_id

    vs = normalise_views(views)
    concrete = resolve_name(analyzer)
    az = get_analyzer(concrete)
    report(progress, 0.0, "cross-view check")
    chk = judge([r for r, _ in vs], embed_views(vs, az, interrupt), az.default_threshold, az.threshold_ceiling,
                az.name)
    if not chk.one_person:
        raise NotOnePerson(f"cast {name!r}: {chk.message()}", chk)
    res = create_soul_id([(f"{r}.png", img) for r, img in vs], name, analyzer=concrete, workers=1,
                         interrupt=interrupt,
                         progress=None if progress is None else (lambda f, m: progress(0.2 + 0.8 * f, m)))
    if res.soul is None:
        why = "; ".join(f"{p.path}: {', '.join(p.reasons)}" for p in res.photos)
        raise SoulIDError(f"cast {name!r}: no view passed QA ({why})")
    kept = [p.path for p in res.photos if p.usable]
    left_out = [f"{p.path} ({'; '.join(p.reasons) or p.rating})" for p in res.photos if not p.usable]
    rec = record or CastRecord()
    res.soul.origin = "cast"
    res.soul.cast = rec.as_dict(chk)
    if left_out:
        res.warnings.append(f"left out of the Soul ID by QA: {', '.join(left_out)}")
        res.soul.cast["left_out_by_qa"] = left_out
    res.soul.cast["views"] = kept
    report(progress, 1.0, "cast locked")
    return res, chk


def character_lines(soul) -> list[str]:
    """The character-library entry of a Soul ID as lines of text (for
    ``soulid show`` and the QA sheet): origin, the cast prompt, seeds and
    request ids per view, the cross-view similarity matrix, the redraws,
    the notes, and how many test generations the log holds. Empty for a
    Soul ID made from photos with no notes."""
    lines = []
    c = soul.cast or {}
    if soul.origin == "cast":
        lines.append(f"origin: cast ({c.get('backend', 'views')})")
        if c.get("prompt"):
            lines.append(f"cast prompt: {safe_label(c['prompt'])}")
        for r in c.get("roles") or []:
            bits = [f"seed {c['seeds'][r]}" if (c.get("seeds") or {}).get(r) is not None else "",
                    f"request {c['request_ids'][r]}" if (c.get("request_ids") or {}).get(r) else "",
                    f"from {c['sources'][r]}" if (c.get("sources") or {}).get(r) else "",
                    f"{c['attempts'][r]} draws" if (c.get("attempts") or {}).get(r, 1) > 1 else ""]
            if any(bits):
                lines.append(f"view {ROLE_LABELS.get(r, r)}: " + ", ".join(b for b in bits if b))
        roles, sim = c.get("roles") or [], c.get("similarity") or []
        if roles and sim:
            labs = [ROLE_LABELS.get(r, r) for r in roles]
            lines.append("cross-view similarity: " + "; ".join(
                f"{labs[i]}-{labs[j]} {sim[i][j]:.3f}" for i in range(len(roles)) for j in range(i + 1, len(roles))
                if i < len(sim) and j < len(sim[i]) and sim[i][j] is not None)
                + (f" (threshold {c['threshold']:.3f})" if isinstance(c.get("threshold"), (int, float)) else ""))
        for d in c.get("redraws") or []:
            lines.append(f"redrawn {ROLE_LABELS.get(d.get('role'), d.get('role'))} (seed {d.get('seed')}): "
                         f"{safe_label(str(d.get('reason')))}")
    for n in soul.notes:
        when = time.strftime("%Y-%m-%d", time.gmtime(float(n.get("created") or 0)))
        lines.append(f"note ({when}): {safe_label(n.get('text', ''))}")
    if soul.origin == "cast" or soul.notes:
        lines.append(f"test generations in the log: {len(soul.log)}")
    return lines


def add_note(soul, text: str) -> bool:
    """Append a character-library note (e.g. which lighting works) to
    ``soul.notes``; whitespace is folded. Returns False for an empty text.

    Raises:
        CastError: over :data:`~soulid.soul.manifest.MAX_TEXT` characters, or
            the Soul ID already holds :data:`~soulid.soul.manifest.MAX_NOTES` notes.
    """
    from .manifest import MAX_NOTES, MAX_TEXT

    text = " ".join(str(text or "").split())
    if not text:
        return False
    if len(text) > MAX_TEXT:
        raise CastError(f"note: {len(text)} characters, at most {MAX_TEXT}")
    if len(soul.notes) >= MAX_NOTES:
        raise CastError(f"note: Soul ID {soul.name!r} already has {MAX_NOTES} notes")
    soul.notes.append({"text": text, "created": time.time()})
    return True


def character_description(soul) -> str:
    """The character entry in words for a ``.char`` description: ``""``, or
    `` Character designed from words: "<prompt>". Notes: <note>; <note>.``"""
    out = ""
    c = soul.cast or {}
    if soul.origin == "cast":
        out += f' Character designed from words: "{c["prompt"]}".' if c.get("prompt") else " Character cast from views."
    if soul.notes:
        out += " Notes: " + "; ".join(str(n.get("text", "")) for n in soul.notes) + "."
    return out


__all__ = ["add_note", "character_description", "character_lines", "ROLES", "ROLE_LABELS", "ROLE_PROMPTS", "ROLE_YAW", "role_prompt", "CastCheck", "CastError", "CastRecord", "NotOnePerson",
           "ViewScore", "check_views", "embed_views", "judge", "lock_cast", "normalise_views"]
