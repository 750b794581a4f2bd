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
    loras/<arch>.safetensors  persona LoRAs, one per base-model architecture
                            (format version 2; see :class:`PersonaLoRA`)

Readers refuse a file whose ``format_version`` is newer than they know
(:class:`~soulid.soul.errors.SoulFileError`); writes are atomic.
"""
from __future__ import annotations

import io
import json
import os
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from .errors import SoulFileError
from .paths import atomic_write_bytes

FORMAT = "soulid"
#: Version history: 1 = photos + embeddings; 2 = adds ``loras/<arch>.safetensors``
#: with a ``"loras"`` manifest section. Version-1 files still load.
FORMAT_VERSION = 2
SUFFIX = ".soulid"
#: Longest side of photos stored inside a Soul ID, px.
STORED_PHOTO_MAX_SIDE = 1024


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

    # ------------------------------------------------------------------ access
    def attach_lora(self, arch: str, data: bytes, metadata: dict | None = None) -> PersonaLoRA:
        """Store (or replace) the persona LoRA for ``arch``.

        Args:
            arch: architecture id (:data:`LORA_ARCHITECTURES`).
            data: ``.safetensors`` bytes (checked to parse as safetensors).
            metadata: see :class:`PersonaLoRA`.

        Raises:
            SoulFileError: unknown ``arch``, or ``data`` is not a safetensors file.
        """
        a = validate_lora_arch(arch)
        try:
            st_load(bytes(data))
        except Exception as e:  # safetensors raises its own SafetensorError
            raise SoulFileError(f"LoRA for {a!r}: not a safetensors file ({e})") from None
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
            "qa_report": self.qa_report,
            "keypoint_reference": self.keypoint_reference,
            "remote_ids": [asdict(r) for r in self.remote_ids],
            "log": self.log,
            "loras": {k: v.meta() for k, v in self.loras.items()},
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
            z.writestr("manifest.json", json.dumps(self.manifest(), indent=1, ensure_ascii=False))
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
        """Parse a Soul ID file's bytes.

        Raises:
            SoulFileError: not a Soul ID zip, a member missing or corrupt, or
                a ``format_version`` newer than :data:`FORMAT_VERSION`.
        """
        try:
            z = zipfile.ZipFile(io.BytesIO(data))
        except zipfile.BadZipFile:
            raise SoulFileError(f"{label}: not a Soul ID file (not a zip archive)") from None
        with z:
            try:
                m = json.loads(z.read("manifest.json"))
            except KeyError:
                raise SoulFileError(f"{label}: not a Soul ID file (no manifest.json)") from None
            except (ValueError, zipfile.BadZipFile) as e:
                raise SoulFileError(f"{label}: manifest.json is corrupt ({e})") from None
            if not isinstance(m, dict) or m.get("format") != FORMAT:
                raise SoulFileError(f"{label}: not a Soul ID file (format is {m.get('format')!r})")
            ver = m.get("format_version")
            if not isinstance(ver, int) or ver < 1:
                raise SoulFileError(f"{label}: unknown Soul ID format version {ver!r}")
            if ver > FORMAT_VERSION:
                raise SoulFileError(
                    f"{label}: Soul ID format version {ver} is newer than this soulid "
                    f"supports ({FORMAT_VERSION}); update the soulid pack to open it"
                )
            try:
                tensors = st_load(z.read("embeddings.safetensors"))
                photos = []
                for i, pm in enumerate(m.get("photos", [])):
                    photos.append(
                        StoredPhoto(
                            jpeg=z.read(pm.get("file", f"photos/{i:03d}.jpg")),
                            source=pm.get("source", ""),
                            rating=pm.get("rating", "good"),
                            pose_class=pm.get("pose_class", "front"),
                            width=int(pm.get("width", 0)),
                            height=int(pm.get("height", 0)),
                            original_size=tuple(pm.get("original_size", (0, 0))),
                            face_box=pm.get("face_box"),
                        )
                    )
                analyzers = {}
                for k, am in m.get("analyzers", {}).items():
                    analyzers[k] = AnalyzerIdentity(
                        name=k,
                        model_id=am["model_id"],
                        embeddings=tensors[f"{k}.embeddings"],
                        raw_norms=tensors[f"{k}.raw_norms"],
                        photo_indices=list(am.get("photo_indices", [])),
                        threshold=float(am["threshold"]),
                        baseline=am.get("baseline", {}),
                    )
                loras = {}
                for arch, lm in (m.get("loras") or {}).items():
                    a = validate_lora_arch(arch)
                    meta = {k: v for k, v in lm.items() if k not in ("file", "bytes", "sha256")}
                    loras[a] = PersonaLoRA(arch=a, data=z.read(f"loras/{a}.safetensors"), metadata=meta)
                known = {"manifest.json", "embeddings.safetensors"} | {
                    pm.get("file", f"photos/{i:03d}.jpg") for i, pm in enumerate(m.get("photos", []))
                } | {lo.file for lo in loras.values()}
                extra = {n: z.read(n) for n in z.namelist() if n not in known and not n.endswith("/")}
            except (KeyError, ValueError, TypeError, zipfile.BadZipFile, Exception) as e:
                if isinstance(e, SoulFileError):
                    raise
                raise SoulFileError(f"{label}: Soul ID file is corrupt ({type(e).__name__}: {e})") from None
        return cls(
            name=m.get("name", ""),
            photos=photos,
            analyzers=analyzers,
            qa_report=m.get("qa_report", {}),
            keypoint_reference=m.get("keypoint_reference"),
            remote_ids=[RemoteID(**r) for r in m.get("remote_ids", [])],
            created=float(m.get("created", 0.0)),
            log=list(m.get("log", [])),
            extra_files=extra,
            loras=loras,
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SoulID":
        """Read a ``.soulid`` file.

        Raises:
            SoulFileError: missing, unreadable, corrupt or too new.
        """
        p = Path(path)
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            raise SoulFileError(f"{p}: no such Soul ID file") from None
        except OSError as e:
            raise SoulFileError(f"{p}: cannot read ({e.strerror or e})") from None
        return cls.from_bytes(data, label=p.name)
