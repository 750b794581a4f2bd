"""Import hygiene, pyproject metadata, and analyzer selection / model-file errors."""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from soulid.soul.analysis.insightface_analyzer import PACKS, find_pack
from soulid.soul.analysis.registry import available_analyzers, resolve_name
from soulid.soul.errors import ModelFilesMissing

REPO = Path(__file__).resolve().parents[1]


def test_importing_the_pack_pulls_in_no_heavy_modules():
    code = (
        "import sys, soulid, soulid.cli, soulid.soul.create, soulid.soul.score, soulid.backends.base\n"
        "soulid.cli.build_parser()\n"
        "heavy = [m for m in ('torch', 'diffusers', 'comfy', 'comfy_api', 'folder_paths', 'insightface', 'dlib') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_dlib_models_found_without_importing_pkg_resources():
    code = (
        "import sys\n"
        "from soulid.soul.analysis import get_analyzer\n"
        "a = get_analyzer('dlib')\n"
        "print(a.name, 'face_recognition_models' in sys.modules, 'pkg_resources' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["dlib", "False", "False"]


def test_pyproject_and_requirements_in_step():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    proj = meta["project"]
    assert proj["name"] == "soulid"
    comfy = meta["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"] and comfy["requires-comfyui"]
    assert not any(d.startswith("torch") for d in proj["dependencies"])  # ComfyUI brings its own torch
    reqs = [l.strip() for l in (REPO / "requirements.txt").read_text().splitlines() if l.strip() and not l.startswith("#")]
    # What ComfyUI-Manager installs is the core only (cloud nodes + Soul ID creation); the
    # local diffusion stack stays an extra (see tests/test_light_install.py).
    assert sorted(reqs) == sorted(d.split("#")[0].strip() for d in proj["dependencies"])
    assert not set(reqs) & set(proj["optional-dependencies"]["local"])


def test_auto_falls_back_to_dlib_without_insightface_models(monkeypatch, tmp_path):
    monkeypatch.delitem(sys.modules, "folder_paths", raising=False)
    monkeypatch.setenv("SOULID_INSIGHTFACE_DIR", str(tmp_path))
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    assert available_analyzers() == ["dlib"]
    assert resolve_name("auto") == "dlib"
    with pytest.raises(ValueError, match="analyzer must be one of"):
        resolve_name("facenet")


def test_missing_pack_error_names_every_path_and_the_nested_mistake(monkeypatch, tmp_path):
    # Outside ComfyUI (another test may have imported ComfyUI's folder_paths).
    monkeypatch.delitem(sys.modules, "folder_paths", raising=False)
    comfy = tmp_path / "ComfyUI"
    nested = comfy / "models" / "insightface" / "models" / "antelopev2" / "antelopev2"
    nested.mkdir(parents=True)
    for f in PACKS["antelopev2"].values():
        (nested / f).write_bytes(b"onnx")
    monkeypatch.setenv("COMFYUI_PATH", str(comfy))
    monkeypatch.setenv("SOULID_INSIGHTFACE_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(ModelFilesMissing) as e:
        find_pack("antelopev2")
    msg = str(e.value)
    expected = [
        tmp_path / "elsewhere" / "models" / "antelopev2" / "scrfd_10g_bnkps.onnx",
        tmp_path / "elsewhere" / "antelopev2" / "glintr100.onnx",
        comfy / "models" / "insightface" / "models" / "antelopev2" / "scrfd_10g_bnkps.onnx",
        comfy / "models" / "insightface" / "models" / "antelopev2" / "glintr100.onnx",
    ]
    for p in expected:
        assert str(p) in msg
    assert "one folder too deep" in msg and str(nested) in msg
    # once moved up, the pack is found
    for f in nested.iterdir():
        f.rename(nested.parent / f.name)
    assert find_pack("antelopev2") == nested.parent
