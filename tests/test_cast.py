"""Soul Cast: the cross-view check and lock on real fixture photos (dlib), and
``soulid cast --prompt`` end to end against the cloud stand-in in its cast
mode (a prompt picks a fixture person, an angle edit of the front view
returns another photo of that person, and optionally one edit comes back as
someone else)."""
from __future__ import annotations

import json

import httpx
import pytest

from soulid.cli import main
from soulid.soul.cast import CastError, check_views, lock_cast
from soulid.soul.imageio import load_photo
from soulid.soul.library import Library
from soulid.soul.soulfile import SoulID
from standin.fixtures import *  # noqa: F401,F403
from standin.fixtures import stats

ONE = ("obama/obama.jpg", "obama/obama4.jpg", "obama/obama2.jpg")  # front, turned left (yaw -32), right (+34)
SWAPPED = ("obama/obama.jpg", "obama/obama4.jpg", "kit_harington/kit1.jpeg")


def _views(faces, rels):
    return [load_photo(faces / r).rgb for r in rels]


def test_check_views_matrix_and_failing_view(faces):
    ok = check_views(_views(faces, ONE), "dlib")
    assert ok.one_person and ok.roles == ["front", "three_quarter_left", "three_quarter_right"]
    m = ok.matrix
    assert m.shape == (3, 3) and all(m[i, i] == pytest.approx(1.0, abs=1e-4) for i in range(3))
    assert (m >= ok.pair_threshold).all() and ok.pair_threshold == pytest.approx(0.90)
    bad = check_views(_views(faces, SWAPPED), "dlib")
    assert not bad.one_person and [v.role for v in bad.failing] == ["three_quarter_right"]
    v = bad.view("three_quarter_right")
    assert v.similarity_to_front == pytest.approx(float(bad.matrix[2, 0]), abs=1e-5)
    assert v.similarity_to_front < bad.pair_threshold
    assert bad.view("front").passed and bad.view("three_quarter_left").passed
    assert f"{v.similarity_to_front:.3f}" in bad.message() and "3/4 right view" in bad.message()
    # two views: the front is the anchor, the other one is blamed
    two = check_views(_views(faces, ("obama/obama.jpg", "biden/biden.jpg")), "dlib")
    assert [v.role for v in two.failing] == ["three_quarter_left"]


def test_check_views_refuses_bad_input(faces):
    img = _views(faces, ONE[:1])[0]
    with pytest.raises(CastError, match="front view"):
        check_views([("profile", img)], "dlib")
    with pytest.raises(CastError, match="given twice"):
        check_views([("front", img), ("front", img)], "dlib")
    with pytest.raises(CastError, match="at most 4"):
        check_views([img] * 5, "dlib")


def test_lock_cast_stores_origin_matrix_and_loads_back(faces):
    res, chk = lock_cast(_views(faces, ONE), "obcast", analyzer="dlib")
    soul = SoulID.from_bytes(res.soul.to_bytes())
    assert soul.origin == "cast" and [p.source for p in soul.photos] == [
        "front.png", "three_quarter_left.png", "three_quarter_right.png"]
    assert soul.cast["roles"] == chk.roles and soul.cast["similarity"] == chk.matrix_dict()["cosine"]


def test_old_files_without_cast_fields_still_load(faces):
    res, _ = lock_cast(_views(faces, ONE), "obcast", analyzer="dlib")
    from test_soulfile_library import _rewrite_manifest

    old = SoulID.from_bytes(_rewrite_manifest(res.soul.to_bytes(), drop=("origin", "cast", "notes")))
    assert old.origin == "photos" and old.cast is None and old.notes == []


