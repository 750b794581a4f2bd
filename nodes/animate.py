"""DoP Animate: a still into a clip (VIDEO) on Higgsfield DoP, WaveSpeed's
DoP, or locally (``engine``: ``camera`` moves or ``i2v``).

Motions: up to two, from a connected Motion Preset chain (``motions``) or the
``motion_1`` / ``motion_2`` name-or-id widgets with their strengths 0..1.
The clip comes back as ComfyUI's ``VideoFromFile`` over the downloaded MP4.
"""
from __future__ import annotations

import json

from comfy_api.latest import InputImpl, io

from ..backends.base import AnimateRequest
from .convert import image_to_float_np
from .generate import SEED_MAX, cost_options, run_backend
from .types import MotionPresetType, SoulIDType

ANIMATE_BACKENDS = ["higgsfield", "wavespeed", "local"]
DOP_MODELS = ["dop-turbo", "dop-lite", "dop-preview"]


def motion_pairs(motions, motion_1: str, strength_1: float, motion_2: str, strength_2: float) -> list:
    """``[(name or id, strength)]``, at most two: the preset chain first, then the widgets."""
    pairs = [m.as_pair() if hasattr(m, "as_pair") else (str(m), 0.5) for m in (motions or [])]
    for name, s in ((motion_1, strength_1), (motion_2, strength_2)):
        if name.strip():
            pairs.append((name.strip(), float(s)))
    if len(pairs) > 2:
        raise ValueError(f"DoP Animate takes at most two motions, got {len(pairs)}: "
                         f"{', '.join(p[0] for p in pairs)}")
    return pairs


class DoPAnimate(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SoulIDDoPAnimate",
            display_name="DoP Animate",
            category="Soul ID/animate",
            description="Animate a still with up to two camera motions: Higgsfield DoP (5 s MP4), WaveSpeed DoP, "
                        "or locally (engine camera | i2v).",
            inputs=[
                io.Combo.Input("backend", options=ANIMATE_BACKENDS, default="higgsfield"),
                io.Image.Input("image"),
                io.String.Input("prompt", multiline=True, default=""),
                io.String.Input("motion_1", default="", tooltip="Motion name or id (e.g. Dolly In)."),
                io.Float.Input("motion_1_strength", default=0.5, min=0.0, max=1.0, step=0.05),
                io.String.Input("motion_2", default=""),
                io.Float.Input("motion_2_strength", default=0.5, min=0.0, max=1.0, step=0.05),
                io.Combo.Input("model", options=DOP_MODELS, default="dop-turbo"),
                io.Int.Input("seed", default=0, min=0, max=SEED_MAX, control_after_generate=True),
                io.Combo.Input("engine", options=["camera", "i2v"], default="camera",
                               tooltip="Local backend: camera moves over the still, or image-to-video."),
                io.Float.Input("seconds", default=5.0, min=1.0, max=10.0, step=0.5, tooltip="Local only."),
                io.Int.Input("fps", default=24, min=8, max=60, tooltip="Local only."),
                io.Float.Input("max_usd", default=0.0, min=0.0, max=100.0, step=0.01),
                io.Image.Input("end_image", optional=True),
                MotionPresetType.Input("motions", optional=True),
                SoulIDType.Input("soul_id", optional=True),
            ],
            outputs=[io.Video.Output("video"), io.String.Output("request_id"), io.String.Output("cost")],
        )

    @classmethod
    def execute(cls, backend, image, prompt, motion_1, motion_1_strength, motion_2, motion_2_strength, model, seed,
                engine, seconds, fps, max_usd, end_image=None, motions=None, soul_id=None) -> io.NodeOutput:
        req = AnimateRequest(
            image=image_to_float_np(image)[0], prompt=prompt,
            end_image=image_to_float_np(end_image)[0] if end_image is not None else None,
            motions=motion_pairs(motions, motion_1, motion_1_strength, motion_2, motion_2_strength),
            model=model if backend != "local" else "", seed=int(seed), seconds=float(seconds), fps=int(fps),
            soul=soul_id, options=cost_options(max_usd, engine=engine if backend == "local" else None))
        res = run_backend(backend, "animate", req)
        return io.NodeOutput(InputImpl.VideoFromFile(str(res.path)), res.request_id, json.dumps(res.cost))


NODES = [DoPAnimate]
