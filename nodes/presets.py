"""Style Preset and Motion Preset nodes.

* ``SoulIDStylePreset``: pick a Soul style by name, its model family and a
  strength; outputs a :class:`soulid.soul.presets.StylePreset` (socket
  ``SOUL_STYLE_PRESET``, accepted by Generate and Edit) plus its local recipe
  as positive/negative prompt text for plain text-encoder graphs.
* ``SoulIDMotionPreset``: pick a camera move and strength for DoP Animate;
  chain two (the cloud DoP takes at most two). Outputs a list of
  :class:`soulid.soul.motions.MotionPreset` (socket ``SOUL_MOTION_PRESET``).

Remote ids come from the cached Higgsfield lists (``soulid presets --refresh``);
the nodes never call the network while the graph is drawn.
"""
from __future__ import annotations

from dataclasses import replace

from comfy_api.latest import io

from ..soul.motions import get_motion, list_motions
from ..soul.presets import FAMILIES, PresetError, get_preset, load_builtin, load_presets
from .types import MotionPresetType, StylePresetType


def _style_names() -> list[str]:
    try:
        return [p.name for p in load_presets()]
    except PresetError:  # a broken user file must not hide the node: list the catalog
        return [p.name for p in load_builtin()[0]]


def _motion_names() -> list[str]:
    return [m.name for m in list_motions()[0]]


class StylePresetNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SoulIDStylePreset",
            display_name="Soul ID Style Preset",
            category="Soul ID/presets",
            description="A Soul style by name: the Higgsfield style id where resolved, and a local recipe "
                        "(lighting, framing, palette, material, mood) for the local backend.",
            inputs=[
                io.Combo.Input(id="family", options=["auto", *FAMILIES], default="auto",
                               tooltip="Model family: auto = the preset's own; soul, soul_2 (Soul 2) or cinema."),
                io.Combo.Input(id="style", options=_style_names(), default="Realistic",
                               tooltip="Soul style (`soulid presets` lists them; --refresh updates the remote ids)."),
                io.Float.Input(id="strength", default=1.0, min=0.0, max=1.0, step=0.05,
                               tooltip="How strongly the look is applied (Higgsfield style_strength; locally, "
                                       "how much of the recipe goes into the prompt)."),
                io.String.Input(id="subject", default="", multiline=True, optional=True,
                                tooltip="Optional subject text to prefix the recipe prompt output."),
            ],
            outputs=[
                StylePresetType.Output(id="preset", display_name="style preset"),
                io.String.Output(id="prompt", display_name="recipe prompt"),
                io.String.Output(id="negative", display_name="negative prompt"),
            ],
        )

    @classmethod
    def execute(cls, family, style, strength, subject="") -> io.NodeOutput:
        p = get_preset(style, strength)
        if family != "auto" and family != p.family:
            p = replace(p, family=family)
        return io.NodeOutput(p, p.prompt(subject or ""), p.negative_prompt())


class MotionPresetNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SoulIDMotionPreset",
            display_name="Soul ID Motion Preset",
            category="Soul ID/presets",
            description="A camera move for DoP Animate: local moves (zoom, pan, tilt, dolly, crash zoom, orbit, "
                        "handheld) matched to Higgsfield's motions by name, plus Higgsfield-only motions.",
            inputs=[
                io.Combo.Input(id="motion", options=_motion_names(), default="dolly_in",
                               tooltip="Camera move (`soulid motions` shows the Higgsfield names they map to)."),
                io.Float.Input(id="strength", default=0.5, min=0.0, max=1.0, step=0.05,
                               tooltip="How strong the move is (0..1)."),
                MotionPresetType.Input(id="previous", optional=True,
                                       tooltip="Chain a second motion (cloud DoP takes at most two)."),
            ],
            outputs=[MotionPresetType.Output(id="motions", display_name="motion chain")],
        )

    @classmethod
    def execute(cls, motion, strength, previous=None) -> io.NodeOutput:
        chain = list(previous or [])
        chain.append(get_motion(motion, strength))
        return io.NodeOutput(chain)


NODES = [StylePresetNode, MotionPresetNode]
