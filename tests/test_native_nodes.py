"""Soul ID References, Drift Guard (pick best) and the .char nodes, in-process on real photos.

Needs ComfyUI (``$COMFYUI_PATH``); skipped otherwise, saying why.
"""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from comfy_inprocess import comfy_modules, need_comfy
from soulid.soul.create import create_soul_id
from soulid.soul.imageio import downscale, load_photo

need_comfy()
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def cui():
    with comfy_modules():
        import folder_paths

        from soulid.nodes import convert, native

        yield type("CUI", (), {"fp": folder_paths, "nodes": native, "convert": convert})


@pytest.fixture(scope="module")
def obama(faces):
    return create_soul_id([faces / "obama"], "obama", analyzer="dlib", workers=1).soul


def test_references_node_outputs(cui, obama):
    out = cui.nodes.SoulIDReferences.execute(soul_id=obama, k=3, size=256, crop="head", mode="best_k")
    images, roles, im1, im2, im3, report = out.args
    assert images.dtype == torch.float32 and tuple(images.shape) == (3, 256, 256, 3)
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0 and float(images.std()) > 0.05
    assert roles == ["front", "three_quarter_left", "three_quarter_right"]
    for i, single in enumerate((im1, im2, im3)):
        assert tuple(single.shape) == (1, 256, 256, 3) and torch.equal(single[0], images[i])
    assert [r["role"] for r in json.loads(report)["references"]] == roles
    # Fewer references than numbered slots: the last one repeats.
    one = cui.nodes.SoulIDReferences.execute(soul_id=obama, k=1, size=128, crop="face", mode="best_k").args
    assert tuple(one[0].shape) == (1, 128, 128, 3) and torch.equal(one[4], one[2])
    allp = cui.nodes.SoulIDReferences.execute(soul_id=obama, k=1, size=128, crop="portrait", mode="all_photos").args
    assert tuple(allp[0].shape) == (len(obama.photos), 128, 96, 3) and len(allp[1]) == len(obama.photos)
    schema = cui.nodes.SoulIDReferences.GET_NODE_INFO_V1()
    assert schema["output"] == ["IMAGE", "STRING", "IMAGE", "IMAGE", "IMAGE", "STRING"]
    assert schema["output_is_list"] == [False, True, False, False, False, False]


def _batch(cui, paths, side=384):
    imgs = []
    for p in paths:
        rgb = downscale(load_photo(p).rgb, side)
        canvas = np.zeros((side, side, 3), np.uint8)
        canvas[: rgb.shape[0], : rgb.shape[1]] = rgb
        imgs.append(canvas)
    return cui.convert.np_to_image(np.stack(imgs))


def test_pick_best_keeps_the_passing_face(cui, faces):
    obama = create_soul_id([faces / "obama" / n for n in ("obama.jpg", "obama2.jpg", "obama4.jpg", "obama-1080p.jpg")],
                           "obama", analyzer="dlib", workers=1).soul
    # Candidates: another person, a held-out photo of the same person, a blank image.
    batch = _batch(cui, [faces / "biden" / "biden.jpg", faces / "obama" / "obama3.jpg"])
    batch = torch.cat([batch, torch.full((1, 384, 384, 3), 0.5)])
    image, passed, sim, index, report = cui.nodes.SoulIDDriftGuardPickBest.execute(
        soul_id=obama, images=batch, on_fail="return_best").args
    assert index == 1 and passed is True and sim > obama.analyzer().threshold
    assert torch.equal(image[0], batch[1])
    rep = json.loads(report)
    assert [e["passed"] for e in rep["entries"]] == [False, True, False]
    # Without the passing candidate: the best is returned flagged, or the run stops.
    others = batch[[0, 2]]
    assert cui.nodes.SoulIDDriftGuardPickBest.execute(soul_id=obama, images=others,
                                                      on_fail="return_best").args[1] is False
    with pytest.raises(Exception, match="none of 2 image"):
        cui.nodes.SoulIDDriftGuardPickBest.execute(soul_id=obama, images=others, on_fail="error")


def test_char_nodes_round_trip(cui, obama, tmp_path):
    old_in, old_out = cui.fp.get_input_directory(), cui.fp.get_output_directory()
    cui.fp.set_input_directory(str(tmp_path / "in"))
    cui.fp.set_output_directory(str(tmp_path / "out"))
    (tmp_path / "in").mkdir()
    try:
        path = cui.nodes.SoulIDCharExport.execute(soul_id=obama, filename="", k=3, description="",
                                                  overwrite=True).args[0]
        assert path == str(tmp_path / "out" / "soulid" / "obama.char")
        (tmp_path / "in" / "obama.char").write_bytes(open(path, "rb").read())
        soul, sheet, report = cui.nodes.SoulIDCharImport.execute(file="obama.char", name="from_char",
                                                                 analyzer="dlib").args
        assert soul.name == "from_char" and len(soul.photos) == 3
        assert tuple(sheet.shape)[0] == 1 and json.loads(report)["summary"]["accepted"] == 3
        with pytest.raises(Exception, match="outside ComfyUI's input directory"):
            cui.nodes.SoulIDCharImport.execute(file="../out/soulid/obama.char", name="", analyzer="dlib")
    finally:
        cui.fp.set_input_directory(old_in)
        cui.fp.set_output_directory(old_out)


def test_native_and_lora_nodes_never_import_diffusers(cui):
    """Loading our native node modules pulls in no diffusers / pipelines code."""
    import subprocess

    code = ("import os, sys; sys.path.append(os.environ['COMFYUI_PATH'])\n"
            "from comfy.cli_args import args; args.cpu = True\n"
            "import soulid.nodes.native, soulid.nodes.lora\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'diffusers' or 'pipelines' in m)\n"
            "print(bad)")
    import os

    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "COMFYUI_PATH": os.environ.get("COMFYUI_PATH", "")})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"
