"""Decoding user photos into RGB arrays, safely.

One bad file must never sink a batch: :func:`load_photo` raises
:class:`~soulid.soul.errors.PhotoError` with a reason a person can act on, and
never anything else for bad input.

Handled: JPEG (and phone MPO), PNG, WebP, BMP, TIFF; EXIF orientation applied;
RGBA/LA/P-with-transparency composited on white; CMYK, 16-bit and float modes
converted to 8-bit RGB; zero-byte, non-image, truncated, corrupt and
decompression-bomb files rejected.
"""
from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import PhotoError

#: Largest image accepted, in pixels (64 MP; a 9000x7000 camera file passes).
MAX_PIXELS = 64_000_000
SUPPORTED_FORMATS = {"JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF"}
PHOTO_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".mpo"}


@dataclass
class Photo:
    """A decoded photo.

    Attributes:
        rgb: ``[H, W, 3]`` uint8 RGB, orientation applied.
        source: file name or label, for messages.
        format: Pillow's format name (``"JPEG"``...).
        notes: conversions applied (``"EXIF orientation 6 applied"``...).
    """

    rgb: np.ndarray
    source: str
    format: str
    notes: list[str] = field(default_factory=list)

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def _sniff(data: bytes) -> str | None:
    """Format named by the file's magic bytes, or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return None


def _to_rgb(im: Image.Image, notes: list[str]) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(im).astype(np.float64)
        hi = 65535.0 if mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        a = np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        notes.append(f"{mode} (16-bit) converted to 8-bit")
        return np.repeat(a[..., None], 3, axis=2)
    if mode == "F":
        a = np.asarray(im).astype(np.float64)
        lo, hi = float(a.min(initial=0)), float(a.max(initial=1))
        a = ((a - lo) / max(hi - lo, 1e-9) * 255.0 + 0.5).astype(np.uint8)
        notes.append("float image rescaled to 8-bit")
        return np.repeat(a[..., None], 3, axis=2)
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        notes.append("palette image converted")
        mode = im.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        bg.alpha_composite(rgba)
        notes.append(f"{mode} alpha composited on white")
        return np.asarray(bg.convert("RGB"))
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
    elif mode not in ("RGB", "L"):
        notes.append(f"{mode} converted to RGB")
    return np.asarray(im.convert("RGB"))


def load_photo(src: str | os.PathLike | bytes, label: str | None = None) -> Photo:
    """Decode a photo file (or its bytes) to an RGB :class:`Photo`.

    Args:
        src: a path, or the encoded bytes.
        label: name used in messages (defaults to the file name).

    Returns:
        :class:`Photo` with ``rgb`` ``[H, W, 3]`` uint8.

    Raises:
        PhotoError: file missing, empty, not an image, unsupported format,
            larger than :data:`MAX_PIXELS`, truncated or corrupt.
    """
    if isinstance(src, (bytes, bytearray)):
        data = bytes(src)
        name = label or "<bytes>"
    else:
        p = Path(src)
        name = label or p.name
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            raise PhotoError(name, "file not found") from None
        except IsADirectoryError:
            raise PhotoError(name, "is a folder, not a photo") from None
        except OSError as e:
            raise PhotoError(name, f"cannot read file ({e.strerror or e})") from None
    if len(data) == 0:
        raise PhotoError(name, "empty file (0 bytes)")
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            fmt = im.format or "?"
            if fmt not in SUPPORTED_FORMATS:
                raise PhotoError(name, f"unsupported image format {fmt} (use JPEG, PNG or WebP)")
            w, h = im.size
            if w <= 0 or h <= 0:
                raise PhotoError(name, f"invalid image size {w}x{h}")
            if w * h > MAX_PIXELS:
                raise PhotoError(
                    name,
                    f"image is {w}x{h} ({w * h / 1e6:.0f} MP), over the {MAX_PIXELS / 1e6:.0f} MP "
                    "limit (decompression-bomb guard)",
                )
            im.load()
            orientation = im.getexif().get(0x0112, 1)
            if orientation not in (1, None):
                im = ImageOps.exif_transpose(im)
                notes.append(f"EXIF orientation {orientation} applied")
            rgb = _to_rgb(im, notes)
    except PhotoError:
        raise
    except UnidentifiedImageError:
        magic = _sniff(data)
        if magic:
            raise PhotoError(name, f"corrupt {magic} file: the header cannot be read") from None
        raise PhotoError(name, "not an image (format not recognised)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise PhotoError(name, f"image too large to decode safely: {e} (decompression-bomb guard)") from None
    except OSError as e:
        msg = str(e)
        if "truncated" in msg.lower():
            raise PhotoError(name, "truncated file: the image data ends early") from None
        raise PhotoError(name, f"corrupt image data ({msg})") from None
    except (ValueError, SyntaxError, EOFError, IndexError, TypeError, MemoryError) as e:
        raise PhotoError(name, f"corrupt image data ({type(e).__name__}: {e})") from None
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    return Photo(rgb=rgb, source=name, format=fmt, notes=notes)


def iter_photo_paths(inputs: list[str | os.PathLike]) -> list[Path]:
    """Expand files and folders into a sorted list of photo paths.

    Folders are scanned one level deep for files with a photo extension;
    files given by name are kept whatever their extension (so that a bad one
    is reported, not silently skipped).

    Raises:
        PhotoError: an input path does not exist.
    """
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += sorted(
                c for c in p.iterdir() if c.is_file() and c.suffix.lower() in PHOTO_EXTENSIONS
            )
        elif p.exists():
            out.append(p)
        else:
            raise PhotoError(str(p), "no such file or folder")
    return out


def downscale(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink ``[H, W, 3]`` uint8 so that its longest side is at most
    ``max_side``; returned unchanged when already small enough.

    OpenCV's area interpolation: as sharp as Lanczos for shrinking, and several
    times faster than Pillow's on multi-megapixel photos.
    """
    import cv2

    h, w = rgb.shape[:2]
    s = max(h, w)
    if s <= max_side:
        return rgb
    scale = max_side / s
    return cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def encode_jpeg(rgb: np.ndarray, quality: int = 92) -> bytes:
    """Encode ``[H, W, 3]`` uint8 RGB as JPEG bytes."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def encode_png(rgb: np.ndarray) -> bytes:
    """Encode ``[H, W, 3]`` uint8 RGB as PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()
