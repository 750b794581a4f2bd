"""Higgsfield: Soul generation, Soul edit, DoP animation and Soul ID training.

Two API surfaces, both driven by :class:`~.engine.JobEngine`:

* the request API (``$SOULID_HIGGSFIELD_URL`` or ``https://api.higgsfield.ai``),
  as used by the official SDK https://github.com/higgsfield-ai/higgsfield-client
  (``http/client.py``): ``Authorization: Key KEY_ID:KEY_SECRET``, ``POST
  /<model path>`` with a flat JSON body -> ``{status, request_id, status_url,
  cancel_url}``, ``GET status_url`` (``queued | in_progress | completed |
  failed | nsfw | canceled``, with ``images: [{url}]`` / ``video: {url}``),
  ``POST cancel_url``, ``POST /files/generate-upload-url`` then a PUT without
  auth, ``POST /estimate/<model path>`` (credits, USD);
* the v1 platform (``$SOULID_HIGGSFIELD_PLATFORM_URL``, else
  ``$SOULID_HIGGSFIELD_URL``, else ``https://platform.higgsfield.ai``;
  https://platform.higgsfield.ai/docs): headers ``hf-api-key`` / ``hf-secret``,
  body ``{"params": {...}}``; ``/v1/image2video/dop`` (DoP, a 5 s MP4),
  ``/v1/job-sets/{id}``, ``/v1/custom-references`` (Soul ID training),
  ``/v1/text2image/soul-styles`` (and ``/v2/...``), ``/v1/motions``.

Soul routes per trained Soul ID ``model_version`` (:data:`SOUL_ROUTES`): a
Soul ID is only ever sent to the route of the version it was trained for; a
Soul ID without a Higgsfield training is refused, never generated with a
generic face. Without a Soul ID (``req.soul is None``) the generic
``higgsfield-ai/soul/standard`` is used.
"""
from __future__ import annotations

import re
import threading
from enum import Enum

import numpy as np
from pydantic import Field

from ..soul.soulfile import SoulID
from . import media
from .base import AnimateRequest, EditRequest, GenerateRequest, ImageResult, VideoResult
from .credentials import split_higgsfield
from .engine import (
    Answer,
    CloudBackend,
    CloudError,
    JobEngine,
    JobSpec,
    ProviderApi,
    StatusInfo,
    ValidationFailed,
    answer_json,
    configured_url,
    nearest_size,
    typed,
)

DEFAULT_URL = "https://api.higgsfield.ai"
DEFAULT_PLATFORM_URL = "https://platform.higgsfield.ai"
#: ``width_and_height`` values Soul accepts (v1 text2image/soul).
SOUL_SIZES = ["1152x2048", "2048x1152", "2048x1536", "1536x2048", "1344x2016", "2016x1344", "960x1696",
              "1536x1536", "1536x1152", "1696x960", "1152x1536", "1088x1632", "1632x1088"]
#: Trained Soul ID model_version -> request-API route.
SOUL_ROUTES = {"v1": "higgsfield-ai/soul/character", "v2": "higgsfield-ai/soul/v2/standard",
               "cinema": "higgsfield-ai/soul/cinema"}
GENERIC_ROUTE = "higgsfield-ai/soul/standard"
MODEL_VERSIONS = tuple(SOUL_ROUTES)
DOP_MODELS = ("dop-turbo", "dop-lite", "dop-preview")
QUALITIES = ("720p", "1080p")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
#: Trained Soul ID model_version -> the style-list family whose ids that route
#: takes (:data:`soulid.soul.presets.STYLE_LIST_PATHS`). Soul Cinema's looks
#: are Soul (v1) styles; the generic route (no Soul ID) is v1 Soul.
STYLE_FAMILY = {"v1": "soul", "v2": "soul_2", "cinema": "soul", None: "soul"}


# ----------------------------------------------------------- typed answers
class Status(str, Enum):
    """Request statuses of the Higgsfield APIs (the official SDK's
    ``higgsfield_client`` status types); any other value is refused."""

    queued = "queued"
    in_progress = "in_progress"
    completed = "completed"
    failed = "failed"
    nsfw = "nsfw"
    canceled = "canceled"
    cancelled = "cancelled"


_STATES = {Status.queued: "queued", Status.in_progress: "running", Status.completed: "succeeded",
           Status.failed: "failed", Status.nsfw: "moderated", Status.canceled: "canceled",
           Status.cancelled: "canceled"}


