"""Hostile photo inputs (issue 12, items 3, 6 and 7): devices, FIFOs, names
the file system gives, folder scans, EXIF, decoding memory, the node's folder."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from soulid.soul import paths
from soulid.soul.create import create_soul_id
from soulid.soul.errors import PhotoError
from soulid.soul.imageio import (
    decode_bytes,
    load_photo,
    safe_label,
    scan_photo_inputs,
    sniff,
    to_float01,
    to_uint8,
)
from soulid.soul.library import Library

OBAMA = ("obama.jpg", "obama3.jpg", "obama4.jpg")


def cli(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "soulid", *args], capture_output=True, env={**os.environ, **(env or {})},
                          timeout=timeout)


# ------------------------------------------------------- devices and FIFOs
@pytest.mark.parametrize("kind", ["/dev/zero", "fifo"])
def test_device_or_fifo_photo_is_refused_in_under_2_s(kind, tmp_path):
    path = kind
    if kind == "fifo":
        path = tmp_path / "pipe.jpg"
        os.mkfifo(path)
    t0 = time.monotonic()
    with pytest.raises(PhotoError) as e:
        load_photo(path)
    assert time.monotonic() - t0 < 2.0
    assert ("character device" if kind == "/dev/zero" else "FIFO (named pipe)") in e.value.reason


def test_batch_with_dev_zero_fifo_and_hostile_names_still_builds(faces, tmp_path):
    """`soulid create` on real photos named with a Latin-1 byte and an ANSI escape,
    plus /dev/zero and a FIFO: the Soul ID saves, each bad input has its reason,
    and names are printed escaped."""
    d = tmp_path / "in"
    d.mkdir()
    latin1 = os.path.join(os.fsencode(d), b"caf\xe9.jpg")  # not UTF-8
    shutil.copy(faces / "obama" / OBAMA[0], latin1)
    ansi = d / "\x1b[31mred\x1b[0m.jpg"
    shutil.copy(faces / "obama" / OBAMA[1], ansi)
    shutil.copy(faces / "obama" / OBAMA[2], d / "plain.jpg")
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    lib = tmp_path / "lib"
    t0 = time.monotonic()
    p = cli("--library", str(lib), "create", "--name", "batch", "--analyzer", "dlib",
            os.fsdecode(latin1), str(ansi), str(d / "plain.jpg"), "/dev/zero", str(fifo))
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    assert time.monotonic() - t0 < 120
    out = p.stdout.decode()  # valid UTF-8: nothing raw reached the terminal
    assert "\x1b" not in out and "\x1b" not in p.stderr.decode(errors="replace")
    assert "caf\\xe9.jpg" in out and "\\x1b[31mred\\x1b[0m.jpg" in out
    assert "character device" in out and "FIFO" in out
    soul = Library(lib).load("batch")
    assert sorted(ph.source for ph in soul.photos) == sorted(["caf\\xe9.jpg", "\\x1b[31mred\\x1b[0m.jpg", "plain.jpg"])
    assert cli("--library", str(lib), "show", "batch").returncode == 0


def test_safe_label_escapes_control_characters_and_undecodable_bytes():
    assert safe_label(os.fsdecode(b"caf\xe9.jpg")) == "caf\\xe9.jpg"
    assert safe_label("\x1b[2Jx\ty\n.jpg") == "\\x1b[2Jx\\x09y\\x0a.jpg"
    assert safe_label("a\u202eb.jpg") == "a\\u202eb.jpg"  # right-to-left override
    assert safe_label("Zoë 😀.jpg") == "Zoë 😀.jpg"
    assert safe_label(b"caf\xc3\xa9.jpg") == "café.jpg"


# ------------------------------------------------------------ folder scans
def test_folder_scan_lists_what_it_skipped_and_why(faces, tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    for n in OBAMA:
        shutil.copy(faces / "obama" / n, d / n)
    Image.new("RGB", (8, 8)).save(d / "anim.gif")
    os.mkfifo(d / "pipe.jpg")
    os.symlink("loop.jpg", d / "loop.jpg")
    os.symlink(tmp_path / "missing.jpg", d / "dangling.jpg")
    (d / "sub").mkdir()
    (d / "notes.txt").write_text("hi")
    (d / ".DS_Store").write_bytes(b"\0")
    scan = scan_photo_inputs([d])
    assert [p.name for p in scan.paths] == sorted(OBAMA)
    reasons = dict(scan.skipped)
    assert reasons == {
        "photos/anim.gif": "GIF is not supported (use JPEG, PNG or WebP)",
        "photos/dangling.jpg": "broken symlink (its target does not exist)",
        "photos/loop.jpg": "symlink loop",
        "photos/notes.txt": "not a photo file (extension '.txt')",
        "photos/pipe.jpg": "a FIFO (named pipe), not a photo file",
        "photos/sub": "subfolder not scanned (folders are read one level deep)",
    }
    res = create_soul_id([d], "scan", analyzer="dlib", workers=1)
    assert res.soul is not None and len(res.soul.photos) == 3
    assert {e["path"] for e in res.report["summary"]["skipped"]} == set(reasons)
    assert any("6 folder entries skipped" in w and "symlink loop" in w for w in res.warnings)


def test_node_folder_stays_inside_the_input_directory(faces, tmp_path):
    base = tmp_path / "input"
    (base / "me").mkdir(parents=True)
    shutil.copy(faces / "obama" / OBAMA[0], base / "me" / "inside.jpg")
    outside = tmp_path / "secret.jpg"
    shutil.copy(faces / "obama" / OBAMA[1], outside)
    os.symlink(outside, base / "me" / "escape.jpg")
    os.symlink(base / "me" / "inside.jpg", base / "me" / "alias.jpg")  # a link that stays inside is followed
    folder = paths.resolve_input_folder(base, "me")
    scan = scan_photo_inputs([folder], within=base)
    assert sorted(p.name for p in scan.paths) == ["alias.jpg", "inside.jpg"]
    assert dict(scan.skipped) == {"me/escape.jpg": "symlink pointing outside the allowed folder"}
    with pytest.raises(ValueError, match="NUL byte"):
        paths.resolve_input_folder(base, "me\x00x")
    with pytest.raises(ValueError, match="name too long"):
        paths.resolve_input_folder(base, "x" * 300)
    with pytest.raises(ValueError, match="outside ComfyUI's input directory"):
        paths.resolve_input_folder(base, "../")
    with pytest.raises(PhotoError, match="outside the allowed folder"):
        scan_photo_inputs([outside], within=base)


# ------------------------------------------------------------------- EXIF
def _jpeg_with_orientation(value: int) -> bytes:
    im = Image.new("RGB", (40, 20), (200, 100, 50))
    exif = Image.Exif()
    exif[0x0112] = value
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif)
    return buf.getvalue()


def test_exif_notes_say_what_was_really_done():
    ok = load_photo(_jpeg_with_orientation(6), label="six.jpg")
    assert (ok.width, ok.height) == (20, 40) and ok.notes == ["EXIF orientation 6 applied"]
    bad = load_photo(_jpeg_with_orientation(9), label="nine.jpg")
    assert (bad.width, bad.height) == (40, 20)
    assert bad.notes == ["EXIF orientation 9 is invalid (valid: 1-8); ignored, photo used as stored"]
    assert not any("applied" in n for n in bad.notes)


# ------------------------------------------------------------ memory
def _tree_rss_mb(pid: int) -> float:
    """Summed RSS of ``pid`` and all its descendants, from /proc."""
    kids: dict[int, list[int]] = {}
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                with open(f"/proc/{e}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(e))
            except (OSError, ValueError, IndexError):
                pass
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += kids.get(p, [])
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            pass
    return total / (1 << 20)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc to sum a process tree's memory")
def test_eight_16_bit_pngs_stay_under_1_5_gb_with_default_workers(faces, tmp_path):
    """Eight 36 MP 16-bit PNGs (~100 KB each, about 0.9 GB peak per photo before the
    fix) plus three real photos, `soulid create` with its default workers:
    the whole process tree stays under 1.5 GB."""
    d = tmp_path / "in"
    d.mkdir()
    a = np.full((6000, 6000), 30000, np.uint16)
    a[3000:4000, 3000:4000] = 60000
    Image.fromarray(a).save(d / "deep_0.png", compress_level=1)
    assert Image.open(d / "deep_0.png").mode == "I;16" and (d / "deep_0.png").stat().st_size < 2 << 20
    for i in range(1, 8):
        shutil.copy(d / "deep_0.png", d / f"deep_{i}.png")
    for n in OBAMA:
        shutil.copy(faces / "obama" / n, d / n)
    proc = subprocess.Popen([sys.executable, "-m", "soulid", "--library", str(tmp_path / "lib"), "create",
                             "--name", "deep", "--analyzer", "dlib", "--json", str(d)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = [0.0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _tree_rss_mb(proc.pid))
            time.sleep(0.05)

    t = threading.Thread(target=sample)
    t.start()
    try:
        out, err = proc.communicate(timeout=600)
    finally:
        stop.set()
        t.join()
    assert proc.returncode == 0, err.decode(errors="replace")
    report = json.loads(out)
    deep = [p for p in report["photos"] if "deep_" in p["path"]]
    assert len(deep) == 8 and all(p["rating"] == "rejected" for p in deep)  # flat grey: no face
    assert all(any("16-bit" in r for r in p["reasons"]) for p in deep)
    print(f"peak memory of the create process tree: {peak[0]:.0f} MB")
    assert peak[0] < 1536, f"peak {peak[0]:.0f} MB"


def test_decoding_memory_is_known_from_the_header():
    assert decode_bytes(7000, 7000, "I;16") == 7000 * 7000 * 7
    assert decode_bytes(100, 100, "RGB") == 100 * 100 * 9


# ---------------------------------------------- one sniffer, one converter
def test_one_sniffer_and_one_converter():
    from soulid.backends import media

    assert media.sniff is sniff
    assert sniff(b"\xff\xd8\xff\xe0" + bytes(8)) == "image/jpeg"
    assert sniff(b"\x89PNG\r\n\x1a\n" + bytes(4)) == "image/png"
    assert sniff(b"RIFF\0\0\0\0WEBP") == "image/webp"
    assert sniff(b"\0\0\0\x18ftypmp42") == "video/mp4"
    assert sniff(b"GIF89a" + bytes(6)) is None
    f = np.array([[-0.5, 0.0, 0.5, 1.0, 2.0]], np.float32)
    assert to_uint8(f).tolist() == [[0, 0, 128, 255, 255]]
    u = np.arange(256, dtype=np.uint8)
    assert np.array_equal(to_uint8(to_float01(u)), u)
    assert to_float01(u).dtype == np.float32 and to_float01(f).max() == 1.0
    repo = Path(__file__).resolve().parents[1]
    for sub in ("soul", "nodes", "backends", "cli"):
        for py in (repo / sub).rglob("*.py"):
            if py.name == "imageio.py":
                continue
            src = py.read_text()
            assert "* 255" not in src and "/ 255" not in src, f"{py}: a second float/uint8 converter"
            assert "\\x89PNG" not in src, f"{py}: a second magic-byte sniffer"
