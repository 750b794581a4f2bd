"""The one schema of a ``.soulid`` file's ``manifest.json`` (pydantic v2).

:func:`parse_manifest` turns the member's bytes into a checked
:class:`Manifest` or raises one :class:`~soulid.soul.errors.SoulFileError`
that names the field and the reason. Checked, in order:

1. size (:data:`MAX_MANIFEST_BYTES`) and nesting depth (:data:`MAX_DEPTH`),
   counted on the raw bytes before :func:`json.loads` recurses;
2. every number finite (``NaN``, ``Infinity``, ``1e400`` and integers beyond
   64 bits such as ``10**400`` refused);
3. the schema: types (``format_version`` a real int, not ``true``), ranges
   (threshold in [-1, 1]), dates (an ISO 8601 string or a finite epoch in
   [0, 2**33) s), known analyzers and LoRA architectures, archive member
   names (``photos/...``, ``thumbs/...``, ``loras/<arch>.safetensors``).

Tensor shapes (embeddings 2-D float32 of the analyzer's width) are checked
against this manifest by :mod:`soulid.soul.soulfile`.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import re
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from .errors import SoulFileError

#: Largest manifest.json accepted, bytes.
MAX_MANIFEST_BYTES = 16 << 20
#: Deepest nesting of arrays/objects accepted in manifest.json.
MAX_DEPTH = 32
#: Largest number of photos, log entries, remote ids in one manifest.
MAX_PHOTOS_IN_FILE = 1000
MAX_LOG_ENTRIES = 100_000
#: Longest cast prompt or note, characters; most notes in one manifest.
MAX_TEXT, MAX_NOTES = 20_000, 1000
#: Embedding width of each analyzer (see :mod:`soulid.soul.analysis`).
EMBEDDING_DIMS = {"dlib": 128, "insightface": 512, "insightface_buffalo_l": 512}
#: Dates: epoch seconds in [0, 2**33) (until the year 2242).
MAX_EPOCH = float(2**33)
#: Largest magnitude of any integer in the manifest (a 64-bit seed fits).
MAX_ABS_INT = 2**64

_STRICT = ConfigDict(extra="forbid", strict=False)
_OPEN = ConfigDict(extra="allow")
_MEMBER = re.compile(r"^(photos|thumbs)/[A-Za-z0-9_.-]{1,64}$")


def _date(v: Any) -> float:
    """An ISO 8601 string or a finite epoch (s) -> epoch seconds (float)."""
    if isinstance(v, bool):
        raise ValueError("must be an ISO 8601 date string or epoch seconds, not a boolean")
    if isinstance(v, (int, float)):
        f = float(v) if abs(v) < 1e300 else math.inf
        if not math.isfinite(f) or not 0 <= f < MAX_EPOCH:
            raise ValueError(f"epoch seconds must be finite and in [0, {MAX_EPOCH:.0f}), got {str(v)[:40]}")
        return f
    if isinstance(v, str):
        try:
            d = _dt.datetime.fromisoformat(v.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{v[:40]!r} is not an ISO 8601 date") from None
        if d.tzinfo is None:
            d = d.replace(tzinfo=_dt.timezone.utc)
        return _date(d.timestamp())
    raise ValueError(f"must be an ISO 8601 date string or epoch seconds, not {type(v).__name__}")


def _member(v: str) -> str:
    if not _MEMBER.match(v) or ".." in v:
        raise ValueError(f"{v[:80]!r} is not a valid archive member name (photos/NAME or thumbs/NAME)")
    return v


class RawNorm(BaseModel):
    model_config = _OPEN
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None


class AnalyzerMeta(BaseModel):
    """One analyzer's section: ``analyzers.<name>``."""

    model_config = ConfigDict(extra="ignore")
    model_id: str = Field(min_length=1, max_length=256)
    embedding_dim: StrictInt | None = None
    count: StrictInt | None = Field(default=None, ge=1)
    photo_indices: list[StrictInt] = Field(default_factory=list, max_length=MAX_PHOTOS_IN_FILE)
    threshold: float = Field(ge=-1.0, le=1.0, allow_inf_nan=False, strict=True)
    baseline: dict[str, float | int | None] = Field(default_factory=dict)
    raw_norm: RawNorm | None = None

    @field_validator("photo_indices")
    @classmethod
    def non_negative(cls, v: list[int]) -> list[int]:
        if any(i < 0 for i in v):
            raise ValueError("photo indices must be >= 0")
        return v


