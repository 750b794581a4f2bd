"""Soul Generate, Soul Edit and Soul ID Train (remote) nodes.

Bodies are thin: IMAGE tensors (``[B, H, W, 3]`` float32 0..1) are converted
with :mod:`.convert`, requests go to a cloud backend (``higgsfield |
wavespeed | aurashot``; inside ComfyUI local generation is the user's own
MODEL, so ``local`` is not offered here), and the cloud job engine does the
submitting, ledgering and polling. Credentials are never a widget: they come
from the environment or ``soulid login`` (see the README, "Cloud backends").

Paying once per intent: the engine's ledger keys a job on the request
(prompt, seed, options...), so Run again with the same widgets (the shipped
templates keep the seed ``fixed``) resumes or reuses the same paid request;
a new seed or ``new_run`` pays for a new one. ``max_usd`` caps the node's run
(see :class:`.cloud.Budget`); the node shows the estimate, or "no estimate".

``execute`` is async: the engine runs in a worker thread, so independent
paid nodes of one prompt run side by side. ComfyUI's interrupt cancels a
queued cloud job; a running one is left to be resumed by the next run.
"""
from __future__ import annotations

import asyncio
import json

from comfy_api.latest import io, ui

from ..backends.base import EditRequest, GenerateRequest
from ..soul.errors import Interrupted
from .cloud import CLOUD_BACKENDS, Budget, call_backend, cost_text
from .comfy_progress import comfy_hooks, raise_if_interrupted
from .convert import copy_soul, image_to_float_np, np_to_image
from .compat import search_aliases
from .types import SOUL_ID_TIP, SoulIDType, StylePresetType

#: Tooltip of every cloud ``backend`` input.
BACKEND_TIP = ("Cloud provider that runs the job (paid). Its API key comes from the settings (Soul ID › API keys), "
               "the environment or `soulid login`, never from the workflow.")
PRESET_TIP = "Optional Soul ID Style Preset; overrides the style text."
PROMPT_TIP = "What to show: scene, clothing, light. The face comes from the Soul ID; no need to describe it."
ASPECTS = ["3:4", "2:3", "9:16", "1:1", "4:3", "3:2", "16:9"]
SEED_MAX = 2**31 - 1


def cost_options(new_run: bool = False, **extra) -> dict:
    """Request options: ``new`` (pay for a fresh run) plus non-empty extras.
    ``max_usd`` is not set here: :class:`.cloud.Budget` sets it per attempt."""
    o = {k: v for k, v in extra.items() if v not in (None, "", "auto")}
    if new_run:
        o["new"] = True
    return o


def _preset(preset, style: str):
    return preset if preset is not None else (style.strip() or None)


def budget_inputs() -> list:
    """``max_usd`` and ``new_run``: the two money widgets of every paying node."""
    return [
        io.Float.Input(id="max_usd", default=0.0, min=0.0, max=100.0, step=0.01,
                       tooltip="Most US dollars this node may spend on this run, all attempts together "
                               "(0: no limit). A job whose estimate does not fit is not submitted."),
        io.Boolean.Input(id="new_run", default=False,
                         tooltip="Pay for a fresh run even if this exact request already ran (else it is "
                                 "resumed or reused: Run again does not pay twice)."),
    ]


def image_outputs() -> list:
    return [
        io.Image.Output(id="images", display_name="images"),
        io.String.Output(id="request_id", display_name="request id",
                         tooltip="The provider's request id (kept in the job ledger)."),
        io.String.Output(id="cost", display_name="cost (JSON)",
                         tooltip='The estimate as JSON: {"credits": ..., "usd": ...}; {} when the provider gives none.'),
    ]


