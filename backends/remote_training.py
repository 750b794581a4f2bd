"""Remote Soul ID training: a local Soul ID's accepted photos become a
provider-side Soul ID (Higgsfield custom reference).

Only photos rated ``perfect`` or ``good`` by the local QA go up (1..100 of
them, the limit of ``POST /v1/custom-references``,
https://platform.higgsfield.ai/docs). Training runs through the job engine,
so it is ledgered and idempotent like any paid request; when it completes,
``RemoteID(provider, id, model_version)`` is appended to the Soul ID (the
caller saves the file).
"""
from __future__ import annotations

from ..soul.errors import NoUsablePhotos
from ..soul.soulfile import RemoteID, SoulID
from .engine import JobSpec, NotFound, ValidationFailed

TRAINABLE = ("higgsfield",)
MAX_PHOTOS = 100


def _backend(provider: str, backend=None, **kw):
    if provider not in TRAINABLE:
        raise ValidationFailed(f"remote Soul ID training is offered by {', '.join(TRAINABLE)} only, not {provider!r}")
    if backend is not None:
        return backend
    from .higgsfield import HiggsfieldBackend

    return HiggsfieldBackend(**kw)


def training_spec(soul: SoulID, model_version: str = "v1", name: str | None = None) -> tuple[JobSpec, int]:
    """The paid request that trains ``soul``: ``(JobSpec, number of photos)``.

    Raises:
        ValidationFailed: unknown model_version. NoUsablePhotos: no photo rated
            perfect or good.
    """
    from .higgsfield import MODEL_VERSIONS

    if model_version not in MODEL_VERSIONS:
        raise ValidationFailed(f"model_version must be one of {', '.join(MODEL_VERSIONS)}, not {model_version!r}")
    photos = soul.photos_rated(("perfect", "good"))[:MAX_PHOTOS]
    if not photos:
        raise NoUsablePhotos(f"Soul ID {soul.name!r}: no photo rated perfect or good to train on")
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
                 progress=None, interrupt=None, backend=None, options: dict | None = None, **kw) -> RemoteID:
    """Train ``soul`` on ``provider`` and record the result in ``soul.remote_ids``.

    Args:
        model_version: ``v1 | v2 | cinema`` (the Soul route it will be used with).
        name: remote name (default: the Soul ID's name).
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
    spec, n = training_spec(soul, model_version, name)
    be = _backend(provider, backend, **kw)
    out = be.run_job(be.refs, spec, options or {}, progress, interrupt)
    rid = RemoteID(provider=provider, id=out.request_id, model_version=model_version,
                   extra={"photos": n, "name": spec.body["name"]})
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
