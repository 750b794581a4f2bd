"""Persona LoRA bytes: every float dtype is accepted, hostile files are refused
by one validator (:mod:`soulid.soul.lorafile`) on every way in: ``soulid lora
attach``, a ``.soulid`` file read, a ``.char`` import. The CLI answers exit 2
with the reason, never a traceback."""
from __future__ import annotations

import json
import os
import struct
import threading
import time

import pytest

from soulid.cli import main
from soulid.soul import lorafile
from soulid.soul.create import create_soul_id
from soulid.soul.errors import SoulFileError
from soulid.soul.library import Library
from soulid.soul.soulfile import PersonaLoRA, SoulID

torch = pytest.importorskip("torch")


def _lora(dtype=torch.float32, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "lora_unet_input_blocks_4_1_proj_in.lora_up.weight": torch.randn(64, 4, generator=g).to(dtype),
        "lora_unet_input_blocks_4_1_proj_in.lora_down.weight": torch.randn(4, 64, generator=g).to(dtype),
        "lora_unet_input_blocks_4_1_proj_in.alpha": torch.tensor(4.0).to(dtype),
    }


def _st(sd: dict, metadata=None) -> bytes:
    from safetensors.torch import save

    return save(sd, metadata=metadata)


def _raw(header: dict, data: bytes = b"") -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


@pytest.fixture(scope="module")
def base_soul(faces) -> SoulID:
    return create_soul_id([faces / "obama" / "obama.jpg"], "anna", analyzer="dlib", workers=1).soul


@pytest.fixture
def anna(base_soul):
    Library().save(base_soul, name="anna", overwrite=True)
    return base_soul


def _cli(args, capsys) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(args)
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text and "SafetensorError" not in text, text
    return rc, text


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_every_float_dtype_attaches_and_round_trips(anna, tmp_path, capsys, dtype):
    f = tmp_path / "persona.safetensors"
    data = _st(_lora(dtype))
    f.write_bytes(data)
    rc, text = _cli(["lora", "attach", "anna", str(f), "--arch", "sdxl", "--trigger", "ohwx"], capsys)
    assert rc == 0, text
    back = Library().load("anna").lora("sdxl")
    assert back.data == data
    info = lorafile.check_lora_bytes(back.data)
    assert info.dtypes == [{torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}[dtype]]
    assert info.tensors["lora_unet_input_blocks_4_1_proj_in.lora_up.weight"].shape == (64, 4)


def _nan_bf16() -> bytes:
    sd = _lora(torch.bfloat16)
    sd["lora_unet_input_blocks_4_1_proj_in.lora_up.weight"][3, 1] = float("nan")
    return _st(sd)


def _inf_fp16() -> bytes:
    sd = _lora(torch.float16)
    sd["lora_unet_input_blocks_4_1_proj_in.lora_down.weight"][0, 0] = float("inf")
    return _st(sd)


