"""Soul ID nodes: Create, Load, Save, Score (ComfyUI V3 schema).

The bodies only convert ComfyUI types and call the core:
:func:`soulid.soul.create.create_soul_id`, :class:`soulid.soul.library.Library`,
:func:`soulid.soul.score.score_images` and :func:`soulid.soul.report.contact_sheet`.

Inside ComfyUI the library lives in ComfyUI's user directory
(``user/soulid/library``, see :mod:`soulid.soul.paths`).

V3 node API: https://docs.comfy.org/custom-nodes/v3_migration
Progress and interruption: :func:`.comfy_progress.comfy_hooks` (ComfyUI's
progress bar and interrupt flag).
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
from pathlib import Path

from comfy_api.latest import io, ui

from ..soul.analysis.registry import ANALYZER_NAMES
from ..soul import paths
from ..soul.create import MAX_PHOTOS, create_soul_id
from ..soul.errors import Interrupted, LibraryError, NoUsablePhotos, SoulIDError
from ..soul.imageio import iter_photo_paths
from ..soul.library import Library, validate_name
from ..soul.report import render_png, sheet_from_result
from ..soul.score import score_images
from .comfy_progress import comfy_hooks, raise_if_interrupted
from .convert import image_to_uint8_list, np_to_image
from .compat import search_aliases
from .types import SOUL_ID_TIP, SoulIDType

log = logging.getLogger("soulid")

CATEGORY = "Soul ID"
#: Similarity reported for an image in which no face was found: the bottom of
#: the cosine range, so that any threshold rejects it.
NO_FACE_SIMILARITY = -1.0


# ------------------------------------------------------------------ helpers
def input_directory() -> Path:
    """ComfyUI's input directory (``folder_paths.get_input_directory()``), resolved."""
    import folder_paths

    return Path(folder_paths.get_input_directory()).resolve()


def resolve_input_folder(folder: str) -> Path:
    """The folder ``folder`` names, relative to ComfyUI's input directory.

    Raises:
        SoulIDError: the path leaves the input directory (``..``, an absolute
            path elsewhere, or a symlink pointing out), or is not a folder.
    """
    try:
        return paths.resolve_input_folder(input_directory(), folder)
    except ValueError as e:
        raise SoulIDError(str(e)) from None


def _library_names() -> list[str]:
    try:
        return Library().list()
    except (OSError, LibraryError) as e:  # unreadable library folder: an empty dropdown, not a missing node
        log.warning("soulid: cannot list the Soul ID library: %s", e)
        return []


def check_key(provider: str) -> None:
    """Raise when ``provider`` has no API key, saying where to set one in the editor.

    Raises:
        CredentialsMissing: no key in the environment or the credentials file.
    """
    from ..backends.credentials import CredentialsMissing, get_key

    try:
        get_key(provider)
    except CredentialsMissing as e:
        raise CredentialsMissing(f"{e} (in the editor: Settings > Soul ID > API keys; no restart needed). "
                                 "Nothing was analysed or paid.") from None


def _no_usable_message(result) -> str:
    lines = [f"no Soul ID made: none of the {len(result.photos)} photo(s) passed QA"]
    lines += [f"  {Path(p.path).name}: {'; '.join(p.reasons) or p.rating}" for p in result.photos[:40]]
    return "\n".join(lines)


def qa_text(title: str, result) -> str:
    """The full QA report as lines a person reads on the node: one per photo,
    its rating and every reason (never cut)."""
    lines = [title]
    for p in result.photos:
        reasons = "; ".join(p.reasons) if p.reasons else "ok"
        lines.append(f"{Path(p.path).name}: {p.rating} - {reasons}")
    return "\n".join(lines)


