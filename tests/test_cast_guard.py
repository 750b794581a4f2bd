"""Cast guard on the real fixture photos (dlib analyzer, CPU).

Soul IDs of Obama and Biden are built through the real create path; composite
scenes are pasted together with Pillow from other photos, and a clip is
written with PyAV. Every face must go to its own Soul ID and be checked
against that Soul ID's threshold.
"""
from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from soulid.cli import main
from soulid.soul.cast_guard import Cast, CastGuardError, check_cast_images, check_cast_video, face_masks, pick_best
from soulid.soul.create import create_soul_id
from soulid.soul.imageio import load_photo
from soulid.soul.library import Library

OBAMA_BUILD = ("obama.jpg", "obama2.jpg", "obama-720p.jpg")


@pytest.fixture(scope="module")
def cast_souls(faces):
    obama = create_soul_id([str(faces / "obama" / n) for n in OBAMA_BUILD], "obama", analyzer="dlib", workers=1)
    biden = create_soul_id([str(faces / "biden")], "biden", analyzer="dlib", workers=1)
    assert obama.soul is not None and biden.soul is not None, (obama.report, biden.report)
    return obama.soul, biden.soul


def panel(faces: Path, rel: str, height: int = 420) -> Image.Image:
    im = Image.fromarray(load_photo(faces / rel).rgb)
    return im.resize((max(1, round(im.width * height / im.height)), height), Image.LANCZOS)


def composite(faces: Path, rels, height: int = 420, width: int | None = None) -> np.ndarray:
    """The photos side by side, each scaled to ``height``, on a grey canvas
    (``width`` px wide when given, else just wide enough)."""
    panels = [panel(faces, r, height) for r in rels]
    width = width or sum(p.width for p in panels) + 20 * (len(panels) + 1)
    canvas = Image.new("RGB", (width, height + 40), (128, 128, 128))
    x = 20
    for p in panels:
        canvas.paste(p, (x, 20))
        x += p.width + 20
    return np.asarray(canvas)


def save(tmp_path: Path, name: str, rgb: np.ndarray) -> str:
    p = tmp_path / name
    Image.fromarray(rgb).save(p)
    return str(p)


def test_two_people_assigned_right_in_both_orders(cast_souls, faces):
    obama, biden = cast_souls
    cast = Cast([obama, biden])
    assert cast.analyzer.name == "dlib"
    for rels, order in ((("obama/obama3.jpg", "biden/biden2.jpg"), ["obama", "biden"]),
                        (("biden/biden2.jpg", "obama/obama4.jpg"), ["biden", "obama"])):
        rep = cast.check_image(composite(faces, rels), "scene")
        assert [f.soul for f in rep.faces] == order, rep.text()  # faces are listed left to right
        assert rep.passed and rep.missing == [] and rep.unknown_faces == 0 and rep.confusions == []
        for f in rep.faces:
            own = obama if f.soul == "obama" else biden
            assert f.passed and f.similarity >= own.analyzer("dlib").threshold
            other = "biden" if f.soul == "obama" else "obama"
            assert f.runner_up[0] == other and f.runner_up[1] < f.similarity
            assert f.runner_up[1] < (biden if other == "biden" else obama).analyzer("dlib").threshold
        # the left face's box is in the left panel
        assert rep.faces[0].box[2] < rep.faces[1].box[0]


