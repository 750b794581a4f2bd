"""Drift Guard, Character Log, Moodboard and ID Photo Sheet nodes.

* ``SoulIDDriftGuard``: IMAGEs or a VIDEO + Soul ID. ``report`` scores every
  image (or sampled frame); ``best_of_n`` keeps the best candidate that passes
  the person's threshold, either from a connected batch (the candidates) or by
  generating up to N through a backend with seeds ``seed, seed+1, ...`` (it
  stops at the first pass when ``stop_at_first_pass``; see :mod:`soulid.soul.guard`).
* ``SoulIDCharacterLog``: append a generation (prompt, preset, seed, backend,
  model, score, thumbnail) to the Soul ID's log and save it to the library;
  lists the log as text and a thumbnail moodboard.
* ``SoulIDMoodboard``: a labelled grid (preset, seed, score captions).
* ``SoulIDIDPhotoSheet``: the 4-in-1 ID photo of a Soul ID through a backend.
"""
from __future__ import annotations

import json

import numpy as np
from comfy_api.latest import io

from ..backends.base import BACKENDS, GenerateRequest, get_backend
from ..backends.idsheet import view_generator
from ..soul import charlog, guard, idsheet
from ..soul.moodboard import moodboard
from .convert import image_to_uint8_list, np_to_image
from .types import SoulIDType, StylePresetType


def _interrupted() -> bool:
    """ComfyUI's interrupt flag (Cancel button)."""
    try:
        import comfy.model_management as mm

        return bool(mm.processing_interrupted())
    except ImportError:
        return False


def _progress():
    """A ``(fraction, message)`` callback driving ComfyUI's progress bar."""
    try:
        from comfy.utils import ProgressBar

        bar = ProgressBar(1000)
    except ImportError:
        return None

    def update(frac, msg=""):
        if frac is not None:
            bar.update_absolute(int(1000 * max(0.0, min(1.0, frac))), 1000)

    return update


def _video_frames(video, max_frames: int) -> tuple[list[np.ndarray], list[str]]:
    comps = video.get_components()
    return guard.sample_frames(image_to_uint8_list(comps.images), max_frames)


class DriftGuardNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SoulIDDriftGuard",
            display_name="Soul ID Drift Guard",
            category="Soul ID/guard",
            description="Did the face hold? Scores images or a video's frames against the Soul ID with its own "
                        "analyzer (cosine similarity to the centroid vs the person's threshold). best_of_n keeps "
                        "the best candidate that passes.",
            inputs=[
                SoulIDType.Input("soul"),
                io.Combo.Input("mode", options=["report", "best_of_n"], default="report"),
                io.Image.Input("images", optional=True, tooltip="Images to check, or best-of-N candidates."),
                io.Video.Input("video", optional=True, tooltip="A clip: evenly spaced frames are checked."),
                io.Int.Input("max_frames", default=16, min=1, max=256, tooltip="Frames sampled from the video."),
                io.Int.Input("n", default=4, min=1, max=16,
                             tooltip="best_of_n without images: most candidates to generate."),
                io.Boolean.Input("stop_at_first_pass", default=True,
                                 tooltip="best_of_n: stop generating at the first passing candidate "
                                         "(saves paid generations)."),
                io.Combo.Input("backend", options=["none", *BACKENDS], default="none",
                               tooltip="best_of_n without images: backend that generates the candidates."),
                io.String.Input("prompt", default="", multiline=True, optional=True),
                StylePresetType.Input("preset", optional=True),
                io.Int.Input("seed", default=1, min=0, max=2**31 - 1, control_after_generate=True),
                io.Combo.Input("aspect", options=["3:4", "1:1", "4:3", "2:3", "3:2", "9:16", "16:9"], default="3:4"),
            ],
            outputs=[
                io.Image.Output("kept_images", display_name="images"),
                io.String.Output("report", display_name="report"),
                io.Boolean.Output("passed", display_name="passed"),
                io.Float.Output("best_similarity", display_name="best_similarity"),
            ],
            not_idempotent=True,
        )

    @classmethod
    def execute(cls, soul, mode, max_frames, n, stop_at_first_pass, backend, seed, aspect, images=None,
                video=None, prompt="", preset=None) -> io.NodeOutput:
        if mode == "report":
            if images is not None:
                rep = guard.check_images(soul, image_to_uint8_list(images))
                out = images
            elif video is not None:
                frames, labels = _video_frames(video, max_frames)
                rep = guard.check_images(soul, frames, labels)
                out = np_to_image(np.stack(frames))
            else:
                raise guard.GuardError("Drift Guard: connect images or a video to check")
            best = rep.entries[rep.best].similarity if rep.best is not None else -1.0
            return io.NodeOutput(out, rep.text() + "\n" + json.dumps(rep.as_dict()), rep.all_passed, float(best))
        if images is not None:  # candidates given as a batch
            cands = image_to_uint8_list(images)
            res = guard.best_of_n(soul, lambda i: cands[i], len(cands), stop_at_first_pass=False)
        else:
            if backend == "none":
                raise guard.GuardError("Drift Guard best_of_n: connect candidate images, or pick a backend to generate them")
            be = get_backend(backend)

            def candidate(i: int) -> np.ndarray:
                req = GenerateRequest(prompt=prompt or "", soul=soul, preset=preset,
                                      preset_strength=getattr(preset, "strength", 1.0), aspect=aspect, seed=seed + i)
                return be.generate(req, progress=None, interrupt=_interrupted).images[0]

            res = guard.best_of_n(soul, candidate, n, stop_at_first_pass=stop_at_first_pass,
                                  progress=_progress(), interrupt=_interrupted)
        if res.image is None:
            raise guard.GuardError(f"Drift Guard: no face found in any of {res.attempts} candidate(s)\n{res.report.text()}")
        best = res.report.entries[res.index].similarity
        return io.NodeOutput(np_to_image(np.asarray(res.image)), res.report.text() + "\n" + json.dumps(res.report.as_dict()),
                             res.passed, float(best))


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
                SoulIDType.Input("soul"),
                io.Image.Input("image", optional=True, tooltip="Connect to append an entry (first image of the batch)."),
                io.String.Input("prompt", default="", multiline=True, optional=True),
                StylePresetType.Input("preset", optional=True),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1, optional=True),
                io.String.Input("backend", default="", optional=True),
                io.String.Input("model", default="", optional=True),
                io.Boolean.Input("score_image", default=True, tooltip="Score the image against the Soul ID."),
                io.Boolean.Input("save_to_library", default=True),
            ],
            outputs=[
                SoulIDType.Output("soul_out", display_name="soul"),
                io.String.Output("log", display_name="log"),
                io.Image.Output("thumbnails", display_name="thumbnails"),
            ],
            is_output_node=True,
            not_idempotent=True,
        )

    @classmethod
    def execute(cls, soul, score_image, save_to_library, image=None, prompt="", preset=None, seed=0,
                backend="", model="") -> io.NodeOutput:
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
        return io.NodeOutput(soul, charlog.format_entries(soul), thumbs)


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
                io.Image.Input("images"),
                StylePresetType.Input("preset", optional=True),
                io.Int.Input("first_seed", default=-1, min=-1, max=2**31 - 1,
                             tooltip="Seed of the first image (then +1 per image); -1 = no seed caption."),
                SoulIDType.Input("soul", optional=True, tooltip="Connect to caption each image with its score."),
                io.String.Input("captions", default="", multiline=True, optional=True,
                                tooltip="Extra caption per image, one line each."),
                io.Int.Input("columns", default=0, min=0, max=16, tooltip="0 = about square."),
                io.Int.Input("tile", default=384, min=64, max=2048),
                io.String.Input("title", default="", optional=True),
            ],
            outputs=[io.Image.Output("moodboard", display_name="moodboard")],
        )

    @classmethod
    def execute(cls, images, first_seed, columns, tile, preset=None, soul=None, captions="", title="") -> io.NodeOutput:
        imgs = image_to_uint8_list(images)
        extra = (captions or "").splitlines()
        scores = guard.check_images(soul, imgs).entries if soul is not None else [None] * len(imgs)
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


class IDPhotoSheetNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SoulIDIDPhotoSheet",
            display_name="Soul ID ID Photo Sheet",
            category="Soul ID/generate",
            description="The 4-in-1 reference of a Soul ID (front, left 45°, right 45°, smiling) through a backend, "
                        "on a neutral background with labels. The views output can build a new Soul ID.",
            inputs=[
                SoulIDType.Input("soul"),
                io.Combo.Input("backend", options=list(BACKENDS), default="higgsfield"),
                io.String.Input("prompt", default="", multiline=True, optional=True,
                                tooltip="Extra wording for every view (outfit, hair...)."),
                io.Int.Input("seed", default=1, min=0, max=2**31 - 1, control_after_generate=True),
            ],
            outputs=[
                io.Image.Output("sheet", display_name="sheet"),
                io.Image.Output("views", display_name="views", tooltip="The four 512 px tiles as a batch."),
            ],
        )

    @classmethod
    def execute(cls, soul, backend, seed, prompt="") -> io.NodeOutput:
        sheet = idsheet.make_id_sheet(view_generator(get_backend(backend), soul), prompt=prompt or "", seed=seed,
                                      progress=_progress(), interrupt=_interrupted)
        tiles = np.stack(idsheet.split_sheet(sheet.image))
        return io.NodeOutput(np_to_image(sheet.image), np_to_image(tiles))


NODES = [DriftGuardNode, CharacterLogNode, MoodboardNode, IDPhotoSheetNode]
