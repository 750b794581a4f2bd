"""Identity drift guard on the real fixture photos (dlib analyzer, CPU).

A Soul ID is built from three photos of Obama; held-out photos of him must
pass, photos of other people must fail, and best-of-N must keep the
highest-scoring passing candidate.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from soulid.cli import main
from soulid.soul.create import create_soul_id
from soulid.soul.guard import GuardError, best_of_n, check_images, check_video, sample_frames
from soulid.soul.imageio import downscale, load_photo
from soulid.soul.library import Library

BUILD = ("obama.jpg", "obama2.jpg", "obama-720p.jpg")
OWN = ("obama3.jpg", "obama4.jpg")
OTHERS = ("biden/biden.jpg", "kit_harington/kit1.jpeg", "rose_leslie/rose1.jpg", "alex_lacamoire/alex2.jpg")


@pytest.fixture(scope="module")
def soul(faces):
    res = create_soul_id([str(faces / "obama" / n) for n in BUILD], "obama", analyzer="dlib", workers=1)
    assert res.soul is not None, res.report
    return res.soul


def _rgb(faces: Path, rel: str, side: int = 800) -> np.ndarray:
    return downscale(load_photo(faces / rel).rgb, side)


def test_report_own_person_passes_others_fail(soul, faces):
    own = [_rgb(faces, f"obama/{n}") for n in OWN]
    others = [_rgb(faces, rel) for rel in OTHERS]
    rep = check_images(soul, own + others, labels=list(OWN) + list(OTHERS))
    thr = soul.analyzer("dlib").threshold
    assert rep.analyzer == "dlib" and rep.threshold == pytest.approx(thr)
    sims = rep.similarities
    assert all(s is not None for s in sims), rep.text()
    assert [e.passed for e in rep.entries] == [True] * len(OWN) + [False] * len(OTHERS), rep.text()
    # passing means at or above the person's own threshold, failing below it
    assert min(sims[: len(OWN)]) >= thr > max(sims[len(OWN):])
    assert rep.passed == len(OWN) and not rep.all_passed
    assert rep.best in range(len(OWN))  # the best match is one of his own photos
    d = rep.as_dict()
    assert d["total"] == len(OWN) + len(OTHERS) and d["entries"][0]["label"] == OWN[0]


def test_report_accepts_float_batches_and_flags_faceless_images(soul, faces):
    obama = _rgb(faces, "obama/obama3.jpg", 512)
    blank = np.full((256, 256, 3), 127, np.uint8)
    batch = np.stack([obama.astype(np.float32) / 255.0, np.resize(blank, obama.shape).astype(np.float32) / 255.0])
    rep = check_images(soul, batch)
    assert rep.entries[0].passed and rep.entries[0].face_box is not None
    assert rep.entries[1].similarity is None and not rep.entries[1].passed
    assert rep.entries[1].reason == "no face found"
    with pytest.raises(GuardError, match="no images"):
        check_images(soul, [])
    with pytest.raises(GuardError, match="shape"):
        check_images(soul, [np.zeros((10, 10), np.uint8)])


def _candidates(faces):
    rels = ["biden/biden.jpg", "obama/obama4.jpg", "kit_harington/kit1.jpeg", "obama/obama3.jpg"]
    return rels, [_rgb(faces, r) for r in rels]


def test_best_of_n_generates_all_and_keeps_highest_passing(soul, faces):
    rels, imgs = _candidates(faces)
    calls = []

    def gen(i):
        calls.append(i)
        return imgs[i]

    res = best_of_n(soul, gen, len(imgs), stop_at_first_pass=False)
    assert calls == [0, 1, 2, 3] and res.attempts == 4
    sims = res.report.similarities
    passing = [i for i, e in enumerate(res.report.entries) if e.passed]
    assert passing == [1, 3], res.report.text()
    assert res.passed and res.index == max(passing, key=lambda i: sims[i])
    assert res.image is imgs[res.index]
    assert res.report.mode == "best_of_n" and res.report.best == res.index


def test_best_of_n_stops_at_first_pass(soul, faces):
    rels, imgs = _candidates(faces)
    calls = []
    res = best_of_n(soul, lambda i: calls.append(i) or imgs[i], 4)
    assert calls == [0, 1], "a paid generation after a passing candidate is waste"
    assert res.passed and res.index == 1 and res.attempts == 2


def test_best_of_n_none_pass_returns_best_failing(soul, faces):
    imgs = [_rgb(faces, r) for r in OTHERS[:3]]
    res = best_of_n(soul, lambda i: imgs[i], 3)
    assert res.attempts == 3 and not res.passed
    sims = res.report.similarities
    assert res.index == int(np.argmax(sims))
    with pytest.raises(GuardError, match="N >= 1"):
        best_of_n(soul, lambda i: imgs[0], 0)


def test_best_of_n_honours_interrupt(soul, faces):
    img = _rgb(faces, "biden/biden.jpg")
    calls: list[int] = []
    res = best_of_n(soul, lambda i: calls.append(i) or img, 5, interrupt=lambda: len(calls) >= 2)
    assert calls == [0, 1] and res.attempts == 2 and not res.passed


def _write_video(path: Path, frames: list[np.ndarray], fps: int = 8) -> None:
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for f in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


def _square(rgb: np.ndarray, side: int = 320) -> np.ndarray:
    from PIL import Image

    h, w = rgb.shape[:2]
    m = min(h, w)
    y, x = (h - m) // 4, (w - m) // 2  # keep the upper part: the face
    return np.asarray(Image.fromarray(rgb[y:y + m, x:x + m]).resize((side, side), Image.LANCZOS))


def test_video_frames_of_own_person_pass_and_of_another_fail(soul, faces, tmp_path):
    own = _square(load_photo(faces / "obama" / "obama3.jpg").rgb)
    other = _square(load_photo(faces / "biden" / "biden.jpg").rgb)
    # a short clip that drifts: 12 frames of him, then 12 of someone else
    _write_video(tmp_path / "clip.mp4", [own] * 12 + [other] * 12)
    rep = check_video(soul, tmp_path / "clip.mp4", max_frames=6)
    assert [e.label for e in rep.entries][0] == "frame 0" and rep.entries[-1].label == "frame 23"
    verdicts = [e.passed for e in rep.entries]
    assert verdicts[:3] == [True] * 3 and verdicts[-3:] == [False] * 3, rep.text()
    with pytest.raises(GuardError, match="no such video"):
        check_video(soul, tmp_path / "missing.mp4")
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(GuardError, match="bad.mp4"):
        check_video(soul, tmp_path / "bad.mp4")


def test_sample_frames_spreads_evenly():
    frames = [np.full((2, 2, 3), i, np.uint8) for i in range(100)]
    picked, labels = sample_frames(frames, 5)
    assert labels == ["frame 0", "frame 25", "frame 50", "frame 74", "frame 99"]
    assert [int(f[0, 0, 0]) for f in picked] == [0, 25, 50, 74, 99]
    assert sample_frames(frames[:3], 16)[1] == ["frame 0", "frame 1", "frame 2"]


def test_cli_guard_exit_status_and_json(soul, faces, capsys):
    Library().save(soul, overwrite=True)
    assert main(["guard", "--soul", "obama", str(faces / "obama" / "obama3.jpg"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["all_passed"] and out["entries"][0]["label"] == "obama3.jpg"
    assert main(["guard", "--soul", "obama", str(faces / "obama" / "obama4.jpg"),
                 str(faces / "biden" / "biden.jpg")]) == 1
    text = capsys.readouterr().out
    assert "1/2 passed" in text and "FAIL" in text
    assert main(["guard", "--soul", "nobody", str(faces / "biden" / "biden.jpg")]) == 2
