"""Omnichar ``.char`` interop: export a Soul ID as a character file, import one as a Soul ID.

A ``.char`` (Omnichar Studio; read and built with the ``omnichar-sdk``
package, Apache-2.0, https://github.com/omnichar/ComfyUI-Omnichar) is a zip
holding a character's reference images in prompt order, a locked
description, compiled reference sets per model and, often, a trained LoRA.

Export (:func:`export_char`): the Soul ID's references in role order
(:func:`soulid.soul.references.select_references`: front first, then
three-quarter and profile views, near-duplicates left out), each with its
Omnichar role ``face`` and, as extra keys of the manifest entry, the Soul ID
role (``soulid_role``) and source file name (``soulid_source``); the
description; every persona LoRA as ``payloads/<arch>-lora/`` with its
metadata; a compiled FLUX.2-klein reference set so Omnichar's own nodes read
it directly.

Import (:func:`import_char`): the references, in manifest order, go through
the full Soul ID creation (:func:`soulid.soul.create.create_soul_id`: QA,
near-duplicates, identity outliers, embeddings, threshold); LoRAs whose
architecture soulid knows are attached; the description is kept in the Soul
ID as ``char/description.md``.

The archive is opened with the pack's bounded zip reader
(:func:`soulid.soul.safezip.open_bounded`, :data:`CHAR_LIMITS`: archive size,
member count, per-member and total inflated size, compression ratio, all
checked from the zip directory before anything is inflated); the manifest is
parsed and members are checked (no nested archives) by the SDK.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import SoulIDError
from .progress import InterruptFn, ProgressFn
from .lorafile import MAX_LORA_BYTES
from .safezip import GiB, MiB, ZipLimits, open_bounded
from .soulfile import LORA_ARCHITECTURES, SoulID

#: Largest ``.char`` file read, bytes.
MAX_CHAR_BYTES = 4 * GiB
#: Largest reference image member, bytes (a 64 MP PNG stays under it).
MAX_REFERENCE_BYTES = 256 * MiB
#: Largest description, bytes.
MAX_TEXT_BYTES = 1 * MiB
#: Largest manifest, bytes (the SDK's own cap).
MAX_MANIFEST_BYTES = 256 * 1024
#: Most references imported (a Soul ID keeps at most 80 photos anyway).
MAX_REFERENCES = 200
#: Memory budget of one import, bytes: every member read and every reference
#: decoded (at its decoded size, from the image header, before decoding) is
#: counted, so a member named N times costs N times.
MAX_DECODED_BYTES = 3 * GiB
#: References are kept at most this many pixels on their longer side after
#: decoding (Soul ID photos are stored at 1024 px; analysis needs no more).
REFERENCE_MAX_SIDE = 2048
#: Deepest JSON nesting accepted in a ``.char`` manifest.
MAX_MANIFEST_DEPTH = 16
#: Where an imported description lives inside the Soul ID (an extra archive member).
DESCRIPTION_MEMBER = "char/description.md"
SOURCE_MEMBER = "char/source.json"
#: Omnichar arch name <-> soulid LoRA architecture id, where they differ.
_CHAR_ARCH = {"flux2": "flux2", "qwen_image": "qwen-image", "hunyuan_video": "hunyuan-video"}
_FROM_CHAR_ARCH = {v: k for k, v in _CHAR_ARCH.items()}


class CharInteropError(SoulIDError):
    """A ``.char`` could not be read or written (the message names the file and why)."""


class _Budget:
    """What one import has read and decoded so far, against :data:`MAX_DECODED_BYTES`."""

    def __init__(self, label: str, limit: int = MAX_DECODED_BYTES):
        self.label, self.limit, self.used = label, limit, 0
        self.times: dict[str, int] = {}

    def take(self, n: int, member: str, what: str) -> None:
        self.times[member] = self.times.get(member, 0) + 1
        if self.used + n > self.limit:
            again = self.times[member]
            raise CharInteropError(
                f"{self.label}: reading {what} ({member!r}"
                + (f", named {again} times" if again > 1 else "")
                + f") would bring this import over its {self.limit >> 20} MiB memory budget "
                f"({self.used >> 20} MiB used); the file names too much data")
        self.used += n


# ------------------------------------------------------------------ manifest
def _bounded_int(lo: int, hi: int):
    from pydantic import Field, StrictInt
    from typing import Annotated

    return Annotated[StrictInt, Field(ge=lo, le=hi)]


def _char_manifest_model():
    """The pydantic model of the manifest keys soulid reads (others are kept as they are)."""
    from typing import Any

    from pydantic import BaseModel, ConfigDict, StrictStr

    class _File(BaseModel):
        model_config = ConfigDict(extra="allow")
        path: StrictStr

    class _Payload(BaseModel):
        model_config = ConfigDict(extra="allow")
        type: StrictStr | None = None
        base: StrictStr | None = None
        files: list[_File] = []
        training: dict[str, Any] = {}
        soulid: dict[str, Any] = {}

    class _Ref(BaseModel):
        model_config = ConfigDict(extra="allow")
        path: StrictStr
        role: StrictStr | None = None
        soulid_source: StrictStr | None = None
        soulid_role: StrictStr | None = None

    class _Text(BaseModel):
        model_config = ConfigDict(extra="allow")
        path: StrictStr | None = None

    epoch = _bounded_int(0, 2**53)

    class CharManifest(BaseModel):
        model_config = ConfigDict(extra="allow")
        format_version: _bounded_int(1, 10_000) = 1
        char_id: StrictStr = ""
        name: StrictStr = ""
        created_at: epoch = 0
        modified_at: epoch = 0
        app_version: StrictStr = ""
        refs: list[_Ref] = []
        derived: list[Any] = []
        text: _Text = _Text()
        payloads: dict[str, _Payload] = {}
        scoring: dict[str, Any] = {}
        hints: list[StrictStr] = []
        apply: dict[str, StrictStr] = {}
        reserved: dict[str, Any] = {}

    return CharManifest


def check_char_manifest(data: bytes, label: str) -> None:
    """Check a ``.char`` manifest's bytes before the SDK reads them: JSON,
    nesting, and the type and range of every key soulid uses.

    Raises:
        CharInteropError: naming the field, the value and the reason.
    """
    from pydantic import ValidationError

    from .manifest import load_json_object, validation_message

    raw = load_json_object(data, label, MAX_MANIFEST_DEPTH, CharInteropError)
    try:
        _char_manifest_model().model_validate(raw)
    except ValidationError as e:
        raise CharInteropError(validation_message(label, e)) from None


def _sdk():
    try:
        import omnichar_sdk
    except ImportError:
        raise CharInteropError(
            ".char import/export needs the omnichar-sdk package: pip install omnichar-sdk"
        ) from None
    return omnichar_sdk


def char_limits() -> ZipLimits:
    """The :class:`~soulid.soul.safezip.ZipLimits` a ``.char`` is opened with."""
    return ZipLimits(max_archive_bytes=MAX_CHAR_BYTES, max_members=4096, max_member_bytes=MAX_LORA_BYTES,
                     max_total_bytes=MAX_CHAR_BYTES, member_limits=(("manifest.json", MAX_MANIFEST_BYTES),))


def char_arch(arch: str) -> str:
    """The Omnichar arch name of a soulid LoRA architecture id."""
    return _CHAR_ARCH.get(arch, arch)


def soulid_arch(name: str) -> str | None:
    """The soulid architecture id of an Omnichar arch name, or None when soulid has none."""
    a = _FROM_CHAR_ARCH.get(name, name)
    return a if a in LORA_ARCHITECTURES else None


# --------------------------------------------------------------------- export
def default_description(soul: SoulID) -> str:
    """The description exported when none is given: the imported one, else a summary."""
    if DESCRIPTION_MEMBER in soul.extra_files:
        return soul.extra_files[DESCRIPTION_MEMBER].decode("utf-8", errors="replace")
    s = (soul.qa_report or {}).get("summary", {})
    from .cast import character_description

    return (f"{soul.name}: Soul ID of {len(soul.photos)} QA-checked photos "
            f"(verdict {s.get('verdict', 'n/a')}), exported by soulid." + character_description(soul))


def export_char(soul: SoulID, path: str | os.PathLike, k: int | None = None, description: str | None = None,
                overwrite: bool = False) -> dict:
    """Write ``soul`` as an Omnichar ``.char`` (atomic write).

    Args:
        soul: the Soul ID.
        path: the ``.char`` file to write.
        k: how many references (default: every distinct photo), in role order.
        description: the character description (default: :func:`default_description`).
        overwrite: replace an existing file.

    Returns:
        ``{"path", "references": [{"position", "role", "source"}], "loras": [arch...]}``.

    Raises:
        CharInteropError: the file exists and ``overwrite`` is off, the SDK is
            missing, or the file would break an import limit (a description
            over :data:`MAX_TEXT_BYTES`, the archive limits of :func:`char_limits`).
    """
    from PIL import Image

    from .references import select_references

    sdk = _sdk()
    target = Path(path)
    if target.exists() and not overwrite:
        raise CharInteropError(f"{target}: exists; pass overwrite to replace it")
    idx, roles, _ = select_references(soul, k or len(soul.photos))
    images = [(Image.fromarray(soul.photos[i].rgb()), sdk.ROLE_FACE) for i in idx]
    desc = default_description(soul) if description is None else description
    if len(desc.encode("utf-8", "surrogateescape")) > MAX_TEXT_BYTES:
        raise CharInteropError(f"{target.name}: the description is {len(desc.encode('utf-8', 'surrogateescape'))} "
                               f"bytes, over the {MAX_TEXT_BYTES} byte limit an import accepts; shorten it")
    doc = sdk.encode_character(soul.name, desc, images, archs=(sdk.FLUX2_KLEIN_ARCH,),
                               app_version=f"soulid {_version()}")
    for ref, i, role in zip(doc.manifest.refs, idx, roles):
        ref["soulid_role"] = role
        ref["soulid_source"] = soul.photos[i].source
        ref["soulid_rating"] = soul.photos[i].rating
    for arch, lora in soul.loras.items():
        ca = char_arch(arch)
        member = f"payloads/{ca}-lora/persona_{arch}.safetensors"  # ASCII, as Omnichar names members
        doc.members[member] = lora.data
        md = lora.metadata
        doc.manifest.payloads[sdk.payload_key(ca, "lora")] = {
            "payload_version": 1,
            "type": "lora",
            "base": str(md.get("base_model", "")),
            "strength": 1.0,
            "training": {k_: md.get(k_) for k_ in ("rank", "steps", "resolution") if md.get(k_) is not None},
            "files": [{"path": member, "sha256": lora.sha256}],
            "soulid": {"arch": arch, "metadata": md},
        }
        doc.manifest.apply[ca] = "lora"
    sdk.write(target, doc)
    try:  # what import would refuse is not left behind: the same limits, read back from the zip directory
        with open_bounded(target, char_limits(), label=target.name, what=".char file"):
            pass
    except SoulIDError as e:
        target.unlink(missing_ok=True)
        raise CharInteropError(f"{target.name}: not written, an import would refuse it ({e})") from None
    return {
        "path": str(target),
        "references": [{"position": n + 1, "role": r, "source": soul.photos[i].source}
                       for n, (i, r) in enumerate(zip(idx, roles))],
        "loras": sorted(soul.loras),
    }


def _version() -> str:
    from .. import __version__

    return __version__


# --------------------------------------------------------------------- import
@dataclass
class CharContents:
    """What a ``.char`` holds, read with the caps of this module.

    Attributes:
        name: the character's name.
        description: its description ("" when none).
        references: ``(label, [H, W, 3] uint8 RGB, omnichar role, soulid role or None)`` in manifest order.
        loras: ``(soulid arch id, safetensors bytes, metadata)``.
        skipped: human-readable notes on what was left out (unknown LoRA archs, bad images).
        char_id: the file's character id.
    """

    name: str
    description: str
    references: list[tuple[str, np.ndarray, str, str | None]]
    loras: list[tuple[str, bytes, dict]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    char_id: str = ""


def read_char(path: str | os.PathLike) -> CharContents:
    """Read a ``.char``'s references, description and LoRAs.

    Raises:
        SoulFileError: missing, not a regular file, not a zip, or over a
            limit of :func:`char_limits` / the per-member caps (names the member).
        CharInteropError: not a character file, a nested archive, a newer
            format, or no readable references.
    """
    from .errors import PhotoError
    from .imageio import downscale, load_photo

    sdk = _sdk()
    p = Path(path)
    label = p.name
    try:
        with open_bounded(p, char_limits(), label=label, what=".char file") as z:

            budget = _Budget(label)

            def member(name: str, limit: int, what: str) -> bytes:
                if name not in z:
                    raise CharInteropError(f"{label}: {what} {name[:120]!r} is not in the archive")
                budget.take(min(z.size(name), limit), name, what)
                return sdk.charfile.check_member(name, z.read(name, max_bytes=limit), label)

            if "manifest.json" not in z:
                raise CharInteropError(f"{label}: no manifest.json, so it is not a .char file")
            raw_manifest = member("manifest.json", MAX_MANIFEST_BYTES, "the manifest")
            if sdk.charfile.looks_like_char(raw_manifest):  # else the SDK says it is not a .char
                check_char_manifest(raw_manifest, label)
            manifest = sdk.charfile.parse_manifest(raw_manifest, label)

            refs = [r for r in manifest.refs if isinstance(r, dict)]
            if len(refs) > MAX_REFERENCES:
                raise CharInteropError(f"{label}: {len(refs)} references, over the limit of {MAX_REFERENCES}")
            out = CharContents(name=manifest.name or p.stem, description="", references=[], char_id=manifest.char_id)
            tpath = str(manifest.text.get("path") or "")
            if tpath:
                out.description = member(tpath, MAX_TEXT_BYTES, "the description").decode("utf-8", errors="replace")
            for n, ref in enumerate(refs):
                rpath = str(ref.get("path") or "")
                role = sdk.charfile.role_of(ref)
                name = Path(str(ref.get("soulid_source") or f"{n:03d}_{role}.png")).name
                try:
                    data = member(rpath, MAX_REFERENCE_BYTES, f"reference {n + 1}")
                    budget.take(_decoded_size(data), rpath, f"reference {n + 1} decoded")
                    rgb = downscale(load_photo(data, label=name).rgb, REFERENCE_MAX_SIDE)
                except PhotoError as e:
                    out.skipped.append(f"reference {n + 1} ({rpath}): {e.reason}")
                    continue
                out.references.append((name, rgb, role, ref.get("soulid_role")))
            for key, payload in manifest.payloads.items():
                if not (isinstance(payload, dict) and key.endswith("-lora")):
                    continue
                arch_name = key[: -len("-lora")]
                ours = (payload.get("soulid") or {}).get("arch") or soulid_arch(arch_name)
                files = [f for f in payload.get("files") or [] if isinstance(f, dict) and f.get("path")]
                if ours not in LORA_ARCHITECTURES or not files:
                    out.skipped.append(f"LoRA for {arch_name!r}: no matching soulid architecture "
                                       f"({', '.join(LORA_ARCHITECTURES)})")
                    continue
                if any(a == ours for a, _, _ in out.loras):  # a Soul ID keeps one LoRA per architecture
                    out.skipped.append(f"LoRA {key!r}: a second LoRA for {ours}, left out")
                    continue
                data = member(str(files[0]["path"]), MAX_LORA_BYTES, f"the LoRA of payload {key[:60]!r}")
                md = dict((payload.get("soulid") or {}).get("metadata") or {})
                md.setdefault("base_model", payload.get("base", ""))
                md.update({k: v for k, v in (payload.get("training") or {}).items() if k not in md})
                md["imported_from"] = f"{label} ({arch_name})"
                out.loras.append((ours, data, md))
    except sdk.CharError as e:
        raise CharInteropError(f"{label}: {e}") from None
    if not out.references:
        raise CharInteropError(f"{label}: no readable reference images" +
                               (f" ({'; '.join(out.skipped)})" if out.skipped else ""))
    return out


def _decoded_size(data: bytes) -> int:
    """Bytes an image member takes once decoded, from its header (0 when unreadable:
    :func:`~soulid.soul.imageio.load_photo` then refuses it)."""
    import io
    import warnings

    from PIL import Image

    from .imageio import decode_bytes

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                return decode_bytes(w, h, im.mode)
    except Exception:  # noqa: BLE001 - an unreadable header is load_photo's to report
        return 0


def import_char(path: str | os.PathLike, name: str | None = None, analyzer: str = "auto",
                progress: ProgressFn | None = None, interrupt: InterruptFn | None = None,
                workers: int | None = None):
    """Make a Soul ID from a ``.char``: QA and analysis on its references.

    Args:
        path: the ``.char`` file.
        name: the Soul ID's name (default: the character's name).
        analyzer: face analyzer for :func:`~soulid.soul.create.create_soul_id`.
        progress: ``progress(fraction, message)`` per reference (:mod:`soulid.soul.progress`).
        interrupt: polled between references.

    Returns:
        ``(CreateResult, CharContents)``; ``result.soul`` is None when no
        reference passed QA (the report says why for each).

    Raises:
        CharInteropError: see :func:`read_char`.
    """
    from .create import create_soul_id

    contents = read_char(path)
    result = create_soul_id([(lbl, rgb) for lbl, rgb, _, _ in contents.references], name or contents.name,
                            analyzer=analyzer, progress=progress, interrupt=interrupt, workers=workers)
    if result.soul is not None:
        for arch, data, md in contents.loras:
            result.soul.attach_lora(arch, data, md)
        if contents.description:
            result.soul.extra_files[DESCRIPTION_MEMBER] = contents.description.encode("utf-8")
        result.soul.extra_files[SOURCE_MEMBER] = json.dumps(
            {"file": Path(path).name, "char_id": contents.char_id, "skipped": contents.skipped}).encode()
    return result, contents

