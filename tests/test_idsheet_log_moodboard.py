"""ID photo sheet, character library log and moodboard, on the real fixture photos."""
from __future__ import annotations

import json

import numpy as np
import pytest

from soulid.backends.base import ImageResult
from soulid.cli import main
from soulid.backends.idsheet import view_generator
from soulid.soul import charlog, idsheet
from soulid.soul.errors import Interrupted
from soulid.soul.create import create_soul_id
from soulid.soul.guard import check_images
from soulid.soul.imageio import downscale, load_photo
from soulid.soul.library import Library
from soulid.soul.grid import NEUTRAL, GridLayout, label_grid, moodboard
from soulid.soul.presets import get_preset
from soulid.soul.soulfile import SoulID

VIEW_PHOTOS = ("obama.jpg", "obama2.jpg", "obama4.jpg", "obama-720p.jpg")


@pytest.fixture(scope="module")
def views(faces):
    return [downscale(load_photo(faces / "obama" / n).rgb, 768) for n in VIEW_PHOTOS]


@pytest.fixture(scope="module")
def soul(faces):
    res = create_soul_id([str(faces / "obama" / n) for n in ("obama.jpg", "obama2.jpg", "obama-720p.jpg")],
                         "obama", analyzer="dlib", workers=1)
    return res.soul


def _differs_from_background(region: np.ndarray) -> bool:
    return bool(np.any(np.abs(region.astype(int) - np.array(NEUTRAL)).sum(axis=-1) > 60))


def test_sheet_composites_four_labelled_views_on_neutral_background(views):
    sheet = idsheet.compose_sheet(views)
    L = idsheet.LAYOUT
    assert sheet.shape == (L.size(4)[1], L.size(4)[0], 3) == (1152, 1072, 3) and sheet.dtype == np.uint8
    assert tuple(sheet[2, 2]) == NEUTRAL and tuple(sheet[-2, -2]) == NEUTRAL
    for i in range(4):
        x0, y0, x1, y1 = L.box(i)
        band = sheet[y1:y1 + L.caption, x0:x1]
        assert _differs_from_background(band), f"no label drawn under view {i}"
        assert sheet[y0:y1, x0:x1].std() > 20  # a photo, not an empty tile
    with pytest.raises(ValueError, match="needs 4 views"):
        idsheet.compose_sheet(views[:3])


def test_sheet_is_usable_as_input_to_a_new_soul_id(views, faces):
    sheet = idsheet.compose_sheet(views)
    tiles = idsheet.split_sheet(sheet)
    assert [t.shape for t in tiles] == [(512, 512, 3)] * 4
    inputs = idsheet.sheet_inputs(sheet, "copy")
    assert [lab for lab, _ in inputs] == ["copy_front.png", "copy_left45.png", "copy_right45.png", "copy_smiling.png"]
    res = create_soul_id(inputs, "from_sheet", analyzer="dlib", workers=1)
    assert res.soul is not None and len(res.soul.photos) >= 3, res.report
    # the identity built from the sheet recognises him in a photo not on it, and not someone else
    probe = [downscale(load_photo(faces / rel).rgb, 800) for rel in ("obama/obama3.jpg", "biden/biden.jpg")]
    rep = check_images(res.soul, probe)
    assert [e.passed for e in rep.entries] == [True, False], rep.text()
    with pytest.raises(ValueError, match="not an ID sheet"):
        idsheet.split_sheet(views[0])


class RecordingBackend:
    """A backend that answers each view with a real photo and records the requests."""

    name = "recording"

    def __init__(self, photos):
        self.photos, self.requests = photos, []

    def generate(self, req, progress=None, interrupt=None):
        self.requests.append(req)
        img = self.photos[len(self.requests) - 1].astype(np.float32)[None] / 255.0
        return ImageResult(images=img, request_id=f"r{len(self.requests)}", cost={"credits": 1.0})


def test_make_id_sheet_asks_one_view_each_with_one_seed(soul, views):
    be = RecordingBackend(views)
    seen = []
    sheet = idsheet.make_id_sheet(view_generator(be, soul), prompt="navy suit", seed=42,
                                  progress=lambda f, m: seen.append(f))
    assert len(be.requests) == 4
    for req, view in zip(be.requests, idsheet.VIEWS):
        assert req.soul is soul and req.seed == 42 and req.aspect == "1:1"
        assert req.prompt.startswith("navy suit, " + view.prompt) and "grey seamless" in req.prompt
        assert "sunglasses" in req.negative_prompt
    assert "45 degrees toward the left" in be.requests[1].prompt and "smile" in be.requests[3].prompt
    assert [i["request_id"] for i in sheet.info] == ["r1", "r2", "r3", "r4"]
    assert np.array_equal(sheet.image, idsheet.compose_sheet(sheet.views))
    assert seen[0] == 0.0 and seen[-1] == 1.0
    assert len(idsheet.sheet_inputs(sheet)) == 4 and idsheet.sheet_inputs(sheet)[0][1].shape == views[0].shape
    with pytest.raises(Interrupted):
        idsheet.make_id_sheet(view_generator(RecordingBackend(views), soul), interrupt=lambda: True)


