"""DoP Animate: a still into a clip (VIDEO) on Higgsfield DoP, WaveSpeed's
DoP, or locally with the weightless camera engine (``local``: zoom, pan,
dolly, orbit... over the still; no diffusion model is loaded).

Motions: up to two, from a connected Motion Preset chain (``motions``) or the
``motion_1`` / ``motion_2`` name-or-id widgets with their strengths 0..1.
The clip comes back as ComfyUI's ``VideoFromFile``: the cloud MP4 from the
result cache, the local one read into memory (its temporary folder is gone
when the node returns: no file or descriptor is left behind).
"""
from __future__ import annotations

import asyncio
import json
import tempfile
from io import BytesIO
from pathlib import Path

from comfy_api.latest import InputImpl, io, ui

from ..backends import camera
from ..backends.base import AnimateRequest
from ..backends.higgsfield import DOP_MODELS
from ..soul.errors import Interrupted
from .cloud import Budget, call_backend, cost_text
from .comfy_progress import comfy_hooks, raise_if_interrupted
from .convert import image_to_float_np
from .generate import SEED_MAX, budget_inputs, cost_options
from .types import MotionPresetType, SoulIDType

ANIMATE_BACKENDS = ["higgsfield", "wavespeed", "local"]


#: The empty choice of the motion lists.
NO_MOTION = "none"


def motion_choices() -> list[str]:
    """The motion lists' options: none, the local moves, the Higgsfield names
    they match (static, e.g. "Dolly In"), then Higgsfield's other motions from
    the cached list (``soulid motions --refresh``). Never calls the network."""
    from ..soul.motions import list_motions, local_moves, provider_names

    out = [NO_MOTION, *local_moves()]
    for mv in local_moves().values():
        out += provider_names(mv)
    try:
        out += [m.remote_name or m.name for m in list_motions()[0] if m.kind != "local"]
    except Exception:  # an unreadable cache must not hide the node
        pass
    return list(dict.fromkeys(out))


def motion_pairs(motions, motion_1: str, strength_1: float, motion_2: str, strength_2: float) -> list:
    """``[(name or id, strength)]``, at most two: the preset chain first, then the widgets."""
    pairs = [m.as_pair() if hasattr(m, "as_pair") else (str(m), 0.5) for m in (motions or [])]
    for name, s in ((motion_1, strength_1), (motion_2, strength_2)):
        if name.strip() and name.strip() != NO_MOTION:
            pairs.append((name.strip(), float(s)))
    if len(pairs) > 2:
        raise ValueError(f"DoP Animate takes at most two motions, got {len(pairs)}: "
                         f"{', '.join(p[0] for p in pairs)}")
    return pairs


async def animate_local(req: AnimateRequest):
    """The camera engine (:func:`soulid.backends.camera.animate_still`, no
    model) into a temporary folder, off the event loop; returns
    ``(VIDEO, VideoResult)`` with the MP4 held in memory and the folder removed."""
    progress, interrupt = comfy_hooks()
    with tempfile.TemporaryDirectory(prefix="soulid_clip_") as tmp:
        out = Path(tmp) / "clip.mp4"
        try:
            res = await asyncio.to_thread(camera.animate_still, req, out, progress, interrupt)
        except Interrupted:
            raise_if_interrupted()
            raise
        data = out.read_bytes()
    return InputImpl.VideoFromFile(BytesIO(data)), res


class DoPAnimate(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SoulIDDoPAnimate",
            display_name="Soul ID DoP Animate",
            category="Soul ID/animate",
            description="Animate a still with up to two camera motions: Higgsfield DoP (5 s MP4), WaveSpeed DoP, "
                        "or local camera moves over the still (CPU, no model).",
            inputs=[
                io.Combo.Input(id="backend", options=ANIMATE_BACKENDS, default="higgsfield",
                               tooltip="higgsfield or wavespeed: paid cloud DoP; local: free camera moves over the "
                                       "still (CPU, no model; model, seed and max_usd are not used)."),
                io.Image.Input(id="image", tooltip="The still to animate (first of the batch)."),
                io.String.Input(id="prompt", multiline=True, default="",
                                tooltip="What happens in the clip (cloud only)."),
                io.Combo.Input(id="motion_1", options=motion_choices(), default=NO_MOTION,
                               tooltip="First camera motion: a local move (dolly_in...) or the provider's name "
                                       "(Dolly In...); `soulid motions` shows which match."),
                io.Float.Input(id="motion_1_strength", default=0.5, min=0.0, max=1.0, step=0.05,
                               tooltip="How strong the first motion is (0..1)."),
                io.Combo.Input(id="motion_2", options=motion_choices(), default=NO_MOTION,
                               tooltip="Optional second camera motion (cloud DoP takes at most two)."),
                io.Float.Input(id="motion_2_strength", default=0.5, min=0.0, max=1.0, step=0.05,
                               tooltip="How strong the second motion is (0..1)."),
                io.Combo.Input(id="model", options=list(DOP_MODELS), default="dop-turbo",
                               tooltip="Cloud DoP model (turbo: fastest; lite: cheapest; preview: best). Not used by local."),
                io.Int.Input(id="seed", default=0, min=0, max=SEED_MAX, control_after_generate=True,
                             tooltip="Same seed + same widgets = the same paid request (reused, not paid again)."),
                io.Float.Input(id="seconds", default=5.0, min=1.0, max=10.0, step=0.5, tooltip="Local only."),
                io.Int.Input(id="fps", default=24, min=8, max=60, tooltip="Local only."),
                *budget_inputs(),
                io.Image.Input(id="end_image", optional=True, tooltip="Optional last frame the clip moves towards (cloud)."),
                MotionPresetType.Input(id="motions", optional=True,
                                       tooltip="Motions from Soul ID Motion Preset (they come before motion_1/2)."),
                SoulIDType.Input(id="soul_id", optional=True,
                                 tooltip="Optional: the Soul ID of the person in the image (Higgsfield uses its remote id)."),
            ],
            outputs=[io.Video.Output(id="video", display_name="video"),
                     io.String.Output(id="request_id", display_name="request id"),
                     io.String.Output(id="cost", display_name="cost (JSON)")],
        )

    @classmethod
    async def execute(cls, backend, image, prompt, motion_1, motion_1_strength, motion_2, motion_2_strength, model,
                      seed, seconds, fps, max_usd, new_run=False, end_image=None, motions=None,
                      soul_id=None) -> io.NodeOutput:
        req = AnimateRequest(
            image=image_to_float_np(image)[0], prompt=prompt,
            end_image=image_to_float_np(end_image)[0] if end_image is not None else None,
            motions=motion_pairs(motions, motion_1, motion_1_strength, motion_2, motion_2_strength),
            model=model if backend != "local" else "", seed=int(seed), seconds=float(seconds), fps=int(fps),
            soul=soul_id, options=cost_options(new_run) if backend != "local" else {})
        if backend == "local":
            video, res = await animate_local(req)
            text = f"local camera engine: {res.frames} frames at {res.fps:g} fps, {res.width}x{res.height} (free)"
            return io.NodeOutput(video, "", "{}", ui=ui.PreviewText(value=text))
        budget = Budget(max_usd)
        res = await call_backend(backend, "animate", req, budget)
        reused = bool(res.info.get("resumed"))
        text = f"{cost_text(backend, res.cost, reused)}\n{budget.text(reused)}"
        return io.NodeOutput(InputImpl.VideoFromFile(str(res.path)), res.request_id, json.dumps(res.cost),
                             ui=ui.PreviewText(value=text))


NODES = [DoPAnimate]
