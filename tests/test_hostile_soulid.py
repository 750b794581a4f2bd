"""Hostile ``.soulid`` files, each built by the test itself (issue 12, item 1).

Every one is refused by ``soulid import`` (a subprocess, as users run it)
with exit 2 and a one-line message naming the member or manifest field; no
traceback; the bombs stay under 300 MB of peak memory (the child's own
``VmHWM`` after its exec, see :mod:`child_memory`: ``ru_maxrss`` would carry
the test process's high-water mark); and the library is byte-for-byte
unchanged afterwards.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import subprocess
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from soulid.soul.create import create_soul_id
from soulid.soul.errors import SoulFileError
from soulid.soul.library import Library
from soulid.soul.soulfile import SoulID

GiB = 1 << 30
PEAK_LIMIT_MB = 300


# ------------------------------------------------------------------ builders
@pytest.fixture(scope="module")
def good(faces) -> bytes:
    """A real Soul ID (3 Obama photos, dlib) with a log entry and its thumbnail."""
    from soulid.soul import charlog

    res = create_soul_id([str(faces / "obama" / n) for n in ("obama.jpg", "obama3.jpg", "obama4.jpg")],
                         "obama", analyzer="dlib", workers=1)
    soul = res.soul
    charlog.append_entry(soul, "portrait", image=soul.photos[0].rgb(), backend="local", model="sdxl")
    return soul.to_bytes()


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {n: z.read(n) for n in z.namelist()}


def manifest_of(data: bytes) -> dict:
    return json.loads(members(data)["manifest.json"])


def stored_zip(entries: dict[str, bytes] | list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        for n, d in (entries.items() if isinstance(entries, dict) else entries):
            z.writestr(n, d)
    return buf.getvalue()


def with_manifest(good: bytes, change) -> bytes:
    """``good`` with its manifest replaced: ``change(manifest) -> new manifest`` (or raw bytes)."""
    ms = members(good)
    new = change(json.loads(ms["manifest.json"]))
    ms["manifest.json"] = new if isinstance(new, bytes) else json.dumps(new).encode()
    return stored_zip(ms)


def with_tensors(good: bytes, change) -> bytes:
    ms = members(good)
    t = dict(st_load(ms["embeddings.safetensors"]))
    change(t)
    ms["embeddings.safetensors"] = st_save(t)
    return stored_zip(ms)


def deflate_zeros(size: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``size`` zero bytes (a multiple of 1 MiB), and its CRC-32,
    built in about a second: full flushes make every 1 MiB block compress to the same bytes."""
    chunk = bytes(1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    n = size >> 20
    crc = 0
    for _ in range(n):
        crc = zlib.crc32(chunk, crc)
    return block * n + zlib.compressobj(9, zlib.DEFLATED, -15).flush(), crc


def zip_with_bomb(entries: dict[str, bytes], bomb_name: str, bomb_size: int = GiB) -> bytes:
    """A zip (written by hand) holding ``entries`` stored and ``bomb_name``
    deflated: ~1 MB on disk that inflates to ``bomb_size`` bytes."""
    out = io.BytesIO()
    central = []
    items = [(n, d, zlib.crc32(d), len(d), 0) for n, d in entries.items()]
    comp, crc = deflate_zeros(bomb_size)
    items.append((bomb_name, comp, crc, bomb_size, 8))
    for name, data, crc, usize, method in items:
        off = out.tell()
        nb = name.encode()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0, crc, len(data), usize, len(nb), 0))
        out.write(nb)
        out.write(data)
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0, crc, len(data), usize,
                                   len(nb), 0, 0, 0, 0, 0, off) + nb)
    cd_off = out.tell()
    cd = b"".join(central)
    out.write(cd)
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(items), len(items), len(cd), cd_off, 0))
    return out.getvalue()