def test_log_appends_prompt_preset_seed_backend_model_score_thumbnail(soul, views, faces):
    s = SoulID.from_bytes(soul.to_bytes())
    lib = Library()
    lib.save(s, overwrite=True)
    movie = get_preset("Movie", 0.8)
    score = check_images(s, [views[1]]).entries[0]
    e1 = charlog.log_generation(lib, "obama", "walking in the rain", image=views[1], preset=movie, seed=7,
                                backend="local", model="sdxl-base-1.0", score=score, extra={"steps": 30})
    other = downscale(load_photo(faces / "biden" / "biden.jpg").rgb, 600)
    e2 = charlog.log_generation(lib, "obama", "press room", image=other, preset="Realistic", seed=8,
                                backend="higgsfield", model="soul", score=check_images(s, [other]).entries[0])
    back = lib.load("obama")
    log = charlog.entries(back)
    assert [e["n"] for e in log] == [1, 2] and log[0]["time"].endswith("+00:00")
    assert log[0]["prompt"] == "walking in the rain" and log[0]["seed"] == 7 and log[0]["backend"] == "local"
    assert log[0]["model"] == "sdxl-base-1.0" and log[0]["extra"] == {"steps": 30}
    assert log[0]["preset"] == {"name": "Movie", "family": "cinema", "remote_id": None, "strength": 0.8}
    assert log[0]["score"]["passed"] is True and log[1]["score"]["passed"] is False
    assert log[0]["score"]["similarity"] == pytest.approx(score.similarity, abs=1e-4)
    assert log[0]["size"] == [views[1].shape[1], views[1].shape[0]]
    t = charlog.thumbnail(back, log[0])
    assert max(t.shape[:2]) == charlog.THUMB_SIDE and back.extra_files["thumbs/1.jpg"][:2] == b"\xff\xd8"
    assert e1["thumb"] == "thumbs/1.jpg" and e2["thumb"] == "thumbs/2.jpg"
    # the thumbnail still shows him: it scores as the same person
    assert check_images(back, [downscale(views[1], 256)]).entries[0].passed
    text = charlog.format_entries(back)
    assert "#1" in text and "preset Movie" in text and "seed 8" in text and "FAIL" in text


def test_log_refuses_secrets_and_bad_fields(soul):
    s = SoulID.from_bytes(soul.to_bytes())
    with pytest.raises(charlog.LogError, match="api_key"):
        charlog.append_entry(s, "x", extra={"api_key": "sk-123"})
    with pytest.raises(charlog.LogError, match="seed"):
        charlog.append_entry(s, "x", seed="42")
    with pytest.raises(charlog.LogError, match="JSON"):
        charlog.append_entry(s, "x", extra={"when": object()})
    assert s.log == []
    with pytest.raises(charlog.LogError, match="no logged generation has a thumbnail"):
        charlog.log_moodboard(s)


def test_cli_log_json_and_moodboard(soul, views, tmp_path, capsys):
    s = SoulID.from_bytes(soul.to_bytes())
    for i, v in enumerate(views[:3]):
        charlog.append_entry(s, f"shot {i}", v, preset="Japandi", seed=100 + i, backend="local", model="m")
    Library().save(s, overwrite=True)
    out_png = tmp_path / "log.png"
    assert main(["log", "obama", "--json", "--moodboard", str(out_png)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["seed"] for r in rows] == [100, 101, 102] and rows[2]["prompt"] == "shot 2"
    board = load_photo(out_png).rgb
    assert board.shape[0] > 256 and board.shape[1] > 2 * 256
    assert main(["log", "nobody"]) == 2


def test_moodboard_grid_with_captions(views):
    entries = [{"preset": "Movie", "seed": 1, "score": 0.97, "passed": True},
               {"preset": {"name": "Japandi"}, "seed": 2, "score": {"similarity": 0.71, "passed": False}},
               {"caption": "reference"}]
    board = moodboard(views[:3], entries, columns=3, tile=200, title="Campaign")
    fs = 200 // 16
    layout = GridLayout(3, 200, pad=8, caption=3 * (fs + 4) + 8, head=fs + 24)
    assert board.shape == (layout.size(3)[1], layout.size(3)[0], 3)
    for i in range(3):
        x0, y0, x1, y1 = layout.box(i)
        assert _differs_from_background(board[y1:y1 + layout.caption, x0:x1])
    # pass/fail captions are coloured green/red
    x0, _, x1, y1 = layout.box(0)
    cap0 = board[y1:y1 + layout.caption, x0:x1].reshape(-1, 3).astype(int)
    x0, _, x1, y1 = layout.box(1)
    cap1 = board[y1:y1 + layout.caption, x0:x1].reshape(-1, 3).astype(int)
    assert np.any((cap0[:, 1] - cap0[:, 0] > 60)) and np.any((cap1[:, 0] - cap1[:, 1] > 80))
    assert _differs_from_background(board[: layout.head, : layout.size(3)[0] // 2])  # the title
    square = moodboard(views, None)
    assert square.shape[1] == GridLayout(2, 384, 12, 12).size(4)[0]  # 4 images: 2 columns
    with pytest.raises(ValueError, match="no images"):
        moodboard([], [])
    with pytest.raises(ValueError, match="tile"):
        moodboard(views, tile=10)


def test_label_grid_fits_images_keeping_aspect():
    wide = np.zeros((100, 400, 3), np.uint8)
    wide[:] = (200, 30, 30)
    grid = label_grid([wide], [["wide"]], GridLayout(1, 200, 10, 30))
    tile = grid[10:210, 10:210]
    red = (tile[..., 0] > 150) & (tile[..., 1] < 80)
    rows = np.where(red.any(axis=1))[0]
    assert rows.size == 50 and rows.min() == 75 and rows.max() == 124  # 400x100 -> 200x50, centred
    cols = np.where(red.any(axis=0))[0]
    assert cols.size == 200
