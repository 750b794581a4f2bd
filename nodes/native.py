"""Soul ID in ComfyUI's own graph: references, pick-best drift guard, ``.char`` interop.

* ``SoulIDReferences``: the k best reference images of a Soul ID (QA rank and
  angle diversity, cropped around the face) as an IMAGE batch plus numbered
  single images, for ``ReferenceLatent`` (FLUX Kontext / FLUX.2),
  ``TextEncodeQwenImageEditPlus`` (Qwen-Image-Edit-2509, image1..image3) and
  ``WanPhantomSubjectToVideo``; or every accepted photo (a training set).
  Core: :mod:`soulid.soul.references`.
* ``SoulIDDriftGuardPickBest``: a generated IMAGE batch (e.g. KSampler with
  batch_size N -> VAE Decode) + Soul ID -> the best image that passes the
  person's threshold. Core: :func:`soulid.soul.guard.best_of_n`.
* ``SoulIDCharExport`` / ``SoulIDCharImport``: Omnichar ``.char`` files.
  Core: :mod:`soulid.soul.charfile`.

No node here loads a model or imports a generation backend: they work on
what the graph hands them.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from comfy_api.latest import io, ui

from ..soul import guard
from ..soul.analysis.registry import ANALYZER_NAMES
from ..soul.errors import NoUsablePhotos, SoulIDError
from ..soul.references import CROP_MODES, MAX_SIZE, MIN_SIZE, SIZE_MULTIPLE, reference_images
from .comfy_progress import comfy_hooks
from .convert import image_to_uint8_list, np_to_image
from .types import SOUL_ID_TIP, SoulIDType

CATEGORY = "Soul ID/native"
#: Numbered single-image outputs (Qwen-Image-Edit-Plus takes image1..image3).
NUMBERED_SLOTS = 3


class SoulIDReferences(io.ComfyNode):
    """The Soul ID's best reference images for reference-conditioned models."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SoulIDReferences",
            display_name="Soul ID References",
            category=CATEGORY,
            description="The k best reference photos of the Soul ID, chosen by QA rank and angle diversity (front "
                        "first, then three-quarter left/right, then profile; never two near-duplicates), cropped "
                        "around the face and fitted to one size: IMAGE [k, H, W, 3]. For ReferenceLatent "
                        "(FLUX Kontext / FLUX.2), TextEncodeQwenImageEditPlus (image_1..image_3), Wan Phantom. "
                        "mode all_photos gives every accepted photo (a LoRA training set). Reads only the .soulid.",
            inputs=[
                SoulIDType.Input(id="soul_id", tooltip=SOUL_ID_TIP),
                io.Int.Input(id="k", default=3, min=1, max=16, tooltip="How many references (best_k mode)."),
                io.Int.Input(id="size", default=1024, min=MIN_SIZE, max=MAX_SIZE, step=SIZE_MULTIPLE,
                             tooltip="Longest side of each reference, px (multiple of 16)."),
                io.Combo.Input(id="crop", options=list(CROP_MODES), default="head",
                               tooltip="face: tight square; head: head and shoulders, square; portrait: 3:4."),
                io.Combo.Input(id="mode", options=["best_k", "all_photos"], default="best_k",
                               tooltip="all_photos: every accepted photo in QA order (training set)."),
            ],
            outputs=[
                io.Image.Output(id="images", display_name="references (batch)",
                                tooltip="IMAGE [k, H, W, 3], in role order."),
                io.String.Output(id="roles", display_name="roles", is_output_list=True,
                                 tooltip="Role of each image: front, three_quarter_left, ..."),
                io.Image.Output(id="image_1", display_name="reference 1", tooltip="First reference [1, H, W, 3]."),
                io.Image.Output(id="image_2", display_name="reference 2",
                                tooltip="Second reference (repeats the last one when fewer exist)."),
                io.Image.Output(id="image_3", display_name="reference 3",
                                tooltip="Third reference (repeats the last one when fewer exist)."),
                io.String.Output(id="report", display_name="chosen references (JSON)",
                                 tooltip="Chosen photos and roles (JSON)."),
            ],
        )

    @classmethod
    def execute(cls, soul_id, k, size, crop, mode) -> io.NodeOutput:
        refs = reference_images(soul_id, k=k, size=size, crop=crop, all_photos=mode == "all_photos")
        batch = np_to_image(refs.images)
        singles = [batch[min(i, len(refs.roles) - 1)][None] for i in range(NUMBERED_SLOTS)]
        text = ", ".join(f"{i + 1}: {r} ({s})" for i, (r, s) in enumerate(zip(refs.roles, refs.sources)))
        return io.NodeOutput(batch, list(refs.roles), *singles, json.dumps(refs.as_dict()),
                             ui=ui.PreviewText(value=f"{soul_id.name}: {text}"))


