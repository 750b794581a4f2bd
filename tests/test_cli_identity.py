"""The `soulid` CLI as users run it: a subprocess, real photos, JSON on stdout."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import helpers_images as hi
from soul_fixtures import obama_split


def run(*args, env_extra=None, check=True):
    env = {**os.environ, **(env_extra or {})}
    p = subprocess.run([sys.executable, "-m", "soulid", *args], capture_output=True, text=True, env=env, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\nstdout:{p.stdout}\nstderr:{p.stderr}")
    return p


@pytest.fixture(scope="module")
def library(faces, tmp_path_factory):
    lib = tmp_path_factory.mktemp("lib")
    build, _ = obama_split(str(faces))
    p = run("--library", str(lib), "create", "--name", "obama", "--analyzer", "dlib", "--json",
            *[str(x) for x in build], str(faces / "kit_harington" / "kit1.jpeg"))
    return lib, json.loads(p.stdout), p


def test_create_json_contract(library):
    lib, out, proc = library
    assert proc.stdout.count("\n") == 1  # exactly one JSON object
    assert set(out) == {"soul_id", "photos", "summary"}
    sid = out["soul_id"]
    assert sid["name"] == "obama" and Path(sid["path"]).is_file() and Path(sid["path"]).parent == lib
    assert sid["counts"]["photos"] == 7
    for ph in out["photos"]:
        assert set(ph) == {"path", "rating", "reasons", "pose", "face_box", "excluded"}
        assert ph["rating"] in ("perfect", "good", "poor", "rejected")
    kit = next(p for p in out["photos"] if p["path"].endswith("kit1.jpeg"))
    assert kit["excluded"] and any("identity outlier" in r for r in kit["reasons"])


def test_list_show_score_report(library, faces, tmp_path):
    lib, _, _ = library
    L = ("--library", str(lib))
    assert json.loads(run(*L, "list", "--json").stdout) == ["obama"]
    shown = json.loads(run(*L, "show", "obama", "--json").stdout)
    assert shown["analyzers"]["dlib"]["embedding_dim"] == 128
    _, held = obama_split(str(faces))
    imgs = [*map(str, held), str(faces / "biden" / "biden.jpg"), str(faces / "rose_leslie" / "rose1.jpg"),
            str(hi.empty(tmp_path / "blank.jpg"))]
    res = json.loads(run(*L, "score", "--soul", "obama", "--json", *imgs).stdout)
    assert [r["same_person"] for r in res] == [True, True, True, False, False, None]
    assert res[-1]["similarity"] is None and "empty" in res[-1]["reason"]
    png = tmp_path / "sheet.png"
    run(*L, "report", "obama", "--out", str(png))
    im = Image.open(png)
    assert im.format == "PNG" and im.width > 600
    html = tmp_path / "sheet.html"
    run(*L, "report", "obama", "--out", str(html))
    text = html.read_text()
    assert "identity outlier" in text and "near-duplicate" in text
    assert text.count("<img") == 7  # every photo, rejected and excluded ones too
    assert "Verdict: " in text and "{'" not in text


def test_export_import_delete(library, tmp_path):
    lib, _, _ = library
    other = tmp_path / "lib2"
    out = tmp_path / "o.soulid"
    run("--library", str(lib), "export", "obama", str(out))
    run("--library", str(other), "import", str(out))
    assert json.loads(run("--library", str(other), "list", "--json").stdout) == ["obama"]
    run("--library", str(other), "delete", "obama", "--yes")
    assert json.loads(run("--library", str(other), "list", "--json").stdout) == []
    p = run("--library", str(other), "delete", "obama", "--yes", check=False)
    assert p.returncode == 2 and "no Soul ID named 'obama'" in p.stderr


def test_create_exits_2_with_one_line_when_nothing_usable(faces, tmp_path):
    p = run("--library", str(tmp_path), "create", "--name", "grp", "--analyzer", "dlib", "--json",
            str(faces / "group" / "two_people.jpg"), check=False)
    assert p.returncode == 2
    assert json.loads(p.stdout)["soul_id"] is None
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("soulid: no Soul ID made")
    bad = run("--library", str(tmp_path), "create", "--name", "../x", str(faces / "obama" / "obama.jpg"), check=False)
    assert bad.returncode == 2 and "'..'" in bad.stderr


def test_library_from_environment(faces, tmp_path):
    env = {"SOULID_LIBRARY": str(tmp_path / "envlib")}
    run("create", "--name", "one", "--analyzer", "dlib", str(faces / "obama" / "obama.jpg"), env_extra=env)
    assert (tmp_path / "envlib" / "one.soulid").is_file()
