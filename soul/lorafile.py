"""Checking a persona LoRA's ``.safetensors`` bytes before they are stored or used.

One validator for every way a LoRA enters a Soul ID (``soulid lora attach``,
Soul ID Attach LoRA, ``.char`` import, loading a ``.soulid``):
:func:`check_lora_bytes`. It reads the safetensors layout itself
(https://github.com/huggingface/safetensors#format): an 8-byte little-endian
header length ``N``, ``N`` bytes of a UTF-8 JSON object
``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}``,
then the tensor data, which the offsets must cover exactly, in order, with no
gap and nothing after. No numpy loader is involved (``safetensors.numpy`` has
no bfloat16), so fp32, fp16 and bf16 LoRAs (ComfyUI's ``TrainLoraNode``
writes bf16 by default) are all accepted. Every value must be finite: NaN and
infinity are found from the IEEE bit patterns, a bounded chunk at a time.

:func:`read_lora_file` reads a LoRA file from disk, refusing FIFOs, devices
and files over :data:`MAX_LORA_BYTES` before reading a byte.

Errors are :class:`~soulid.soul.errors.SoulFileError` naming the file and
the reason; never a raw ``SafetensorError``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from .errors import SoulFileError
from .safezip import GiB, MiB

#: Largest LoRA file accepted, bytes.
MAX_LORA_BYTES = 2 * GiB
#: Largest safetensors JSON header, bytes (the safetensors library's own limit).
MAX_HEADER_BYTES = 100 * MiB
#: Most tensors in one LoRA (ComfyUI's TrainLoraNode writes about 4,000 for SDXL).
MAX_LORA_TENSORS = 65_536
#: safetensors dtype -> (bytes per element, numpy unsigned view, exponent mask).
#: A value is NaN or infinite exactly when all its exponent bits are set.
FLOAT_DTYPES = {
    "F64": (8, np.uint64, 0x7FF0000000000000),
    "F32": (4, np.uint32, 0x7F800000),
    "F16": (2, np.uint16, 0x7C00),
    "BF16": (2, np.uint16, 0x7F80),
}
_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a safetensors file: ``dtype`` (``"F32"``/``"F16"``/``"BF16"``/``"F64"``),
    ``shape`` (tuple of int) and its byte range ``begin``..``end`` in the data section."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass
class LoRAInfo:
    """What :func:`check_lora_bytes` found: ``tensors`` (name -> :class:`TensorInfo`),
    ``metadata`` (the ``__metadata__`` strings) and ``dtypes`` (the dtypes used)."""

    tensors: dict[str, TensorInfo] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def dtypes(self) -> list[str]:
        return sorted({t.dtype for t in self.tensors.values()})


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"key {k[:80]!r} appears twice")
        out[k] = v
    return out


def _bad(where: str, reason: str) -> SoulFileError:
    return SoulFileError(f"{where} is not a usable LoRA: {reason}")


def parse_header(data: bytes | memoryview, where: str = "LoRA") -> tuple[LoRAInfo, int]:
    """Parse and check a safetensors header (layout only, no values).

    Returns:
        ``(LoRAInfo, offset of the data section)``.

    Raises:
        SoulFileError: naming ``where`` and the reason (too short, header
            length or JSON invalid, an entry without dtype/shape/offsets, a
            dtype that is not a float type, offsets that do not match the
            shape or leave gaps, bytes after the last tensor, no tensors, more
            than :data:`MAX_LORA_TENSORS`).
    """
    size = len(data)
    if size < 8:
        raise _bad(where, f"only {size} bytes (a safetensors file starts with an 8-byte header length)")
    n = int.from_bytes(bytes(data[:8]), "little")
    if n < 2 or n > MAX_HEADER_BYTES or 8 + n > size:
        raise _bad(where, f"header length {n} does not fit the file ({size} bytes); not a safetensors file")
    try:
        header = json.loads(bytes(data[8:8 + n]).decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as e:
        raise _bad(where, f"its safetensors header is not valid JSON ({str(e)[:120]})") from None
    if not isinstance(header, dict):
        raise _bad(where, "its safetensors header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise _bad(where, "'__metadata__' must map strings to strings")
    if not header:
        raise _bad(where, "it holds no tensors (an empty LoRA); train or export it again")
    if len(header) > MAX_LORA_TENSORS:
        raise _bad(where, f"{len(header)} tensors, over the limit of {MAX_LORA_TENSORS}")
    info = LoRAInfo(metadata=dict(meta))
    for name, e in header.items():
        label = f"tensor {name[:120]!r}"
        if not isinstance(e, dict) or not {"dtype", "shape", "data_offsets"} <= set(e):
            raise _bad(where, f"{label} lacks dtype, shape or data_offsets")
        dtype, shape, offs = e["dtype"], e["shape"], e["data_offsets"]
        if dtype not in FLOAT_DTYPES:
            raise _bad(where, f"{label} is {str(dtype)[:20]}; LoRA tensors must be a float type "
                              f"({', '.join(FLOAT_DTYPES)})")
        if (not isinstance(shape, list) or len(shape) > 8
                or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in shape)):
            raise _bad(where, f"{label} has an invalid shape {str(shape)[:80]}")
        if (not isinstance(offs, list) or len(offs) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offs)):
            raise _bad(where, f"{label} has invalid data_offsets {str(offs)[:80]}")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if offs[1] - offs[0] != count * FLOAT_DTYPES[dtype][0]:
            raise _bad(where, f"{label}: data_offsets {offs} do not hold a {dtype} tensor of shape {shape}")
        info.tensors[name] = TensorInfo(dtype, tuple(shape), offs[0], offs[1])
    pos = 0
    for name, t in sorted(info.tensors.items(), key=lambda kv: (kv[1].begin, kv[1].end)):
        if t.begin != pos:
            raise _bad(where, f"tensor {name[:120]!r} starts at byte {t.begin} of the data, expected {pos} "
                              "(tensors overlap or leave a gap)")
        pos = t.end
    if 8 + n + pos != size:
        raise _bad(where, f"the tensors end at byte {8 + n + pos} but the file has {size} bytes (truncated or padded)")
    return info, 8 + n


def check_lora_bytes(data: bytes | bytearray | memoryview, where: str = "LoRA") -> LoRAInfo:
    """Check that ``data`` is a complete safetensors LoRA of float tensors with finite values.

    Args:
        data: the file's bytes (any float dtype: F32, F16, BF16, F64).
        where: what to call it in errors (a file or member name).

    Returns:
        :class:`LoRAInfo` (tensor names, dtypes, shapes, ``__metadata__``).

    Raises:
        SoulFileError: see :func:`parse_header`; also a tensor holding NaN or
            infinite values (named).
    """
    if len(data) > MAX_LORA_BYTES:
        raise _bad(where, f"{len(data)} bytes, over the {MAX_LORA_BYTES}-byte limit")
    view = memoryview(data).cast("B")
    info, start = parse_header(view, where)
    for name, t in info.tensors.items():
        width, utype, mask = FLOAT_DTYPES[t.dtype]
        raw = view[start + t.begin:start + t.end]
        step = _CHUNK_ELEMENTS * width
        for i in range(0, len(raw), step):
            bits = np.frombuffer(raw[i:i + step], dtype=np.dtype(utype).newbyteorder("<"))
            if ((bits & utype(mask)) == utype(mask)).any():
                raise _bad(where, f"tensor {name[:120]!r} holds NaN or infinite values (a diverged training run?)")
    return info


def read_lora_file(path: str | os.PathLike) -> bytes:
    """Read a LoRA file: a regular file of at most :data:`MAX_LORA_BYTES`
    (FIFOs and devices are refused without blocking; see
    :func:`soulid.soul.paths.open_regular_file`). The bytes are not checked
    here; pass them to :func:`check_lora_bytes`.

    Raises:
        SoulFileError: missing, unreadable, not a regular file, or too large.
    """
    from .paths import read_regular_file

    return read_regular_file(path, MAX_LORA_BYTES, "LoRA", SoulFileError)
