"""Bad and unusual image files made at test time from the real fixture photos."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def huge_png(path: Path, width: int = 50_000, height: int = 50_000) -> Path:
    """A tiny PNG file whose header claims ``width x height`` pixels."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def truncated_jpeg(src: Path, path: Path, keep: float = 0.5) -> Path:
    data = src.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def corrupt_jpeg(src: Path, path: Path) -> Path:
    """Valid JPEG header, scrambled entropy-coded data."""
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(0)
    start = data.index(b"\xff\xda") + 200  # past the start-of-scan header
    data[start:] = rng.integers(0, 256, len(data) - start, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def png16(src: Path, path: Path) -> Path:
    """A 16-bit greyscale PNG of a real photo."""
    g = np.asarray(Image.open(src).convert("L"), dtype=np.uint16) * 257
    Image.fromarray(g).save(path)  # uint16 -> mode I;16
    return path


def cmyk_jpeg(src: Path, path: Path) -> Path:
    Image.open(src).convert("CMYK").save(path, format="JPEG", quality=92)
    return path


def exif_rotated(src: Path, path: Path, orientation: int = 6) -> Path:
    """Store the photo rotated on its side with an EXIF orientation tag that
    puts it upright again (6 = rotate 90 degrees clockwise to display)."""
    im = Image.open(src).convert("RGB")
    stored = im.transpose(Image.Transpose.ROTATE_90)  # counter-clockwise; tag 6 undoes it
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, format="JPEG", quality=92, exif=exif.tobytes())
    return path


def not_an_image(path: Path) -> Path:
    path.write_text("this is a shopping list, not a photo\n")
    return path


def empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def jpeg_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG")
    return buf.getvalue()