class SoulIDDriftGuardPickBest(io.ComfyNode):
    """Keep the best generated image that passes the Soul ID's identity check."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SoulIDDriftGuardPickBest",
            display_name="Soul ID Drift Guard (pick best)",
            category=CATEGORY,
            description="Best-of-N over a native graph: scores every image of a generated batch against the Soul ID "
                        "(cosine similarity of the face to the centroid, with the Soul ID's own analyzer) and keeps "
                        "the highest-scoring one that reaches the person's threshold. When none passes, the best "
                        "is returned with passed = false, or the run stops (on_fail = error).",
            inputs=[
                SoulIDType.Input(id="soul_id", tooltip=SOUL_ID_TIP),
                io.Image.Input(id="images", tooltip="Candidates, e.g. KSampler batch_size N -> VAE Decode."),
                io.Combo.Input(id="on_fail", options=["return_best", "error"], default="return_best",
                               tooltip="What to do when no candidate passes."),
            ],
            outputs=[
                io.Image.Output(id="image", display_name="best image", tooltip="The kept candidate [1, H, W, 3]."),
                io.Boolean.Output(id="passed", display_name="passed"),
                io.Float.Output(id="similarity", display_name="similarity",
                                tooltip="Its cosine similarity to the centroid (-1 when no face)."),
                io.Int.Output(id="index", display_name="index in batch", tooltip="Its position in the batch."),
                io.String.Output(id="report", display_name="scores (JSON)",
                                 tooltip="Every candidate's score (JSON)."),
            ],
        )

    @classmethod
    def execute(cls, soul_id, images, on_fail) -> io.NodeOutput:
        cands = image_to_uint8_list(images)
        res = guard.best_of_n(soul_id, lambda i: cands[i], len(cands), stop_at_first_pass=False)
        if res.image is None:
            raise guard.GuardError(f"Drift Guard: no face found in any of {len(cands)} image(s)\n{res.report.text()}")
        if not res.passed and on_fail == "error":
            raise guard.GuardError(f"Drift Guard: none of {len(cands)} image(s) passed\n{res.report.text()}")
        sim = res.report.entries[res.index].similarity
        return io.NodeOutput(images[res.index][None], res.passed, float(sim), int(res.index),
                             json.dumps(res.report.as_dict()), ui=ui.PreviewText(value=res.report.text()))


#: Longest file-name widget value accepted, bytes (a file system's name limit).
MAX_FILE_WIDGET_BYTES = 255


def _file_widget(text: str, what: str) -> str:
    """A file-name widget's value when the file system can take it.

    Raises:
        SoulIDError: NUL or control characters, or over :data:`MAX_FILE_WIDGET_BYTES`.
    """
    from ..soul.imageio import safe_label

    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise SoulIDError(f"{what} {safe_label(text)[:80]!r}: holds a NUL byte or a control character")
    if len(text.encode("utf-8", "surrogateescape")) > MAX_FILE_WIDGET_BYTES:
        raise SoulIDError(f"{what} {text[:40]!r}...: {len(text.encode('utf-8', 'surrogateescape'))} bytes, over "
                          f"the {MAX_FILE_WIDGET_BYTES} byte limit of a file name")
    return text


def _output_file(filename: str, suffix: str) -> Path:
    """``filename`` (no folders) under ComfyUI's output directory, ``soulid/`` sub-folder."""
    import folder_paths

    name = Path(_file_widget(filename, "file name").strip() or "soul").name
    if not name.endswith(suffix):
        name += suffix
    d = Path(folder_paths.get_output_directory()) / "soulid"
    d.mkdir(parents=True, exist_ok=True)
    return d / name


