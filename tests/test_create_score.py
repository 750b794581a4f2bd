"""Building a Soul ID from real photos, then scoring held-out photos and other people."""
from __future__ import annotations

from pathlib import Path

import pytest

import helpers_images as hi
from soul_fixtures import obama_split
from soulid.soul.create import create_soul_id
from soulid.soul.score import score_paths
from soulid.soul.soulfile import SoulID

OTHER_PEOPLE = ["biden", "kit_harington", "rose_leslie", "alex_lacamoire", "lin_manuel_miranda"]


@pytest.fixture(scope="module")
def obama_plus_biden(faces):
    build, _ = obama_split(str(faces))
    intruder = faces / "biden" / "biden.jpg"
    return create_soul_id([str(p) for p in build] + [str(intruder)], "obama", analyzer="dlib", workers=2)


def test_other_person_excluded_as_identity_outlier(obama_plus_biden):
    res = obama_plus_biden
    by_name = {Path(p.path).name: p for p in res.photos}
    biden = by_name["biden.jpg"]
    assert biden.rating != "rejected"  # a fine photo...
    assert biden.excluded and any("identity outlier" in r for r in biden.reasons)  # ...of someone else
    outliers = [p for p in res.photos if any("identity outlier" in r for r in p.reasons)]
    assert outliers == [biden]
    assert "biden.jpg" not in {p.source for p in res.soul.photos}


def test_soul_id_contents(obama_plus_biden):
    soul = obama_plus_biden.soul
    ident = soul.analyzer("dlib")
    n = len(soul.photos)
    assert ident.embeddings.shape == (n, 128) and ident.raw_norms.shape == (n,)
    assert all(max(p.width, p.height) <= 1024 for p in soul.photos)
    assert soul.keypoint_reference["analyzer"] == "dlib"
    kp = soul.keypoint_reference["keypoints"]
    ref = soul.photos[soul.keypoint_reference["photo"]]
    assert len(kp) == 5 and all(0 <= x < ref.width and 0 <= y < ref.height for x, y in kp)
    assert ref.pose_class == "front"
    assert soul.remote_ids == []
    assert ident.baseline["n"] == n and 0.9 < ident.baseline["loo_mean"] <= 1.0
    # near-duplicate resolutions of the same shot are kept once
    dup = [p for p in obama_plus_biden.photos if any("near-duplicate" in r for r in p.reasons)]
    assert len(dup) >= 3


def test_held_out_photos_pass_and_other_people_fail(obama_plus_biden, faces, tmp_path):
    soul = obama_plus_biden.soul
    path = soul.save(tmp_path / "obama.soulid")
    soul = SoulID.load(path)  # score from the file, as users do
    _, held_out = obama_split(str(faces))
    own = score_paths(soul, held_out)
    assert all(r.same_person for r in own), [r.as_dict() for r in own]
    others = [p for person in OTHER_PEOPLE for p in sorted((faces / person).iterdir())]
    scores = score_paths(soul, others)
    assert all(r.similarity is not None for r in scores)
    assert not any(r.same_person for r in scores), [r.as_dict() for r in scores if r.same_person]
    # the threshold separates: lowest own score above the highest stranger's
    assert min(r.similarity for r in own) > max(r.similarity for r in scores)


def test_score_without_face_or_unreadable_file(obama_plus_biden, tmp_path):
    import numpy as np
    from PIL import Image

    blank = tmp_path / "wall.png"
    Image.fromarray(np.full((400, 400, 3), 200, np.uint8)).save(blank)
    res = score_paths(obama_plus_biden.soul, [blank, hi.empty(tmp_path / "e.jpg")])
    assert res[0].similarity is None and res[0].reason == "no face found"
    assert res[1].similarity is None and "empty" in res[1].reason


def test_bad_files_rejected_while_the_set_still_builds(faces, tmp_path):
    src = faces / "obama" / "obama.jpg"
    bad = {
        "corrupt.jpg": hi.corrupt_jpeg(src, tmp_path / "corrupt.jpg"),
        "cut.jpg": hi.truncated_jpeg(src, tmp_path / "cut.jpg"),
        "zero.jpg": hi.empty(tmp_path / "zero.jpg"),
        "notes.jpg": hi.not_an_image(tmp_path / "notes.jpg"),
        "bomb.png": hi.huge_png(tmp_path / "bomb.png"),
    }
    odd = {
        "g16.png": hi.png16(src, tmp_path / "g16.png"),
        "cmyk.jpg": hi.cmyk_jpeg(faces / "obama" / "obama4.jpg", tmp_path / "cmyk.jpg"),
    }
    good = [faces / "obama" / n for n in ("obama-1080p.jpg", "obama3.jpg")]
    res = create_soul_id([str(p) for p in [*bad.values(), *odd.values(), *good]], "mixed", analyzer="dlib", workers=1)
    by = {Path(p.path).name: p for p in res.photos}
    for name in bad:
        assert by[name].rating == "rejected", (name, by[name].reasons)
    reasons = {name: by[name].reasons[0] for name in bad if name != "corrupt.jpg"}
    assert len(set(reasons.values())) == len(reasons), reasons
    assert "empty" in reasons["zero.jpg"] and "not an image" in reasons["notes.jpg"]
    assert "truncated" in reasons["cut.jpg"] and "decompression" in reasons["bomb.png"]
    # the 16-bit and CMYK files are converted and used
    assert by["g16.png"].rating != "rejected" and any("16-bit" in r for r in by["g16.png"].reasons)
    assert by["cmyk.jpg"].rating != "rejected" and any("CMYK" in r for r in by["cmyk.jpg"].reasons)
    assert res.soul is not None and len(res.soul.photos) >= 3


def test_no_usable_photo_gives_no_soul(faces, tmp_path):
    res = create_soul_id([str(faces / "group" / "two_people.jpg"), str(hi.empty(tmp_path / "e.jpg"))], "x", analyzer="dlib")
    assert res.soul is None
    assert res.report["summary"]["verdict"] == "unusable"


def test_interrupt_stops_creation(faces):
    from soulid.soul.errors import Interrupted

    calls = []

    def interrupt():
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(Interrupted):
        create_soul_id([str(faces / "obama")], "x", analyzer="dlib", workers=1, interrupt=interrupt)
    assert len(calls) == 2


def test_set_summary_counts_and_warnings(obama_plus_biden):
    s = obama_plus_biden.report["summary"]
    assert s["photos"] == 7
    assert s["accepted"] == len(obama_plus_biden.soul.photos)
    assert any(w.startswith("few photos: ") for w in s["warnings"])
    assert sum(s["angle_coverage"].values()) == s["accepted"]
    assert s["verdict"] in ("usable", "weak")