def result_ui(provider: str, res, budget: Budget, images=None) -> dict:
    """The node's on-screen result: the cost line and, when given, the images."""
    reused = bool(res.info.get("resumed")) if isinstance(res.info, dict) else False
    text = ui.PreviewText(value=f"{cost_text(provider, res.cost, reused)}\n{budget.text(reused)}\n"
                                f"request {res.request_id or '-'}")
    out = dict(text.as_dict())
    if images is not None:
        out.update(ui.PreviewImage(image=images).as_dict())
    return out


class SoulGenerate(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SoulIDGenerate",
            display_name="Soul ID Generate",
            **search_aliases(),
            category="Soul ID/generate",
            description="Text-to-image with a Soul ID as the face anchor, on Higgsfield Soul, WaveSpeed or AuraShot. "
                        "Cloud jobs are submitted once: Run again with the same seed reuses the paid result; a new "
                        "seed or new_run pays for another.",
            inputs=[
                io.Combo.Input(id="backend", options=CLOUD_BACKENDS, default="higgsfield", tooltip=BACKEND_TIP),
                SoulIDType.Input(id="soul_id", tooltip=SOUL_ID_TIP),
                io.String.Input(id="prompt", multiline=True, default="", tooltip=PROMPT_TIP),
                io.String.Input(id="style", default="", tooltip="Style name or id (ignored when a preset is connected)."),
                io.Combo.Input(id="aspect_ratio", options=ASPECTS, default="3:4", tooltip="Width:height of the images."),
                io.Combo.Input(id="quality", options=["1080p", "720p"], default="1080p",
                               tooltip="Output resolution (1080p costs more on some providers)."),
                io.Combo.Input(id="batch_size", options=["1", "4"], default="1",
                               tooltip="Images per paid request (the provider prices a batch of 4 as one job)."),
                io.Int.Input(id="seed", default=0, min=0, max=SEED_MAX, control_after_generate=True,
                             tooltip="Same seed + same widgets = the same paid request (reused, not paid again)."),
                io.Boolean.Input(id="enhance_prompt", default=False,
                                 tooltip="Let the provider rewrite the prompt for more detail (Higgsfield)."),
                io.Combo.Input(id="model_version", options=["auto", "v1", "v2", "cinema"], default="auto",
                               tooltip="Higgsfield: use the Soul ID trained for this model version."),
                *budget_inputs(),
                StylePresetType.Input(id="preset", optional=True, tooltip=PRESET_TIP),
                io.Image.Input(id="image_reference", optional=True,
                               tooltip="Optional composition/pose reference image (first of the batch)."),
            ],
            outputs=image_outputs(),
        )

    @classmethod
    async def execute(cls, backend, soul_id, prompt, style, aspect_ratio, quality, batch_size, seed, enhance_prompt,
                      model_version, max_usd, new_run=False, preset=None, image_reference=None) -> io.NodeOutput:
        req = GenerateRequest(
            prompt=prompt, soul=soul_id, preset=_preset(preset, style),
            preset_strength=float(getattr(preset, "strength", 1.0)), aspect=aspect_ratio, quality=quality,
            batch=int(batch_size), seed=int(seed), enhance_prompt=bool(enhance_prompt),
            image_reference=image_to_float_np(image_reference)[0] if image_reference is not None else None,
            negative_prompt=preset.negative_prompt() if hasattr(preset, "negative_prompt") else "",
            options=cost_options(new_run, model_version=model_version))
        budget = Budget(max_usd)
        res = await call_backend(backend, "generate", req, budget)
        images = np_to_image(res.images)
        return io.NodeOutput(images, res.request_id, json.dumps(res.cost),
                             ui=result_ui(backend, res, budget))


