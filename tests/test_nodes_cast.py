"""Soul ID From Images inside ComfyUI (in-process, ``$COMFYUI_PATH``): an
IMAGE batch of real fixture photos becomes a Soul ID with origin "cast"; a
batch with another person's photo fails naming that view."""
from __future__ import annotations

import json

import numpy as np
import pytest

from comfy_inprocess import comfy_modules, need_comfy
from soulid.soul.cast import NotOnePerson
from soulid.soul.imageio import downscale, load_photo
from soulid.soul.soulfile import SoulID
from standin.fixtures import *  # noqa: F401,F403
from standin.fixtures import stats

need_comfy()
torch = pytest.importorskip("torch", reason="ComfyUI's IMAGE type is a torch tensor")


@pytest.fixture(scope="module")
def cui():
    with comfy_modules():
        from soulid.nodes import cast, convert

        yield cast, convert


def _batch(convert, faces, rels, side=512):
    out = []
    for r in rels:
        rgb = downscale(load_photo(faces / r).rgb, side)
        canvas = np.full((side, side, 3), 128, np.uint8)
        canvas[: rgb.shape[0], : rgb.shape[1]] = rgb
        out.append(canvas)
    return convert.np_to_image(np.stack(out))


def test_from_images_locks_a_batch_of_one_person(cui, faces):
    cast, convert = cui
    images = _batch(convert, faces, ["obama/obama.jpg", "obama/obama4.jpg", "obama/obama2.jpg"])
    assert images.dtype == torch.float32 and images.shape[0] == 3
    out = cast.SoulIDFromImages.execute(images=images, name="hero", roles="front, three_quarter_left, "
                                        "three_quarter_right", analyzer="dlib", prompt="a statesman",
                                        notes="soft key light from the left")
    soul, sheet, report = out.args
    assert isinstance(soul, SoulID) and soul.origin == "cast" and len(soul.photos) == 3
    assert [p.source for p in soul.photos] == ["front.png", "three_quarter_left.png", "three_quarter_right.png"]
    assert soul.cast["prompt"] == "a statesman" and soul.notes[0]["text"] == "soft key light from the left"
    rep = json.loads(report)
    assert rep["check"]["one_person"] and len(rep["check"]["similarity"]["cosine"]) == 3
    assert sheet.ndim == 4 and sheet.shape[0] == 1 and float(sheet.std()) > 0.05


def test_from_images_names_the_other_person(cui, faces):
    cast, convert = cui
    images = _batch(convert, faces, ["obama/obama.jpg", "kit_harington/kit1.jpeg", "obama/obama2.jpg"])
    with pytest.raises(NotOnePerson, match=r"3/4 left view is not the same person: similarity 0\.\d{3}"):
        cast.SoulIDFromImages.execute(images=images, name="hero", roles="", analyzer="dlib")
    with pytest.raises(Exception, match="3 images but 2 roles"):
        cast.SoulIDFromImages.execute(images=images, name="hero", roles="front, profile", analyzer="dlib")


def test_cast_node_against_the_standin(cui, cast_mode):
    import asyncio

    cast, _ = cui
    out = asyncio.run(cast.SoulIDCast.execute(prompt="a tall man in his fifties, short grey hair", name="hero",
                                              backend="higgsfield", view_count=4, attempts=2, seed=11, analyzer="dlib",
                                              max_usd=1.0, new_run=False, notes="rim light works"))
    soul, views, report = out.args
    assert soul.origin == "cast" and len(soul.photos) == 4 and soul.notes[0]["text"] == "rim light works"
    assert views.shape[0] == 4 and views.dtype == torch.float32
    rep = json.loads(report)
    assert rep["cast"]["seeds"]["front"] == 11 and rep["check"]["one_person"]
    assert sum(stats(cast_mode)["paid"].values()) == 4
    # Run again: the same paid requests, reused from the ledger
    asyncio.run(cast.SoulIDCast.execute(prompt="a tall man in his fifties, short grey hair", name="hero",
                                        backend="higgsfield", view_count=4, attempts=2, seed=11, analyzer="dlib",
                                        max_usd=1.0, new_run=False))
    assert sum(stats(cast_mode)["paid"].values()) == 4
