"""Hostile ``--base`` values for local training, and terminal escapes in what
servers and LoRA metadata say: one clear line, exit 2, no traceback, no raw
escape reaching the terminal."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from fake_comfy import FakeComfy
from safetensors.numpy import save as st_save

from soulid.cli import main
from soulid.soul.create import create_soul_id
from soulid.soul.library import Library

ESC = "\x1b]0;pwned\x07\x1b[31mRED\u202e"


@pytest.fixture(scope="module")
def library(faces, tmp_path_factory) -> Path:
    lib = tmp_path_factory.mktemp("lib")
    soul = create_soul_id([faces / "obama" / "obama.jpg"], "obama", analyzer="dlib", workers=1).soul
    lora = st_save({"lora_unet_a.lora_up.weight": np.ones((4, 2), np.float32),
                    "lora_unet_a.lora_down.weight": np.ones((2, 4), np.float32)})
    soul.attach_lora("sdxl", lora, {"trigger": ESC, "base_model": "x" + ESC})
    Library(lib).save(soul)
    return lib


def bases(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo.safetensors"
    os.mkfifo(fifo)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "model_index.json").write_text("{not json")
    empty = tmp_path / "empty"
    empty.mkdir()
    fifo_dir = tmp_path / "fifo_index"
    fifo_dir.mkdir()
    os.mkfifo(fifo_dir / "model_index.json")
    return {"fifo": fifo, "junk_index": junk, "no_index": empty, "fifo_index": fifo_dir}


@pytest.mark.parametrize("case", ["fifo", "junk_index", "no_index", "fifo_index"])
def test_a_bad_training_base_is_one_clear_line(library, tmp_path, capsys, case):
    pytest.importorskip("diffusers")
    base = bases(tmp_path)[case]
    rc = main(["--library", str(library), "train", "obama", "--provider", "local", "--base", str(base),
               "--steps", "2", "--device", "cpu", "--check-images", "0"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and f"--base {base}" in err and "missing" not in err, err
    assert len([line for line in err.splitlines() if line.startswith("soulid:")]) == 1, err


def test_lora_trigger_metadata_is_printed_escaped(library, capsys):
    assert main(["--library", str(library), "lora", "list", "obama"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out
    assert "\\x1b[31mRED" in out


def test_server_text_is_printed_escaped(tmp_path, capsys):
    graph = {"1": {"class_type": "SoulIDLoad", "inputs": {"name": "my_soul"}},
             "2": {"class_type": "SoulIDGenerate", "inputs": {"soul_id": ["1", 0], "prompt": "p", "seed": 5}},
             "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "s"}}}
    (tmp_path / "wf.json").write_text(json.dumps(graph))

    def hostile(pid, entry):
        entry = json.loads(json.dumps(entry))
        entry["outputs"]["2"] = {"text": [f"report {ESC}\nsecond line"]}
        return entry

    with FakeComfy(polls_pending=0, polls_running=0, history_override=hostile) as fake:
        rc = main(["run", str(tmp_path / "wf.json"), "--server", "native+" + fake.url, "--out", str(tmp_path / "o"),
                   "--timeout", "60"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "\x1b" not in cap.out + cap.err and "\u202e" not in cap.out + cap.err
    assert "report \\x1b]0;pwned" in cap.out and "second line" in cap.out
