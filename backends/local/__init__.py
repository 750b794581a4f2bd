"""The ``local`` backend: Soul ID generation on the user's own machine.

* generate / edit: SDXL with IP-Adapter FaceID Plus v2 or InstantID
  (:mod:`.pipelines`, :mod:`.instantid`), models from ComfyUI's folders
  (:mod:`.models`), identity embeddings from the Soul ID (:mod:`.embeddings`);
* animate: the weightless camera engine (:mod:`.camera`, CPU) or a diffusers
  image-to-video model (:mod:`.i2v`);
* :mod:`.identity_check`: per-frame similarity of a clip to the Soul ID.

Importing this package does not import torch or diffusers: they load on the
first generation. ``request.options`` keys (all optional):

=================  ==========================================================
``method``         ``faceid_plusv2`` (default) or ``instantid``
``steps``          denoising steps (30)
``guidance``       classifier-free guidance scale (5.0)
``model``          SDXL base: folder in models/diffusers, checkpoint in
                   models/checkpoints, path, or Hugging Face repo id
``lora``           persona LoRA (models/loras name or path); ``lora_scale``
``ip_scale``       identity (IP-Adapter) scale, default 0.8 x identity_strength
``controlnet_scale``  IdentityNet scale (instantid, 0.8)
``shortcut_scale`` FaceID Plus v2 shortcut scale (1.0)
``offload``        ``none`` | ``model`` | ``sequential``
``device``/``dtype``  override the device / dtype policy
``optimise``       CUDA: channels-last + ``torch.compile`` of the UNet (slow first run)
``engine``         animate: ``camera`` (default) or ``i2v``
``focus``          animate: ``(x, y)`` subject point, fractions; default: the
                   largest face found by dlib, else the centre
``pose_image``     instantid: ``[H, W, 3]`` image whose face keypoints to use
                   (generate also takes ``request.image_reference``; edit
                   defaults to the face in the source image, as the reference)
``require_faceid_lora``  faceid_plusv2: refuse to run without its paired LoRA
                   (``ip-adapter-faceid-plusv2_sdxl_lora.safetensors``); by
                   default a missing one is a warning on every run. Also
                   ``$SOULID_REQUIRE_FACEID_LORA=1``.
``soul_path``      a ``.soulid`` file to cache a computed embedding into
``persona_lora``   apply the Soul ID's SDXL persona LoRA when it has one (True);
                   ``persona_lora_scale`` (1.0); its trigger words are put in
                   front of the prompt
=================  ==========================================================
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from ...soul.errors import ModelFilesMissing, SoulIDError
from ...soul.imageio import to_rgb
from ..base import AnimateRequest, EditRequest, GenerateRequest, ImageResult, VideoResult
from .. import camera
from .embeddings import EmbeddingError, face_crop_for_clip, identity_embedding, reference_keypoints
from .models import METHODS, check_local, resolve

DEFAULTS = {
    "method": "faceid_plusv2",
    "steps": 30,
    "guidance": 5.0,
    "model": "",
    "lora": "",
    "lora_scale": 1.0,
    "faceid_lora_scale": 1.0,
    "controlnet_scale": 0.8,
    "shortcut_scale": 1.0,
    "offload": "none",
    "engine": "camera",
    "persona_lora": True,
    "persona_lora_scale": 1.0,
    "require_faceid_lora": False,
}
#: The paired LoRA the reference FaceID Plus v2 always applies (h94/IP-Adapter-FaceID, rank 128).
FACEID_LORA_NOTE = (
    "faceid_plusv2 runs WITHOUT its paired LoRA ip-adapter-faceid-plusv2_sdxl_lora.safetensors (models/loras): "
    "the reference always applies it, and identity is weaker without it. Download it from "
    "https://huggingface.co/h94/IP-Adapter-FaceID; option require_faceid_lora (or "
    "$SOULID_REQUIRE_FACEID_LORA=1) makes this an error.")


class LocalBackend:
    """The ``local`` backend (see the module docstring for ``options``).

    Args:
        analyzer: face analyzer used to compute a missing embedding / keypoints
            (default: the one of the method's embedding space, on demand).
        device, dtype: override the device/dtype policy of :mod:`.pipelines`.
    """

    name = "local"

    def __init__(self, analyzer=None, device: str | None = None, dtype: str | None = None):
        self.analyzer = analyzer
        self.device = device
        self.dtype = dtype

    # ------------------------------------------------------------ helpers
    @staticmethod
    def _opts(options: dict) -> dict:
        o = dict(DEFAULTS)
        o.update({k: v for k, v in (options or {}).items() if v is not None})
        if o["method"] not in METHODS:
            raise SoulIDError(f"options.method must be one of {', '.join(METHODS)}, not {o['method']!r}")
        if o["offload"] not in ("none", "model", "sequential"):
            raise SoulIDError(f"options.offload must be none, model or sequential, not {o['offload']!r}")
        if int(o["steps"]) < 1:
            raise SoulIDError(f"options.steps must be >= 1, got {o['steps']}")
        return o

    def _key(self, o: dict):
        from .pipelines import PipelineKey, device_and_dtype

        r = resolve(o["method"], o["model"], o["lora"], float(o["lora_scale"]), float(o["faceid_lora_scale"]))
        if r.method == "faceid_plusv2" and not any(role == "faceid_lora" for role, _ in r.files):
            if o["require_faceid_lora"] or os.environ.get("SOULID_REQUIRE_FACEID_LORA", "") not in ("", "0"):
                from .models import FILES, _where

                kind, names = FILES["faceid_lora"]
                raise ModelFilesMissing("local faceid_plusv2", [f"{_where(kind)}/{names[0]} (faceid lora)"],
                                        "require_faceid_lora is on; download it from "
                                        "https://huggingface.co/h94/IP-Adapter-FaceID")
            logging.getLogger("soulid").warning("WARNING: " + FACEID_LORA_NOTE)
        dev, dt = device_and_dtype(o.get("device") or self.device, o.get("dtype") or self.dtype)
        return PipelineKey(r, dev, dt, o["offload"], bool(o.get("optimise", False)))

    @staticmethod
    def _with_persona(key, o: dict, soul, prompt: str):
        """``(key, prompt)`` with the Soul ID's SDXL persona LoRA added to the
        pipeline's LoRAs and its trigger words in front of the prompt, when it
        has one and ``options["persona_lora"]`` is on (:func:`.pipelines.persona_lora`)."""
        import dataclasses

        from .pipelines import persona_lora, persona_prompt

        lora = persona_lora(soul, float(o["persona_lora_scale"])) if o["persona_lora"] else None
        if lora is None:
            return key, prompt
        resolved = dataclasses.replace(key.resolved, loras=key.resolved.loras + (lora,))
        return dataclasses.replace(key, resolved=resolved), persona_prompt(soul, prompt)

    def _identity(self, soul, o: dict, width: int, height: int, pose: np.ndarray | None,
                  pose_label: str = "options.pose_image"):
        """Embedding plus the method's second input (face crop or keypoint image).

        InstantID's keypoints come from the face found in ``pose`` (named
        ``pose_label`` in errors), else from the Soul ID's keypoint reference
        mapped onto the frame."""
        if soul is None:
            raise SoulIDError("the local backend needs a Soul ID (request.soul is None)")
        method = o["method"]
        az = self.analyzer
        emb = identity_embedding(soul, method, analyzer=az, save_to=o.get("soul_path"))
        if method == "faceid_plusv2":
            return emb, {"face_crop": face_crop_for_clip(soul, az)}
        from .instantid import draw_keypoints, place_keypoints

        kps, hw = None, None
        if pose is not None:
            from ...soul.analysis import get_analyzer

            pimg = to_rgb(pose, what="pose", error=SoulIDError)
            face = (az or get_analyzer("insightface")).largest_face(pimg)
            if face is None:
                raise EmbeddingError(f"{pose_label}: no face found for the InstantID keypoints"
                                     + ("; give options.pose_image with a face" if pose_label != "options.pose_image"
                                        else ""))
            kps, hw = face.keypoints, pimg.shape[:2]
        else:
            ref = reference_keypoints(soul)
            if ref is None:
                raise EmbeddingError(f"Soul ID {soul.name!r} has no keypoint reference; give a pose image")
            kps, hw = ref[1], ref[0].shape[:2]
        return emb, {"keypoint_image": draw_keypoints(width, height, place_keypoints(kps, hw, width, height))}

    # ------------------------------------------------------------ Backend
    def generate(self, req: GenerateRequest, progress=None, interrupt=None) -> ImageResult:
        """Text-to-image with the Soul ID's face.

        Returns:
            :class:`ImageResult` with ``images`` ``[batch, H, W, 3]`` float32 0..1
            (H, W rounded down to the model's size multiple) and ``info``
            ``{"seed", "steps", "method", "mode"}``.

        Raises:
            LocalSetupMissing: one error naming every missing package and
                model file (:func:`.models.check_local`).
            EmbeddingError: the Soul ID's embedding does not fit the method.
            Interrupted: interrupted between denoising steps.
        """
        o = self._opts(req.options)
        check_local("generate", o["method"], o["model"], o["lora"], req.soul)
        from .pipelines import RunParams, run

        width, height = _size(req.width, req.height, req.aspect, req.preset)
        key = self._key(o)
        prompt, negative = _apply_preset(req.prompt, req.negative_prompt, req.preset, req.preset_strength)
        key, prompt = self._with_persona(key, o, req.soul, prompt)
        pose = o.get("pose_image", req.image_reference)
        emb, extra = self._identity(req.soul, o, width, height, pose)
        params = RunParams(
            prompt=prompt, negative_prompt=negative, width=width, height=height, steps=int(o["steps"]),
            guidance=float(o["guidance"]), seed=req.seed, batch=max(1, int(req.batch)),
            ip_scale=float(o.get("ip_scale", 0.8 * req.identity_strength)),
            controlnet_scale=float(o["controlnet_scale"]), shortcut_scale=float(o["shortcut_scale"]),
        )
        images, info = run(key, params, emb, progress=progress, interrupt=interrupt, **extra)
        return ImageResult(images=images, info=info)

    def edit(self, req: EditRequest, progress=None, interrupt=None) -> ImageResult:
        """Image-to-image with the Soul ID's face: ``strength`` 0 returns the
        source unchanged, 1 restyles freely; with ``mask`` (1 = repaint) only the
        masked area changes (the rest is the source, pixel for pixel).

        Raises:
            SoulIDError: strength outside 0..1, or a mask of another size.
            (and as :meth:`generate`)
        """
        o = self._opts(req.options)
        src = to_rgb(req.image, np.float32, error=SoulIDError)
        if not 0.0 <= float(req.strength) <= 1.0:
            raise SoulIDError(f"edit strength must be in 0..1, got {req.strength}")
        if req.mask is not None and np.asarray(req.mask).shape[:2] != src.shape[:2]:
            raise SoulIDError(f"edit mask is {np.asarray(req.mask).shape[:2]}, the image {src.shape[:2]}")
        if float(req.strength) == 0.0:
            return ImageResult(images=src[None].copy(), info={"method": o["method"], "mode": "unchanged", "steps": 0})
        check_local("generate", o["method"], o["model"], o["lora"], req.soul)
        from .pipelines import RunParams, run

        key = self._key(o)
        prompt, negative = _apply_preset(req.prompt, req.negative_prompt, req.preset, req.preset_strength)
        key, prompt = self._with_persona(key, o, req.soul, prompt)
        h, w = src.shape[:2]
        # As the reference: an edit's keypoints are those of the face in the image being edited.
        pose, label = ((o["pose_image"], "options.pose_image") if o.get("pose_image") is not None
                       else (src, "the edit's source image"))
        emb, extra = self._identity(req.soul, o, w, h, pose, label)
        params = RunParams(
            prompt=prompt, negative_prompt=negative, steps=int(o["steps"]), guidance=float(o["guidance"]),
            seed=req.seed, ip_scale=float(o.get("ip_scale", 0.8)), controlnet_scale=float(o["controlnet_scale"]),
            shortcut_scale=float(o["shortcut_scale"]), strength=float(req.strength),
        )
        mask = None if req.mask is None else np.asarray(req.mask, np.float32).reshape(src.shape[:2])
        images, info = run(key, params, emb, image=src, mask=mask, progress=progress, interrupt=interrupt, **extra)
        return ImageResult(images=images, info=info)

    def animate(self, req: AnimateRequest, progress=None, interrupt=None) -> VideoResult:
        """A still into an MP4: ``engine`` ``camera`` (CPU, no weights) or ``i2v``.

        The clip is written to ``options["out"]`` or a new file in the
        system temp folder; ``info["identity"]`` holds the per-frame identity
        check when the request has a Soul ID and ``options["check_identity"]``.

        Raises:
            CameraError: unknown motion, bad size or length.
            ModelFilesMissing: i2v model files missing.
        """
        o = self._opts(req.options)
        if o.get("out"):
            out = Path(o["out"])
        else:  # the caller owns the file; the descriptor is closed here
            fd, name = tempfile.mkstemp(prefix="soulid_", suffix=".mp4")
            os.close(fd)
            out = Path(name)
        if o["engine"] == "camera":
            result = camera.animate_still(req, out, progress, interrupt, focus=o.get("focus"))
        elif o["engine"] == "i2v":
            check_local("i2v", i2v_model=o.get("i2v_model", ""))
            from .i2v import animate_i2v

            motions = [camera.parse_motion(f"{n}:{s}") if ":" not in str(n) else camera.parse_motion(n)
                       for n, s in req.motions]
            result = animate_i2v(req, out, motions, o, progress=progress, interrupt=interrupt)
        else:
            raise SoulIDError(f"options.engine must be camera or i2v, not {o['engine']!r}")
        if req.soul is not None and o.get("check_identity"):
            from .identity_check import check_clip

            result.info["identity"] = check_clip(result.path, req.soul, analyzer=self.analyzer).as_dict()
        return result

    @staticmethod
    def release() -> None:
        """Unload the cached pipeline and free its (V)RAM."""
        from .pipelines import release

        release()


# ---------------------------------------------------------------- helpers
def _size(width, height, aspect, preset) -> tuple[int, int]:
    """Output size: explicit, else ~1 MP at ``aspect`` (or the preset's), multiples of 64."""
    if width and height:
        return int(width), int(height)
    if aspect:
        from ...soul.presets import parse_aspect

        aw, ah = parse_aspect(aspect)
        r = aw / ah
    elif preset is not None and hasattr(preset, "size"):
        return preset.size()
    else:
        r = 1.0
    h = (1024 * 1024 / r) ** 0.5
    return max(64, round(h * r / 64) * 64), max(64, round(h / 64) * 64)


def _apply_preset(prompt: str, negative: str, preset, strength: float) -> tuple[str, str]:
    if preset is None:
        return prompt, negative
    if isinstance(preset, str):
        from ...soul.presets import get_preset

        preset = get_preset(preset)
    return preset.prompt(prompt, strength), preset.negative_prompt(negative)


__all__ = ["LocalBackend", "DEFAULTS", "camera"]
