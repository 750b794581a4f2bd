"""Soul Cast node: Soul ID From Images (ComfyUI V3 schema).

Thin: converts the IMAGE batch and calls :func:`soulid.soul.cast.lock_cast`
(the cross-view one-person check, then the usual QA).
"""
from __future__ import annotations

import json

import numpy as np
from comfy_api.latest import io, ui

from ..soul.analysis.registry import ANALYZER_NAMES
from ..soul.cast import ROLE_LABELS, ROLES, CastError, CastRecord, add_note, lock_cast
from ..soul.library import validate_name
from ..soul.report import render_png, sheet_from_soul
from ..soul.errors import Interrupted
from .cloud import CLOUD_BACKENDS, Budget, close_backend, open_backend, run_with_backend
from .comfy_progress import comfy_hooks, raise_if_interrupted
from .generate import budget_inputs, cost_options
from .convert import image_to_uint8_list, np_to_image
from .types import SoulIDType

CATEGORY = "Soul ID"
DEFAULT_ROLES = ", ".join(ROLES)


def parse_roles(text: str, n: int) -> list[str]:
    """The role of each of ``n`` images from a comma-separated list (empty:
    the first ``n`` of :data:`~soulid.soul.cast.ROLES`).

    Raises:
        CastError: fewer roles than images, or an unknown role.
    """
    names = [r.strip() for r in (text or "").split(",") if r.strip()] or list(ROLES)
    if len(names) < n:
        raise CastError(f"Soul ID From Images: {n} images but {len(names)} roles ({', '.join(names)}); "
                        f"give one role per image, from {', '.join(ROLES)}")
    return names[:n]


class SoulIDFromImages(io.ComfyNode):
    """Lock a character's views as a Soul ID: an IMAGE batch (front view
    first, then 3/4 left, 3/4 right, profile) is checked to show one person
    (cross-view cosine similarity with the drift guard's same-person logic),
    then built into a Soul ID through the usual QA, marked origin "cast".
    Fails naming the view that is not the same person, with its similarity."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SoulIDFromImages",
            display_name="Soul ID From Images",
            category=CATEGORY,
            description=cls.__doc__,
            inputs=[
                io.Image.Input(id="images", tooltip="The views as one IMAGE batch, front view first "
                               "(e.g. a text-to-image front view and its angle edits)."),
                io.String.Input(id="name", default="my_character",
                                tooltip="Name of the new Soul ID (also its library name when saved)."),
                io.String.Input(id="roles", default=DEFAULT_ROLES,
                                tooltip="Role of each image, comma-separated, in batch order: "
                                        + ", ".join(ROLES) + ". The front view is the anchor."),
                io.Combo.Input(id="analyzer", options=list(ANALYZER_NAMES), default="auto",
                               tooltip="Face analyzer: auto picks insightface when its models are installed, else dlib."),
                io.String.Input(id="prompt", default="", multiline=True, optional=True,
                                tooltip="The words the views were made from; stored with the Soul ID."),
                io.String.Input(id="notes", default="", multiline=True, optional=True,
                                tooltip="Character-library notes, e.g. which lighting works; stored with the Soul ID."),
            ],
            outputs=[
                SoulIDType.Output(id="soul_id", display_name="Soul ID"),
                io.Image.Output(id="qa_sheet", display_name="QA sheet",
                                tooltip="Every view with its rating, and the character entry."),
                io.String.Output(id="report", display_name="cross-view check (JSON)",
                                 tooltip="Similarity matrix, per-view verdicts and the QA report (JSON)."),
            ],
        )

    @classmethod
    def execute(cls, images, name, roles, analyzer, prompt="", notes="") -> io.NodeOutput:
        name = validate_name(name)
        arrays = image_to_uint8_list(images)
        views = list(zip(parse_roles(roles, len(arrays)), arrays))
        progress, interrupt = comfy_hooks()
        try:
            res, chk = lock_cast(views, name, record=CastRecord(prompt=(prompt or "").strip(), backend="comfyui"),
                                 analyzer=analyzer, progress=progress, interrupt=interrupt)
        except Interrupted:
            raise_if_interrupted()
            raise
        soul = res.soul
        add_note(soul, notes)
        sheet = np_to_image(render_png(sheet_from_soul(soul)))
        report = {"check": chk.as_dict(), "qa": res.report}
        lines = [chk.text()] + [f"warning: {w}" for w in res.warnings]
        lines.append(f"{name}: {len(soul.photos)} views locked ("
                     + ", ".join(ROLE_LABELS.get(r, r) for r in chk.roles) + ")")
        shown = {**ui.PreviewText(value="\n".join(lines)).as_dict(), **ui.PreviewImage(image=sheet).as_dict()}
        return io.NodeOutput(soul, sheet, json.dumps(report), ui=shown)


def views_batch(views: list) -> np.ndarray:
    """``[V, H, W, 3]`` uint8 of the views, each resized to the front view's size."""
    import cv2

    h, w = views[0][1].shape[:2]
    return np.stack([img if img.shape[:2] == (h, w) else cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
                     for _, img in views])


