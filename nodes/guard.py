"""Drift Guard node.

* ``SoulIDDriftGuard``: IMAGEs or a VIDEO + Soul ID. ``report`` scores every
  image (or sampled frame); ``best_of_n`` keeps the best candidate that passes
  the person's threshold, either from a connected batch (the candidates) or by
  generating up to N through a backend with seeds ``seed, seed+1, ...`` (it
  stops at the first pass when ``stop_at_first_pass``; see :mod:`soulid.soul.guard`).
  Several Soul IDs in one image: :mod:`.cast_guard`.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import numpy as np
from comfy_api.latest import io, ui

from ..backends.base import GenerateRequest
from ..soul import guard
from .cloud import CLOUD_BACKENDS, Budget, BudgetedBackend, preflight, run_with_backend
from .comfy_progress import comfy_hooks, raise_if_interrupted
from .convert import image_to_uint8_list, np_to_image
from .generate import budget_inputs, cost_options
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


NODES = [DriftGuardNode]