def test_hostile_cast_fields_are_refused_by_name(faces):
    from soulid.soul.errors import SoulFileError
    from test_soulfile_library import _rewrite_manifest

    res, _ = lock_cast(_views(faces, ONE), "obcast", analyzer="dlib")
    data = res.soul.to_bytes()
    with pytest.raises(SoulFileError, match=r"'cast\.roles\[0\]'"):
        SoulID.from_bytes(_rewrite_manifest(data, cast={**res.soul.cast, "roles": ["back"]}))
    with pytest.raises(SoulFileError, match=r"'origin'"):
        SoulID.from_bytes(_rewrite_manifest(data, origin="stolen"))
    with pytest.raises(SoulFileError, match=r"'notes\[0\]\.text'"):
        SoulID.from_bytes(_rewrite_manifest(data, notes=[{"text": "x" * 20_001}]))


def test_cli_from_views_locks_one_person_and_names_the_swapped_view(faces, capsys):
    rc = main(["cast", "obcast", "--from-views", *[str(faces / r) for r in ONE], "--analyzer", "dlib", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["one_person"] and out["soul_id"]["origin"] == "cast"
    soul = Library().load("obcast")
    assert soul.origin == "cast" and len(soul.photos) == 3
    assert soul.cast["sources"] == {"front": "obama.jpg", "three_quarter_left": "obama4.jpg",
                                    "three_quarter_right": "obama2.jpg"}

    rc = main(["cast", "mixed", "--from-views", *[str(faces / r) for r in SWAPPED], "--analyzer", "dlib", "--json"])
    cap = capsys.readouterr()
    out = json.loads(cap.out)
    assert rc == 1 and out["soul_id"] is None and not Library().exists("mixed")
    failing = out["failing"]
    assert [f["role"] for f in failing] == ["three_quarter_right"]
    sim = failing[0]["similarity_to_front"]
    assert sim < out["check"]["pair_threshold"]
    assert "3/4 right view is not the same person" in cap.err and f"{sim:.3f}" in cap.err

    assert main(["cast", "x", "--from-views", str(faces / "nope.jpg")]) == 2


def test_note_and_show_print_the_character_entry(faces, capsys):
    assert main(["cast", "obcast", "--from-views", *[str(faces / r) for r in ONE], "--analyzer", "dlib"]) == 0
    assert main(["note", "obcast", "soft window light from the left works; avoid top light"]) == 0
    capsys.readouterr()
    assert main(["show", "obcast"]) == 0
    out = capsys.readouterr().out
    assert "origin: cast" in out and "view 3/4 left: from obama4.jpg" in out
    assert "cross-view similarity: front-3/4 left 0.9" in out
    assert "soft window light from the left works; avoid top light" in out
    assert main(["show", "obcast", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["origin"] == "cast" and info["notes"][0]["text"].startswith("soft window light")
    # the QA sheet and the .char description carry the entry too
    from soulid.soul.charfile import default_description
    from soulid.soul.report import sheet_from_soul

    soul = Library().load("obcast")
    head = [t for t, _ in sheet_from_soul(soul).header()]
    assert "Character: origin: cast (views)" in head
    assert "Character: note" in " ".join(head) and "avoid top light" in " ".join(head)
    assert default_description(soul).endswith("Character cast from views. Notes: soft window light from the "
                                               "left works; avoid top light.")
    assert main(["note", "obcast", "   "]) == 2


# ----------------------------------------------------------- against the stand-in
PROMPT = "a tall man in his fifties, short grey hair, navy suit"


def _paid(s) -> int:
    return sum(stats(s)["paid"].values())


def test_cast_from_words_against_the_standin(cast_mode, capsys, tmp_path):
    rc = main(["cast", "hero", "--prompt", PROMPT, "--analyzer", "dlib", "--json"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    out = json.loads(cap.out)
    soul = Library().load("hero")
    assert soul.origin == "cast" and [p.source for p in soul.photos] == [
        "front.png", "three_quarter_left.png", "three_quarter_right.png", "profile.png"]
    c = soul.cast
    assert c["prompt"] == PROMPT and c["backend"] == "higgsfield"
    assert set(c["seeds"]) == set(c["request_ids"]) == {"front", "three_quarter_left", "three_quarter_right",
                                                         "profile"}
    assert len(set(c["seeds"].values())) == 4 and all(c["request_ids"].values())
    assert len(c["similarity"]) == 4 and c["redraws"] == []
    st = stats(cast_mode)
    people = {r["person"] for r in st["cast"]}
    assert len(people) == 1 and len(st["cast"]) == 4  # one person drawn, four renders, all paid once
    assert _paid(cast_mode) == 4 and out["cast"]["cost_usd"] == pytest.approx(4 * 0.1875)

    # the same cast again reuses the ledger's results: nothing is paid twice
    assert main(["cast", "hero", "--prompt", PROMPT, "--analyzer", "dlib", "--overwrite"]) == 0
    assert _paid(cast_mode) == 4
    capsys.readouterr()
    assert main(["show", "hero"]) == 0
    shown = capsys.readouterr().out
    assert f"cast prompt: {PROMPT}" in shown and f"request {c['request_ids']['profile']}" in shown
    # a file given to someone else keeps the character but not the provider's request ids
    shared = Library().export("hero", tmp_path / "hero.soulid", share=True)
    sc = SoulID.load(shared).cast
    assert sc["prompt"] == PROMPT and sc["request_ids"] == {} and sc["seeds"] == c["seeds"]


@pytest.mark.parametrize("backend", ["wavespeed", "aurashot"])
def test_cast_angle_views_through_other_backends(cast_mode, capsys, backend):
    rc = main(["cast", "hero", "--prompt", PROMPT, "--backend", backend, "--views", "3", "--analyzer", "dlib"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    c = Library().load("hero").cast
    assert c["backend"] == f"higgsfield+{backend}" and len(c["roles"]) == 3
    paid = stats(cast_mode)["paid"]
    assert paid.get("higgsfield-ai/soul/standard") == 1 and sum(paid.values()) == 3, paid
    assert len({r["person"] for r in stats(cast_mode)["cast"]}) == 1


def test_inconsistent_view_is_redrawn_once(cast_mode, capsys):
    httpx.post(cast_mode.url + "/_standin/config", json={"cast_swap": 1}).raise_for_status()
    rc = main(["cast", "hero", "--prompt", PROMPT, "--analyzer", "dlib"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "redrawn 3/4 left" in cap.out and "locked cast 'hero': 4 views" in cap.out
    c = Library().load("hero").cast
    assert c["attempts"]["three_quarter_left"] == 2 and len(c["redraws"]) == 1
    d = c["redraws"][0]
    assert d["role"] == "three_quarter_left" and d["similarity_to_front"] < 0.9
    st = stats(cast_mode)
    assert len({r["person"] for r in st["cast"]}) == 2 and _paid(cast_mode) == 5


def test_inconsistent_view_with_one_attempt_stops_naming_it(cast_mode, capsys):
    httpx.post(cast_mode.url + "/_standin/config", json={"cast_swap": 1}).raise_for_status()
    rc = main(["cast", "hero", "--prompt", PROMPT, "--analyzer", "dlib", "--attempts", "1", "--json"])
    cap = capsys.readouterr()
    assert rc == 1 and not Library().exists("hero")
    out = json.loads(cap.out)
    assert [f["role"] for f in out["failing"]] == ["three_quarter_left"]
    assert "3/4 left view is not the same person" in cap.err and "after 1 draw" in cap.err
    assert _paid(cast_mode) == 2  # the front view and the one failing draw; nothing after the stop


def test_cast_stops_at_the_budget(cast_mode, capsys):
    # each 1080p view is estimated at $0.1875: two fit in $0.50, the third does not
    rc = main(["cast", "hero", "--prompt", PROMPT, "--analyzer", "dlib", "--max-usd", "0.5"])
    cap = capsys.readouterr()
    assert rc == 1 and "max_usd=$0.5000" in cap.err and not Library().exists("hero")
    assert _paid(cast_mode) == 2
