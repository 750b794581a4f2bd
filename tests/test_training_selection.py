"""Remote training sends a chosen set: the best N photos by QA rank and pose
coverage, N from the provider's advice per model version (Soul 2: 8-12 ideal),
``--max-photos`` to override; ``--json`` lists every photo sent or left out and
why. A 40+-photo Soul ID of real fixture photos (Obama, four shots, cropped and
mirrored into distinct framings), trained against the stand-in."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from soulid.backends.remote_training import TRAINING_SET, choose_training_photos
from soulid.cli import main
from soulid.soul.imageio import downscale, load_photo
from soulid.soul.library import Library
from standin.fixtures import *  # noqa: F401,F403
from standin.fixtures import stats

SHOTS = ("obama.jpg", "obama2.jpg", "obama3.jpg", "obama4.jpg")


@pytest.fixture(scope="module")
def _big_bytes(faces):
    from soulid.soul.create import create_soul_id

    items = []
    for s in SHOTS:
        a = downscale(load_photo(faces / "obama" / s).rgb, 1000)
        h, w = a.shape[:2]
        for k in range(12):  # three zooms x mirrored or not x upright or turned 6 degrees
            z = (1.0, 0.9, 0.8)[k % 3]
            ch, cw = int(h * z), int(w * z)
            b = a[(h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw]
            b = b[:, ::-1] if (k // 3) % 2 else b
            if k >= 6:
                b = np.asarray(Image.fromarray(np.ascontiguousarray(b)).rotate(6, resample=Image.BICUBIC))
            items.append((f"{s[:-4]}_{k}.jpg", np.ascontiguousarray(b)))
    res = create_soul_id(items, "big", analyzer="dlib", workers=2)
    assert res.soul is not None and len(res.soul.photos) >= 40, res.report["summary"]
    return res.soul.to_bytes()


@pytest.fixture
def big(_big_bytes):
    from soulid.soul.soulfile import SoulID

    return SoulID.from_bytes(_big_bytes)


def test_selection_follows_the_guide_and_covers_the_angles(big):
    sel = choose_training_photos(big, "v2")
    g = TRAINING_SET["v2"]
    assert (g.least, g.ideal, g.most) == (5, 10, 20)
    assert len(sel.sent) == 10 and len(sel.sent) + len(sel.left_out) == len(big.photos)
    assert all(d["rating"] in ("perfect", "good") for d in sel.sent)
    roles = [d["role"] for d in sel.sent]
    # round-robin over the angles: the first photos sent are one of each angle the set has
    have = {d["role"] for d in sel.sent + sel.left_out if d["rating"] != "poor"}
    assert set(roles[:len(have)]) == have and len(have) >= 3
    assert all("pose coverage" in d["reason"] for d in sel.sent)
    over = [d for d in sel.left_out if d["rating"] in ("perfect", "good")]
    assert over and all("pose coverage" in d["reason"] and "10-photo set for v2" in d["reason"] for d in over)
    assert any("rated poor" in d["reason"] for d in sel.left_out)
    assert len(choose_training_photos(big, "v2", max_photos=3).sent) == 3
    v1 = choose_training_photos(big, "v1")
    assert len(v1.sent) == min(20, sum(p.rating in ("perfect", "good") for p in big.photos))
    assert any("DatasetErrors" in w for w in choose_training_photos(big, "cinema").warnings)


def test_cli_train_uploads_at_most_n_and_lists_why(big, cloud_env, capsys):
    Library().save(big, overwrite=True)
    assert main(["train", "big", "--provider", "higgsfield", "--model-version", "v2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    sel = out["selection"]
    assert out["photos"] == len(sel["sent"]) == 10 and sel["target"] == 10
    assert stats(cloud_env)["reference_images"][out["id"]] == 10  # what the provider received
    assert len(sel["sent"]) + len(sel["left_out"]) == len(big.photos)
    assert all(d["reason"] for d in sel["sent"] + sel["left_out"])
    assert any("pose coverage" in d["reason"] for d in sel["left_out"])
    saved = Library().load("big").remote("higgsfield", "v2")
    assert saved.extra["sent"] == [d["source"] for d in sel["sent"]]

    assert main(["train", "big", "--provider", "higgsfield", "--model-version", "v2", "--max-photos", "6",
                 "--new", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["photos"] == 6 and stats(cloud_env)["reference_images"][out["id"]] == 6
