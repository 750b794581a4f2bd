"""The character library entry's nodes.

* ``SoulIDCharacterLog``: append a generation (prompt, preset, seed, backend,
  model, score, thumbnail) to the Soul ID's log and save it to the library;
  lists the log as text and a thumbnail moodboard.
* ``SoulIDMoodboard``: a labelled grid (preset, seed, score captions).
"""
from __future__ import annotations

import numpy as np
from comfy_api.latest import io, ui

from ..soul import charlog, guard
from ..soul.grid import moodboard
from .convert import copy_soul, image_to_uint8_list, np_to_image
from .types import SOUL_ID_TIP, SoulIDType, StylePresetType


class CharacterLogNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SoulIDCharacterLog",
            display_name="Soul ID Character Log",
            category="Soul ID/library",
            description="Append a generation (prompt, preset, seed, backend, model, score, thumbnail) to the Soul "
                        "ID's log and save it in the library, so the persona can be regenerated the same way; "
                        "lists the log.",
            inputs=[
                SoulIDType.Input(id="soul_id", tooltip=SOUL_ID_TIP),
                io.Image.Input(id="image", optional=True, tooltip="Connect to append an entry (first image of the batch)."),
                io.String.Input(id="prompt", default="", multiline=True, optional=True, tooltip="The prompt the image was made with."),
                StylePresetType.Input(id="preset", optional=True, tooltip="The style preset the image was made with."),
                io.Int.Input(id="seed", default=0, min=0, max=2**31 - 1, optional=True, tooltip="The seed it was made with."),
                io.String.Input(id="backend", default="", optional=True, tooltip="Where it was made (higgsfield, native...)."),
                io.String.Input(id="model", default="", optional=True, tooltip="The model it was made with."),
                io.Boolean.Input(id="score_image", default=True, tooltip="Score the image against the Soul ID."),
                io.Boolean.Input(id="save_to_library", default=True, tooltip="Write the new entry into the library file."),
            ],
            outputs=[
                SoulIDType.Output(id="soul_out", display_name="Soul ID (with the entry)"),
                io.String.Output(id="log", display_name="log"),
                io.Image.Output(id="thumbnails", display_name="thumbnails"),
            ],
            is_output_node=True,
            not_idempotent=True,
        )

    @classmethod
    def execute(cls, soul_id, score_image, save_to_library, image=None, prompt="", preset=None, seed=0,
                backend="", model="") -> io.NodeOutput:
        soul = copy_soul(soul_id)  # the log entry goes into a copy: the upstream Soul ID stays as it was
        if image is not None:
            img = image_to_uint8_list(image)[0]
            score = guard.check_images(soul, [img]).entries[0] if score_image else None
            charlog.append_entry(soul, prompt or "", img, preset=preset, seed=seed, backend=backend or "",
                                 model=model or "", score=score)
            if save_to_library:
                from ..soul.library import Library

                Library().save(soul, overwrite=True)
        try:
            thumbs = np_to_image(charlog.log_moodboard(soul))
        except charlog.LogError:
            thumbs = np_to_image(np.full((64, 64, 3), 232, np.uint8))
        log_text = charlog.format_entries(soul)
        return io.NodeOutput(soul, log_text, thumbs, ui=ui.PreviewText(value=log_text))


class MoodboardNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SoulIDMoodboard",
            display_name="Soul ID Moodboard",
            category="Soul ID/guard",
            description="A labelled grid of images with captions: preset, seed and (with a Soul ID connected) "
                        "the drift-guard score of each image.",
            inputs=[
                io.Image.Input(id="images", tooltip="The images to lay out."),
                StylePresetType.Input(id="preset", optional=True, tooltip="Caption each image with this preset's name."),
                io.Int.Input(id="first_seed", default=-1, min=-1, max=2**31 - 1,
                             tooltip="Seed of the first image (then +1 per image); -1 = no seed caption."),
                SoulIDType.Input(id="soul_id", optional=True, tooltip="Connect to caption each image with its score."),
                io.String.Input(id="captions", default="", multiline=True, optional=True,
                                tooltip="Extra caption per image, one line each."),
                io.Int.Input(id="columns", default=0, min=0, max=16, tooltip="0 = about square."),
                io.Int.Input(id="tile", default=384, min=64, max=2048, tooltip="Size of each tile, px."),
                io.String.Input(id="title", default="", optional=True, tooltip="Title above the grid."),
            ],
            outputs=[io.Image.Output(id="moodboard", display_name="moodboard")],
        )

    @classmethod
    def execute(cls, images, first_seed, columns, tile, preset=None, soul_id=None, captions="", title="") -> io.NodeOutput:
        imgs = image_to_uint8_list(images)
        extra = (captions or "").splitlines()
        scores = guard.check_images(soul_id, imgs).entries if soul_id is not None else [None] * len(imgs)
        entries = []
        for i, s in enumerate(scores):
            entries.append({
                "preset": getattr(preset, "name", None),
                "seed": first_seed + i if first_seed >= 0 else None,
                "score": None if s is None else s.similarity,
                "passed": None if s is None else s.passed,
                "caption": extra[i] if i < len(extra) else None,
            })
        return io.NodeOutput(np_to_image(moodboard(imgs, entries, columns or None, tile, title or "")))


NODES = [CharacterLogNode, MoodboardNode]
