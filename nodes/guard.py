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

import asyncio
import json
from dataclasses import replace

import numpy as np
from comfy_api.latest import io, ui

from ..backends.base import GenerateRequest
from ..backends.idsheet import generate_request, view_generator
from ..soul.errors import Interrupted
from ..soul import charlog, guard, idsheet
from ..soul.grid import moodboard
from .cloud import CLOUD_BACKENDS, Budget, BudgetedBackend, BudgetExhausted, preflight, run_with_backend
from .comfy_progress import comfy_hooks, raise_if_interrupted
from .convert import copy_soul, image_to_uint8_list, np_to_image
from .generate import BACKEND_TIP, budget_inputs, cost_options
from .compat import search_aliases
from .types import SOUL_ID_TIP, SoulIDType, StylePresetType


def _video_frames(video, max_frames: int) -> tuple[list[np.ndarray], list[str]]:
    comps = video.get_components()
    return guard.sample_frames(image_to_uint8_list(comps.images), max_frames)


def _report_text(rep, extra: str = "") -> str:
    return rep.text() + (f"\n{extra}" if extra else "")


def _best_of_n_generated(soul, backend: str, n: int, stop_at_first_pass: bool, prompt: str, preset, seed: int,
                         aspect: str, budget: Budget, new_run: bool):
    """best-of-N over paid generations (seeds ``seed, seed+1, ...``), all
    attempts inside ``budget``; returns ``(BestOfN, note)``."""
    def work(be, progress, interrupt):
        req = GenerateRequest(prompt=prompt or "", soul=soul, preset=preset,
                              preset_strength=getattr(preset, "strength", 1.0), aspect=aspect, seed=seed,
                              options=cost_options(new_run))
        planned = preflight(be, req, budget, n, "Drift Guard best_of_n")
        paid = BudgetedBackend(be, budget)

        def candidate(i: int) -> np.ndarray:
            r = replace(req, seed=seed + i)
            return paid.generate(r, None, interrupt).images[0]

        def stop() -> bool:
            return bool(interrupt and interrupt()) or not budget.can_afford_next()

        res = guard.best_of_n(soul, candidate, planned, stop_at_first_pass=stop_at_first_pass,
                              progress=progress, interrupt=stop)
        note = budget.text()
        if planned < n:
            note += f"; max_usd allows {planned} of {n} candidates"
        elif len(res.report.entries) < planned and not res.passed and not (interrupt and interrupt()):
            note += "; stopped before going over max_usd"
        return res, note

    return run_with_backend(backend, work)


class DriftGuardNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SoulIDDriftGuard",
            display_name="Soul ID Drift Guard",
            **search_aliases(),
            category="Soul ID/guard",
            description="Did the face hold? Scores images or a video's frames against the Soul ID with its own "
                        "analyzer (cosine similarity to the centroid vs the person's threshold). best_of_n keeps "
                        "the best candidate that passes; without images it generates them on a cloud backend, "
                        "all attempts within max_usd.",
            inputs=[
                SoulIDType.Input(id="soul_id", tooltip=SOUL_ID_TIP),
                io.Combo.Input(id="mode", options=["report", "best_of_n"], default="report",
                               tooltip="report: score every image or frame; best_of_n: keep the best candidate that passes."),
                io.Image.Input(id="images", optional=True, tooltip="Images to check, or best-of-N candidates."),
                io.Video.Input(id="video", optional=True, tooltip="A clip: evenly spaced frames are checked."),
                io.Int.Input(id="max_frames", default=16, min=1, max=256, tooltip="Frames sampled from the video."),
                io.Int.Input(id="n", default=4, min=1, max=16,
                             tooltip="best_of_n without images: most candidates to generate."),
                io.Boolean.Input(id="stop_at_first_pass", default=True,
                                 tooltip="best_of_n: stop generating at the first passing candidate "
                                         "(saves paid generations)."),
                io.Combo.Input(id="backend", options=["none", *CLOUD_BACKENDS], default="none",
                               tooltip="best_of_n without images: cloud backend that generates the candidates."),
                io.String.Input(id="prompt", default="", multiline=True, optional=True,
                                tooltip="best_of_n without images: the prompt of the generated candidates."),
                StylePresetType.Input(id="preset", optional=True,
                                      tooltip="best_of_n without images: style of the generated candidates."),
                io.Int.Input(id="seed", default=1, min=0, max=2**31 - 1, control_after_generate=True,
                             tooltip="First candidate's seed (then +1 each). Same seed = the same paid requests."),
                io.Combo.Input(id="aspect", options=["3:4", "1:1", "4:3", "2:3", "3:2", "9:16", "16:9"], default="3:4",
                               tooltip="best_of_n without images: width:height of the generated candidates."),
                *budget_inputs(),
            ],
            outputs=[
                io.Image.Output(id="kept_images", display_name="kept images"),
                io.String.Output(id="report", display_name="report (text + JSON)"),
                io.Boolean.Output(id="passed", display_name="passed"),
                io.Float.Output(id="best_similarity", display_name="best similarity"),
            ],
            not_idempotent=True,
        )

    @classmethod
    async def execute(cls, soul_id, mode, max_frames, n, stop_at_first_pass, backend, seed, aspect, max_usd,
                      new_run=False, images=None, video=None, prompt="", preset=None) -> io.NodeOutput:
        return await asyncio.to_thread(cls.run, soul_id, mode, max_frames, n, stop_at_first_pass, backend, seed,
                                       aspect, max_usd, new_run, images, video, prompt, preset)

    @classmethod
    def run(cls, soul, mode, max_frames, n, stop_at_first_pass, backend, seed, aspect, max_usd, new_run,
            images, video, prompt, preset) -> io.NodeOutput:
        note = ""
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
            passed = rep.all_passed
        else:
            if images is not None:  # candidates given as a batch
                cands = image_to_uint8_list(images)
                progress, interrupt = comfy_hooks()
                res = guard.best_of_n(soul, lambda i: cands[i], len(cands), stop_at_first_pass=False,
                                      progress=progress, interrupt=interrupt)
            elif backend == "none":
                raise guard.GuardError("Drift Guard best_of_n: connect candidate images, or pick a backend to "
                                       "generate them")
            else:
                res, note = _best_of_n_generated(soul, backend, n, stop_at_first_pass, prompt, preset, seed, aspect,
                                                 Budget(max_usd), new_run)
            raise_if_interrupted()
            if res.image is None:
                raise guard.GuardError(f"Drift Guard: no face found in any of {res.attempts} candidate(s)\n"
                                       f"{res.report.text()}")
            rep = res.report
            best = rep.entries[res.index].similarity
            passed = res.passed
            out = np_to_image(np.asarray(res.image))
        text = _report_text(rep, note)
        shown = {**ui.PreviewText(value=text).as_dict(), **ui.PreviewImage(image=out).as_dict()}
        return io.NodeOutput(out, text + "\n" + json.dumps(rep.as_dict()), bool(passed),
                             float(-1.0 if best is None else best), ui=shown)


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


class IDPhotoSheetNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SoulIDIDPhotoSheet",
            display_name="Soul ID Photo Sheet (4 views)",
            category="Soul ID/generate",
            description="The 4-in-1 reference of a Soul ID (front, left 45°, right 45°, smiling) through a cloud "
                        "backend, on a neutral background with labels; the four paid views stay within max_usd "
                        "(checked against the provider's estimate before the first is submitted). The views "
                        "output can build a new Soul ID.",
            inputs=[
                SoulIDType.Input(id="soul_id", tooltip=SOUL_ID_TIP),
                io.Combo.Input(id="backend", options=CLOUD_BACKENDS, default="higgsfield", tooltip=BACKEND_TIP),
                io.String.Input(id="prompt", default="", multiline=True, optional=True,
                                tooltip="Extra wording for every view (outfit, hair...)."),
                io.Int.Input(id="seed", default=1, min=0, max=2**31 - 1, control_after_generate=True,
                             tooltip="One seed for the four views. Same seed = the same paid requests."),
                *budget_inputs(),
            ],
            outputs=[
                io.Image.Output(id="sheet", display_name="sheet"),
                io.Image.Output(id="views", display_name="views", tooltip="The four 512 px tiles as a batch."),
            ],
        )

    @classmethod
    async def execute(cls, soul_id, backend, seed, max_usd, new_run=False, prompt="") -> io.NodeOutput:
        budget = Budget(max_usd)
        soul = soul_id

        def work(be, progress, interrupt):
            reqs = idsheet.view_requests(prompt or "", seed)
            first = generate_request(reqs[0], soul, options=cost_options(new_run))
            if preflight(be, first, budget, len(reqs), "ID Photo Sheet") < len(reqs):
                raise BudgetExhausted(f"ID Photo Sheet: max_usd ${budget.max_usd:.2f} does not cover the "
                                      f"{len(reqs)} views; nothing was submitted")
            views = view_generator(BudgetedBackend(be, budget), soul, options=cost_options(new_run))
            return idsheet.make_id_sheet(views, prompt=prompt or "", seed=seed, progress=progress, interrupt=interrupt)

        try:
            sheet = await asyncio.to_thread(run_with_backend, backend, work)
        except Interrupted:
            raise_if_interrupted()
            raise
        tiles = np.stack(idsheet.split_sheet(sheet.image))
        image = np_to_image(sheet.image)
        text = f"{budget.text()}\n" + "\n".join(
            f"{v['view']}: request {v['request_id'] or '-'}" for v in sheet.info)
        return io.NodeOutput(image, np_to_image(tiles), ui={**ui.PreviewText(value=text).as_dict(),
                                                           **ui.PreviewImage(image=image).as_dict()})


NODES = [DriftGuardNode, CharacterLogNode, MoodboardNode, IDPhotoSheetNode]
