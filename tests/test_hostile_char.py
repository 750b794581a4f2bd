"""Hostile ``.char`` files for ``soulid char import``: wrongly typed manifests,
and references or LoRA payloads that name one member many times.

Each file starts from a real export (one Obama fixture photo) whose
manifest is then rewritten. Peak memory is measured in a child process
(:mod:`child_memory`).
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from child_memory import read_peak, soulid_command
from PIL import Image
from safetensors.numpy import save as st_save

from soulid.cli import main
from soulid.soul import charfile
from soulid.soul.create import create_soul_id

pytest.importorskip("omnichar_sdk", reason="omnichar-sdk is not installed")
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def exported(faces, tmp_path_factory) -> tuple[dict, dict[str, bytes]]:
    """(manifest, {member: bytes}) of a real one-reference export."""
    soul = create_soul_id([faces / "obama" / "obama.jpg"], "obama", analyzer="dlib", workers=1).soul
    path = tmp_path_factory.mktemp("char") / "o.char"
    charfile.export_char(soul, path, k=1)
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    return json.loads(members["manifest.json"]), members


def write_char(path: Path, manifest_bytes: bytes, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("manifest.json", manifest_bytes)
        for n, data in members.items():
            if n != "manifest.json":
                z.writestr(n, data)
    return path


def with_fields(manifest: dict, **fields) -> bytes:
    return json.dumps({**manifest, **fields}, separators=(",", ":")).encode()  # the SDK's signature prefix


def env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO.parent), os.environ.get("PYTHONPATH", "")])}


BAD = {
    "refs_int": {"refs": 5},
    "refs_of_ints": {"refs": [1, 2]},
    "ref_path_int": {"refs": [{"path": 7}]},
    "text_str": {"text": "xyz"},
    "text_path_list": {"text": {"path": ["a"]}},
    "payloads_list": {"payloads": [1, 2]},
    "payload_files_int": {"payloads": {"sdxl-lora": {"files": 5}}},
    "created_at_text": {"created_at": "yesterday"},
    "format_version_text": {"format_version": "x"},
    "format_version_null": {"format_version": None},
    "apply_list": {"apply": []},
    "hints_dict": {"hints": {"a": 1}},
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_wrongly_typed_manifests_exit_2_without_a_traceback(exported, tmp_path, capsys, case):
    manifest, members = exported
    path = write_char(tmp_path / f"{case}.char", with_fields(manifest, **BAD[case]), members)
    rc = main(["--library", str(tmp_path / "lib"), "char", "import", str(path)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and "manifest field" in err and f"{case}.char" in err, err


@pytest.mark.parametrize("raw", [
    lambda m: with_fields(m)[:-1] + b', "format_version": 1e400}',
    lambda m: with_fields(m)[:-1] + b', "created_at": ' + b"9" * 5000 + b"}",
    lambda m: with_fields(m)[:-1] + b', "deep": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
], ids=["1e400", "5000_digits", "100k_deep"])
def test_unparseable_manifests_exit_2_without_a_traceback(exported, tmp_path, raw):
    manifest, members = exported
    path = write_char(tmp_path / "x.char", raw(manifest), members)
    p = subprocess.run(["python", "-m", "soulid", "--library", str(tmp_path / "lib"), "char", "import", str(path)],
                       capture_output=True, text=True, env=env(), timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "x.char: manifest" in p.stderr, p.stderr[-2000:]


def test_twenty_references_naming_one_7000px_png_stay_under_1_gb(exported, tmp_path):
    manifest, members = exported
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (70, 70, 3), dtype=np.uint8)
    big = Image.fromarray(small).resize((7000, 7000), Image.NEAREST)
    buf = io.BytesIO()
    big.save(buf, "PNG", compress_level=9)
    members = {**members, "refs/big.png": buf.getvalue()}
    refs = [{"path": "refs/big.png", "role": "face"} for _ in range(20)]
    path = write_char(tmp_path / "amp.char", with_fields(manifest, refs=refs), members)
    peak = tmp_path / "peak"
    p = subprocess.run(soulid_command(peak, ["--library", tmp_path / "lib", "char", "import", path]),
                       capture_output=True, text=True, env=env(), timeout=600)
    rc, mb = read_peak(peak)
    assert rc == 2 and "memory budget" in p.stderr and "named" in p.stderr, p.stderr[-2000:]
    assert "Traceback" not in p.stderr
    print(f"peak {mb:.0f} MB")
    assert mb < 1024, f"peak {mb:.0f} MB"


def test_a_hundred_payloads_naming_one_40_mb_lora_stay_under_1_gb(exported, tmp_path):
    manifest, members = exported
    lora = st_save({"lora_unet_x.lora_up.weight": np.full((10240, 1024), 0.01, np.float32)})
    assert len(lora) > 38 << 20
    members = {**members, "payloads/big.safetensors": lora}
    payloads = {f"x{i}-lora": {"type": "lora", "files": [{"path": "payloads/big.safetensors"}],
                               "soulid": {"arch": "sdxl", "metadata": {}}} for i in range(100)}
    path = write_char(tmp_path / "pay.char", with_fields(manifest, payloads=payloads), members)
    peak = tmp_path / "peak"
    p = subprocess.run(soulid_command(peak, ["--library", tmp_path / "lib", "char", "import", path]),
                       capture_output=True, text=True, env=env(), timeout=600)
    rc, mb = read_peak(peak)
    assert "Traceback" not in p.stderr, p.stderr[-2000:]
    print(f"peak {mb:.0f} MB")
    assert mb < 1024, f"peak {mb:.0f} MB"
    assert p.stderr.count("a second LoRA for sdxl") == 99 or rc == 2, p.stderr[-2000:]


def test_export_refuses_a_description_import_would_refuse(tmp_path, faces):
    soul = create_soul_id([faces / "obama" / "obama.jpg"], "obama", analyzer="dlib", workers=1).soul
    with pytest.raises(charfile.CharInteropError, match="over the 1048576 byte limit"):
        charfile.export_char(soul, tmp_path / "big.char", description="x" * (2 << 20))
    assert not (tmp_path / "big.char").exists()
    charfile.export_char(soul, tmp_path / "ok.char", description="y" * (1 << 20))
    assert charfile.read_char(tmp_path / "ok.char").description == "y" * (1 << 20)
