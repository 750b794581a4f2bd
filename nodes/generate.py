"""Soul Generate, Soul Edit and Soul ID Train (remote) nodes.

Bodies are thin: IMAGE tensors (``[B, H, W, 3]`` float32 0..1) are converted
with :mod:`.convert`, requests go to :func:`soulid.backends.base.get_backend`
(``higgsfield | wavespeed | aurashot | local``), and the cloud job engine does
the submitting, ledgering and polling. Credentials are never a widget: they
come from the environment or ``soulid login`` (see the README, "Cloud backends").

ComfyUI's interrupt (``comfy.model_management.processing_interrupted``) is
passed to the engine: a queued cloud job is canceled, a running one is left
to be resumed by the next run. Progress shows queued / running / done on a
``comfy.utils.ProgressBar``.
"""
from __future__ import annotations

import json
import logging

from comfy_api.latest import io

from ..backends.base import BACKENDS, EditRequest, GenerateRequest, get_backend
from .convert import image_to_float_np, np_to_image
from .types import SoulIDType, StylePresetType

log = logging.getLogger("soulid")

BACKEND_NAMES = list(BACKENDS)
ASPECTS = ["3:4", "2:3", "9:16", "1:1", "4:3", "3:2", "16:9"]
SEED_MAX = 2**31 - 1
_STEPS = {"uploading": 0, "queued": 1, "concurrency": 1, "running": 2, "succeeded": 3}


def comfy_hooks():
    """``(progress, interrupt)`` callables bound to ComfyUI's progress bar and
    interrupt flag (imported lazily: only inside ComfyUI)."""
    import comfy.model_management
    import comfy.utils

    bar = comfy.utils.ProgressBar(3)

    def progress(_frac, msg: str) -> None:
        log.info("soulid: %s", msg)
        for k, v in _STEPS.items():
            if k in msg:
                bar.update_absolute(v, 3)
                break

    return progress, comfy.model_management.processing_interrupted


def run_backend(name: str, method: str, req, **backend_kw):
    """Call ``get_backend(name).<method>(req)`` with ComfyUI's hooks; an
    interrupt surfaces as ComfyUI's own interrupt exception."""
    import comfy.model_management

    from ..backends.engine import Interrupted

    progress, interrupt = comfy_hooks()
    try:
        be = get_backend(name, **backend_kw)
    except ModuleNotFoundError as e:
        raise RuntimeError(f"the {name} backend is not available here ({e})") from None
    try:
        return getattr(be, method)(req, progress, interrupt)
    except Interrupted:
        comfy.model_management.throw_exception_if_processing_interrupted()
        raise


def cost_options(max_usd: float, new_run: bool = False, **extra) -> dict:
    """Request options: ``max_usd`` (0 = no limit) and ``new``, plus non-empty extras."""
    o = {k: v for k, v in extra.items() if v not in (None, "", "auto")}
    if max_usd and max_usd > 0:
        o["max_usd"] = float(max_usd)
    if new_run:
        o["new"] = True
    return o


def _preset(preset, style: str):
    return preset if preset is not None else (style.strip() or None)


def _common_inputs() -> list:
    return [
        io.Float.Input("max_usd", default=0.0, min=0.0, max=100.0, step=0.01,
                       tooltip="Refuse a job whose estimate is above this many US dollars (0: no limit)."),
        io.Boolean.Input("new_run", default=False,
                         tooltip="Pay for a fresh run even if this exact request already ran (else it is reused)."),
    ]


def _outputs() -> list:
    return [io.Image.Output("images"), io.String.Output("request_id"), io.String.Output("cost")]


