"""The cloud route for two characters: composed per-character identity edits
(:mod:`soulid.backends.cast_edit`) on the Higgsfield stand-in, every face of
the result checked by the cast guard.

The stand-in renders an edit as a canvas with the Soul ID's own reference
photo pasted in, so the result's faces are real photos of each person: the
cast guard must find both where they were placed, pass them, and (they are
stored photos) flag them as copy-paste.
"""
from __future__ import annotations

import numpy as np
import pytest

from soulid.backends.base import get_backend
from soulid.backends.cast_edit import compose_cast_edits
from soulid.backends.engine import CostLimit
from soulid.soul.cast_guard import CastGuardError
from soulid.soul.create import create_soul_id
from standin.fixtures import *  # noqa: F401,F403
from standin.fixtures import stats
from test_cast_guard import composite


@pytest.fixture
def trained_biden(faces, cloud_env):
    from soulid.backends.remote_training import train_remote

    soul = create_soul_id([faces / "biden"], "biden", analyzer="dlib", workers=1).soul
    train_remote(soul, "higgsfield", "v1")
    return soul


def _scene(faces) -> np.ndarray:
    # Obama on the left, a stranger (Kit Harington) standing in for the second character on the right
    return composite(faces, ("obama/obama4.jpg", "kit_harington/kit2.jpeg"), 600)


def test_two_characters_through_composed_edits_pass_the_cast_guard(trained_obama, trained_biden, faces, cloud_env):
    scene = _scene(faces)
    paid0 = sum(stats(cloud_env)["paid"].values())
    res = compose_cast_edits(get_backend("higgsfield"), [trained_obama, trained_biden], scene,
                             "two people side by side, natural light", seed=7, max_usd=1.0)
    assert res.before.missing == ["biden"] and res.before.unknown_faces == 1  # the stand-in face is nobody
    assert res.after.passed, res.after.text()
    assert [f.soul for f in res.after.faces if f.soul] == ["obama", "biden"]  # each on its own side
    assert [e["soul"] for e in res.edits] == ["obama", "biden"] and all(e["request_id"] for e in res.edits)
    assert sum(stats(cloud_env)["paid"].values()) - paid0 == 2  # one paid edit per character
    # the route's cost per image: the provider's estimate per edit, summed (stand-in: 3 credits = $0.1875 each)
    assert res.cost_usd == pytest.approx(2 * 0.1875) and res.budget["spent_usd"] == pytest.approx(0.375)
    # the stand-in pastes each Soul ID's stored photo: the guard flags it as copy-paste
    assert all(f.copy_paste_flagged for f in res.after.faces if f.soul == "obama")
    assert res.image.shape == scene.shape and res.image.dtype == np.float32
    d = res.as_dict()
    assert d["passed"] and d["after"]["missing"] == [] and d["cost_usd"] == pytest.approx(0.375)


def test_only_failing_edits_just_the_drifted_character(trained_obama, trained_biden, faces, cloud_env):
    scene = _scene(faces)
    res = compose_cast_edits(get_backend("higgsfield"), [trained_obama, trained_biden], scene, "two people",
                             placement="match", only_failing=True, seed=7, max_usd=1.0)
    assert [e["soul"] for e in res.edits] == ["biden"] and res.after.passed, res.after.text()
    # Obama's region is untouched
    x0 = res.edits[0]["box"][0]
    assert np.allclose(res.image[:, : min(x0, 300)], scene[:, : min(x0, 300)] / 255.0, atol=1 / 255)


def test_budget_and_bad_scenes_are_refused(trained_obama, trained_biden, faces, cloud_env):
    be = get_backend("higgsfield")
    with pytest.raises(CostLimit):
        compose_cast_edits(be, [trained_obama, trained_biden], _scene(faces), "two people", seed=9, max_usd=0.2)
    one_face = composite(faces, ("obama/obama4.jpg",), 600)
    with pytest.raises(CastGuardError, match="biden"):
        compose_cast_edits(be, [trained_obama, trained_biden], one_face, "two people", seed=9)
    with pytest.raises(CastGuardError, match="placement"):
        compose_cast_edits(be, [trained_obama, trained_biden], one_face, "x", placement="random")


def test_cli_cast_edit_writes_the_image_and_exits_on_the_guard(trained_obama, trained_biden, faces, cloud_env,
                                                                tmp_path, capsys):
    import json

    from PIL import Image

    from soulid.cli import main
    from soulid.soul.library import Library

    lib = Library()
    lib.save(trained_obama, overwrite=True)
    lib.save(trained_biden, overwrite=True)
    scene = tmp_path / "scene.png"
    Image.fromarray(_scene(faces)).save(scene)
    out = tmp_path / "cast.png"
    args = ["cast-edit", str(scene), "--soul", "obama", "--soul", "biden", "--backend", "higgsfield",
            "--out", str(out), "--seed", "7", "--max-usd", "1", "--json"]
    assert main(args) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["passed"] and d["path"] == str(out) and d["cost_usd"] == pytest.approx(0.375)
    assert [f["soul"] for f in d["after"]["faces"] if f["soul"]] == ["obama", "biden"]
    assert Image.open(out).size == Image.open(scene).size
    assert main(args) == 2  # --out exists
    assert "exists" in capsys.readouterr().err
    assert main(["cast-edit", str(scene), "--soul", "obama", "--soul", "nobody", "--backend", "higgsfield",
                 "--out", str(tmp_path / "x.png")]) == 2
