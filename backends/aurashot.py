"""AuraShot: identity photos from one face reference, no training.

Bearer key (``$AURASHOT_API_KEY``); base URL ``$SOULID_AURASHOT_URL``, else
:data:`DEFAULT_URL` (unconfirmed: set the API root your AuraShot account
gives). The paths below are likewise not confirmed against public docs.
Endpoints, relative to the base: ``POST /v1/upload`` (multipart ``file`` ->
``{url}``), ``POST /v1/id-photo`` (one face photo -> a 4-in-1 ID sheet),
``POST /v1/generate`` (face reference + prompt), ``POST /v1/edit`` (target
image + face reference + prompt); each answers ``{task_id, status,
status_url, cancel_url}``; ``GET /v1/tasks/{id}`` (``pending | processing |
succeeded | failed | moderated``, ``result_urls``).

The face reference is the Soul ID's best stored photo (first ``perfect``,
else first ``good``).
"""
from __future__ import annotations

from enum import Enum

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

DEFAULT_URL = "https://api.aurashot.ai"


class Status(str, Enum):
    """AuraShot task statuses; any other value is refused."""

    pending = "pending"
    processing = "processing"
    succeeded = "succeeded"
    failed = "failed"
    moderated = "moderated"
    canceled = "canceled"


_STATES = {Status.pending: "queued", Status.processing: "running", Status.succeeded: "succeeded",
           Status.failed: "failed", Status.moderated: "moderated", Status.canceled: "canceled"}


class SubmitAnswer(Answer):
    task_id: str = Field(min_length=1)
    status_url: str | None = None
    cancel_url: str | None = None


class StatusAnswer(Answer):
    status: Status
    result_urls: list[str] | None = None
    error: str | None = None


class UploadAnswer(Answer):
    url: str = Field(min_length=1)


class AuraShotApi(ProviderApi):
    provider = "aurashot"

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self._key}"}

    def parse_submit(self, data):
        d = typed(SubmitAnswer, data, "submit answer")
        return (d.task_id, d.status_url or f"{self.base_url}/v1/tasks/{d.task_id}",
                d.cancel_url or f"{self.base_url}/v1/tasks/{d.task_id}/cancel")

    def parse_status(self, data) -> StatusInfo:
        d = typed(StatusAnswer, data, "task answer")
        return StatusInfo(_STATES[d.status], list(d.result_urls or []), d.error or "", data)

    def upload(self, eng, data: bytes, content_type: str) -> str:
        r = eng.api_call("POST", f"{self.base_url}/v1/upload", files={"file": ("face.jpg", data, content_type)})
        eng.raise_for(r, "upload")
        url = typed(UploadAnswer, answer_json(r, "aurashot: upload answer"), "aurashot: upload answer").url
        return media.check_url(url, allow_loopback=eng.allow_loopback, what="uploaded file URL")


class AuraShotBackend(CloudBackend):
    """AuraShot backend: :meth:`generate` (``options["mode"] = "id_photo"`` for
    the 4-in-1 ID sheet) and :meth:`edit`; no video."""

    name = "aurashot"

    def __init__(self, base_url: str | None = None, key: str | None = None, **kw):
        super().__init__(key=key, **kw)
        self.api = AuraShotApi(base_url or configured_url("aurashot", DEFAULT_URL), self.key)

    @staticmethod
    def face_upload(soul, face_reference=None) -> tuple[bytes, str]:
        """The face reference upload: the Soul ID's best photo, or (without a
        Soul ID) ``face_reference``, an ``[H, W, 3]`` image (a cast's front view)."""
        if soul is None and face_reference is not None:
            return media.to_upload_bytes(face_reference)
        if soul is None:
            raise ValidationFailed("aurashot needs a Soul ID: its face reference is the identity")
        photos = soul.photos_rated(("perfect",)) or soul.photos_rated(("good",))
        if not photos:
            raise ValidationFailed(f"Soul ID {soul.name!r} has no perfect or good photo to use as face reference")
        return photos[0].jpeg, "image/jpeg"

    def generate(self, req: GenerateRequest, progress=None, interrupt=None) -> ImageResult:
        """Face reference + prompt -> ``[B, H, W, 3]`` float32 0..1."""
        uploads = {"face": self.face_upload(req.soul)}
        if req.options.get("mode") in ("id_photo", "id-photo"):
            spec = JobSpec("/v1/id-photo", {"image_url": {"$upload": "face"}}, uploads, "image")
        else:
            body = {"face_image_url": {"$upload": "face"}, "prompt": req.prompt, "aspect_ratio": req.aspect or "3:4"}
            if req.seed is not None:
                body["seed"] = int(req.seed)
            spec = JobSpec("/v1/generate", body, uploads, "image")
        return self.finish_images(self.run_job(self.api, spec, req.options, progress, interrupt))

    def edit(self, req: EditRequest, progress=None, interrupt=None) -> ImageResult:
        """Target image + face reference + prompt -> ``[1, H, W, 3]`` float32 0..1.
        Without a Soul ID, ``options["face_reference"]`` (``[H, W, 3]``) is the face."""
        uploads = {"face": self.face_upload(req.soul, req.options.get("face_reference")),
                   "image": media.to_upload_bytes(req.image)}
        body = {"image_url": {"$upload": "image"}, "face_image_url": {"$upload": "face"}, "prompt": req.prompt,
                "strength": float(req.strength)}
        if req.seed is not None:
            body["seed"] = int(req.seed)
        spec = JobSpec("/v1/edit", body, uploads, "image")
        return self.finish_images(self.run_job(self.api, spec, req.options, progress, interrupt))

    def animate(self, req: AnimateRequest, progress=None, interrupt=None) -> VideoResult:
        raise NotImplementedError("aurashot makes no video: use the higgsfield or wavespeed backend for DoP")
