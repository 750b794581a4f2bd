"""The portable Soul ID file (``NAME.soulid``).

A Soul ID is one person's identity, built once from their photos. On disk it
is a zip archive (stored, not compressed: the photos are JPEG already)::

    manifest.json           format, version, name, created, analyzers, QA report,
                            photos, keypoint reference, remote ids, generation log
    embeddings.safetensors  per analyzer: "<analyzer>.embeddings" [N, D] float32
                            (unit rows), "<analyzer>.raw_norms" [N] float32,
                            "<analyzer>.centroid" [D] float32 (mean of unit rows)
    photos/000.jpg ...      the accepted photos, longest side <= 1024 px
    thumbs/...              thumbnails referenced by the generation log (optional)
    qa/<n>.jpg              QA-sheet thumbnail of every input photo, rejected
                            ones included, named by the report (optional)
    loras/<arch>.safetensors  persona LoRAs, one per base-model architecture
                            (format version 2; see :class:`PersonaLoRA`)

Readers refuse a file whose ``format_version`` is newer than they know
(:class:`~soulid.soul.errors.SoulFileError`); writes are atomic.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from .errors import SoulFileError
from .imageio import safe_label
from .lorafile import check_lora_bytes
from .manifest import EMBEDDING_DIMS, MAX_MANIFEST_BYTES, parse_manifest
from .paths import atomic_write_bytes
from .safezip import MiB, GiB, BoundedZip, ZipLimits, open_bounded

FORMAT = "soulid"
#: Version history: 1 = photos + embeddings; 2 = adds ``loras/<arch>.safetensors``
#: with a ``"loras"`` manifest section. Version-1 files still load.
FORMAT_VERSION = 2
SUFFIX = ".soulid"
#: Longest side of photos stored inside a Soul ID, px.
STORED_PHOTO_MAX_SIDE = 1024
#: Limits for reading a ``.soulid`` someone else made, checked from the zip
#: directory before anything is inflated (see :mod:`soulid.soul.safezip`).
SOULID_LIMITS = ZipLimits(
    max_archive_bytes=4 * GiB,
    max_members=20_000,
    max_member_bytes=2 * GiB,
    max_total_bytes=4 * GiB,
    max_ratio=100.0,
    member_limits=(
        ("", 64 * MiB),
        ("manifest.json", MAX_MANIFEST_BYTES),
        ("embeddings.safetensors", 64 * MiB),
        ("photos/", 32 * MiB),
        ("thumbs/", 4 * MiB),
        ("qa/", 1 * MiB),
        ("loras/", 2 * GiB),
    ),
)


#: QA-sheet thumbnail members kept with the report (see :func:`soulid.soul.create.qa_report`).
_QA_THUMB = re.compile(r"^qa/[0-9]{1,5}\.jpg$")


@dataclass
class AnalyzerIdentity:
    """One analyzer's view of the identity.

    Attributes:
        name: analyzer name (``"dlib"``, ``"insightface"``).
        model_id: model identifier (``"dlib_face_recognition_resnet_model_v1"``,
            ``"insightface/antelopev2"``...).
        embeddings: ``[N, D]`` float32 unit embeddings of the photos used.
        raw_norms: ``[N]`` float32 L2 norms before normalisation.
        photo_indices: index into :attr:`SoulID.photos` of each embedding row.
        threshold: this person's same-person cosine-similarity threshold.
        baseline: self-similarity statistics from held-out photos
            (``{"loo_mean", "loo_std", "loo_min", "n"}``).
        centroid_override: optional stored centroid (defaults to the mean).
    """

    name: str
    model_id: str
    embeddings: np.ndarray
    raw_norms: np.ndarray
    photo_indices: list[int]
    threshold: float
    baseline: dict = field(default_factory=dict)

    @property
    def centroid(self) -> np.ndarray:
        """``[D]`` float32: mean of the unit embeddings (norm <= 1)."""
        return self.embeddings.mean(axis=0).astype(np.float32)

    @property
    def unit_centroid(self) -> np.ndarray:
        """``[D]`` float32: the centroid scaled to unit length (for cosine)."""
        c = self.centroid
        return (c / max(float(np.linalg.norm(c)), 1e-12)).astype(np.float32)

    @property
    def raw_centroid(self) -> np.ndarray:
        """``[D]`` float32: unit centroid times the mean raw norm, i.e. a
        stand-in for a raw (unnormalised) embedding, as InstantID expects."""
        return (self.unit_centroid * float(np.mean(self.raw_norms))).astype(np.float32)

    def meta(self) -> dict:
        return {
            "model_id": self.model_id,
            "embedding_dim": int(self.embeddings.shape[1]),
            "count": int(self.embeddings.shape[0]),
            "photo_indices": [int(i) for i in self.photo_indices],
            "threshold": float(self.threshold),
            "baseline": self.baseline,
            "raw_norm": {
                "mean": float(np.mean(self.raw_norms)),
                "std": float(np.std(self.raw_norms)),
                "min": float(np.min(self.raw_norms)),
                "max": float(np.max(self.raw_norms)),
            },
        }


@dataclass
class StoredPhoto:
    """A photo kept inside the Soul ID (downscaled JPEG bytes plus metadata)."""

    jpeg: bytes
    source: str
    rating: str
    pose_class: str
    width: int
    height: int
    original_size: tuple[int, int]
    face_box: list[float] | None = None

    def meta(self, index: int) -> dict:
        d = asdict(self)
        d.pop("jpeg")
        d["file"] = f"photos/{index:03d}.jpg"
        d["original_size"] = list(self.original_size)
        return d

    def rgb(self) -> np.ndarray:
        """Decode to ``[H, W, 3]`` uint8 RGB."""
        from .imageio import load_photo

        return load_photo(self.jpeg, label=self.source).rgb


@dataclass
class RemoteID:
    """A Soul ID trained on a provider: ``{provider, id, model_version}``."""

    provider: str
    id: str
    model_version: str
    created: float = field(default_factory=time.time)
    extra: dict = field(default_factory=dict)


#: Architecture ids a persona LoRA can be stored for (the base model family it
#: was trained on). Lower-case, stable: they are file names inside the archive.
#: ``sdxl`` covers SDXL 1.0 and its fine-tunes (Pony, Illustrious, ...).
LORA_ARCHITECTURES = (
    "sd15", "sdxl", "sd3", "flux", "flux2", "qwen_image", "wan21", "wan22", "hunyuan_video", "lumina2",
)


@dataclass
class PersonaLoRA:
    """A persona LoRA stored inside a Soul ID.

    Attributes:
        arch: base-model architecture id, one of :data:`LORA_ARCHITECTURES`.
        data: the ``.safetensors`` file's bytes. Keys must be readable by both
            diffusers' ``load_lora_weights`` and ComfyUI's LoRA loader
            (kohya ``lora_unet_*`` / ``lora_te*_*`` or diffusers-PEFT
            ``unet.*.lora_A.weight`` / ``lora_B`` keys).
        metadata: JSON-able facts about it: ``base_model``, ``base_model_hash``
            (sha256 hex), ``rank``, ``steps``, ``resolution`` (px),
            ``trigger`` (token), ``captions`` (list of str), ``training_seconds``,
            ``final_loss``, ``loss_curve`` (list of float), ``source``
            (``"trained"`` / ``"attached"``), ``check`` (drift-guard result of
            the post-training check, when one ran) and anything else the
            producer records.
    """

    arch: str
    data: bytes
    metadata: dict = field(default_factory=dict)

    @property
    def file(self) -> str:
        return f"loras/{self.arch}.safetensors"

    @property
    def sha256(self) -> str:
        import hashlib

        return hashlib.sha256(self.data).hexdigest()

    def meta(self) -> dict:
        return {**self.metadata, "file": self.file, "bytes": len(self.data), "sha256": self.sha256}


def validate_lora_arch(arch: str) -> str:
    """Return ``arch`` normalised (lower case), or raise :class:`SoulFileError`
    naming the known architectures."""
    a = str(arch).strip().lower()
    if a not in LORA_ARCHITECTURES:
        raise SoulFileError(
            f"unknown LoRA architecture {arch!r}; known: {', '.join(LORA_ARCHITECTURES)}"
        )
    return a


@dataclass
class SoulID:
    """One person's identity. See the module docstring for the file layout.

    Attributes:
        name: library name (validated by :mod:`soulid.soul.library`).
        created: creation time, seconds since the epoch (UTC).
        photos: accepted photos, downscaled.
        analyzers: analyzer name -> :class:`AnalyzerIdentity`.
        qa_report: the QA report as built by :mod:`soulid.soul.qa` (JSON-able).
        keypoint_reference: ``{"photo": index, "analyzer": name,
            "keypoints": [[x, y] * 5]}`` in the stored photo's pixels, or None.
        remote_ids: provider-side Soul IDs (filled by the cloud backends).
        log: generation log entries (dicts), oldest first.
        extra_files: other archive members (name -> bytes), kept verbatim.
        loras: persona LoRAs by architecture id (:class:`PersonaLoRA`).
        origin: how the identity was made: ``"photos"`` (real photos) or
            ``"cast"`` (a character designed from words, :mod:`soulid.soul.cast`).
        cast: for a cast, what made it (:meth:`soulid.soul.cast.CastRecord.as_dict`:
            prompt, backend, seeds, request ids, cross-view similarity matrix), else None.
        notes: character-library notes, oldest first: ``{"text", "created"}``
            (e.g. which lighting works; ``soulid note``).
    """

    name: str
    photos: list[StoredPhoto]
    analyzers: dict[str, AnalyzerIdentity]
    qa_report: dict = field(default_factory=dict)
    keypoint_reference: dict | None = None
    remote_ids: list[RemoteID] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    log: list[dict] = field(default_factory=list)
    extra_files: dict[str, bytes] = field(default_factory=dict)
    loras: dict[str, PersonaLoRA] = field(default_factory=dict)
    origin: str = "photos"
    cast: dict | None = None
    notes: list[dict] = field(default_factory=list)

    # ------------------------------------------------------------------ access
    def attach_lora(self, arch: str, data: bytes, metadata: dict | None = None) -> PersonaLoRA:
        """Store (or replace) the persona LoRA for ``arch``.

        Args:
            arch: architecture id (:data:`LORA_ARCHITECTURES`).
            data: ``.safetensors`` bytes, F32/F16/BF16.
            metadata: see :class:`PersonaLoRA`.

        Raises:
            SoulFileError: unknown ``arch``, or ``data`` is not a usable LoRA
                (:func:`soulid.soul.lorafile.check_lora_bytes`: the safetensors
                layout, float tensors of any width, finite values).
        """
        a = validate_lora_arch(arch)
        check_lora_bytes(data, f"LoRA for {a!r}")
        lora = PersonaLoRA(arch=a, data=bytes(data), metadata=dict(metadata or {}))
        self.loras[a] = lora
        return lora

    def lora(self, arch: str) -> PersonaLoRA:
        """The persona LoRA for ``arch``.

        Raises:
            SoulFileError: none stored for ``arch``; the message names the
                architectures this Soul ID has and how to train one.
        """
        a = str(arch).strip().lower()
        if a in self.loras:
            return self.loras[a]
        have = ", ".join(sorted(self.loras)) or "none"
        raise SoulFileError(
            f"Soul ID {self.name!r} has no persona LoRA for {a!r} (has: {have}). Train one with "
            f"`soulid train {self.name} --provider local --base <model>` (SDXL), or in ComfyUI with the "
            f"soul_id_train_lora workflow, or attach a file with `soulid lora attach {self.name} FILE --arch {a}`"
        )

    def analyzer(self, name: str | None = None) -> AnalyzerIdentity:
        """The identity of analyzer ``name`` (default: the first stored).

        Raises:
            KeyError: no embeddings of that analyzer in this Soul ID.
        """
        if name is None or name == "auto":
            return next(iter(self.analyzers.values()))
        if name not in self.analyzers:
            raise KeyError(
                f"Soul ID {self.name!r} has no {name!r} embeddings (has: {', '.join(self.analyzers) or 'none'})"
            )
        return self.analyzers[name]

    @property
    def primary_analyzer(self) -> str:
        return next(iter(self.analyzers))

    def remote(self, provider: str, model_version: str | None = None) -> RemoteID | None:
        """The newest remote id for ``provider`` (and ``model_version``), or None."""
        for r in reversed(self.remote_ids):
            if r.provider == provider and (model_version is None or r.model_version == model_version):
                return r
        return None

    def photos_rated(self, ratings=("perfect", "good")) -> list[StoredPhoto]:
        """Stored photos whose rating is in ``ratings``."""
        return [p for p in self.photos if p.rating in ratings]

    # -------------------------------------------------------------- serialise
    def manifest(self) -> dict:
        from .. import __version__

        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "soulid_version": __version__,
            "name": self.name,
            "created": self.created,
            "analyzers": {k: v.meta() for k, v in self.analyzers.items()},
            "photos": [p.meta(i) for i, p in enumerate(self.photos)],
            "qa_report": _private_report(self.qa_report),
            "keypoint_reference": _private_keyref(self.keypoint_reference),
            "remote_ids": [asdict(r) for r in self.remote_ids],
            "log": self.log,
            "loras": {k: v.meta() for k, v in self.loras.items()},
            "origin": self.origin,
            "cast": self.cast,
            "notes": self.notes,
        }

    def to_bytes(self) -> bytes:
        """Serialise to the zip layout described in the module docstring."""
        tensors: dict[str, np.ndarray] = {}
        for k, a in self.analyzers.items():
            tensors[f"{k}.embeddings"] = np.ascontiguousarray(a.embeddings, dtype=np.float32)
            tensors[f"{k}.raw_norms"] = np.ascontiguousarray(a.raw_norms, dtype=np.float32)
            tensors[f"{k}.centroid"] = np.ascontiguousarray(a.centroid, dtype=np.float32)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
            # backslashreplace: a stray surrogate (an undecodable file name) can never fail a save.
            z.writestr("manifest.json", json.dumps(self.manifest(), indent=1, ensure_ascii=False).encode("utf-8", "backslashreplace"))
            z.writestr("embeddings.safetensors", st_save(tensors, metadata={"format": FORMAT}))
            for i, p in enumerate(self.photos):
                z.writestr(f"photos/{i:03d}.jpg", p.jpeg)
            for lora in self.loras.values():
                z.writestr(lora.file, lora.data)
            for n, data in self.extra_files.items():
                z.writestr(n, data)
        return buf.getvalue()

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically to ``path`` (temp file + rename). Returns the path."""
        path = Path(path)
        atomic_write_bytes(path, self.to_bytes())
        return path

    @classmethod
    def from_bytes(cls, data: bytes, label: str = "<bytes>") -> "SoulID":
        """Parse a Soul ID file's bytes (see :meth:`from_archive`)."""
        with open_bounded(data, SOULID_LIMITS, label=label) as z:
            return cls.from_archive(z)

    @classmethod
    def from_archive(cls, z: BoundedZip) -> "SoulID":
        """Build a Soul ID from a checked archive (:func:`~soulid.soul.safezip.open_bounded`).

        Everything is validated before use: the manifest against
        :class:`~soulid.soul.manifest.Manifest`; every photo member referenced
        at most once; embeddings ``[N, D]`` float32, finite, unit rows, ``D``
        the analyzer's width, ``N`` matching the manifest; raw norms ``[N]``
        finite; LoRA members named ``loras/<arch>.safetensors`` with a matching
        sha256. Members nothing refers to are dropped (only ``thumbs/...``
        named by a log entry are kept as :attr:`extra_files`).

        Raises:
            SoulFileError: naming the member or manifest field and the reason:
                not a Soul ID, a member missing or corrupt, a value out of
                range, or a ``format_version`` newer than :data:`FORMAT_VERSION`.
        """
        label = z.label
        if "manifest.json" not in z:
            raise SoulFileError(f"{label}: not a Soul ID file (no manifest.json)")
        m, raw = parse_manifest(z.read("manifest.json", MAX_MANIFEST_BYTES), label, FORMAT_VERSION)
        tensors = _load_tensors(z, label)

        photos: list[StoredPhoto] = []
        used: dict[str, int] = {}
        for i, pm in enumerate(m.photos):
            f = pm.file or f"photos/{i:03d}.jpg"
            if f in used:
                raise SoulFileError(
                    f"{label}: manifest field 'photos[{i}].file' names {f!r}, already used by photos[{used[f]}] "
                    "(each photo member may be referenced once)"
                )
            used[f] = i
            if not f.startswith("photos/"):
                raise SoulFileError(f"{label}: manifest field 'photos[{i}].file' must name a photos/ member, not {f!r}")
            photos.append(
                StoredPhoto(
                    jpeg=z.read(f),
                    source=safe_label(pm.source),
                    rating=pm.rating,
                    pose_class=pm.pose_class,
                    width=pm.width,
                    height=pm.height,
                    original_size=tuple(pm.original_size),
                    face_box=None if pm.face_box is None else [float(v) for v in pm.face_box],
                )
            )

        analyzers = {k: _analyzer_from(k, am, tensors, len(photos), label) for k, am in m.analyzers.items()}

        kp = raw.get("keypoint_reference") if m.keypoint_reference is not None else None
        if kp is not None and photos and m.keypoint_reference.photo >= len(photos):
            raise SoulFileError(f"{label}: manifest field 'keypoint_reference.photo' is {m.keypoint_reference.photo}, "
                                f"but there are {len(photos)} photos")

        loras = {}
        for arch, lm in m.loras.items():
            a = validate_lora_arch(arch)
            f = f"loras/{a}.safetensors"
            if lm.file not in (None, f):
                raise SoulFileError(f"{label}: manifest field 'loras.{arch}.file' must be {f!r}, not {lm.file[:80]!r}")
            blob = z.read(f)
            if lm.sha256 and hashlib.sha256(blob).hexdigest() != lm.sha256:
                raise SoulFileError(f"{label}: member {f!r} does not match its sha256 in the manifest (corrupt)")
            check_lora_bytes(blob, f"{label}: member {f!r}")
            meta = {k: v for k, v in raw["loras"][arch].items() if k not in ("file", "bytes", "sha256")}
            loras[a] = PersonaLoRA(arch=a, data=blob, metadata=meta)

        log = [dict(e) for e in raw.get("log", [])]
        extra = {}
        for e in m.log:
            if e.thumb and e.thumb.startswith("thumbs/") and e.thumb in z and e.thumb not in extra:
                extra[e.thumb] = z.read(e.thumb)
        # QA-sheet thumbnails of every input photo (``qa/<n>.jpg``), named by the report.
        report_photos = (raw.get("qa_report") or {}).get("photos") or []
        for d in report_photos if isinstance(report_photos, list) else []:
            t = d.get("thumb") if isinstance(d, dict) else None
            if isinstance(t, str) and _QA_THUMB.match(t) and t in z and t not in extra:
                extra[t] = z.read(t)
        return cls(
            name=m.name,
            photos=photos,
            analyzers=analyzers,
            qa_report=_private_report(raw.get("qa_report") or {}),
            keypoint_reference=kp,
            remote_ids=[RemoteID(**r.model_dump()) for r in m.remote_ids],
            created=m.created,
            log=log,
            extra_files=extra,
            loras=loras,
            origin=m.origin,
            cast=raw.get("cast") if m.cast is not None else None,
            notes=[n.model_dump() for n in m.notes],
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SoulID":
        """Read a ``.soulid`` file (a regular file under the size limits of
        :data:`SOULID_LIMITS`; see :meth:`from_archive`).

        Raises:
            SoulFileError: missing, unreadable, not a regular file, over a
                limit, corrupt, invalid or too new.
        """
        with open_bounded(path, SOULID_LIMITS, what="Soul ID file") as z:
            return cls.from_archive(z)


def _load_tensors(z: BoundedZip, label: str) -> dict[str, np.ndarray]:
    if "embeddings.safetensors" not in z:
        raise SoulFileError(f"{label}: not a Soul ID file (no embeddings.safetensors)")
    try:
        return st_load(z.read("embeddings.safetensors"))
    except SoulFileError:
        raise
    except Exception as e:  # safetensors raises its own SafetensorError
        raise SoulFileError(f"{label}: member 'embeddings.safetensors' is corrupt ({type(e).__name__}: {e})") from None


def _analyzer_from(k: str, am, tensors: dict, n_photos: int, label: str) -> "AnalyzerIdentity":
    """Check one analyzer's tensors against its manifest section."""
    width = EMBEDDING_DIMS[k]
    emb, norms = tensors.get(f"{k}.embeddings"), tensors.get(f"{k}.raw_norms")
    where = f"{label}: embeddings '{k}.embeddings'"
    if emb is None or norms is None:
        raise SoulFileError(f"{label}: embeddings.safetensors has no '{k}.embeddings' / '{k}.raw_norms' for analyzer {k!r}")
    if emb.dtype != np.float32 or emb.ndim != 2:
        raise SoulFileError(f"{where} must be 2-D float32 [N, {width}], got {emb.ndim}-D {emb.dtype} {list(emb.shape)}")
    if emb.shape[0] < 1 or emb.shape[1] != width:
        raise SoulFileError(f"{where} must be [N >= 1, {width}] for analyzer {k!r}, got {list(emb.shape)}")
    if am.embedding_dim is not None and am.embedding_dim != width:
        raise SoulFileError(f"{label}: manifest field 'analyzers.{k}.embedding_dim' is {am.embedding_dim}, not {width}")
    n = emb.shape[0]
    if am.count is not None and am.count != n:
        raise SoulFileError(f"{label}: manifest field 'analyzers.{k}.count' is {am.count}, but there are {n} embeddings")
    if not np.isfinite(emb).all():
        raise SoulFileError(f"{where} holds NaN or infinite values")
    rn = np.linalg.norm(emb.astype(np.float64), axis=1)
    if not ((rn > 0.9) & (rn < 1.1)).all():
        raise SoulFileError(f"{where}: rows must be unit vectors (norms {rn.min():.3g}..{rn.max():.3g})")
    if norms.dtype != np.float32 or norms.shape != (n,) or not np.isfinite(norms).all() or (norms < 0).any():
        raise SoulFileError(f"{label}: '{k}.raw_norms' must be [{n}] finite non-negative float32, "
                            f"got {norms.ndim}-D {norms.dtype} {list(norms.shape)}")
    idx = list(am.photo_indices) or list(range(n))
    if len(idx) != n:
        raise SoulFileError(f"{label}: manifest field 'analyzers.{k}.photo_indices' has {len(idx)} entries for {n} embeddings")
    if n_photos and max(idx) >= n_photos:
        raise SoulFileError(f"{label}: manifest field 'analyzers.{k}.photo_indices' points past the {n_photos} photos")
    return AnalyzerIdentity(
        name=k, model_id=am.model_id, embeddings=np.ascontiguousarray(emb), raw_norms=np.ascontiguousarray(norms),
        photo_indices=[int(i) for i in idx], threshold=float(am.threshold),
        baseline={kk: v for kk, v in am.baseline.items()},
    )


def _private_keyref(ref: dict | None) -> dict | None:
    if isinstance(ref, dict) and ref.get("source"):
        return {**ref, "source": safe_label(os.path.basename(str(ref["source"])))}
    return ref


def _private_report(report: dict) -> dict:
    """The QA report with every photo ``path`` reduced to a safe file name
    (no folders of the creating machine)."""
    if not isinstance(report, dict):
        return {}
    def names_only(entries):
        return [
            {**p, "path": safe_label(os.path.basename(str(p.get("path", ""))))} if isinstance(p, dict) else p
            for p in entries
        ]

    out = dict(report)
    if isinstance(out.get("photos"), list):
        out["photos"] = names_only(out["photos"])
    summary = out.get("summary")
    if isinstance(summary, dict) and isinstance(summary.get("skipped"), list):
        out["summary"] = {**summary, "skipped": names_only(summary["skipped"])}
    return out