class SoulEdit(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SoulIDEdit",
            display_name="Soul ID Edit",
            **search_aliases(),
            category="Soul ID/generate",
            description="Edit an image with a Soul ID's identity (Higgsfield Soul, WaveSpeed Soul image-to-image or "
                        "AuraShot edit). strength 0 keeps the source, 1 restyles freely.",
            inputs=[
                io.Combo.Input(id="backend", options=CLOUD_BACKENDS, default="higgsfield", tooltip=BACKEND_TIP),
                io.Image.Input(id="image", tooltip="The image to edit (first of the batch)."),
                io.String.Input(id="prompt", multiline=True, default="", tooltip="What to change."),
                SoulIDType.Input(id="soul_id", tooltip=SOUL_ID_TIP),
                io.Float.Input(id="strength", default=0.6, min=0.0, max=1.0, step=0.05,
                               tooltip="0 keeps the source image, 1 restyles it freely."),
                io.Combo.Input(id="quality", options=["1080p", "720p"], default="1080p",
                               tooltip="Output resolution (1080p costs more on some providers)."),
                io.Int.Input(id="seed", default=0, min=0, max=SEED_MAX, control_after_generate=True,
                             tooltip="Same seed + same widgets = the same paid request (reused, not paid again)."),
                io.String.Input(id="style", default="", tooltip="Style name or id (ignored when a preset is connected)."),
                *budget_inputs(),
                StylePresetType.Input(id="preset", optional=True, tooltip=PRESET_TIP),
            ],
            outputs=image_outputs(),
        )

    @classmethod
    async def execute(cls, backend, image, prompt, soul_id, strength, quality, seed, style, max_usd, new_run=False,
                      preset=None) -> io.NodeOutput:
        src = image_to_float_np(image)[0]
        req = EditRequest(image=src, prompt=prompt, soul=soul_id, strength=float(strength),
                          preset=_preset(preset, style), quality=quality, seed=int(seed),
                          options=cost_options(new_run))
        budget = Budget(max_usd)
        res = await call_backend(backend, "edit", req, budget)
        return io.NodeOutput(np_to_image(res.images), res.request_id, json.dumps(res.cost),
                             ui=result_ui(backend, res, budget))


def _train(soul, provider: str, model_version: str, save_to_library: bool):
    from ..backends.remote_training import train_remote

    soul = copy_soul(soul)  # never mutate an upstream output
    existing = soul.remote(provider, model_version)
    if existing is None:
        progress, interrupt = comfy_hooks()
        try:
            existing = train_remote(soul, provider, model_version, progress=progress, interrupt=interrupt)
        except Exception as e:
            if isinstance(e, Interrupted):
                raise_if_interrupted()
            raise
        if save_to_library:
            from ..soul.library import Library

            Library().save(soul, overwrite=True)
    return soul, existing


class SoulIDTrain(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SoulIDTrainRemote",
            display_name="Soul ID Train (remote)",
            category="Soul ID",
            description="Train the Soul ID on Higgsfield from its perfect and good photos (paid once: a Soul ID "
                        "already trained for that model version is passed through); the remote id is stored in the "
                        "Soul ID (and in the library file when save is on).",
            inputs=[
                SoulIDType.Input(id="soul_id", tooltip=SOUL_ID_TIP),
                io.Combo.Input(id="provider", options=["higgsfield"], default="higgsfield",
                               tooltip="Provider that trains the Soul ID (paid once per model version)."),
                io.Combo.Input(id="model_version", options=["v1", "v2", "cinema"], default="v1",
                               tooltip="Soul model version to train for."),
                io.Boolean.Input(id="save_to_library", default=True,
                                 tooltip="Write the remote id into the library file too."),
            ],
            outputs=[SoulIDType.Output(id="trained", display_name="trained Soul ID"),
                     io.String.Output(id="remote_id", display_name="remote id")],
        )

    @classmethod
    async def execute(cls, soul_id, provider, model_version, save_to_library) -> io.NodeOutput:
        soul, remote = await asyncio.to_thread(_train, soul_id, provider, model_version, save_to_library)
        return io.NodeOutput(soul, remote.id,
                             ui=ui.PreviewText(value=f"{soul.name}: trained on {provider} {model_version} "
                                                     f"(remote id {remote.id})"))


NODES = [SoulGenerate, SoulEdit, SoulIDTrain]
