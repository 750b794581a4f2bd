"""Soul ID references (:mod:`soulid.soul.references`) and ``soulid refs`` on the real
Obama fixture Soul ID, plus a synthetic set with known pose classes."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from soulid.cli import main
from soulid.soul.create import create_soul_id, is_near_duplicate
from soulid.soul.imageio import encode_jpeg, load_photo
from soulid.soul.library import Library
from soulid.soul.qa import dhash
from soulid.soul.references import (ReferenceSetError, crop_reference, output_size, photo_roles, qa_rank,
                                    reference_images, select_references)
from soulid.soul.soulfile import StoredPhoto


@pytest.fixture(scope="module")
def obama(faces):
    res = create_soul_id([faces / "obama"], "obama", analyzer="dlib", workers=1)
    assert res.soul is not None
    return res.soul


def _near_dup(soul, a: int, b: int) -> bool:
    a_id = soul.analyzer()
    emb = {i: a_id.embeddings[r] for r, i in enumerate(a_id.photo_indices)}
    return is_near_duplicate(dhash(soul.photos[a].rgb()), dhash(soul.photos[b].rgb()), emb.get(a), emb.get(b))


def test_obama_references_front_first_one_size_no_near_duplicates(obama):
    refs = reference_images(obama, k=3, size=512, crop="head")
    assert refs.images.shape == (3, 512, 512, 3) and refs.images.dtype == np.uint8
    assert refs.roles[0] == "front"
    # obama4 turns one way and obama2 the other (yaw -33 / +34 in the QA): both three-quarter sides come next.
    assert refs.roles[1:] == ["three_quarter_left", "three_quarter_right"]
    assert refs.sources[1:] == ["obama4.jpg", "obama2.jpg"]
    assert obama.photos[refs.photos[0]].rating == "perfect"
    assert len(set(refs.photos)) == 3
    for i in range(3):
        for j in range(i + 1, 3):
            assert not _near_dup(obama, refs.photos[i], refs.photos[j])
    assert float(refs.images.std()) > 20  # real pictures


def test_near_duplicates_are_never_both_chosen(obama):
    soul = copy.deepcopy(obama)
    best = qa_rank(soul)[0]
    p = soul.photos[best]
    # A re-encoded copy of the best photo: a near-duplicate with the same pose and rating.
    twin = StoredPhoto(jpeg=encode_jpeg(p.rgb(), quality=70), source="twin.jpg", rating=p.rating,
                       pose_class=p.pose_class, width=p.width, height=p.height, original_size=p.original_size,
                       face_box=p.face_box)
    soul.photos.append(twin)
    assert _near_dup(soul, best, len(soul.photos) - 1)
    chosen, _, skipped = select_references(soul, k=len(soul.photos))
    assert not ({best, len(soul.photos) - 1} <= set(chosen))
    assert len(soul.photos) - 1 in skipped
    assert len(chosen) == len(soul.photos) - 1


def test_diverse_choice_covers_more_poses_than_top_k_by_qa(obama):
    """Known poses: three fronts rated perfect, a three-quarter view and its mirror rated good."""
    soul = copy.deepcopy(obama)
    by_src = {p.source: p for p in soul.photos}
    fronts = [by_src[n] for n in ("obama-1080p.jpg", "obama3.jpg", "obama.jpg")]
    tq = by_src["obama2.jpg"]
    mirror = StoredPhoto(jpeg=encode_jpeg(np.ascontiguousarray(tq.rgb()[:, ::-1])), source="obama2_mirror.jpg",
                         rating="good", pose_class="three_quarter", width=tq.width, height=tq.height,
                         original_size=tq.original_size,
                         face_box=[tq.width - tq.face_box[2], tq.face_box[1], tq.width - tq.face_box[0], tq.face_box[3]])
    for f in fronts:
        f.rating = "perfect"
    tq.rating = "good"
    soul.photos = fronts + [tq, mirror]
    soul.analyzers = {}  # rank by rating and face size only
    soul.qa_report = {"photos": [
        *({"path": f.source, "rating": "perfect", "pose_angles": {"yaw": 2.0}} for f in fronts),
        {"path": "obama2.jpg", "rating": "good", "pose_angles": {"yaw": 34.0}},
        {"path": "obama2_mirror.jpg", "rating": "good", "pose_angles": {"yaw": -34.0}},
    ]}
    assert photo_roles(soul) == ["front"] * 3 + ["three_quarter_right", "three_quarter_left"]
    top_by_qa = qa_rank(soul)[:3]
    chosen, roles, _ = select_references(soul, k=3)
    qa_roles = {photo_roles(soul)[i] for i in top_by_qa}
    assert qa_roles == {"front"}
    assert set(roles) == {"front", "three_quarter_left", "three_quarter_right"}
    assert len(set(roles)) > len(qa_roles)
    assert roles[0] == "front"


def test_all_photos_mode_gives_every_photo_in_qa_order(obama):
    refs = reference_images(obama, size=256, crop="face", all_photos=True)
    assert refs.photos == qa_rank(obama) and len(refs.photos) == len(obama.photos)
    assert refs.images.shape == (len(obama.photos), 256, 256, 3)


@pytest.mark.parametrize("crop,face_y", [("face", 0.45), ("head", 0.40), ("portrait", 0.33)])
def test_crop_puts_the_face_where_the_mode_says(crop, face_y):
    img = np.zeros((1000, 1600, 3), np.uint8)
    box = [700, 300, 800, 400]  # a white 100 px "face"
    img[300:400, 700:800] = 255
    out = crop_reference(img, box, size=512, crop=crop)
    h, w = output_size(512, crop)
    assert out.shape == (h, w, 3)
    ys, xs = np.nonzero(out[..., 0] > 128)
    assert abs(xs.mean() / w - 0.5) < 0.02
    assert abs(ys.mean() / h - face_y) < 0.02
    if crop == "portrait":
        assert (h, w) == (512, 384)


def test_crop_never_pads_near_the_edge():
    img = np.full((400, 300, 3), 200, np.uint8)
    out = crop_reference(img, [0, 0, 150, 150], size=256, crop="portrait")
    assert out.shape == (256, 192, 3) and int(out.min()) == 200


def test_bad_requests_are_refused(obama):
    with pytest.raises(ReferenceSetError, match="crop 'wide'"):
        reference_images(obama, crop="wide")
    with pytest.raises(ReferenceSetError, match="at least one"):
        reference_images(obama, k=0)
    with pytest.raises(ReferenceSetError, match="size 10"):
        reference_images(obama, size=10)


def test_cli_refs_writes_role_named_files_and_json(obama, tmp_path, capsys):
    Library().save(obama, overwrite=True)
    out = tmp_path / "refs"
    assert main(["refs", "obama", "--k", "3", "--size", "256", "--crop", "face", "--out", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["count"] == 3 and (info["width"], info["height"]) == (256, 256)
    roles = [e["role"] for e in info["references"]]
    assert roles[0] == "front"
    files = [Path(e["file"]) for e in info["references"]]
    assert [f.name for f in files] == [f"{n + 1:02d}_{r}.png" for n, r in enumerate(roles)]
    for f in files:
        assert load_photo(f).rgb.shape == (256, 256, 3)
    assert main(["refs", "nobody", "--out", str(out)]) == 2