def test_stranger_in_place_of_a_member_names_the_missing_and_the_unknown(cast_souls, faces):
    cast = Cast(list(cast_souls))
    rep = cast.check_image(composite(faces, ("obama/obama4.jpg", "kit_harington/kit2.jpeg")), "scene")
    assert not rep.passed and rep.missing == ["biden"], rep.text()
    assert rep.unknown_faces == 1
    kit = rep.faces[1]
    assert kit.soul is None and not kit.passed and kit.candidate == "biden"  # the face to repair as biden
    assert rep.faces[0].soul == "obama" and rep.faces[0].passed
    masks = face_masks(rep, ["obama", "biden"])
    assert masks.shape == (2, *rep.shape) and masks[1].sum() > 0
    x0, y0, x1, y1 = (int(v) for v in kit.box)
    assert masks[1, (y0 + y1) // 2, (x0 + x1) // 2] == 1.0 and masks[0, (y0 + y1) // 2, (x0 + x1) // 2] == 0.0


def test_duplicated_face_is_a_confusion_and_the_other_member_missing(cast_souls, faces):
    cast = Cast(list(cast_souls))
    rep = cast.check_image(composite(faces, ("obama/obama3.jpg", "obama/obama3.jpg")), "dup")
    assert rep.missing == ["biden"] and not rep.passed, rep.text()
    conf = [c for c in rep.confusions if c["kind"] == "closer_to_other"]
    assert conf and conf[0]["soul"] == "biden" and conf[0]["other"] == "obama"
    assert conf[0]["other_similarity"] > conf[0]["similarity"]


def test_pasted_stored_photo_scores_higher_copy_paste_than_a_new_photo(cast_souls, faces):
    obama, biden = cast_souls
    cast = Cast([obama, biden])
    pasted = cast.check_image(composite(faces, ("obama/obama2.jpg", "biden/biden2.jpg")), "pasted")  # obama2 is stored
    fresh = cast.check_image(composite(faces, ("obama/obama3.jpg", "biden/biden2.jpg")), "fresh")  # obama3 is not
    cp_pasted, cp_fresh = pasted.face_of("obama").copy_paste, fresh.face_of("obama").copy_paste
    assert cp_pasted > cp_fresh, (pasted.text(), fresh.text())
    assert pasted.face_of("obama").copy_paste_flagged and not fresh.face_of("obama").copy_paste_flagged
    assert cp_pasted > cast.margin >= cp_fresh


def test_pick_best_keeps_the_image_where_every_member_passes(cast_souls, faces):
    cast = Cast(list(cast_souls))
    imgs = [composite(faces, ("obama/obama4.jpg", "kit_harington/kit2.jpeg")),
            composite(faces, ("obama/obama3.jpg", "biden/biden2.jpg"))]
    reps = check_cast_images(cast, imgs)
    assert [r.passed for r in reps] == [False, True]
    assert pick_best(reps) == 1 and pick_best(reps[:1]) is None


def test_bad_casts_are_refused(cast_souls):
    obama, _ = cast_souls
    with pytest.raises(CastGuardError, match="twice"):
        Cast([obama, obama])
    with pytest.raises(CastGuardError, match="at least one"):
        Cast([])
    with pytest.raises(CastGuardError, match="no images"):
        check_cast_images(Cast([obama]), [])


def test_progress_and_interrupt_between_images(cast_souls, faces):
    from soulid.soul.errors import Interrupted

    cast = Cast(list(cast_souls))
    imgs = [composite(faces, ("obama/obama3.jpg", "biden/biden2.jpg"))] * 2
    seen = []
    reps = check_cast_images(cast, imgs, progress=lambda f, m: seen.append(f))
    assert seen == [0.5, 1.0] and all(r.passed for r in reps)
    calls = []
    with pytest.raises(Interrupted, match="image 2 of 2"):
        check_cast_images(cast, imgs, interrupt=lambda: calls.append(1) or len(calls) > 1)


def write_clip(path: Path, frames: list[np.ndarray], fps: int = 4) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "yuv420p"
        for fr in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(fr, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


def test_clip_whose_middle_second_shows_another_person(cast_souls, faces, tmp_path, capsys):
    cast = Cast(list(cast_souls))
    good = composite(faces, ("obama/obama3.jpg", "biden/biden2.jpg"), 360, 900)
    bad = composite(faces, ("obama/obama3.jpg", "kit_harington/kit2.jpeg"), 360, 900)
    fps = 4
    clip = tmp_path / "scene.mp4"
    write_clip(clip, [good] * fps + [bad] * fps + [good] * fps, fps)  # 3 s, the middle second shows kit
    rep = check_cast_video(cast, clip, max_frames=12)
    assert len(rep.frames) == 12 and not rep.passed
    b = rep.characters["biden"]
    o = rep.characters["obama"]
    assert o["passed"] and o["minimum"] >= cast_souls[0].analyzer("dlib").threshold
    assert not b["passed"] and b["minimum"] < cast_souls[1].analyzer("dlib").threshold
    assert 1.0 <= b["worst_time"] < 2.0, b
    in_middle = [s for s, t in zip(b["similarities"], b["times"]) if 1.0 <= t < 2.0]
    outside = [s for s, t in zip(b["similarities"], b["times"]) if not 1.0 <= t < 2.0]
    assert max(in_middle) < min(outside)
    d = rep.as_dict()
    assert d["missing"] == ["biden"] and 1.0 <= d["worst_frame_time"] < 2.0
    assert d["characters"]["biden"]["minimum"] == pytest.approx(b["minimum"], abs=1e-4)

    # the CLI: the clip's JSON carries the per-frame series, exit 1 since biden fails in the middle second
    lib = Library()
    for s in cast_souls:
        lib.save(s, overwrite=True)
    assert main(["guard", "--soul", "obama", "--soul", "biden", str(clip), "--frames", "12", "--json"]) == 1
    (out,) = json.loads(capsys.readouterr().out)
    assert out["path"] == str(clip) and not out["passed"] and out["missing"] == ["biden"]
    ch = out["characters"]["biden"]
    assert len(ch["similarities"]) == len(ch["times"]) == 12 and 1.0 <= ch["worst_time"] < 2.0
    assert out["characters"]["obama"]["passed"] and len(out["frames"]) == 12
    assert main(["guard", "--soul", "obama", "--soul", "biden", str(clip), "--frames", "12"]) == 1
    assert "worst frame at 1." in capsys.readouterr().out


def test_cli_cast_guard_json_and_exit_status(cast_souls, faces, tmp_path, capsys):
    lib = Library()
    for s in cast_souls:
        lib.save(s, overwrite=True)
    a = save(tmp_path, "ob.png", composite(faces, ("obama/obama3.jpg", "biden/biden2.jpg")))
    b = save(tmp_path, "bo.png", composite(faces, ("biden/biden2.jpg", "obama/obama4.jpg")))
    assert main(["guard", "--soul", "obama", "--soul", "biden", a, b, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [o["path"] for o in out] == [a, b] and all(o["passed"] for o in out)
    assert [f["soul"] for f in out[0]["faces"]] == ["obama", "biden"]
    assert [f["soul"] for f in out[1]["faces"]] == ["biden", "obama"]
    f = out[0]["faces"][0]
    assert set(f) >= {"box", "soul", "similarity", "passed", "runner_up", "copy_paste"}
    assert len(f["box"]) == 4 and f["runner_up"]["soul"] == "biden" and f["runner_up"]["similarity"] < f["similarity"]
    assert out[0]["missing"] == [] and out[0]["unknown_faces"] == 0 and out[0]["confusions"] == []

    c = save(tmp_path, "ok.png", composite(faces, ("obama/obama4.jpg", "kit_harington/kit2.jpeg")))
    assert main(["guard", "--soul", "obama", "--soul", "biden", c]) == 1
    text = capsys.readouterr().out
    assert "missing biden" in text and "1 unknown face" in text
    assert main(["guard", "--soul", "obama", "--soul", "biden", c, "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out[0]["missing"] == ["biden"] and out[0]["unknown_faces"] == 1

    # bad input: exit 2 with the reason, no traceback
    assert main(["guard", "--soul", "obama", "--soul", "nobody", a]) == 2
    assert main(["guard", "--soul", "obama", "--soul", "biden", str(tmp_path / "missing.png")]) == 2
    assert main(["guard", "--soul", "obama", "--soul", "obama", a]) == 2
    err = capsys.readouterr().err
    assert "nobody" in err and "missing.png" in err and "twice" in err
    # one --soul keeps the drift guard's report
    assert main(["guard", "--soul", "obama", str(faces / "obama" / "obama3.jpg"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["all_passed"]
