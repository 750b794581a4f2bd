"""Photo QA on the real fixture photos (dlib analyzer, the fresh-machine default)."""
from __future__ import annotations

import pytest

import helpers_images as hi
from soul_fixtures import assess


@pytest.mark.parametrize("name", ["kit_with_rose.jpg", "obama_and_biden.jpg", "two_people.jpg"])
def test_group_photos_rejected_as_multi_face(faces, name):
    qa = assess(faces / "group" / name)
    assert qa.rating == "rejected"
    assert any(r.startswith("group photo") for r in qa.reasons), qa.reasons


@pytest.mark.parametrize("name", ["obama-240p.jpg", "obama_small.jpg"])
def test_small_photos_never_perfect(faces, name):
    qa = assess(faces / "obama" / name)
    assert qa.rating in ("good", "poor")
    assert any("resolution" in r for r in qa.reasons)


def test_1080p_rated_perfect_or_good(faces):
    qa = assess(faces / "obama" / "obama-1080p.jpg")
    assert qa.rating in ("perfect", "good"), qa.reasons
    assert qa.pose_class == "front"
    assert qa.embedding is not None and abs(float((qa.embedding ** 2).sum()) - 1) < 1e-4


@pytest.mark.parametrize("name", ["obama_partial_face.jpg", "obama_partial_face2.jpg"])
def test_partly_cropped_faces_flagged(faces, name):
    qa = assess(faces / "hard" / name)
    assert qa.rating in ("poor", "rejected")
    assert any("cut by the frame" in r for r in qa.reasons), qa.reasons


@pytest.mark.parametrize("rel", ["hard/rgba_32bit.png", "lin_manuel_miranda/lin1.png", "alex_lacamoire/alex1.png"])
def test_rgba_photos_work(faces, rel):
    qa = assess(faces / rel)
    assert qa.rating != "rejected", qa.reasons
    assert qa.face_box is not None and any("alpha" in r for r in qa.reasons)


def test_exif_rotated_photo_is_analysed_upright(faces, tmp_path):
    src = faces / "obama" / "obama.jpg"
    upright = assess(src)
    rotated = assess(hi.exif_rotated(src, tmp_path / "rotated.jpg"))
    assert rotated.rating != "rejected", rotated.reasons
    assert rotated.image_size == upright.image_size
    # the same face at the same place, the same person
    assert max(abs(a - b) for a, b in zip(rotated.face_box, upright.face_box)) < 12
    assert float(rotated.embedding @ upright.embedding) > 0.97


def test_pose_classes_on_real_views(faces):
    assert assess(faces / "obama" / "obama-1080p.jpg").pose_class == "front"
    assert assess(faces / "obama" / "obama4.jpg").pose_class == "three_quarter"
    assert assess(faces / "kit_harington" / "kit2.jpeg").pose_class == "three_quarter"