class _Url(Answer):
    url: str | None = None


class SubmitAnswer(Answer):
    request_id: str = Field(min_length=1)
    status_url: str = Field(min_length=1)
    cancel_url: str | None = None


class StatusAnswer(Answer):
    status: Status
    images: list[_Url] | None = None
    video: _Url | None = None
    error: str | None = None
    detail: str | None = None


class JobSetAnswer(Answer):
    id: str = Field(min_length=1)


class _Raw(Answer):
    raw: _Url | None = None


class _Job(Answer):
    status: Status
    results: _Raw | None = None


class JobSetStatus(Answer):
    jobs: list[_Job] = Field(default_factory=list)
    error: str | None = None


class RefStatus(str, Enum):
    """``/v1/custom-references`` statuses."""

    not_ready = "not_ready"
    queued = "queued"
    in_progress = "in_progress"
    completed = "completed"
    failed = "failed"


class RefAnswer(Answer):
    status: RefStatus
    error: str | None = None


class UploadUrlAnswer(Answer):
    upload_url: str = Field(min_length=1)
    public_url: str = Field(min_length=1)
    upload_headers: dict[str, str] | None = None


def _presigned_upload(api: ProviderApi, eng: JobEngine, data: bytes, content_type: str) -> str:
    """``POST /files/generate-upload-url`` then PUT the bytes without auth headers."""
    r = eng.api_call("POST", f"{api.base_url}/files/generate-upload-url", json={"content_type": content_type})
    eng.raise_for(r, "upload URL")
    d = typed(UploadUrlAnswer, answer_json(r, "higgsfield: upload URL answer"), "higgsfield: upload URL answer")
    up = media.check_url(d.upload_url, allow_loopback=eng.allow_loopback, what="upload URL")
    media.check_url(d.public_url, allow_loopback=eng.allow_loopback, what="uploaded file URL")
    eng._count()
    put = eng.media_client.put(up, content=data, headers=d.upload_headers or {"Content-Type": content_type})
    if not put.is_success:
        raise CloudError(f"higgsfield: upload failed: HTTP {put.status_code}")
    return d.public_url


class HiggsfieldApi(ProviderApi):
    """The request API (``api.higgsfield.ai``)."""

    provider = "higgsfield"

    def headers(self) -> dict:
        return {"Authorization": f"Key {self._key}"}

    def parse_submit(self, data):
        d = typed(SubmitAnswer, data, "submit answer")
        return d.request_id, d.status_url, d.cancel_url

    def parse_status(self, data) -> StatusInfo:
        d = typed(StatusAnswer, data, "status answer")
        urls = [i.url for i in d.images or [] if i.url]
        if d.video is not None and d.video.url:
            urls.append(d.video.url)
        return StatusInfo(_STATES[d.status], urls, d.error or d.detail or "", data)

    def upload(self, eng, data, content_type):
        return _presigned_upload(self, eng, data, content_type)

    def estimate(self, eng, spec, body):
        r = eng.api_call("POST", f"{self.base_url}/estimate/{spec.endpoint}",
                         json={k: v for k, v in body.items() if v is not None})
        if r.status_code == 404:
            return None
        eng.raise_for(r, f"estimate {spec.endpoint}")
        return answer_json(r, f"higgsfield: estimate {spec.endpoint}")


class HiggsfieldV1Api(ProviderApi):
    """The v1 platform: job sets (``/v1/image2video/dop``, ``/v1/text2image/soul``)."""

    provider = "higgsfield"

    def headers(self) -> dict:
        kid, sec = split_higgsfield(self._key)
        return {"hf-api-key": kid, "hf-secret": sec}

    def submit_json(self, spec, body):
        return {"params": body}

    def parse_submit(self, data):
        d = typed(JobSetAnswer, data, "submit answer")
        return d.id, f"{self.base_url}/v1/job-sets/{d.id}", None

    def parse_status(self, data) -> StatusInfo:
        d = typed(JobSetStatus, data, "job-set answer")
        states = [_STATES[j.status] for j in d.jobs] or ["queued"]
        for bad in ("moderated", "failed", "canceled"):
            if bad in states:
                return StatusInfo(bad, [], d.error or bad, data)
        if all(s == "succeeded" for s in states):
            urls = [j.results.raw.url for j in d.jobs if j.results and j.results.raw and j.results.raw.url]
            return StatusInfo("succeeded", urls, "", data)
        return StatusInfo("running" if "running" in states or "succeeded" in states else "queued", [], "", data)

    def upload(self, eng, data, content_type):
        return _presigned_upload(self, eng, data, content_type)


