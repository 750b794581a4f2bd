"""Decoding: every bad file gets its own clear reason; odd formats convert."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import helpers_images as hi
from soulid.soul.errors import PhotoError
from soulid.soul.imageio import load_photo


def _reason(path) -> str:
    with pytest.raises(PhotoError) as e:
        load_photo(path)
    assert e.value.source == path.name
    return e.value.reason


def test_bad_files_each_get_their_own_reason(faces, tmp_path):
    src = faces / "obama" / "obama.jpg"
    reasons = {
        "empty": _reason(hi.empty(tmp_path / "empty.jpg")),
        "text": _reason(hi.not_an_image(tmp_path / "list.jpg")),
        "truncated": _reason(hi.truncated_jpeg(src, tmp_path / "cut.jpg")),
        "huge": _reason(hi.huge_png(tmp_path / "bomb.png")),
        "missing": _reason(tmp_path / "nope.jpg"),
        "large": _reason(hi.huge_png(tmp_path / "large.png", 10_000, 8_000)),
    }
    assert "10000x8000 (80 MP)" in reasons["large"] and "64 MP" in reasons["large"]
    assert "empty" in reasons["empty"] and "0 bytes" in reasons["empty"]
    assert "not an image" in reasons["text"]
    assert "truncated" in reasons["truncated"]
    assert "2500000000 pixels" in reasons["huge"] and "decompression" in reasons["huge"]
    assert "not found" in reasons["missing"]
    assert len(set(reasons.values())) == len(reasons)


def test_corrupt_jpeg_is_rejected_not_crashing(faces, tmp_path):
    p = hi.corrupt_jpeg(faces / "obama" / "obama.jpg", tmp_path / "corrupt.jpg")
    try:
        ph = load_photo(p)
    except PhotoError as e:
        assert "corrupt" in e.reason or "truncated" in e.reason
    else:  # libjpeg may decode garbage without complaint: then it is just an image
        assert ph.rgb.dtype == np.uint8 and ph.rgb.ndim == 3


def test_16bit_and_cmyk_convert_to_8bit_rgb(faces, tmp_path):
    src = faces / "obama" / "obama.jpg"
    ref = np.asarray(Image.open(src).convert("L"), dtype=np.float64)
    p16 = load_photo(hi.png16(src, tmp_path / "g16.png"))
    assert p16.rgb.dtype == np.uint8 and p16.rgb.shape[2] == 3
    assert np.abs(p16.rgb[..., 0].astype(np.float64) - ref).mean() < 1.0  # scaled, not clipped
    assert any("16-bit" in n for n in p16.notes)
    cmyk = load_photo(hi.cmyk_jpeg(src, tmp_path / "cmyk.jpg"))
    assert cmyk.rgb.shape == (p16.height, p16.width, 3)
    assert any("CMYK" in n for n in cmyk.notes)


def test_rgba_composited_and_exif_orientation_applied(faces, tmp_path):
    rgba = load_photo(faces / "hard" / "rgba_32bit.png")
    assert rgba.rgb.shape[2] == 3 and any("alpha" in n for n in rgba.notes)
    src = faces / "obama" / "obama.jpg"
    w, h = Image.open(src).size
    rot = load_photo(hi.exif_rotated(src, tmp_path / "rot.jpg"))
    assert (rot.width, rot.height) == (w, h)  # upright again
    assert any("EXIF orientation 6" in n for n in rot.notes)
