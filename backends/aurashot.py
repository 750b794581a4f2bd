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

from . import media
from .base import AnimateRequest, EditRequest, GenerateRequest, ImageResult, VideoResult
from .engine import CloudBackend, CloudError, JobSpec, ProviderApi, StatusInfo, ValidationFailed, configured_url

DEFAULT_URL = "https://api.aurashot.ai"
_STATES = {"pending": "queued", "processing": "running", "succeeded": "succeeded", "failed": "failed",
           "moderated": "moderated", "canceled": "canceled"}


class AuraShotApi(ProviderApi):
    provider = "aurashot"

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self._key}"}

    def parse_submit(self, data: dict):
        tid = data["task_id"]
        return (tid, data.get("status_url") or f"{self.base_url}/v1/tasks/{tid}",
                data.get("cancel_url") or f"{self.base_url}/v1/tasks/{tid}/cancel")

    def parse_status(self, data: dict) -> StatusInfo:
        return StatusInfo(_STATES.get(str(data.get("status")), "running"), list(data.get("result_urls") or []),
                          str(data.get("error") or ""), data)

    def upload(self, eng, data: bytes, content_type: str) -> str:
        r = eng.api_call("POST", f"{self.base_url}/v1/upload", files={"file": ("face.jpg", data, content_type)})
        eng.raise_for(r, "upload")
        url = r.json().get("url")
        if not url:
            raise CloudError("aurashot: upload answered without a url")
        return media.check_url(url, allow_loopback=eng.allow_loopback, what="uploaded file URL")


class AuraShotBackend(CloudBackend):
    """AuraShot backend: :meth:`generate` (``options["mode"] = "id_photo"`` for
    the 4-in-1 ID sheet) and :meth:`edit`; no video."""

    name = "aurashot"

    def __init__(self, base_url: str | None = None, key: str | None = None, **kw):
        super().__init__(key=key, **kw)
        self.api = AuraShotApi(base_url or configured_url("aurashot", DEFAULT_URL), self.key)

    @staticmethod
    def face_upload(soul) -> tuple[bytes, str]:
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
        """Target image + face reference + prompt -> ``[1, H, W, 3]`` float32 0..1."""
        uploads = {"face": self.face_upload(req.soul), "image": media.to_upload_bytes(req.image)}
        body = {"image_url": {"$upload": "image"}, "face_image_url": {"$upload": "face"}, "prompt": req.prompt,
                "strength": float(req.strength)}
        if req.seed is not None:
            body["seed"] = int(req.seed)
        spec = JobSpec("/v1/edit", body, uploads, "image")
        return self.finish_images(self.run_job(self.api, spec, req.options, progress, interrupt))

    def animate(self, req: AnimateRequest, progress=None, interrupt=None) -> VideoResult:
        raise NotImplementedError("aurashot makes no video: use the higgsfield or wavespeed backend for DoP")