class SoulIDCast(io.ComfyNode):
    """Design a new character on a cloud backend: the front view from the
    words, then 3/4 left, 3/4 right and profile edited FROM the front view;
    each view is checked to be the same person and redrawn with a new seed
    (up to attempts) when it is not; the views are locked as a Soul ID
    (origin "cast", prompt, seeds and request ids stored). Fails naming the
    view that stayed another person. All paid calls stay within max_usd."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SoulIDCast",
            display_name="Soul ID Cast (cloud)",
            category="Soul ID/generate",
            description=cls.__doc__,
            inputs=[
                io.String.Input(id="prompt", default="", multiline=True,
                                tooltip="The character in words (face, age, hair, clothes); drawn once, in the front view."),
                io.String.Input(id="name", default="my_character", tooltip="Name of the new Soul ID."),
                io.Combo.Input(id="backend", options=CLOUD_BACKENDS, default="higgsfield",
                               tooltip="Route of the angle views: Higgsfield image reference, WaveSpeed Soul "
                                       "image-to-image or AuraShot edit. The front view is drawn by Higgsfield."),
                io.Int.Input(id="view_count", default=4, min=2, max=4,
                             tooltip="Views to draw: front, 3/4 left, 3/4 right, profile (the first N)."),
                io.Int.Input(id="attempts", default=2, min=1, max=5,
                             tooltip="Draws per view: a view that is not the same person is redrawn with the next seed."),
                io.Int.Input(id="seed", default=1, min=0, max=2**31 - 1, control_after_generate=True,
                             tooltip="First seed. Same seed = the same paid requests (Run again pays nothing)."),
                io.Combo.Input(id="analyzer", options=list(ANALYZER_NAMES), default="auto",
                               tooltip="Face analyzer of the one-person check and the Soul ID."),
                *budget_inputs(),
                io.String.Input(id="notes", default="", multiline=True, optional=True,
                                tooltip="Character-library notes, e.g. which lighting works; stored with the Soul ID."),
            ],
            outputs=[
                SoulIDType.Output(id="soul_id", display_name="Soul ID"),
                io.Image.Output(id="views", display_name="views", tooltip="The kept views as a batch, front first."),
                io.String.Output(id="report", display_name="cast (JSON)",
                                 tooltip="Prompt, seeds, request ids, redraws, cost and the similarity matrix (JSON)."),
            ],
        )

    @classmethod
    async def execute(cls, prompt, name, backend, view_count, attempts, seed, analyzer, max_usd, new_run=False,
                      notes="") -> io.NodeOutput:
        import asyncio

        from ..backends.cast import TEXT_TO_IMAGE, cast_views

        name = validate_name(name)
        budget = Budget(max_usd, "Soul ID Cast budget")

        def work(be, progress, interrupt):
            front = be if be.name in TEXT_TO_IMAGE else open_backend(TEXT_TO_IMAGE[0])
            try:
                run = cast_views(be, prompt, front_backend=front, roles=ROLES[:view_count], seed=seed, attempts=attempts,
                                 budget=budget, analyzer=analyzer, options=cost_options(new_run),
                                 progress=progress, interrupt=interrupt)
            finally:
                if front is not be:
                    close_backend(front)
            res, chk = lock_cast(run.views, name, record=run.record, analyzer=analyzer, interrupt=interrupt)
            return run, res, chk

        try:
            run, res, chk = await asyncio.to_thread(run_with_backend, backend, work)
        except Interrupted:
            raise_if_interrupted()
            raise
        soul = res.soul
        add_note(soul, notes)
        batch = np_to_image(views_batch(run.views))
        c = soul.cast
        limit = "no limit" if budget.max_usd is None else f"max_usd ${budget.max_usd:.2f}"
        lines = [chk.text(), f"${budget.spent:.2f} paid by this run ({limit}); the views cost ${c['cost_usd']:.2f}"]
        lines += [f"{ROLE_LABELS[r]}: seed {c['seeds'][r]}, request {c['request_ids'][r] or '-'}" for r in chk.roles]
        lines += [f"redrawn {ROLE_LABELS[d['role']]} (seed {d['seed']}): {d['reason']}" for d in c["redraws"]]
        shown = {**ui.PreviewText(value="\n".join(lines)).as_dict(), **ui.PreviewImage(image=batch).as_dict()}
        return io.NodeOutput(soul, batch, json.dumps({"cast": c, "check": chk.as_dict()}), ui=shown)


NODES = [SoulIDFromImages, SoulIDCast]