# -------------------------------------------------------------------- nodes
class SoulIDCreate(io.ComfyNode):
    """Build a Soul ID from photos: an IMAGE batch and/or a folder under
    ComfyUI's input directory (a batch must share one size; a folder may hold
    photos of any size). Outputs the Soul ID, the QA contact sheet
    (IMAGE ``[1, H, W, 3]`` float32 0..1) and the QA report as JSON."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SoulIDCreate",
            display_name="Soul ID Create",
            **search_aliases(),
            category=CATEGORY,
            description=cls.__doc__,
            inputs=[
                io.String.Input(id="name", default="my_soul", tooltip="Name of the Soul ID (also its library name)."),
                io.String.Input(
                    id="folder",
                    default="",
                    tooltip="Folder of photos, relative to ComfyUI's input directory (e.g. 'soul/anna'). "
                    "Photos may have any size. Leave empty to use only the images input.",
                ),
                io.Combo.Input(
                    id="analyzer",
                    options=list(ANALYZER_NAMES),
                    default="auto",
                    tooltip="Face analyzer: auto picks insightface when its models are installed, else dlib.",
                ),
                io.Int.Input(
                    id="max_photos", default=MAX_PHOTOS, min=1, max=MAX_PHOTOS, tooltip="Keep at most this many (the best)."
                ),
                io.Combo.Input(
                    id="train_remote",
                    options=["none", "higgsfield"],
                    default="none",
                    tooltip="Also train this Soul ID on a cloud provider (paid; uploads only photos rated "
                    "perfect or good). The remote id is stored in the Soul ID. Credentials come from the "
                    "environment or `soulid login`, never from the workflow.",
                ),
                io.Combo.Input(
                    id="model_version",
                    options=["v1", "v2", "cinema"],
                    default="v2",
                    tooltip="Soul model the remote Soul ID is trained for (used only with train_remote).",
                ),
                io.Image.Input(id="images", optional=True, tooltip="Extra photos as an IMAGE batch (one size)."),
            ],
            outputs=[
                SoulIDType.Output(id="soul_id", display_name="Soul ID"),
                io.Image.Output(id="qa_sheet", display_name="QA sheet", tooltip="Every photo with its rating and reasons."),
                io.String.Output(id="report", display_name="QA report (JSON)", tooltip="The QA report (JSON)."),
            ],
        )

    @classmethod
    def fingerprint_inputs(cls, name, folder, analyzer, max_photos, train_remote="none", model_version="v2", images=None):
        # Re-run when the folder's photos change, not only when widgets do.
        h = hashlib.sha256(f"{name}\0{folder}\0{analyzer}\0{max_photos}\0{train_remote}\0{model_version}".encode())
        if folder.strip():
            try:
                for p in iter_photo_paths([resolve_input_folder(folder)]):
                    st = p.stat()
                    h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
            except SoulIDError:
                pass  # execute() reports it
        return h.hexdigest()

    @classmethod
    def execute(cls, name, folder, analyzer, max_photos, train_remote="none", model_version="v2", images=None) -> io.NodeOutput:
        name = validate_name(name)
        inputs: list = []
        if folder.strip():
            inputs.append(resolve_input_folder(folder))
        if images is not None:
            inputs += [(f"image_{i}", a) for i, a in enumerate(image_to_uint8_list(images))]
        if not inputs:
            raise SoulIDError("Soul ID Create: give a folder (under ComfyUI's input directory) or connect images")

        if train_remote != "none":
            check_key(train_remote)  # before analysing every photo, not after
        progress, interrupt = comfy_hooks()
        try:
            result = create_soul_id(
                inputs,
                name,
                analyzer=analyzer,
                progress=progress,
                interrupt=interrupt,
                max_photos=max_photos,
                within=input_directory(),  # file symlinks may not lead out of ComfyUI's input directory
            )
        except Interrupted:
            raise_if_interrupted()
            raise
        if result.soul is None:
            raise NoUsablePhotos(_no_usable_message(result))
        if train_remote != "none":
            from ..backends.remote_training import train_remote as train

            # The job engine's ledger makes a re-queued graph resume this
            # training instead of paying for it again.
            train(result.soul, train_remote, model_version, progress=progress, interrupt=interrupt)
        s = result.report["summary"]
        title = f"{name}: {s['accepted']} of {s['photos']} accepted, verdict {s['verdict']}"
        sheet = np_to_image(render_png(sheet_from_result(result, title)))
        shown = {**ui.PreviewText(value=qa_text(title, result)).as_dict(), **ui.PreviewImage(image=sheet).as_dict()}
        return io.NodeOutput(result.soul, sheet, json.dumps(result.report), ui=shown)


class SoulIDLoad(io.ComfyNode):
    """Load a Soul ID from the library (ComfyUI's ``user/soulid/library``)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SoulIDLoad",
            display_name="Soul ID Load",
            **search_aliases(),
            category=CATEGORY,
            description=cls.__doc__,
            inputs=[io.Combo.Input(id="name", options=_library_names(), tooltip="A Soul ID in the library.")],
            outputs=[SoulIDType.Output(id="soul_id", display_name="Soul ID")],
        )

    @classmethod
    def validate_inputs(cls, name) -> bool | str:
        # Replaces ComfyUI's own list check, so a Soul ID saved after the
        # dropdown was filled still loads, and a missing one says where we looked.
        try:
            if not Library().exists(name):
                have = ", ".join(Library().list()) or "none"
                return f"no Soul ID named {name!r} in {Library().dir} (have: {have})"
        except LibraryError as e:
            return str(e)
        return True

    @classmethod
    def fingerprint_inputs(cls, name):
        try:
            st = Library().path(name).stat()
            return f"{name}\0{st.st_size}\0{st.st_mtime_ns}"
        except (OSError, LibraryError):
            return name

    @classmethod
    def execute(cls, name) -> io.NodeOutput:
        return io.NodeOutput(Library().load(name))


