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

import numpy as np

from ..soul.soulfile import SoulID
from . import media
from .base import AnimateRequest, EditRequest, GenerateRequest, ImageResult, VideoResult
from .credentials import split_higgsfield
from .engine import (
    CloudBackend,
    CloudError,
    JobEngine,
    JobSpec,
    ProviderApi,
    StatusInfo,
    ValidationFailed,
    configured_url,
    nearest_size,
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
_STATES = {"queued": "queued", "in_progress": "running", "completed": "succeeded", "failed": "failed",
           "nsfw": "moderated", "canceled": "canceled", "cancelled": "canceled"}


def _presigned_upload(api: ProviderApi, eng: JobEngine, data: bytes, content_type: str) -> str:
    """``POST /files/generate-upload-url`` then PUT the bytes without auth headers."""
    r = eng.api_call("POST", f"{api.base_url}/files/generate-upload-url", json={"content_type": content_type})
    eng.raise_for(r, "upload URL")
    d = r.json()
    up = media.check_url(d["upload_url"], allow_loopback=eng.allow_loopback, what="upload URL")
    media.check_url(d["public_url"], allow_loopback=eng.allow_loopback, what="uploaded file URL")
    eng._count()
    put = eng.media_client.put(up, content=data, headers=d.get("upload_headers") or {"Content-Type": content_type})
    if not put.is_success:
        raise CloudError(f"higgsfield: upload failed: HTTP {put.status_code}")
    return d["public_url"]


class HiggsfieldApi(ProviderApi):
    """The request API (``api.higgsfield.ai``)."""

    provider = "higgsfield"

    def headers(self) -> dict:
        return {"Authorization": f"Key {self._key}"}

    def parse_submit(self, data: dict):
        return data["request_id"], data["status_url"], data.get("cancel_url")

    def parse_status(self, data: dict) -> StatusInfo:
        st = _STATES.get(str(data.get("status")), "running")
        urls = [i["url"] for i in data.get("images") or [] if i.get("url")]
        if (data.get("video") or {}).get("url"):
            urls.append(data["video"]["url"])
        return StatusInfo(st, urls, str(data.get("error") or data.get("detail") or ""), data)

    def upload(self, eng, data, content_type):
        return _presigned_upload(self, eng, data, content_type)

    def estimate(self, eng, spec, body):
        r = eng.api_call("POST", f"{self.base_url}/estimate/{spec.endpoint}",
                         json={k: v for k, v in body.items() if v is not None})
        if r.status_code == 404:
            return None
        eng.raise_for(r, f"estimate {spec.endpoint}")
        d = r.json()
        return {"credits": float(d.get("credits", 0)), "usd": float(d.get("usd", 0))}


class HiggsfieldV1Api(ProviderApi):
    """The v1 platform: job sets (``/v1/image2video/dop``, ``/v1/text2image/soul``)."""

    provider = "higgsfield"

    def headers(self) -> dict:
        kid, sec = split_higgsfield(self._key)
        return {"hf-api-key": kid, "hf-secret": sec}

    def submit_json(self, spec, body):
        return {"params": body}

    def parse_submit(self, data: dict):
        return data["id"], f"{self.base_url}/v1/job-sets/{data['id']}", None

    def parse_status(self, data: dict) -> StatusInfo:
        jobs = data.get("jobs") or []
        states = [_STATES.get(str(j.get("status")), "running") for j in jobs] or ["queued"]
        for bad in ("moderated", "failed", "canceled"):
            if bad in states:
                return StatusInfo(bad, [], str(data.get("error") or bad), data)
        if all(s == "succeeded" for s in states):
            urls = [((j.get("results") or {}).get("raw") or {}).get("url") for j in jobs]
            return StatusInfo("succeeded", [u for u in urls if u], "", data)
        return StatusInfo("running" if "running" in states or "succeeded" in states else "queued", [], "", data)

    def upload(self, eng, data, content_type):
        return _presigned_upload(self, eng, data, content_type)


class HiggsfieldReferencesApi(HiggsfieldV1Api):
    """``/v1/custom-references``: Soul ID training as a job (statuses
    ``not_ready | queued | in_progress | completed | failed``)."""

    def submit_json(self, spec, body):
        return body

    def parse_submit(self, data: dict):
        return data["id"], f"{self.base_url}/v1/custom-references/{data['id']}", None

    def parse_status(self, data: dict) -> StatusInfo:
        st = {"not_ready": "queued", "queued": "queued", "in_progress": "running", "completed": "succeeded",
              "failed": "failed"}.get(str(data.get("status")), "running")
        return StatusInfo(st, [], str(data.get("error") or ""), data)


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

    def styles(self, version: str = "v1") -> list[dict]:
        """Soul styles ``[{id, name, description, preview_url}]`` (``GET
        /v1/text2image/soul-styles``; ``version="v2"``: ``/v2/...``)."""
        return self._get_list(f"/{version}/text2image/soul-styles")

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

    def style_id(self, preset, version: str = "v1") -> str | None:
        """A preset (object with ``remote_id``, a style id, or a style name) -> style id."""
        if preset is None or preset == "":
            return None
        rid = getattr(preset, "remote_id", None)
        if rid:
            return str(rid)
        name = getattr(preset, "name", preset)
        return self._lookup(self.styles(version), str(name), "style")

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
        sid = self.style_id(preset, "v2" if route.endswith("v2/standard") else "v1")
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
