"""The small CLI frictions, each as a user meets it (subprocesses, real photos)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def soulid(*args, cwd=None, env=None, input=None):
    return subprocess.run([sys.executable, "-m", "soulid", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or REPO.parent, env=env or os.environ.copy(), input=input, timeout=300)


@pytest.fixture(scope="module")
def lib(faces, tmp_path_factory):
    d = tmp_path_factory.mktemp("lib")
    p = soulid("create", "--name", "obama", "--analyzer", "dlib", "--library", d,  # --library after the command
               faces / "obama" / "obama.jpg", faces / "obama" / "obama2.jpg", faces / "obama" / "obama4.jpg")
    assert p.returncode == 0, p.stderr
    return d


def test_library_before_and_after_any_command(lib):
    for args in (("--library", lib, "list", "--json"), ("list", "--json", "--library", lib),
                 ("list", f"--library={lib}", "--json")):
        assert json.loads(soulid(*args).stdout) == ["obama"]
    assert "obama" in soulid("show", "obama", "--library", lib).stdout


def test_list_shows_photos_verdict_loras_created(lib):
    out = soulid("--library", lib, "list").stdout.splitlines()
    assert out[0].split() == ["name", "photos", "verdict", "LoRAs", "created"]
    row = out[1].split()
    assert row[:4] == ["obama", "3", "weak", "0"] and row[4].startswith("20")


def test_report_format_follows_the_suffix(lib, tmp_path):
    jpg = tmp_path / "qa.jpg"
    assert soulid("--library", lib, "report", "obama", "--out", jpg).returncode == 0
    assert Image.open(jpg).format == "JPEG"
    p = soulid("--library", lib, "report", "obama", "--out", tmp_path / "qa.gif")
    assert p.returncode == 2 and "use .png, .jpg or .html" in p.stderr and not (tmp_path / "qa.gif").exists()


def test_rename_clash_names_the_real_flag(lib, faces):
    soulid("--library", lib, "create", "--name", "other", "--analyzer", "dlib", faces / "biden" / "biden.jpg")
    p = soulid("--library", lib, "rename", "other", "obama")
    assert p.returncode == 2 and "pass --overwrite" in p.stderr
    p = soulid("--library", lib, "create", "--name", "obama", faces / "obama" / "obama.jpg")
    assert p.returncode == 2 and "pass --overwrite" in p.stderr and "photo 1" not in p.stderr  # refused before analysis


def test_delete_asks_first(lib, faces):
    soulid("--library", lib, "create", "--name", "tmp", "--analyzer", "dlib", faces / "biden" / "biden.jpg")
    p = soulid("--library", lib, "delete", "tmp")  # no terminal: refuses instead of deleting unasked
    assert p.returncode == 2 and "--yes" in p.stderr and (lib / "tmp.soulid").exists()
    assert soulid("--library", lib, "delete", "tmp", "--yes").returncode == 0 and not (lib / "tmp.soulid").exists()


def test_empty_folder_says_so(tmp_path):
    (tmp_path / "empty").mkdir()
    p = soulid("--library", tmp_path / "lib", "create", "--name", "e", tmp_path / "empty")
    assert p.returncode == 2 and "no photos found" in p.stderr and "0 photo(s)" not in p.stderr


def test_presets_show_and_refresh_without_key():
    p = soulid("presets", "show", "Realistic")
    assert p.returncode == 0 and p.stdout.splitlines()[0].startswith("Realistic")
    assert "1 preset(s)" in p.stderr
    p = soulid("presets", "--refresh")
    assert p.returncode == 1 and "could not be fetched" in p.stderr


def test_animate_writes_gif_and_never_drops_a_clip_in_cwd(faces, tmp_path):
    img = faces / "obama" / "obama.jpg"
    cwd = tmp_path / "work"
    cwd.mkdir()
    gif = cwd / "clip.gif"
    p = soulid("animate", img, "--backend", "local", "--motion", "zoom_in", "--seconds", "0.5", "--fps", "8",
               "--size", "128x160", "--out", gif, cwd=cwd)
    assert p.returncode == 0, p.stderr
    im = Image.open(gif)
    assert im.format == "GIF" and im.n_frames == 4 and im.size == (128, 160)
    p = soulid("animate", img, "--backend", "local", "--seconds", "0.5", "--fps", "8", "--size", "128x160", cwd=cwd)
    assert p.returncode == 0, p.stderr
    made = Path(p.stdout.strip().splitlines()[-1])
    assert made.is_file() and made.suffix == ".mp4" and cwd not in made.parents
    assert sorted(x.name for x in cwd.iterdir()) == ["clip.gif"]
    p = soulid("animate", img, "--backend", "local", "--out", cwd / "clip.mov", cwd=cwd)
    assert p.returncode == 2 and ".mp4 or .gif" in p.stderr
