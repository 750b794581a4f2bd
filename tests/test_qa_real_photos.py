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


# ------------------------------------------------ set verdicts and the QA sheet
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from soulid.soul.create import create_soul_id  # noqa: E402
from soulid.soul.imageio import load_photo  # noqa: E402
import cv2  # noqa: E402
from soulid.soul.report import render_html, render_png, sheet_from_soul, sheet_layout  # noqa: E402
from soulid.soul.soulfile import SoulID  # noqa: E402


def test_one_photo_set_is_not_usable_and_says_why(faces):
    s = create_soul_id([faces / "obama" / "obama.jpg"], "one", analyzer="dlib", workers=1).report["summary"]
    assert s["accepted"] == 1 and s["verdict"] == "weak"
    assert any("only 1 accepted photo" in r for r in s["verdict_reasons"])


def test_two_photos_of_two_people_warn(faces):
    res = create_soul_id([faces / "obama" / "obama.jpg", faces / "biden" / "biden.jpg"], "two", analyzer="dlib",
                         workers=1)
    s = res.report["summary"]
    o = s["outliers"]
    assert o["method"] == "pairwise" and o["pairwise_failed"] and o["similarity"] < o["threshold"]
    assert any("two different people" in w for w in s["warnings"])
    same = create_soul_id([faces / "obama" / "obama.jpg", faces / "obama" / "obama2.jpg"], "same",
                          analyzer="dlib", workers=1).report["summary"]
    assert not same["outliers"]["pairwise_failed"]
    assert not any("two different people" in w for w in same["warnings"])


def test_screenshot_strip_is_refused_as_not_a_photo(faces, tmp_path):
    rgb = load_photo(faces / "obama" / "obama-1080p.jpg").rgb
    strip = tmp_path / "strip.png"
    Image.fromarray(rgb[300:533, 600:1320]).save(strip)  # 720x233, a face in it
    res = create_soul_id([strip, faces / "obama" / "obama.jpg"], "s", analyzer="dlib", workers=1)
    d = next(p for p in res.report["photos"] if p["path"].endswith("strip.png"))
    assert d["rating"] == "rejected" and any("not a photo: 720x233" in r for r in d["reasons"])


def test_keypoint_reference_is_not_a_poor_photo_when_better_exist(faces):
    res = create_soul_id([faces / "obama"], "obama", analyzer="dlib", workers=1)
    rating = {Path(p["path"]).name: p["rating"] for p in res.report["photos"]}
    assert "poor" in rating.values()  # obama_small (320x240) is poor: the choice matters
    assert rating[res.soul.keypoint_reference["source"]] in ("perfect", "good")


def test_qa_sheet_shows_the_intruders_thumbnail_and_full_reason(faces):
    res = create_soul_id([faces / "obama", faces / "biden" / "biden.jpg"], "obama", analyzer="dlib", workers=2)
    soul = SoulID.from_bytes(res.soul.to_bytes())  # what `soulid report` reads back
    sheet = sheet_from_soul(soul)
    i = next(k for k, e in enumerate(sheet.entries) if e.label == "biden.jpg")
    e = sheet.entries[i]
    assert e.excluded and e.thumb is not None
    reason = next(r for r in e.reasons if "identity outlier" in r)
    full = next(r for r in next(p for p in res.report["photos"] if p["path"].endswith("biden.jpg"))["reasons"]
                if "identity outlier" in r)
    assert reason == full and "outlier floor" in full  # not the same-person threshold of show/score
    img = render_png(sheet)
    x0, y0, x1, y1 = sheet_layout(sheet).box(i)
    region = img[y0:y1, x0:x1].astype(np.float32)
    placeholder = np.all(img[y0:y1, x0:x1] == (205, 205, 202), axis=-1).mean()
    assert placeholder < 0.05
    # Expected tile built without the renderer: OpenCV's area resampling of the
    # thumbnail to fit the square, centred on the sheet's tile colour.
    side, th = x1 - x0, np.asarray(e.thumb)[..., :3]
    s = side / max(th.shape[:2])
    w, h = max(1, round(th.shape[1] * s)), max(1, round(th.shape[0] * s))
    want = np.empty((side, side, 3), np.float32)
    want[:] = (250, 250, 248)
    oy, ox = (side - h) // 2, (side - w) // 2
    want[oy:oy + h, ox:ox + w] = cv2.resize(th, (w, h), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    assert np.abs(region - want).mean() < 3.0  # the tile is biden's photo
    page = render_html(sheet)
    assert page.startswith("<!doctype html>") and "{'" not in page
    assert full.replace("'", "&#x27;") in page and page.count("<img") == len(sheet.entries)
    assert "Verdict: usable" in page and "biden.jpg 0." in page  # header: verdict and the outlier's similarity