class HiggsfieldReferencesApi(HiggsfieldV1Api):
    """``/v1/custom-references``: Soul ID training as a job (statuses
    ``not_ready | queued | in_progress | completed | failed``)."""

    def submit_json(self, spec, body):
        return body

    def parse_submit(self, data):
        d = typed(JobSetAnswer, data, "submit answer")
        return d.id, f"{self.base_url}/v1/custom-references/{d.id}", None

    def parse_status(self, data) -> StatusInfo:
        d = typed(RefAnswer, data, "custom reference answer")
        st = {RefStatus.not_ready: "queued", RefStatus.queued: "queued", RefStatus.in_progress: "running",
              RefStatus.completed: "succeeded", RefStatus.failed: "failed"}[d.status]
        return StatusInfo(st, [], d.error or "", data)


class HiggsfieldBackend(CloudBackend):
    """Higgsfield Soul / DoP backend (see the module docstring).

    Args:
        base_url, platform_url: override the two API roots.
        key: ``"KEY_ID:KEY_SECRET"`` (default from :mod:`.credentials`).
        **kw: :class:`~.engine.CloudBackend` options.
    """

    name = "higgsfield"

    def __init__(self, base_url: str | None = None, platform_url: str | None = None, key: str | None = None, **kw):
        super().__init__(key=key, **kw)
        self.api = HiggsfieldApi(base_url or configured_url("higgsfield", DEFAULT_URL), self.key)
        import os

        plat = platform_url or os.environ.get("SOULID_HIGGSFIELD_PLATFORM_URL") or \
            os.environ.get("SOULID_HIGGSFIELD_URL") or DEFAULT_PLATFORM_URL
        self.v1 = HiggsfieldV1Api(plat, self.key)
        self.refs = HiggsfieldReferencesApi(plat, self.key)
        self._cache: dict[str, list] = {}
        self._cache_lock = threading.Lock()

    # ------------------------------------------------------------ catalogues
    def fetch_json(self, path: str) -> list | dict:
        """Authenticated ``GET`` of a v1 platform path (``"/v1/motions"``...), for
        :func:`soulid.soul.presets.cached_lists`.

        Raises:
            CloudError subclasses for HTTP errors (401, 404...).
        """
        eng = self.engine(self.v1)
        r = eng.api_call("GET", f"{self.v1.base_url}{path}")
        eng.raise_for(r, path)
        return r.json()

    def _get_list(self, path: str) -> list[dict]:
        with self._cache_lock:
            if path not in self._cache:
                d = self.fetch_json(path)
                self._cache[path] = d if isinstance(d, list) else d.get("items", [])
            return self._cache[path]

    def api_for(self, endpoint: str) -> ProviderApi:
        """The API surface that serves ``endpoint`` (for resuming ledger jobs)."""
        if endpoint.startswith("/v1/custom-references"):
            return self.refs
        return self.v1 if endpoint.startswith("/v1/") else self.api

    def style_lists(self) -> dict[str, list[dict]]:
        """Both Soul style lists, family -> ``[{id, name, description}]``,
        fetched and cached exactly as ``soulid presets --refresh`` does
        (:func:`soulid.soul.presets.cached_lists` over
        :data:`~soulid.soul.presets.STYLE_LIST_PATHS`, 24 h on disk): the one
        style resolver of the pack. Empty lists when offline."""
        from ..soul.presets import CACHE_FILE, STYLE_LIST_PATHS, cached_lists

        with self._cache_lock:
            if "styles" not in self._cache:
                got = cached_lists(self.fetch_json, STYLE_LIST_PATHS, CACHE_FILE)
                if not got.lists:
                    return {}
                self._cache["styles"] = got.lists
            return self._cache["styles"]

    def styles(self, version: str = "v1") -> list[dict]:
        """Soul styles ``[{id, name, description}]`` that ``version``'s route takes
        (``v1 | cinema``: the Soul list; ``v2``: the Soul 2 list; a family name
        ``soul | soul_2`` is accepted too)."""
        return self.style_lists().get(STYLE_FAMILY.get(version, version), [])

    def motions(self) -> list[dict]:
        """DoP motions ``[{id, name, description, preview_url, start_end_frame}]`` (``GET /v1/motions``)."""
        return self._get_list("/v1/motions")

    @staticmethod
    def _lookup(items: list[dict], ref: str, what: str) -> str:
        if _UUID.match(ref):
            return ref
        norm = lambda t: re.sub(r"[^a-z0-9]", "", str(t).lower())  # noqa: E731  "Dolly In" == "dolly_in"
        for it in items:
            if norm(it.get("name", "")) == norm(ref):
                return it["id"]
        names = ", ".join(it.get("name", "?") for it in items)
        raise ValidationFailed(f"higgsfield: unknown {what} {ref!r}; available: {names}")

    def style_id(self, preset, version: str | None = "v1") -> str | None:
        """The style id to send on ``version``'s route (``v1 | v2 | cinema``,
        None: the generic Soul route), from a :class:`~soulid.soul.presets.StylePreset`,
        a style id or a style name.

        The id always comes from the style list of the route's family
        (:data:`STYLE_FAMILY`): a preset's id for another family is never sent,
        so a v1 style id never reaches the v2 route.

        Raises:
            ValidationFailed: the name is not in that family's list, or a style
                id belongs to the other family's list.
        """
        from ..soul.presets import index_by_name, normalise_name

        if preset is None or preset == "":
            return None
        fam = STYLE_FAMILY.get(version, "soul")
        where = f"model_version {version}" if version else "the generic Soul route"
        ids = getattr(preset, "remote_ids", None)
        if isinstance(ids, dict) and ids.get(fam):
            return str(ids[fam])
        lists = self.style_lists()
        name = str(getattr(preset, "name", preset))
        rid = None if isinstance(ids, dict) else getattr(preset, "remote_id", None)
        if rid or _UUID.match(name):
            sid = str(rid or name)
            other = [f for f, items in lists.items() if f != fam and any(i["id"] == sid for i in items)]
            if other and not any(i["id"] == sid for i in lists.get(fam, [])):
                raise ValidationFailed(f"higgsfield: style id {sid} is a {other[0]} style; {where} takes "
                                       f"{fam} styles (pick the style by name instead)")
            return sid
        items = lists.get(fam, [])
        found = index_by_name(items).get(normalise_name(name))
        if found:
            return found
        names = ", ".join(i["name"] for i in items) or "(the style list could not be fetched)"
        raise ValidationFailed(f"higgsfield: unknown style {name!r} in the {fam} style list that {where} takes; "
                               f"available: {names}")

    def motion_id(self, motion: str) -> str:
        return self._lookup(self.motions(), motion, "motion")

    # -------------------------------------------------------------- routing
    def route_for(self, soul: SoulID | None, options: dict) -> tuple[str, str | None]:
        """``(model path, custom_reference_id or None)`` for ``soul``.

        Raises:
            ValidationFailed: the Soul ID has no Higgsfield training, or none
                for the requested ``options["model_version"]``.
        """
        want = options.get("model_version")
        if want and want not in MODEL_VERSIONS:
            raise ValidationFailed(f"model_version must be one of {', '.join(MODEL_VERSIONS)}, not {want!r}")
        if soul is None:
            if want:
                raise ValidationFailed(f"model_version {want!r} needs a Soul ID trained on Higgsfield")
            return GENERIC_ROUTE, None
        remote = soul.remote("higgsfield", want)
        if remote is None:
            have = [r.model_version for r in soul.remote_ids if r.provider == "higgsfield"]
            if have:
                raise ValidationFailed(
                    f"Soul ID {soul.name!r} was trained on Higgsfield for model_version {', '.join(have)}, "
                    f"not {want!r}; refusing to generate with another model (train it: "
                    f"`soulid train {soul.name} --provider higgsfield --model-version {want}`)")
            raise ValidationFailed(
                f"Soul ID {soul.name!r} has no Higgsfield training; run `soulid train {soul.name} "
                f"--provider higgsfield` (refusing to generate with a generic face)")
        return SOUL_ROUTES[remote.model_version], remote.id

    # ----------------------------------------------------------- capabilities
    def _soul_body(self, prompt: str, soul, options: dict, *, preset, preset_strength, size: str, quality: str,
                   batch: int, seed, enhance: bool, identity_strength: float) -> tuple[str, dict]:
        if quality not in QUALITIES:
            raise ValidationFailed(f"higgsfield: quality must be 720p or 1080p, not {quality!r}")
        if batch not in (1, 4):
            raise ValidationFailed(f"higgsfield: batch size must be 1 or 4, not {batch}")
        route, ref = self.route_for(soul, options)
        body = {"prompt": prompt, "width_and_height": size, "quality": quality, "batch_size": batch,
                "enhance_prompt": bool(enhance)}
        if seed is not None:
            body["seed"] = int(seed)
        sid = self.style_id(preset, {r: v for v, r in SOUL_ROUTES.items()}.get(route))
        if sid:
            body["style_id"], body["style_strength"] = sid, float(preset_strength)
        if ref:
            body["custom_reference_id"], body["custom_reference_strength"] = ref, float(identity_strength)
        return route, body

    def generate(self, req: GenerateRequest, progress=None, interrupt=None) -> ImageResult:
        """Soul text-to-image with the Soul ID's custom reference.

        Returns:
            ImageResult: ``images`` ``[B, H, W, 3]`` float32 0..1 (B = ``req.batch``),
            ``cost`` ``{"credits", "usd"}`` when estimated.
        """
        size = nearest_size(SOUL_SIZES, req.aspect, req.width, req.height, default="1152x1536")
        route, body = self._soul_body(req.prompt, req.soul, req.options, preset=req.preset,
                                      preset_strength=req.preset_strength, size=size, quality=req.quality,
                                      batch=req.batch, seed=req.seed, enhance=req.enhance_prompt,
                                      identity_strength=req.identity_strength)
        uploads = {}
        if req.image_reference is not None:
            uploads["image_reference"] = media.to_upload_bytes(req.image_reference)
            body["image_reference"] = {"$upload": "image_reference"}
        out = self.run_job(self.api, JobSpec(route, body, uploads, "image"), req.options, progress, interrupt)
        return self.finish_images(out, route=route, size=size)

    def edit(self, req: EditRequest, progress=None, interrupt=None) -> ImageResult:
        """Identity edit: the Soul route with the source image as ``image_reference``
        (``image_reference_strength = 1 - strength``), size nearest the source's aspect."""
        h, w = np.asarray(req.image).shape[-3:-1]
        size = nearest_size(SOUL_SIZES, width=int(w), height=int(h))
        route, body = self._soul_body(req.prompt, req.soul, req.options, preset=req.preset,
                                      preset_strength=req.preset_strength, size=size, quality=req.quality,
                                      batch=1, seed=req.seed, enhance=False, identity_strength=1.0)
        if not 0.0 <= req.strength <= 1.0:
            raise ValidationFailed(f"edit strength must be within 0..1, not {req.strength}")
        body["image_reference"] = {"$upload": "image"}
        body["image_reference_strength"] = round(1.0 - float(req.strength), 4)
        spec = JobSpec(route, body, {"image": media.to_upload_bytes(req.image)}, "image")
        out = self.run_job(self.api, spec, req.options, progress, interrupt)
        return self.finish_images(out, route=route, size=size)

    def animate(self, req: AnimateRequest, progress=None, interrupt=None) -> VideoResult:
        """DoP image-to-video (``POST /v1/image2video/dop``): a 5 s MP4.

        ``req.motions``: up to two ``(name or id, strength 0..1)``; ``req.model``:
        ``dop-turbo`` (default) | ``dop-lite`` | ``dop-preview``.
        """
        model = req.model or "dop-turbo"
        if model not in DOP_MODELS:
            raise ValidationFailed(f"higgsfield: DoP model must be one of {', '.join(DOP_MODELS)}, not {model!r}")
        if len(req.motions) > 2:
            raise ValidationFailed(f"higgsfield: DoP takes at most 2 motions, not {len(req.motions)}")
        body = {"model": model, "prompt": req.prompt, "enhance_prompt": bool(req.enhance_prompt),
                "motions": [{"id": self.motion_id(m), "strength": float(s)} for m, s in req.motions],
                "input_images": [{"type": "image_url", "image_url": {"$upload": "start"}}]}
        uploads = {"start": media.to_upload_bytes(req.image)}
        if req.end_image is not None:
            uploads["end"] = media.to_upload_bytes(req.end_image)
            body["input_images_end"] = [{"type": "image_url", "image_url": {"$upload": "end"}}]
        if req.seed is not None:
            body["seed"] = int(req.seed)
        out = self.run_job(self.v1, JobSpec("/v1/image2video/dop", body, uploads, "video"), req.options,
                           progress, interrupt)
        return self.finish_video(out, model=model)
