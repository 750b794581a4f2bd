"""Soul Cast node: Soul ID From Images (ComfyUI V3 schema).

Thin: converts the IMAGE batch and calls :func:`soulid.soul.cast.lock_cast`
(the cross-view one-person check, then the usual QA).
"""
from __future__ import annotations

import json

from comfy_api.latest import io, ui

from ..soul.analysis.registry import ANALYZER_NAMES
from ..soul.cast import ROLE_LABELS, ROLES, CastError, CastRecord, lock_cast
from ..soul.library import validate_name
from ..soul.report import render_png, sheet_from_soul
from ..soul.errors import Interrupted
from .cloud import comfy_hooks, raise_if_interrupted
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
        import time

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
        if (notes or "").strip():
            soul.notes.append({"text": notes.strip(), "created": time.time()})
        sheet = np_to_image(render_png(sheet_from_soul(soul)))
        report = {"check": chk.as_dict(), "qa": res.report}
        lines = [chk.text()] + [f"warning: {w}" for w in res.warnings]
        lines.append(f"{name}: {len(soul.photos)} views locked ("
                     + ", ".join(ROLE_LABELS.get(r, r) for r in chk.roles) + ")")
        shown = {**ui.PreviewText(value="\n".join(lines)).as_dict(), **ui.PreviewImage(image=sheet).as_dict()}
        return io.NodeOutput(soul, sheet, json.dumps(report), ui=shown)


NODES = [SoulIDFromImages]
