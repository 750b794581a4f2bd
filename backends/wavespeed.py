"""WaveSpeed: Higgsfield Soul image-to-image and DoP image-to-video, resold.

API v3 (https://wavespeed.ai/docs): ``Authorization: Bearer $WAVESPEED_API_KEY``;
``POST /api/v3/<model id>`` answers ``{code, message, data: {id, status,
urls: {get}, outputs}}``; poll ``GET /api/v3/predictions/{id}/result``
(``created | processing | completed | failed``); uploads by ``POST
/api/v3/media/upload/binary`` (multipart ``file``) -> ``data.download_url``.
Base URL: ``$SOULID_WAVESPEED_URL`` or ``https://api.wavespeed.ai``.

Models used: ``higgsfield/soul/image-to-image`` (image, prompt, soul_id,
size, style, strength 0..1, quality medium|high, seed) and
``higgsfield/dop/image-to-video``. WaveSpeed has no cancel and no estimate
endpoint, so ``max_usd`` is refused there (no estimate to check).
WaveSpeed reports moderation as ``failed`` with an NSFW error text; it is
normalised to ``moderated``.
"""
from __future__ import annotations

import numpy as np

from . import media
from .base import AnimateRequest, EditRequest, GenerateRequest, ImageResult, VideoResult
from .engine import CloudBackend, CloudError, JobSpec, ProviderApi, StatusInfo, ValidationFailed, configured_url

DEFAULT_URL = "https://api.wavespeed.ai"
SOUL_I2I = "/api/v3/higgsfield/soul/image-to-image"
DOP_I2V = "/api/v3/higgsfield/dop/image-to-video"
_STATES = {"created": "queued", "processing": "running", "completed": "succeeded", "failed": "failed"}


class WaveSpeedApi(ProviderApi):
    provider = "wavespeed"
    backpressure_text = "\x00never"  # WaveSpeed signals load with 429, retried by the engine

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self._key}"}

    def parse_submit(self, data: dict):
        d = data.get("data") or {}
        return d["id"], (d.get("urls") or {}).get("get") or f"{self.base_url}/api/v3/predictions/{d['id']}/result", None

    def parse_status(self, data: dict) -> StatusInfo:
        d = data.get("data") or {}
        st = _STATES.get(str(d.get("status")), "running")
        err = str(d.get("error") or "")
        if st == "failed" and any(w in err.lower() for w in ("nsfw", "moderat", "sensitive")):
            st = "moderated"
        return StatusInfo(st, [u for u in d.get("outputs") or [] if isinstance(u, str)], err, data)

    def upload(self, eng, data: bytes, content_type: str) -> str:
        ext = {"image/png": "png", "image/jpeg": "jpg"}.get(content_type, "bin")
        r = eng.api_call("POST", f"{self.base_url}/api/v3/media/upload/binary",
                         files={"file": (f"upload.{ext}", data, content_type)})
        eng.raise_for(r, "upload")
        url = (r.json().get("data") or {}).get("download_url")
        if not url:
            raise CloudError("wavespeed: upload answered without a download_url")
        return media.check_url(url, allow_loopback=eng.allow_loopback, what="uploaded file URL")


class WaveSpeedBackend(CloudBackend):
    """WaveSpeed backend: :meth:`edit` (Soul image-to-image) and :meth:`animate` (DoP).

    The Soul ID travels as ``soul_id``: the Soul ID's ``wavespeed`` remote id,
    else its ``higgsfield`` one (WaveSpeed resells Higgsfield Soul); a Soul ID
    with neither is refused.
    """

    name = "wavespeed"

    def __init__(self, base_url: str | None = None, key: str | None = None, **kw):
        super().__init__(key=key, **kw)
        self.api = WaveSpeedApi(base_url or configured_url("wavespeed", DEFAULT_URL), self.key)

    @staticmethod
    def soul_id(soul) -> str | None:
        if soul is None:
            return None
        r = soul.remote("wavespeed") or soul.remote("higgsfield")
        if r is None:
            raise ValidationFailed(f"Soul ID {soul.name!r} has no trained Soul on WaveSpeed or Higgsfield; run "
                                   f"`soulid train {soul.name} --provider higgsfield` (refusing a generic face)")
        return r.id

    def generate(self, req: GenerateRequest, progress=None, interrupt=None) -> ImageResult:
        raise NotImplementedError("wavespeed resells Soul only as image-to-image: use Soul Edit "
                                  "(or the higgsfield / aurashot backend for text-to-image)")

    def edit(self, req: EditRequest, progress=None, interrupt=None) -> ImageResult:
        """Soul image-to-image. ``strength`` 0..1; quality ``1080p`` -> ``high``, else ``medium``.

        Returns:
            ImageResult ``[1, H, W, 3]`` float32 0..1.
        """
        if not 0.0 <= req.strength <= 1.0:
            raise ValidationFailed(f"edit strength must be within 0..1, not {req.strength}")
        h, w = np.asarray(req.image).shape[-3:-1]
        body = {"image": {"$upload": "image"}, "prompt": req.prompt, "strength": float(req.strength),
                "quality": "high" if req.quality in ("1080p", "high") else "medium", "size": f"{w}x{h}"}
        sid = self.soul_id(req.soul)
        if sid:
            body["soul_id"] = sid
        style = getattr(req.preset, "name", req.preset)
        if style:
            body["style"] = str(style)
        if req.seed is not None:
            body["seed"] = int(req.seed)
        spec = JobSpec(SOUL_I2I, body, {"image": media.to_upload_bytes(req.image)}, "image")
        return self.finish_images(self.run_job(self.api, spec, req.options, progress, interrupt))

    def animate(self, req: AnimateRequest, progress=None, interrupt=None) -> VideoResult:
        """DoP image-to-video: one motion (first of ``req.motions``) with its strength."""
        body = {"image": {"$upload": "start"}, "prompt": req.prompt, "model": req.model or "dop-turbo"}
        uploads = {"start": media.to_upload_bytes(req.image)}
        if req.end_image is not None:
            uploads["end"] = media.to_upload_bytes(req.end_image)
            body["end_image"] = {"$upload": "end"}
        if req.motions:
            body["motion"], body["motion_strength"] = req.motions[0][0], float(req.motions[0][1])
        if req.seed is not None:
            body["seed"] = int(req.seed)
        spec = JobSpec(DOP_I2V, body, uploads, "video")
        return self.finish_video(self.run_job(self.api, spec, req.options, progress, interrupt))