def _input_file(filename: str) -> Path:
    """A file under ComfyUI's input directory; refuses paths that leave it."""
    import folder_paths

    base = Path(folder_paths.get_input_directory()).resolve()
    p = (base / _file_widget(filename, "file").strip()).resolve()
    if base not in p.parents:
        raise SoulIDError(f"file {filename!r}: outside ComfyUI's input directory {base}; put it under it")
    if p.exists() and not p.is_file():
        raise SoulIDError(f"file {filename!r}: not a regular file (a folder, FIFO or device)")
    if not p.is_file():
        raise SoulIDError(f"file {filename!r}: no such file in ComfyUI's input directory {base}")
    return p


class SoulIDCharExport(io.ComfyNode):
    """Write the Soul ID as an Omnichar .char file."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SoulIDCharExport",
            display_name="Soul ID Export .char",
            category="Soul ID/interop",
            description="Writes the Soul ID as an Omnichar .char (output/soulid/NAME.char): its references in role "
                        "order, the description and every persona LoRA.",
            inputs=[
                SoulIDType.Input(id="soul_id", tooltip=SOUL_ID_TIP),
                io.String.Input(id="filename", default="", tooltip="File name; empty uses the Soul ID's name."),
                io.Int.Input(id="k", default=0, min=0, max=80,
                             tooltip="References to export; 0 = every distinct photo."),
                io.String.Input(id="description", default="", multiline=True,
                                tooltip="Character description; empty keeps the Soul ID's own (or a summary)."),
                io.Boolean.Input(id="overwrite", default=True, tooltip="Replace an existing file of that name."),
            ],
            outputs=[io.String.Output(id="path", display_name="saved .char path")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, soul_id, filename, k, description, overwrite) -> io.NodeOutput:
        from ..soul.charfile import export_char

        target = _output_file(filename or soul_id.name, ".char")
        res = export_char(soul_id, target, k=k or None, description=description or None, overwrite=overwrite)
        text = f"wrote {res['path']}: {len(res['references'])} references, LoRAs: {', '.join(res['loras']) or 'none'}"
        return io.NodeOutput(res["path"], ui=ui.PreviewText(value=text))


class SoulIDCharImport(io.ComfyNode):
    """Make a Soul ID from an Omnichar .char (QA and analysis on its references)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SoulIDCharImport",
            display_name="Soul ID Import .char",
            category="Soul ID/interop",
            description="Reads an Omnichar .char from ComfyUI's input directory and builds a Soul ID from its "
                        "references (full QA, identity check and embeddings); its LoRAs and description come along.",
            inputs=[
                io.String.Input(id="file", default="character.char", tooltip="Path under ComfyUI's input directory."),
                io.String.Input(id="name", default="", tooltip="Soul ID name; empty uses the character's name."),
                io.Combo.Input(id="analyzer", options=list(ANALYZER_NAMES), default="auto",
                               tooltip="Face analyzer: auto picks insightface when its models are installed, else dlib."),
            ],
            outputs=[
                SoulIDType.Output(id="soul_id", display_name="Soul ID"),
                io.Image.Output(id="qa_sheet", display_name="QA sheet"),
                io.String.Output(id="report", display_name="QA report (JSON)"),
            ],
        )

    @classmethod
    def execute(cls, file, name, analyzer) -> io.NodeOutput:
        from ..soul.charfile import import_char
        from ..soul.library import validate_name
        from ..soul.report import contact_sheet, entries_from_result

        progress, interrupt = comfy_hooks()
        result, contents = import_char(_input_file(file), name=validate_name(name) if name.strip() else None,
                                       analyzer=analyzer, progress=progress, workers=1, interrupt=interrupt)
        if result.soul is None:
            raise NoUsablePhotos(f"{file}: none of the {len(result.photos)} references passed QA")
        s = result.report["summary"]
        sheet = contact_sheet(entries_from_result(result),
                              title=f"{result.soul.name}: {s['accepted']} of {s['photos']} references accepted")
        report = {**result.report, "char": {"skipped": contents.skipped, "loras": sorted(result.soul.loras)}}
        return io.NodeOutput(result.soul, np_to_image(np.asarray(sheet)), json.dumps(report))


NODES = [SoulIDReferences, SoulIDDriftGuardPickBest, SoulIDCharExport, SoulIDCharImport]