class PhotoMeta(BaseModel):
    """One stored photo: ``photos[i]``."""

    model_config = ConfigDict(extra="ignore")
    file: str | None = None
    source: str = Field(default="", max_length=1024)
    rating: Literal["perfect", "good", "poor"] = "good"
    pose_class: Literal["front", "three_quarter", "profile"] = "front"
    width: StrictInt = Field(default=0, ge=0, le=100_000)
    height: StrictInt = Field(default=0, ge=0, le=100_000)
    original_size: tuple[StrictInt, StrictInt] = (0, 0)
    face_box: list[float] | None = Field(default=None, min_length=4, max_length=4)

    @field_validator("file")
    @classmethod
    def check_file(cls, v: str | None) -> str | None:
        return v if v is None else _member(v)


class KeypointReference(BaseModel):
    model_config = ConfigDict(extra="ignore")
    photo: StrictInt = Field(ge=0)
    analyzer: str | None = None
    keypoints: list[tuple[float, float]] = Field(min_length=1, max_length=128)
    source: str | None = Field(default=None, max_length=1024)


class RemoteIDMeta(BaseModel):
    """One provider-side id: ``remote_ids[i]``."""

    model_config = _STRICT
    provider: str = Field(min_length=1, max_length=64)
    id: str = Field(min_length=1, max_length=512)
    model_version: str = Field(max_length=64)
    created: float = 0.0
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("created", mode="before")
    @classmethod
    def check_created(cls, v: Any) -> float:
        return _date(v)


class LogEntry(BaseModel):
    """One generation-log entry (see :mod:`soulid.soul.charlog`); other fields kept."""

    model_config = _OPEN
    n: StrictInt | None = None
    thumb: str | None = None

    @field_validator("thumb")
    @classmethod
    def check_thumb(cls, v: str | None) -> str | None:
        return v if v is None else _member(v)


class LoraMeta(BaseModel):
    """One persona LoRA: ``loras.<arch>`` (see :class:`~soulid.soul.soulfile.PersonaLoRA`)."""

    model_config = _OPEN
    file: str | None = None
    bytes: StrictInt | None = Field(default=None, ge=0)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class CastMeta(BaseModel):
    """How a cast character was made: ``cast`` (see :class:`soulid.soul.cast.CastRecord`); other fields kept."""

    model_config = _OPEN
    prompt: str = Field(default="", max_length=MAX_TEXT)
    backend: str = Field(default="views", max_length=64)
    seeds: dict[str, StrictInt | None] = Field(default_factory=dict)
    request_ids: dict[str, str | None] = Field(default_factory=dict)
    roles: list[Literal["front", "three_quarter_left", "three_quarter_right", "profile"]] = Field(
        default_factory=list, max_length=4)
    similarity: list[list[float | None]] = Field(default_factory=list, max_length=4)


class NoteMeta(BaseModel):
    """One character-library note: ``notes[i]`` (e.g. which lighting works)."""

    model_config = ConfigDict(extra="ignore")
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    created: float = 0.0

    @field_validator("created", mode="before")
    @classmethod
    def check_created(cls, v: Any) -> float:
        return _date(v)


class Manifest(BaseModel):
    """``manifest.json`` of a Soul ID file (format versions 1 and 2)."""

    model_config = ConfigDict(extra="ignore")
    format: Literal["soulid"]
    format_version: StrictInt = Field(ge=1)
    soulid_version: str | None = Field(default=None, max_length=64)
    name: str = Field(default="", max_length=1024)
    created: float = 0.0
    analyzers: dict[str, AnalyzerMeta] = Field(min_length=1)
    photos: list[PhotoMeta] = Field(default_factory=list, max_length=MAX_PHOTOS_IN_FILE)
    qa_report: dict[str, Any] = Field(default_factory=dict)
    keypoint_reference: KeypointReference | None = None
    remote_ids: list[RemoteIDMeta] = Field(default_factory=list, max_length=1000)
    log: list[LogEntry] = Field(default_factory=list, max_length=MAX_LOG_ENTRIES)
    loras: dict[str, LoraMeta] = Field(default_factory=dict)
    origin: Literal["photos", "cast"] = "photos"
    cast: CastMeta | None = None
    notes: list[NoteMeta] = Field(default_factory=list, max_length=MAX_NOTES)

    @field_validator("created", mode="before")
    @classmethod
    def check_created(cls, v: Any) -> float:
        return _date(v)

    @field_validator("analyzers")
    @classmethod
    def known_analyzers(cls, v: dict) -> dict:
        for k in v:
            if k not in EMBEDDING_DIMS:
                raise ValueError(f"unknown analyzer {k[:40]!r} (known: {', '.join(EMBEDDING_DIMS)})")
        return v


