"""Omnichar ``.char`` interop (:mod:`soulid.soul.charfile`, ``soulid char``, ``soulid lora``)
on the real Obama photos: a round trip keeps the references, their order and the LoRA bytes."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from safetensors.numpy import save as st_save

from soulid.cli import main
from soulid.soul import charfile
from soulid.soul.create import create_soul_id
from soulid.soul.errors import SoulFileError
from soulid.soul.library import Library
from soulid.soul.qa import dhash
from soulid.soul.references import select_references

omnichar_sdk = pytest.importorskip("omnichar_sdk", reason="omnichar-sdk is not installed")


@pytest.fixture(scope="module")
def obama(faces):
    soul = create_soul_id([faces / "obama"], "obama", analyzer="dlib", workers=1).soul
    rng = np.random.default_rng(0)
    lora = st_save({"lora_unet_down_blocks_0_attn.lora_up.weight": rng.standard_normal((8, 4)).astype(np.float32),
                    "lora_unet_down_blocks_0_attn.lora_down.weight": rng.standard_normal((4, 8)).astype(np.float32)})
    soul.attach_lora("sdxl", lora, {"rank": 4, "trigger": "ohwx obama", "base_model": "sdxl-base-1.0"})
    return soul


def _hamming(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


def test_round_trip_keeps_references_order_description_and_lora(obama, tmp_path):
    path = tmp_path / "obama.char"
    res = charfile.export_char(obama, path, description="Barack Obama, 44th US president.")
    order, roles, _ = select_references(obama, len(obama.photos))
    assert [r["source"] for r in res["references"]] == [obama.photos[i].source for i in order]
    assert [r["role"] for r in res["references"]] == roles and roles[0] == "front"

    # Omnichar's own reader sees the references in that order, the description and the LoRA.
    char = omnichar_sdk.Character.open(path)
    assert [r.role for r in char.get_references()] == ["face"] * len(order)
    assert char.get_description() == "Barack Obama, 44th US president."
    assert char.get_lora("sdxl").bytes() == obama.loras["sdxl"].data

    back, contents = charfile.import_char(path, name="obama2", analyzer="dlib", workers=1)
    soul = back.soul
    assert soul is not None and soul.name == "obama2"
    # Same photos, same order: names carried over, and the pixels are the same pictures.
    assert [p.source for p in soul.photos] == [obama.photos[i].source for i in order]
    for new, i in zip(soul.photos, order):
        assert _hamming(dhash(new.rgb()), dhash(obama.photos[i].rgb())) <= 2
    assert [c[3] for c in contents.references] == roles
    # QA and analysis ran on the references: ratings, embeddings and a threshold exist.
    assert soul.primary_analyzer == "dlib" and soul.analyzer().embeddings.shape[0] == len(order)
    assert back.report["summary"]["accepted"] == len(order)
    assert soul.loras["sdxl"].data == obama.loras["sdxl"].data
    assert soul.loras["sdxl"].metadata["trigger"] == "ohwx obama"
    assert charfile.default_description(soul) == "Barack Obama, 44th US president."


def test_cli_round_trip(obama, tmp_path, capsys):
    Library().save(obama, overwrite=True)
    path = tmp_path / "o.char"
    assert main(["char", "export", "obama", str(path), "--k", "3", "--json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert [r["role"] for r in exported["references"]] == ["front", "three_quarter_left", "three_quarter_right"]
    assert main(["char", "export", "obama", str(path)]) == 2  # exists, no --overwrite
    capsys.readouterr()
    assert main(["char", "import", str(path), "--name", "obama_char", "--analyzer", "dlib", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["loras"] == ["sdxl"] and info["summary"]["accepted"] == 3
    soul = Library().load("obama_char")
    assert [p.source for p in soul.photos] == [r["source"] for r in exported["references"]]
    assert soul.lora("sdxl").data == obama.lora("sdxl").data


def test_cli_lora_attach_list_remove(obama, tmp_path, capsys):
    Library().save(obama, name="anna", overwrite=True)
    f = tmp_path / "flux_persona.safetensors"
    f.write_bytes(st_save({"double_blocks.0.img_attn.qkv.lora_A.weight": np.ones((2, 4), np.float32)}))
    assert main(["lora", "attach", "anna", str(f), "--arch", "flux", "--trigger", "ohwx"]) == 0
    capsys.readouterr()
    assert main(["lora", "list", "anna", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert set(rows) == {"sdxl", "flux"} and rows["flux"]["trigger"] == "ohwx"
    assert Library().load("anna").lora("flux").data == f.read_bytes()
    assert main(["lora", "remove", "anna", "flux"]) == 0
    assert set(Library().load("anna").loras) == {"sdxl"}
    assert main(["lora", "remove", "anna", "flux"]) == 2
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    assert main(["lora", "attach", "anna", str(bad), "--arch", "sdxl"]) == 2
    assert Library().load("anna").lora("sdxl").data == obama.lora("sdxl").data


def test_oversized_member_is_refused_before_reading(obama, tmp_path, monkeypatch):
    path = tmp_path / "o.char"
    charfile.export_char(obama, path, k=1)
    monkeypatch.setattr(charfile, "MAX_REFERENCE_BYTES", 16)
    with pytest.raises(SoulFileError, match=r"o.char: member 'refs/000.png' is [\d.]+ (MiB|bytes), over the 16 bytes limit"):
        charfile.read_char(path)


def test_not_a_char_file_is_refused(tmp_path):
    p = tmp_path / "x.char"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("manifest.json", json.dumps({"magic": "something else"}))
    with pytest.raises(charfile.CharInteropError, match=r"x.char: .*not a .char"):
        charfile.read_char(p)
    with pytest.raises(SoulFileError, match="missing.char: no such .char file"):
        charfile.read_char(tmp_path / "missing.char")
    bomb = tmp_path / "bomb.char"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", b"{}")
        z.writestr("refs/000.png", b"\0" * (8 << 20))
    with pytest.raises(SoulFileError, match="compression ratio"):
        charfile.read_char(bomb)