class SoulIDSave(io.ComfyNode):
    """Save a Soul ID to the library (atomic write). An existing entry is only
    replaced when ``overwrite`` is on."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SoulIDSave",
            display_name="Soul ID Save",
            category=CATEGORY,
            description=cls.__doc__,
            inputs=[
                SoulIDType.Input(id="soul_id", tooltip=SOUL_ID_TIP),
                io.String.Input(id="name", default="", tooltip="Library name; empty keeps the Soul ID's own name."),
                io.Boolean.Input(id="overwrite", default=False, tooltip="Replace an existing Soul ID of that name."),
            ],
            outputs=[io.String.Output(id="path", display_name="saved file path", tooltip="The saved .soulid file.")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, soul_id, name, overwrite) -> io.NodeOutput:
        # A copy: Library.save renames the object, and the input is shared
        # with other nodes (and cached by ComfyUI).
        soul = copy.copy(soul_id)
        try:
            path = Library().save(soul, name=name.strip() or None, overwrite=overwrite)
        except LibraryError as e:  # the library speaks the CLI's words; this node has a toggle
            raise LibraryError(str(e).replace("pass --overwrite", "turn on overwrite")) from None
        return io.NodeOutput(str(path), ui=ui.PreviewText(value=f"saved Soul ID {soul.name!r} to {path}"))


class SoulIDScore(io.ComfyNode):
    """Score each image of a batch against a Soul ID: cosine similarity of
    the largest face to the Soul ID's centroid (in [-1, 1]; -1 when no face is
    found) and the same-person verdict from the person's own threshold."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SoulIDScore",
            display_name="Soul ID Score",
            **search_aliases(),
            category=CATEGORY,
            description=cls.__doc__,
            inputs=[SoulIDType.Input(id="soul_id", tooltip=SOUL_ID_TIP),
                    io.Image.Input(id="images", tooltip="Images to score (the largest face of each).")],
            outputs=[
                io.Float.Output(id="similarity", display_name="similarity", is_output_list=True),
                io.Boolean.Output(id="same_person", display_name="same_person", is_output_list=True),
                io.String.Output(id="report", display_name="scores (JSON)", tooltip="Per-image scores (JSON)."),
            ],
            is_output_node=True,  # shows the scores on the node
        )

    @classmethod
    def execute(cls, soul_id, images) -> io.NodeOutput:
        results = score_images(soul_id, image_to_uint8_list(images))
        sims = [NO_FACE_SIMILARITY if r.similarity is None else float(r.similarity) for r in results]
        same = [bool(r.same_person) for r in results]
        report = json.dumps([r.as_dict() for r in results])
        lines = [
            f"{i}: " + (f"{r.similarity:.3f} {'same person' if r.same_person else 'different'}" if r.similarity is not None else r.reason)
            for i, r in enumerate(results)
        ]
        return io.NodeOutput(sims, same, report, ui=ui.PreviewText(value="\n".join(lines)))


NODES = [SoulIDCreate, SoulIDLoad, SoulIDSave, SoulIDScore]