# ------------------------------------------------------------------ parsing
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)


def json_depth(data: bytes) -> int:
    """Deepest ``[``/``{`` nesting of JSON text, counted without parsing
    (string literals skipped), so that a 100000-deep array costs one pass."""
    stripped = _STRING.sub(b'""', data)
    a = np.frombuffer(stripped, dtype=np.uint8)
    step = np.isin(a, (0x5B, 0x7B)).astype(np.int32) - np.isin(a, (0x5D, 0x7D)).astype(np.int32)
    return int(np.cumsum(step).max(initial=0))


def _first_non_finite(obj: Any, path: str = "") -> tuple[str, Any] | None:
    """Path and value of the first NaN/inf float or over-long integer in a parsed JSON tree (iterative)."""
    stack = [(obj, path)]
    while stack:
        o, p = stack.pop()
        if isinstance(o, bool):
            continue
        if isinstance(o, float):
            if not math.isfinite(o):
                return p, o
        elif isinstance(o, int):
            if abs(o) > MAX_ABS_INT:
                return p, o
        elif isinstance(o, dict):
            stack += [(v, f"{p}.{k}" if p else str(k)) for k, v in o.items()]
        elif isinstance(o, list):
            stack += [(v, f"{p}[{i}]") for i, v in enumerate(o)]
    return None


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def validation_message(label: str, e: ValidationError) -> str:
    """One line naming the first offending field of a pydantic error."""
    err = e.errors(include_url=False)[0]
    field = _loc(err["loc"]) or "(top level)"
    value = repr(err.get("input"))
    value = value if len(value) <= 60 else value[:57] + "..."
    more = f" (and {e.error_count() - 1} more problem(s))" if e.error_count() > 1 else ""
    msg = err["msg"].removeprefix("Value error, ")
    return f"{label}: manifest field {field!r} is invalid: {msg} (got {value}){more}"


def load_json_object(data: bytes, label: str, max_depth: int, error: type[Exception] = SoulFileError) -> dict:
    """``manifest.json``'s bytes parsed as a JSON object, nesting checked
    first (:func:`json_depth`, no recursion).

    Raises:
        ``error``: nested deeper than ``max_depth``, not JSON, not an object.
    """
    depth = json_depth(data)
    if depth > max_depth:
        raise error(f"{label}: manifest.json is nested {depth} levels deep (at most {max_depth})")
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise error(f"{label}: manifest.json is corrupt ({str(e)[:200]})") from None
    if not isinstance(raw, dict):
        raise error(f"{label}: manifest.json must be a JSON object, not a {type(raw).__name__}")
    return raw


def parse_manifest(data: bytes, label: str, max_version: int) -> tuple[Manifest, dict]:
    """Check and parse ``manifest.json``'s bytes.

    Args:
        data: the member's bytes (UTF-8 JSON).
        label: the file's name, for messages.
        max_version: the newest ``format_version`` this reader supports.

    Returns:
        ``(Manifest, raw dict)``: the checked model, and the parsed JSON
        (for sections kept verbatim: ``qa_report``, log entries, LoRA metadata).

    Raises:
        SoulFileError: naming the field and the reason.
    """
    if len(data) > MAX_MANIFEST_BYTES:
        raise SoulFileError(f"{label}: manifest.json is {len(data)} bytes, over the {MAX_MANIFEST_BYTES} limit")
    raw = load_json_object(data, label, MAX_DEPTH, SoulFileError)
    if raw.get("format") != "soulid":
        raise SoulFileError(f"{label}: not a Soul ID file (format is {str(raw.get('format'))[:40]!r})")
    ver = raw.get("format_version")
    if isinstance(ver, bool) or not isinstance(ver, int) or ver < 1:
        raise SoulFileError(f"{label}: unknown Soul ID format version {str(ver)[:40]!r} (manifest field 'format_version' must be an integer >= 1)")
    if ver > max_version:
        raise SoulFileError(
            f"{label}: Soul ID format version {ver} is newer than this soulid supports ({max_version}); "
            "update the soulid pack to open it"
        )
    bad = _first_non_finite(raw)
    if bad is not None:
        raise SoulFileError(f"{label}: manifest field {bad[0]!r} is not a finite number in range (got {str(bad[1])[:40]})")
    try:
        return Manifest.model_validate(raw), raw
    except ValidationError as e:
        raise SoulFileError(validation_message(label, e)) from None