def many_members(good: bytes, n: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        for name, d in members(good).items():
            z.writestr(name, d)
        for i in range(n):
            z.writestr(f"thumbs/x{i}.jpg", b"")
    return buf.getvalue()


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _set_threshold(v):
    def change(m):
        m["analyzers"]["dlib"]["threshold"] = v
        return m
    return change


def _raw_threshold(token: str):
    def change(m):
        m["analyzers"]["dlib"]["threshold"] = "__T__"
        return json.dumps(m).replace('"__T__"', token).encode()
    return change


def _dict_set(key, value):
    def change(m):
        m[key] = value
        return m
    return change


def _emb(fn):
    def change(t):
        t["dlib.embeddings"] = fn(t["dlib.embeddings"])
    return change


# Each case: id -> (builder(good) -> bytes, expected message fragment, memory-checked)
CASES = {
    "zip_bomb_photo": (lambda g: zip_with_bomb({k: v for k, v in members(g).items() if k != "photos/000.jpg"},
                                               "photos/000.jpg"), "zip-bomb guard", True),
    "zip_bomb_lora_ratio": (lambda g: zip_with_bomb(members(g), "loras/sdxl.safetensors"), "compression ratio", True),
    "zip_bomb_unknown_member": (lambda g: zip_with_bomb(members(g), "extra/blob.bin"), "'extra/blob.bin' inflates", True),
    "photo_reference_amplification": (
        lambda g: stored_zip({**members(with_manifest(g, lambda m: {
            **m, "photos": [{**m["photos"][0], "file": "photos/000.jpg"} for _ in range(1000)]})),
            "photos/000.jpg": os.urandom(8 << 20)}),
        "already used by photos[0]", True),
    "50000_members": (lambda g: many_members(g, 50_000), "members, over the", True),
    "created_yesterday": (lambda g: with_manifest(g, _dict_set("created", "yesterday")), "'created'", False),
    "created_10_400": (lambda g: with_manifest(g, _dict_set("created", 10**400)), "'created'", False),
    "log_is_5": (lambda g: with_manifest(g, _dict_set("log", 5)), "'log'", False),
    "remote_ids_evil": (lambda g: with_manifest(g, _dict_set("remote_ids", [{"evil": 1}])), "'remote_ids[0]", False),
    "manifest_is_a_list": (lambda g: with_manifest(g, lambda m: [m]), "must be a JSON object", False),
    "deep_array_100000": (lambda g: with_manifest(
        g, lambda m: json.dumps({**m, "qa_report": "__D__"}).encode().replace(b'"__D__"', nested(100_000))),
        "nested 100001 levels deep", True),
    "no_analyzers": (lambda g: with_manifest(g, _dict_set("analyzers", {})), "'analyzers'", False),
    "zero_embeddings": (lambda g: with_tensors(g, _emb(lambda e: e[:0])), "[N >= 1, 128]", False),
    "all_zero_embedding_rows": (lambda g: with_tensors(g, _emb(lambda e: np.zeros_like(e))), "unit vectors", False),
    "threshold_nan": (lambda g: with_manifest(g, _raw_threshold("NaN")), "analyzers.dlib.threshold", False),
    "threshold_infinity": (lambda g: with_manifest(g, _raw_threshold("-Infinity")), "analyzers.dlib.threshold", False),
    "threshold_huge": (lambda g: with_manifest(g, _set_threshold(1e300)), "analyzers.dlib.threshold", False),
    "threshold_very_negative": (lambda g: with_manifest(g, _set_threshold(-1e300)), "analyzers.dlib.threshold", False),
    "threshold_below_minus_one": (lambda g: with_manifest(g, _set_threshold(-1.5)), "analyzers.dlib.threshold", False),
    "threshold_a_string": (lambda g: with_manifest(g, _set_threshold("0.5")), "analyzers.dlib.threshold", False),
    "embeddings_3d": (lambda g: with_tensors(g, _emb(lambda e: e[:, None, :].copy())), "2-D float32", False),
    "embeddings_int8": (lambda g: with_tensors(g, _emb(lambda e: (e * 100).astype(np.int8))), "float32", False),
    "embeddings_wrong_width": (lambda g: with_tensors(g, _emb(lambda e: np.ascontiguousarray(e[:, :64]))), "[N >= 1, 128]", False),
    "format_version_true": (lambda g: with_manifest(g, _dict_set("format_version", True)), "format_version", False),
    "nan_deep_in_report": (lambda g: with_manifest(
        g, lambda m: json.dumps({**m, "qa_report": {"summary": {"threshold": "__N__"}}}).encode().replace(b'"__N__"', b"NaN")),
        "qa_report.summary.threshold", False),
    "photo_member_outside_photos": (lambda g: with_manifest(
        g, lambda m: {**m, "photos": [{**m["photos"][0], "file": "../../etc/passwd"}]}), "photos[0].file", False),
    "keypoint_photo_out_of_range": (lambda g: with_manifest(
        g, lambda m: {**m, "keypoint_reference": {**m["keypoint_reference"], "photo": 99}}), "keypoint_reference.photo", False),
    "not_a_zip": (lambda g: b"hello, not a zip", "not a zip", False),
}


# ------------------------------------------------------------------ running
def snapshot(lib: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(lib.iterdir()) if p.is_file()}


def run_cli(args: list[str], tmp: Path, timeout: float = 120.0) -> tuple[int, str, str, float, float]:
    """Run ``soulid ARGS``; returns ``(exit code, stdout, stderr, seconds, peak RSS MB)``.
    The peak is the child's own ``VmHWM`` after its exec (:mod:`child_memory`)."""
    from child_memory import read_peak, soulid_command

    out, err, peak = tmp / "stdout.txt", tmp / "stderr.txt", tmp / "peak.txt"
    t0 = time.monotonic()
    with open(out, "wb") as fo, open(err, "wb") as fe:
        p = subprocess.Popen(soulid_command(peak, args), stdout=fo, stderr=fe)
        deadline = t0 + timeout
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                p.kill()
                os.wait4(p.pid, 0)
                pytest.fail(f"soulid {' '.join(args)} did not finish in {timeout} s")
            time.sleep(0.02)
    p.returncode = os.waitstatus_to_exitcode(status)
    secs = time.monotonic() - t0
    peak_mb = read_peak(peak)[1] if peak.exists() else float("inf")
    return p.returncode, out.read_text(errors="replace"), err.read_text(errors="replace"), secs, peak_mb


@pytest.fixture(scope="module")
def library(good, tmp_path_factory) -> Path:
    lib = tmp_path_factory.mktemp("lib")
    src = lib.parent / "good.soulid"
    src.write_bytes(good)
    Library(lib).import_file(src, name="existing")
    return lib


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_soulid_is_refused_with_exit_2(case, good, library, tmp_path):
    build, expected, check_memory = CASES[case]
    f = tmp_path / f"{case}.soulid"
    f.write_bytes(build(good))
    before = snapshot(library)
    code, out, err, secs, peak_mb = run_cli(["--library", str(library), "import", str(f), "--name", "imported"], tmp_path)
    assert code == 2, f"{case}: exit {code}\nstdout: {out}\nstderr: {err}"
    assert "Traceback" not in err and err.startswith("soulid: ") and len(err.strip().splitlines()) == 1, err
    assert expected in err, f"{case}: {err!r} does not name {expected!r}"
    assert snapshot(library) == before, f"{case}: the library changed"
    if check_memory:
        assert peak_mb < PEAK_LIMIT_MB, f"{case}: peak memory {peak_mb:.0f} MB"


def test_the_unmodified_file_imports(good, library, tmp_path):
    """The control: the same builder with no change imports (exit 0)."""
    f = tmp_path / "ok.soulid"
    f.write_bytes(stored_zip(members(good)))
    code, out, err, _, _ = run_cli(["--library", str(library), "import", str(f), "--name", "control"], tmp_path)
    assert code == 0, err
    assert "control" in Library(library).list()
    Library(library).delete("control")


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_import_of_a_device_or_fifo_is_refused_at_once(special, library, tmp_path):
    path = special
    if special == "fifo":
        path = str(tmp_path / "pipe.soulid")
        os.mkfifo(path)
    before = snapshot(library)
    code, out, err, secs, peak_mb = run_cli(["--library", str(library), "import", path], tmp_path, timeout=20)
    assert code == 2 and "Traceback" not in err, err
    assert ("character device" if special == "/dev/zero" else "FIFO") in err
    assert secs < 10 and peak_mb < PEAK_LIMIT_MB  # the interpreter's start-up is most of it
    assert snapshot(library) == before


def test_device_and_fifo_refusal_takes_under_2_s(tmp_path):
    fifo = tmp_path / "p.soulid"
    os.mkfifo(fifo)
    for path in ("/dev/zero", fifo):
        t0 = time.monotonic()
        with pytest.raises(SoulFileError, match="not a regular file"):
            SoulID.load(path)
        assert time.monotonic() - t0 < 2.0


def test_unknown_members_are_dropped_and_referenced_ones_kept(good, tmp_path):
    ms = members(good)
    m = json.loads(ms["manifest.json"])
    thumb = m["log"][0]["thumb"]
    assert thumb in ms
    ms.update({"evil.exe": b"MZ" + os.urandom(100), "thumbs/orphan.jpg": ms[thumb], "photos/999.jpg": ms["photos/000.jpg"]})
    f = tmp_path / "extra.soulid"
    f.write_bytes(stored_zip(ms))
    lib = Library(tmp_path / "lib")
    name = lib.import_file(f)
    with zipfile.ZipFile(lib.path(name)) as z:
        kept = set(z.namelist())
    assert "evil.exe" not in kept and "thumbs/orphan.jpg" not in kept and "photos/999.jpg" not in kept
    assert thumb in kept and {"manifest.json", "embeddings.safetensors", "photos/000.jpg"} <= kept
    exported = lib.export(name, tmp_path / "out.soulid")
    with zipfile.ZipFile(exported) as z:
        assert set(z.namelist()) == kept


def test_legitimate_extremes_still_load(good):
    """A 64-bit seed in the log, an ISO date, thresholds at the ends of the range."""
    def change(m):
        m["log"][0]["seed"] = 2**64 - 1
        m["created"] = "2026-11-28T12:00:00+00:00"
        m["analyzers"]["dlib"]["threshold"] = -1
        return m
    soul = SoulID.from_bytes(with_manifest(good, change))
    assert soul.log[0]["seed"] == 2**64 - 1 and soul.analyzer().threshold == -1.0
    assert soul.created == 1795867200.0


def test_duplicate_member_names_are_refused(good):
    ms = list(members(good).items())
    with pytest.warns(UserWarning):  # zipfile warns about the duplicate it writes
        data = stored_zip(ms + [("photos/000.jpg", b"other")])
    with pytest.raises(SoulFileError, match="appears twice"):
        SoulID.from_bytes(data)


def test_lora_members_are_checked_and_kept(good):
    from safetensors.numpy import save

    soul = SoulID.from_bytes(good)
    lora = save({"lora_unet_x.lora_down.weight": np.ones((4, 8), np.float32)})
    soul.attach_lora("sdxl", lora, {"rank": 4})
    data = soul.to_bytes()
    back = SoulID.from_bytes(data)
    assert back.lora("sdxl").data == lora and back.lora("sdxl").metadata["rank"] == 4
    ms = members(data)
    ms["loras/sdxl.safetensors"] = lora[:-1] + b"\x00"
    with pytest.raises(SoulFileError, match="does not match its sha256"):
        SoulID.from_bytes(stored_zip(ms))
