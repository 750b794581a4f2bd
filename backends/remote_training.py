"""Remote Soul ID training: a local Soul ID's accepted photos become a
provider-side Soul ID (Higgsfield custom reference).

Only photos rated ``perfect`` or ``good`` by the local QA go up, and not all
of them: :func:`choose_training_photos` sends the best N by QA rank and pose
diversity (:func:`soulid.soul.references.select_references`), N per model
version from the provider's own guidance (:data:`TRAINING_SET`), at most 100
(the limit of ``POST /v1/custom-references``,
https://platform.higgsfield.ai/docs). Training runs through the job engine,
so it is ledgered and idempotent like any paid request; when it completes,
``RemoteID(provider, id, model_version)`` is appended to the Soul ID (the
caller saves the file).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..soul.errors import NoUsablePhotos
from ..soul.soulfile import RemoteID, SoulID
from .engine import JobSpec, NotFound, ValidationFailed

TRAINABLE = ("higgsfield",)
MAX_PHOTOS = 100


@dataclass(frozen=True)
class TrainingGuide:
    """How many photos a model version trains best on, per the provider.

    Attributes:
        least, most: the range the provider accepts or advises.
        ideal: the photos sent by default.
        source: where the advice comes from.
        known_issue: a documented refusal of datasets by the provider, or "".
    """

    least: int
    most: int
    ideal: int
    source: str
    known_issue: str = ""


#: Per Higgsfield model version. Soul 2: "5-20 photos, 8-12 ideal" (Higgsfield's
#: Soul 2 training guide); Soul ID v1 / Cinema: "20+ photos" (the Soul ID guide).
TRAINING_SET = {
    "v1": TrainingGuide(20, MAX_PHOTOS, 20, "Higgsfield Soul ID guide: 20 or more varied photos"),
    "v2": TrainingGuide(5, 20, 10, "Higgsfield Soul 2 guide: 5-20 photos, 8-12 ideal"),
    "cinema": TrainingGuide(20, MAX_PHOTOS, 20, "Higgsfield Soul ID guide: 20 or more varied photos",
                            "Soul Cinema training has refused datasets with 'DatasetErrors' since mid-2026 "
                            "(higgsfield-ai/cli issues #41 and #51); if it fails, train v1 or v2"),
}


@dataclass
class TrainingSelection:
    """Which photos a remote training sends, and why.

    Attributes:
        sent: ``[{"photo", "source", "rating", "role", "reason"}]`` in upload order.
        left_out: the same for the photos not sent, each with its reason.
        target: N, the photos asked for (guide or ``max_photos``).
        guide: the provider's advice used.
        warnings: e.g. fewer photos than the provider advises, a known refusal.
    """

    sent: list = field(default_factory=list)
    left_out: list = field(default_factory=list)
    target: int = 0
    guide: TrainingGuide | None = None
    warnings: list = field(default_factory=list)

    @property
    def indices(self) -> list[int]:
        return [d["photo"] for d in self.sent]

    def as_dict(self) -> dict:
        g = self.guide
        return {"target": self.target, "sent": self.sent, "left_out": self.left_out, "warnings": self.warnings,
                "guide": None if g is None else {"least": g.least, "most": g.most, "ideal": g.ideal,
                                                 "source": g.source}}


def choose_training_photos(soul: SoulID, model_version: str = "v1", max_photos: int | None = None
                           ) -> TrainingSelection:
    """The best N photos of ``soul`` for training ``model_version``.

    Order: QA rank and pose diversity (round-robin over the angles, see
    :func:`soulid.soul.references.select_references`), near-duplicates
    skipped; only photos rated perfect or good. N = ``max_photos``, else the
    version's :data:`TRAINING_SET` ideal; at most :data:`MAX_PHOTOS`.

    Raises:
        ValidationFailed: unknown model_version, ``max_photos`` < 1.
        NoUsablePhotos: no photo rated perfect or good.
    """
    from ..soul.references import select_references

    if model_version not in TRAINING_SET:
        raise ValidationFailed(f"model_version must be one of {', '.join(TRAINING_SET)}, not {model_version!r}")
    g = TRAINING_SET[model_version]
    if max_photos is not None and max_photos < 1:
        raise ValidationFailed(f"--max-photos must be 1 or more, not {max_photos}")
    target = min(MAX_PHOTOS, max_photos if max_photos is not None else g.ideal)
    eligible = {i for i, p in enumerate(soul.photos) if p.rating in ("perfect", "good")}
    if not eligible:
        raise NoUsablePhotos(f"Soul ID {soul.name!r}: no photo rated perfect or good to train on")
    order, roles, dups = select_references(soul, len(soul.photos))
    role_of = dict(zip(order, roles))
    sel = TrainingSelection(target=target, guide=g)
    per_role: dict[str, int] = {}

    def entry(i: int, reason: str) -> dict:
        p = soul.photos[i]
        return {"photo": i, "source": p.source, "rating": p.rating, "role": role_of.get(i, p.pose_class),
                "reason": reason}

    for i in order:
        role = role_of[i]
        if i not in eligible:
            sel.left_out.append(entry(i, f"rated {soul.photos[i].rating} by QA (only perfect and good photos train)"))
            continue
        if len(sel.sent) < target:
            per_role[role] = per_role.get(role, 0) + 1
            n = per_role[role]
            why = (f"best {soul.photos[i].rating} {role} photo by QA rank (pose coverage: the first of this angle)"
                   if n == 1 else
                   f"{soul.photos[i].rating}, pose coverage: {role} photo {n}, taken after every angle had its turn")
            sel.sent.append(entry(i, why))
        else:
            have = sum(1 for d in sel.sent if d["role"] == role)
            sel.left_out.append(entry(i, f"over the {target}-photo set for {model_version} ({g.source}); pose coverage: "
                                         f"{role} already has {have} photo(s) in the set, lower QA rank"))
    for i in dups:
        sel.left_out.append(entry(i, "near-duplicate of a photo in the set (same shot, same face)"))
    if len(sel.sent) < g.least:
        sel.warnings.append(f"only {len(sel.sent)} photo(s) to send; {g.source}")
    covered = {d["role"] for d in sel.sent}
    if not covered - {"front"}:
        sel.warnings.append("pose coverage: no three-quarter or profile photo in the set; add some for a better Soul")
    if g.known_issue:
        sel.warnings.append(g.known_issue)
    return sel


def _backend(provider: str, backend=None, **kw):
    if provider not in TRAINABLE:
        raise ValidationFailed(f"remote Soul ID training is offered by {', '.join(TRAINABLE)} only, not {provider!r}")
    if backend is not None:
        return backend
    from .higgsfield import HiggsfieldBackend

    return HiggsfieldBackend(**kw)


def training_spec(soul: SoulID, model_version: str = "v1", name: str | None = None,
                  max_photos: int | None = None, selection: TrainingSelection | None = None) -> tuple[JobSpec, int]:
    """The paid request that trains ``soul`` on the photos of ``selection``
    (default: what :func:`choose_training_photos` picks): ``(JobSpec, number of photos)``.

    Raises:
        ValidationFailed: unknown model_version. NoUsablePhotos: no photo rated
            perfect or good.
    """
    from .higgsfield import MODEL_VERSIONS

    if model_version not in MODEL_VERSIONS:
        raise ValidationFailed(f"model_version must be one of {', '.join(MODEL_VERSIONS)}, not {model_version!r}")
    selection = selection or choose_training_photos(soul, model_version, max_photos)
    photos = [soul.photos[i] for i in selection.indices]
    uploads = {f"photo{i:03d}": (p.jpeg, "image/jpeg") for i, p in enumerate(photos)}
    body = {"name": name or soul.name, "model_version": model_version,
            "input_images": [{"type": "image_url", "image_url": {"$upload": k}} for k in uploads]}
    return JobSpec("/v1/custom-references", body, uploads, "none"), len(photos)


def estimate_training(soul: SoulID, provider: str = "higgsfield", model_version: str = "v1", *,
                      name: str | None = None, backend=None, **kw) -> dict | None:
    """What training ``soul`` would cost, asked before anything is uploaded:
    ``{"credits": float, "usd": float}``, or None when the provider publishes
    no estimate for training (Higgsfield documents none for
    ``/v1/custom-references``). ``soulid train`` prints it first.

    Raises:
        as :func:`training_spec`; CloudError subclasses (401...).
    """
    be = _backend(provider, backend, **kw)
    spec, _n = training_spec(soul, model_version, name)
    return be.estimate(be.refs, spec)


def train_remote(soul: SoulID, provider: str = "higgsfield", model_version: str = "v1", *, name: str | None = None,
                 progress=None, interrupt=None, backend=None, options: dict | None = None,
                 max_photos: int | None = None, selection: TrainingSelection | None = None, **kw) -> RemoteID:
    """Train ``soul`` on ``provider`` and record the result in ``soul.remote_ids``.

    Args:
        model_version: ``v1 | v2 | cinema`` (the Soul route it will be used with).
        name: remote name (default: the Soul ID's name).
        max_photos: photos to send (default: the version's guide, :data:`TRAINING_SET`).
        selection: the photos to send, from :func:`choose_training_photos`
            (default: made here); their file names are kept in the RemoteID's ``extra["sent"]``.
        options: ``max_usd`` / ``budget`` / ``estimate_only`` / ``new`` as for
            generation. The estimate (or "no cost estimate offered") reaches
            ``progress`` before any photo is uploaded.

    Returns:
        The new :class:`~soulid.soul.soulfile.RemoteID` (already appended to ``soul``).

    Raises:
        NoUsablePhotos: no photo rated perfect or good.
        ValidationFailed: unknown provider / model_version, or the provider refused.
        CloudError: training failed (with the provider's reason).
    """
    selection = selection or choose_training_photos(soul, model_version, max_photos)
    spec, n = training_spec(soul, model_version, name, selection=selection)
    be = _backend(provider, backend, **kw)
    out = be.run_job(be.refs, spec, options or {}, progress, interrupt)
    rid = RemoteID(provider=provider, id=out.request_id, model_version=model_version,
                   extra={"photos": n, "name": spec.body["name"], "sent": [d["source"] for d in selection.sent]})
    soul.remote_ids.append(rid)
    return rid


def list_remote(provider: str = "higgsfield", backend=None, **kw) -> list[dict]:
    """The provider's Soul IDs: ``[{id, name, status, model_version, ...}]``."""
    be = _backend(provider, backend, **kw)
    eng = be.engine(be.refs)
    r = eng.api_call("GET", f"{be.refs.base_url}/v1/custom-references/list")
    eng.raise_for(r, "list Soul IDs")
    d = r.json()
    return d.get("items", []) if isinstance(d, dict) else d


def delete_remote(remote_id: str, provider: str = "higgsfield", soul: SoulID | None = None, backend=None,
                  **kw) -> bool:
    """Delete a provider Soul ID; also drop it from ``soul.remote_ids`` when given.

    Returns:
        True if the provider deleted it, False if it was already gone (404).
    """
    be = _backend(provider, backend, **kw)
    eng = be.engine(be.refs)
    r = eng.api_call("DELETE", f"{be.refs.base_url}/v1/custom-references/{remote_id}")
    gone = r.status_code == 404
    if not gone:
        try:
            eng.raise_for(r, f"delete Soul ID {remote_id}")
        except NotFound:
            gone = True
    if soul is not None:
        soul.remote_ids = [x for x in soul.remote_ids if not (x.provider == provider and x.id == remote_id)]
    return not gone
