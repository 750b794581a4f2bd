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

from enum import Enum

import numpy as np
from pydantic import Field

from . import media
from .base import AnimateRequest, EditRequest, GenerateRequest, ImageResult, VideoResult
from .engine import (
    Answer,
    CloudBackend,
    JobSpec,
    ProviderApi,
    StatusInfo,
    ValidationFailed,
    answer_json,
    configured_url,
    typed,
)

DEFAULT_URL = "https://api.wavespeed.ai"
SOUL_I2I = "/api/v3/higgsfield/soul/image-to-image"
DOP_I2V = "/api/v3/higgsfield/dop/image-to-video"


class Status(str, Enum):
    """WaveSpeed v3 prediction statuses; any other value is refused."""

    created = "created"
    processing = "processing"
    completed = "completed"
    failed = "failed"


_STATES = {Status.created: "queued", Status.processing: "running", Status.completed: "succeeded",
           Status.failed: "failed"}


class _Urls(Answer):
    get: str | None = None


class _Submitted(Answer):
    id: str = Field(min_length=1)
    urls: _Urls | None = None


class SubmitAnswer(Answer):
    data: _Submitted


class _Prediction(Answer):
    status: Status
    outputs: list[str] | None = None
    error: str | None = None


class StatusAnswer(Answer):
    data: _Prediction


class _Uploaded(Answer):
    download_url: str = Field(min_length=1)


class UploadAnswer(Answer):
    data: _Uploaded


class WaveSpeedApi(ProviderApi):
    provider = "wavespeed"
    backpressure_text = "\x00never"  # WaveSpeed signals load with 429, retried by the engine

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self._key}"}

    def parse_submit(self, data):
        d = typed(SubmitAnswer, data, "submit answer").data
        return d.id, (d.urls.get if d.urls and d.urls.get else
                      f"{self.base_url}/api/v3/predictions/{d.id}/result"), None

    def parse_status(self, data) -> StatusInfo:
        d = typed(StatusAnswer, data, "prediction answer").data
        st = _STATES[d.status]
        err = d.error or ""
        if st == "failed" and any(w in err.lower() for w in ("nsfw", "moderat", "sensitive")):
            st = "moderated"
        return StatusInfo(st, list(d.outputs or []), err, data)

    def upload(self, eng, data: bytes, content_type: str) -> str:
        ext = {"image/png": "png", "image/jpeg": "jpg"}.get(content_type, "bin")
        r = eng.api_call("POST", f"{self.base_url}/api/v3/media/upload/binary",
                         files={"file": (f"upload.{ext}", data, content_type)})
        eng.raise_for(r, "upload")
        url = typed(UploadAnswer, answer_json(r, "wavespeed: upload answer"), "wavespeed: upload answer").data.download_url
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
        raise NotImplementedError("wavespeed resells Soul only as image-to-image: use Soul ID Edit "
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