HOSTILE = {
    "empty LoRA": (lambda: _st({}), "holds no tensors"),
    "empty file": (lambda: b"", "only 0 bytes"),
    "not safetensors": (lambda: b"PK\x03\x04 not a lora at all", "header length"),
    "truncated": (lambda: _st(_lora())[:-10], "truncated or padded"),
    "trailing bytes": (lambda: _st(_lora()) + b"\0" * 16, "truncated or padded"),
    "bad JSON": (lambda: struct.pack("<Q", 6) + b"{nope}", "not valid JSON"),
    "header too long": (lambda: struct.pack("<Q", 1 << 40) + b"{}", "header length"),
    "integer tensor": (lambda: _st({"x.lora_up.weight": torch.ones(2, 2, dtype=torch.int32)}), "must be a float type"),
    "offsets lie": (lambda: _raw({"x": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 8]}}, b"\0" * 8),
                    "do not hold a F32 tensor of shape"),
    "overlap": (lambda: _raw({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                              "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8), "overlap"),
    "duplicate key": (lambda: struct.pack("<Q", 2 * 60 + 1) + (b'{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},'
                                                                b'"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}'
                                                                ).ljust(121) + b"\0" * 4, "appears twice"),
    "NaN in bf16": (_nan_bf16, "NaN or infinite"),
    "Inf in fp16": (_inf_fp16, "NaN or infinite"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_lora_refused_by_attach_with_the_reason(anna, tmp_path, capsys, case):
    make, reason = HOSTILE[case]
    f = tmp_path / "bad.safetensors"
    f.write_bytes(make())
    rc, text = _cli(["lora", "attach", "anna", str(f), "--arch", "sdxl"], capsys)
    assert rc == 2 and reason in text, text
    assert Library().load("anna").loras == {}


def test_too_many_tensors_refused(anna, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(lorafile, "MAX_LORA_TENSORS", 2)
    f = tmp_path / "many.safetensors"
    f.write_bytes(_st(_lora()))
    rc, text = _cli(["lora", "attach", "anna", str(f), "--arch", "sdxl"], capsys)
    assert rc == 2 and "3 tensors, over the limit of 2" in text, text


def test_oversized_file_refused_before_reading(anna, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(lorafile, "MAX_LORA_BYTES", 100)
    f = tmp_path / "big.safetensors"
    f.write_bytes(_st(_lora()))
    rc, text = _cli(["lora", "attach", "anna", str(f), "--arch", "sdxl"], capsys)
    assert rc == 2 and "over the" in text and "limit" in text, text


@pytest.mark.parametrize("kind", ["fifo", "dev_zero"])
def test_fifo_and_device_refused_quickly(anna, tmp_path, capsys, kind):
    if kind == "fifo":
        path = tmp_path / "pipe.safetensors"
        os.mkfifo(path)
    else:
        path = "/dev/zero"
        if not os.path.exists(path):
            pytest.skip("no /dev/zero here")
    result = {}

    def run():
        result["rc"] = main(["lora", "attach", "anna", str(path), "--arch", "sdxl"])

    t0 = time.monotonic()
    th = threading.Thread(target=run, daemon=True)
    th.start()
    th.join(5)
    elapsed = time.monotonic() - t0
    if th.is_alive() and kind == "fifo":  # unblock the reader so the thread ends
        with open(path, "wb"):
            pass
    assert not th.is_alive() and elapsed < 2.0, f"{kind} blocked the reader ({elapsed:.1f} s)"
    err = capsys.readouterr().err
    assert result["rc"] == 2 and "not a regular file" in err and "Traceback" not in err, err


def _soul_with_raw_lora(soul: SoulID, data: bytes) -> SoulID:
    import copy

    s = copy.deepcopy(soul)
    s.loras = {"sdxl": PersonaLoRA("sdxl", data, {"rank": 4})}  # bypasses attach_lora's check, as a hostile writer
    return s


@pytest.mark.parametrize("case", ["NaN in bf16", "empty LoRA", "integer tensor"])
def test_hostile_lora_inside_a_soulid_file_refused_on_load(base_soul, tmp_path, capsys, case):
    make, reason = HOSTILE[case]
    f = tmp_path / "evil.soulid"
    f.write_bytes(_soul_with_raw_lora(base_soul, make()).to_bytes())
    with pytest.raises(SoulFileError, match=reason):
        SoulID.load(f)
    for args in (["lora", "list", str(f)], ["import", str(f)]):
        rc, text = _cli(args, capsys)
        assert rc == 2 and reason in text and "loras/sdxl.safetensors" in text, (args, text)
    assert Library().list() == []


def test_hostile_lora_inside_a_char_refused_on_import(base_soul, tmp_path, capsys):
    pytest.importorskip("omnichar_sdk", reason="omnichar-sdk is not installed")
    from soulid.soul import charfile

    path = tmp_path / "evil.char"
    charfile.export_char(_soul_with_raw_lora(base_soul, _nan_bf16()), path, k=1)
    rc, text = _cli(["char", "import", str(path), "--name", "evil"], capsys)
    assert rc == 2 and "NaN or infinite" in text, text
    assert Library().list() == []


def test_bf16_lora_inside_a_char_imports(base_soul, tmp_path, capsys):
    pytest.importorskip("omnichar_sdk", reason="omnichar-sdk is not installed")
    from soulid.soul import charfile

    data = _st(_lora(torch.bfloat16))
    s = _soul_with_raw_lora(base_soul, data)
    path = tmp_path / "ok.char"
    charfile.export_char(s, path, k=1)
    rc, text = _cli(["char", "import", str(path), "--name", "bee"], capsys)
    assert rc == 0, text
    assert Library().load("bee").lora("sdxl").data == data
