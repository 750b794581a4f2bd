"""The command line's small lies, second pass: each as a user meets it
(subprocesses on real photos, no network)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def soulid(*args, env=None):
    return subprocess.run([sys.executable, "-m", "soulid", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO.parent, env={**os.environ, **(env or {})}, timeout=300)


@pytest.fixture(scope="module")
def small_lib(faces, tmp_path_factory):
    """A Soul ID made from photos all shrunk to 443 px: 'usable', but small."""
    d = tmp_path_factory.mktemp("small")
    photos = d / "photos"
    photos.mkdir()
    for n in ("obama.jpg", "obama2.jpg", "obama4.jpg", "obama-480p.jpg"):
        im = Image.open(faces / "obama" / n).convert("RGB")
        im.thumbnail((443, 443))
        im.save(photos / n, quality=95)
    p = soulid("--library", d / "lib", "create", "--name", "small", "--analyzer", "dlib", photos)
    assert p.returncode == 0, p.stderr
    return d / "lib", p.stdout + p.stderr


def test_small_photos_get_size_advice_and_the_warning_agrees_with_the_verdict(small_lib):
    _, out = small_lib
    assert "small photos:" in out and "at least 512 px" in out and "960 px" in out
    verdict = next(line for line in out.splitlines() if line.startswith("verdict: "))
    if verdict.startswith("verdict: usable") or verdict.startswith("verdict: strong"):
        assert "weak" not in out.replace(verdict, ""), out  # no "weak persona" next to "usable"
    assert "few photos: " in out


def test_score_exits_2_on_a_missing_file(small_lib, faces, tmp_path):
    lib, _ = small_lib
    p = soulid("--library", lib, "score", "--soul", "small", faces / "obama" / "obama3.jpg", tmp_path / "nope.jpg")
    assert p.returncode == 2
    assert "obama3.jpg: similarity" in p.stdout  # the good file is still scored
    assert "no such file" in p.stderr and "nope.jpg" in p.stderr


def test_qa_sheet_shows_the_person_threshold_and_labels_the_reference(small_lib):
    from soulid.soul.library import Library
    from soulid.soul.report import sheet_from_soul

    lib, _ = small_lib
    soul = Library(lib).load("small")
    sheet = sheet_from_soul(soul)
    thr = soul.analyzer().threshold
    show = soulid("--library", lib, "show", "small").stdout
    header = [t for t, _ in sheet.header()]
    assert any(f"Same-person threshold {thr:.3f}" in h for h in header)
    assert f"{thr:.3f}" in show  # the one threshold show prints
    captions = [t for e in sheet.entries for t, _ in sheet.captions(e)]
    assert sum("reference photo" in c for c in captions) == 1
    assert not any("(threshold " in c for c in captions)


def test_motions_show_the_static_mapping_offline(tmp_path):
    p = soulid("motions", env={"SOULID_CACHE_DIR": str(tmp_path)})
    assert p.returncode == 0
    line = next(x for x in p.stdout.splitlines() if x.startswith("dolly_in"))
    assert "Dolly In" in line and "unresolved" not in line
    orbit = next(x for x in p.stdout.splitlines() if x.startswith("orbit_right"))
    assert "360 Orbit" in orbit


def test_presets_short_by_default(tmp_path):
    env = {"SOULID_CACHE_DIR": str(tmp_path)}
    short = soulid("presets", env=env).stdout.splitlines()
    long = soulid("presets", "--long", env=env).stdout.splitlines()
    n = int(soulid("presets", env=env).stderr.split(" preset(s)")[0].split()[-1])
    assert len(short) == n and len(long) > 3 * n
    assert len(soulid("presets", "show", "Realistic", env=env).stdout.splitlines()) > 3


def test_gif_plays_at_the_clip_rate_and_is_bounded(faces, tmp_path):
    out = tmp_path / "clip.gif"
    p = soulid("animate", "--backend", "local", faces / "obama" / "obama3.jpg", "--motion", "dolly_in",
               "--seconds", "2", "--fps", "24", "--out", out)
    assert p.returncode == 0, p.stderr
    im = Image.open(out)
    durations = []
    for i in range(im.n_frames):
        im.seek(i)
        durations.append(im.info["duration"])
    assert im.n_frames == 48 and abs(sum(durations) - 2000) <= 10  # 24 fps, not 25
    assert max(im.size) <= 480
    assert "request -" not in p.stdout and "local: made here, free" in p.stdout


def test_progress_is_one_line_on_a_terminal():
    """On a terminal the job progress overwrites one line; a rate of percent is never shown."""
    import io

    from soulid.cli import cloud

    buf = io.StringIO()
    buf.isatty = lambda: True
    old = sys.stderr
    sys.stderr = buf
    try:
        cb = cloud.progress_printer()
        for i in range(5):
            cb(i / 10, f"queued {i}s")
        cb(1.0, "succeeded, 5s")
    finally:
        sys.stderr = old
    text = buf.getvalue()
    assert text.count("\n") == 1 and text.count("\r") == 6 and "%/s" not in text


def test_share_keeps_accepted_thumbnails_only(small_lib, tmp_path):
    from soulid.soul.soulfile import SoulID

    lib, _ = small_lib
    out = tmp_path / "s.soulid"
    assert soulid("--library", lib, "export", "small", out, "--share").returncode == 0
    s = SoulID.load(out)
    thumbs = {d["thumb"] for d in s.qa_report["photos"] if d.get("thumb")}
    assert thumbs and set(s.extra_files) == thumbs
    readme = (REPO / "README.md").read_text()
    assert "the QA thumbnails of rejected photos" in readme


def test_char_import_refuses_a_taken_name_before_analysis(small_lib, tmp_path, monkeypatch, capsys):
    """No --name: the character's own name is checked against the library before any photo is analysed."""
    from soulid.cli import main
    from soulid.soul import create
    from soulid.soul.charfile import export_char
    from soulid.soul.library import Library

    lib, _ = small_lib
    char = tmp_path / "small.char"
    export_char(Library(lib).load("small"), char)

    def no_analysis(*a, **k):
        raise AssertionError("analysed before refusing the name")

    monkeypatch.setattr(create, "create_soul_id", no_analysis)
    assert main(["--library", str(lib), "char", "import", str(char), "--analyzer", "dlib"]) == 2
    assert "'small' already exists" in capsys.readouterr().err


def test_train_local_without_a_base_gives_the_full_missing_model_report(small_lib, tmp_path):
    lib, _ = small_lib
    p = soulid("--library", lib, "train", "small", "--provider", "local", env={"SOULID_MODELS_DIR": str(tmp_path)})
    assert p.returncode == 2
    err = p.stderr
    assert f"{tmp_path}/diffusers/stable-diffusion-xl-base-1.0/model_index.json" in err  # the real path
    assert "https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0" in err  # where from
    assert "7 GB" in err and "VRAM" in err and "Traceback" not in err