class SoulGenerate(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SoulIDGenerate",
            display_name="Soul Generate",
            category="Soul ID/generate",
            description="Text-to-image with a Soul ID as the face anchor, on Higgsfield Soul, AuraShot or the "
                        "local pipelines. Cloud jobs are submitted once and resumed after a restart.",
            inputs=[
                io.Combo.Input("backend", options=BACKEND_NAMES, default="higgsfield"),
                SoulIDType.Input("soul_id"),
                io.String.Input("prompt", multiline=True, default=""),
                io.String.Input("style", default="", tooltip="Style name or id (ignored when a preset is connected)."),
                io.Combo.Input("aspect_ratio", options=ASPECTS, default="3:4"),
                io.Combo.Input("quality", options=["1080p", "720p"], default="1080p"),
                io.Combo.Input("batch_size", options=["1", "4"], default="1"),
                io.Int.Input("seed", default=0, min=0, max=SEED_MAX, control_after_generate=True),
                io.Boolean.Input("enhance_prompt", default=False),
                io.Combo.Input("model_version", options=["auto", "v1", "v2", "cinema"], default="auto",
                               tooltip="Higgsfield: use the Soul ID trained for this model version."),
                io.Combo.Input("method", options=["faceid_plusv2", "instantid"], default="faceid_plusv2",
                               tooltip="Local backend only."),
                io.Int.Input("steps", default=30, min=1, max=150, tooltip="Local: denoising steps."),
                io.Float.Input("guidance", default=5.0, min=0.0, max=30.0, step=0.1, tooltip="Local: CFG scale."),
                *_common_inputs(),
                StylePresetType.Input("preset", optional=True),
                io.Image.Input("image_reference", optional=True),
            ],
            outputs=_outputs(),
        )

    @classmethod
    def execute(cls, backend, soul_id, prompt, style, aspect_ratio, quality, batch_size, seed, enhance_prompt,
                model_version, method, steps, guidance, max_usd, new_run=False, preset=None,
                image_reference=None) -> io.NodeOutput:
        local = {"method": method, "steps": steps, "guidance": guidance} if backend == "local" else {}
        req = GenerateRequest(
            prompt=prompt, soul=soul_id, preset=_preset(preset, style),
            preset_strength=float(getattr(preset, "strength", 1.0)), aspect=aspect_ratio, quality=quality,
            batch=int(batch_size), seed=int(seed), enhance_prompt=bool(enhance_prompt),
            image_reference=image_to_float_np(image_reference)[0] if image_reference is not None else None,
            negative_prompt=preset.negative_prompt() if hasattr(preset, "negative_prompt") else "",
            options=cost_options(max_usd, new_run, model_version=model_version, **local))
        res = run_backend(backend, "generate", req)
        return io.NodeOutput(np_to_image(res.images), res.request_id, json.dumps(res.cost))


class SoulEdit(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SoulIDEdit",
            display_name="Soul Edit",
            category="Soul ID/generate",
            description="Edit an image with a Soul ID's identity (Higgsfield Soul, WaveSpeed Soul image-to-image, "
                        "AuraShot edit, or local). strength 0 keeps the source, 1 restyles freely.",
            inputs=[
                io.Combo.Input("backend", options=BACKEND_NAMES, default="higgsfield"),
                io.Image.Input("image"),
                io.String.Input("prompt", multiline=True, default=""),
                SoulIDType.Input("soul_id"),
                io.Float.Input("strength", default=0.6, min=0.0, max=1.0, step=0.05),
                io.Combo.Input("quality", options=["1080p", "720p"], default="1080p"),
                io.Int.Input("seed", default=0, min=0, max=SEED_MAX, control_after_generate=True),
                io.String.Input("style", default=""),
                *_common_inputs(),
                StylePresetType.Input("preset", optional=True),
            ],
            outputs=_outputs(),
        )

    @classmethod
    def execute(cls, backend, image, prompt, soul_id, strength, quality, seed, style, max_usd, new_run=False,
                preset=None) -> io.NodeOutput:
        src = image_to_float_np(image)[0]
        req = EditRequest(image=src, prompt=prompt, soul=soul_id, strength=float(strength),
                          preset=_preset(preset, style), quality=quality, seed=int(seed),
                          options=cost_options(max_usd, new_run))
        res = run_backend(backend, "edit", req)
        return io.NodeOutput(np_to_image(res.images), res.request_id, json.dumps(res.cost))


class SoulIDTrain(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SoulIDTrainRemote",
            display_name="Soul ID Train (remote)",
            category="Soul ID",
            description="Train the Soul ID on Higgsfield from its perfect and good photos; the remote id is stored "
                        "in the Soul ID (and in the library file when save is on).",
            inputs=[
                SoulIDType.Input("soul_id"),
                io.Combo.Input("provider", options=["higgsfield"], default="higgsfield"),
                io.Combo.Input("model_version", options=["v1", "v2", "cinema"], default="v1"),
                io.Boolean.Input("save_to_library", default=True),
            ],
            outputs=[SoulIDType.Output("trained", display_name="soul_id"), io.String.Output("remote_id")],
        )

    @classmethod
    def execute(cls, soul_id, provider, model_version, save_to_library) -> io.NodeOutput:
        import comfy.model_management

        from ..backends.engine import Interrupted
        from ..backends.training import train_remote
        from ..soul.soulfile import SoulID

        soul = SoulID.from_bytes(soul_id.to_bytes(), label=soul_id.name)  # never mutate an upstream output
        progress, interrupt = comfy_hooks()
        existing = soul.remote(provider, model_version)
        if existing is None:
            try:
                existing = train_remote(soul, provider, model_version, progress=progress, interrupt=interrupt)
            except Interrupted:
                comfy.model_management.throw_exception_if_processing_interrupted()
                raise
            if save_to_library:
                from ..soul.library import Library

                Library().save(soul, overwrite=True)
        return io.NodeOutput(soul, existing.id)


NODES = [SoulGenerate, SoulEdit, SoulIDTrain]
