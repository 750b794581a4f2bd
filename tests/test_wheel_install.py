"""The installed package, as a user who runs ``pip install soulid`` gets it.

One wheel is built from a copy of the source tree (``pip wheel --no-deps``)
and installed *non-editable* into a fresh virtual environment, with its
dependencies from the package index (pip's cache keeps this quick). Then:

* the wheel holds every module of the source tree (everything but tests/,
  benchmarks/, docs/ and setup.py) and every data file (templates and their
  thumbnails, API twins, locales, web extension, style data);
* every module imports from the installed copy (the node modules with
  ComfyUI from ``$COMFYUI_PATH`` on the path, the local pipelines with the
  test interpreter's local extra on the path);
* every sub-command's ``--help`` works (sub-commands are read from the
  installed argparse parser, nested ones too);
* the main job, ``soulid create --name obama --overwrite <photos>``, makes a
  Soul ID from the real photo fixtures.

Skips, saying why, when pip cannot reach the package index.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
#: Folders of the checkout that are no part of the package.
NOT_SHIPPED = {"tests", "benchmarks", "docs", "build", "dist"}
#: Data folders whose every file ships (relative to the repository root).
DATA_DIRS = ("workflows", "locales", "web", "soul/data")


def _skip_dir(rel: Path) -> bool:
    top = rel.parts[0]
    return top in NOT_SHIPPED or top.startswith(".") or top.endswith(".egg-info") or "__pycache__" in rel.parts


def source_modules() -> list[str]:
    """Every ``.py`` file of the package in the source tree, as a wheel path (``soulid/...``)."""
    out = []
    for p in sorted(REPO.rglob("*.py")):
        rel = p.relative_to(REPO)
        if len(rel.parts) > 1 and _skip_dir(rel):
            continue
        if rel == Path("setup.py"):
            continue
        out.append("soulid/" + rel.as_posix())
    return out


def data_files() -> list[str]:
    out = []
    for d in DATA_DIRS:
        for p in sorted((REPO / d).rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".py":
                out.append("soulid/" + p.relative_to(REPO).as_posix())
    return out


def _run(cmd, timeout=900, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)


def _offline(r: subprocess.CompletedProcess) -> bool:
    text = (r.stdout + r.stderr).lower()
    return r.returncode != 0 and any(w in text for w in ("could not find a version", "connection", "network",
                                                         "temporary failure", "no matching distribution"))


class Installed:
    def __init__(self, wheel: Path, venv: Path):
        self.wheel = wheel
        self.venv = venv
        self.python = venv / "bin" / "python"
        self.soulid = venv / "bin" / "soulid"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    # A copy, so that the build writes nothing into the checkout (build/, *.egg-info).
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "venv", "build", "dist", "*.egg-info",
                                                              "__pycache__", ".pytest_cache", "*.pyc"))
    r = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp / "dist", src])
    if _offline(r):
        pytest.skip(f"pip cannot reach the package index to build: {r.stderr.strip().splitlines()[-1:]}")
    assert r.returncode == 0, r.stderr[-3000:]
    wheel = next((tmp / "dist").glob("soulid-*.whl"))
    venv = tmp / "venv"
    r = _run([sys.executable, "-m", "venv", venv])
    assert r.returncode == 0, r.stderr
    inst = Installed(wheel, venv)
    r = _run([inst.python, "-m", "pip", "install", "-q", wheel])
    if _offline(r):
        pytest.skip(f"pip cannot reach the package index: {r.stderr.strip().splitlines()[-1:]}")
    assert r.returncode == 0, r.stderr[-3000:]
    return inst


def _site_dirs() -> str:
    """This interpreter's site folders: the local extra (torch, diffusers...), behind the fresh venv's packages."""
    return os.pathsep.join(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))


def _env(tmp: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOULID_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    for var in ("DATA_DIR", "CONFIG_DIR", "CACHE_DIR", "LIBRARY", "MODELS_DIR"):
        env[f"SOULID_{var}"] = str(tmp / var.lower())
    env.update(extra)
    return env


def test_wheel_holds_every_module_and_data_file(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    modules = source_modules()
    assert len(modules) > 50 and "soulid/backends/comfyui/__init__.py" in modules
    missing = [m for m in modules if m not in names]
    assert missing == [], f"modules of the source tree missing from the wheel: {missing}"
    data = data_files() + ["soulid/requirements-local.txt"]
    assert any(d.endswith(".jpg") for d in data) and any("/api/" in d for d in data)
    missing = [d for d in data if d not in names]
    assert missing == [], f"data files missing from the wheel: {missing}"
    shipped_tests = sorted(n for n in names if n.split("/")[1:2] and n.split("/")[1] in NOT_SHIPPED)
    assert shipped_tests == [] and "soulid/setup.py" not in names


_IMPORT_ALL = r"""
import importlib, json, os, sys
mods = json.loads(sys.argv[1])
import soulid
out = {"file": soulid.__file__, "failed": {}}
if os.environ.get("COMFYUI_PATH"):
    sys.path.append(os.environ["COMFYUI_PATH"])
    from comfy.cli_args import args
    args.cpu = True
    import comfy.model_management
for m in mods:
    try:
        importlib.import_module(m)
    except BaseException as e:
        out["failed"][m] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
"""


def test_every_module_imports_from_the_installed_package(installed, tmp_path):
    mods = [m[:-3].replace("/", ".").removesuffix(".__init__") for m in source_modules()]
    mods = [m for m in mods if m != "soulid.__main__"]  # runs the CLI: covered by the --help test
    comfy = os.environ.get("COMFYUI_PATH")
    if not comfy:
        node_mods = [m for m in mods if m.startswith("soulid.nodes")]
        mods = [m for m in mods if m not in node_mods]
    env = _env(tmp_path, PYTHONPATH=_site_dirs())
    r = _run([installed.python, "-c", _IMPORT_ALL, json.dumps(mods)], env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert Path(out["file"]).resolve().is_relative_to(installed.venv.resolve()), out["file"]
    assert out["failed"] == {}, out["failed"]
    if not comfy:
        pytest.skip(f"COMFYUI_PATH is not set: the {len(node_mods)} node modules were not imported")


_SUBCOMMANDS = r"""
import argparse, json
from soulid.cli import build_parser

def walk(p, path):
    yield path
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sp in a.choices.items():
                yield from walk(sp, path + [name])

seen, out = set(), []
for path in walk(build_parser(), []):
    out.append(path)
print(json.dumps(out))
"""


def test_every_subcommand_help_works(installed, tmp_path):
    env = _env(tmp_path)
    r = _run([installed.python, "-c", _SUBCOMMANDS], env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    paths = json.loads(r.stdout)
    tops = {p[0] for p in paths if p}
    assert {"create", "run", "campaign", "train", "generate"} <= tops, sorted(tops)
    failed = {}
    for path in paths:
        r = _run([installed.soulid, *path, "--help"], env=env, cwd=tmp_path, timeout=120)
        if r.returncode != 0 or "usage: soulid" not in r.stdout:
            failed[" ".join(path) or "(none)"] = (r.returncode, r.stderr[-500:])
    assert failed == {}, failed
    assert len(paths) > len(tops)


def test_main_job_from_the_installed_package(installed, tmp_path, faces):
    env = _env(tmp_path)
    r = _run([installed.soulid, "create", "--name", "obama", "--overwrite", faces / "obama"], env=env, cwd=tmp_path,
             timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    saved = tmp_path / "library" / "obama.soulid"
    assert saved.is_file() and saved.stat().st_size > 1000
    assert "saved Soul ID 'obama'" in r.stdout
    r = _run([installed.soulid, "show", "obama"], env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 0 and "obama" in r.stdout, r.stderr


def test_local_extra_advice_of_the_installed_package_runs(installed, tmp_path):
    """The wheel's own advice, and README's line for an installed package, resolve the local extra."""
    env = _env(tmp_path, PYTHONPATH=_site_dirs(), PATH=f"{installed.venv / 'bin'}{os.pathsep}{os.environ['PATH']}")
    code = "from soulid.backends.install import install_kind, local_extra_command as c; print(install_kind()); print(c())"
    r = _run([installed.python, "-c", code], env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    kind, cmd = r.stdout.strip().splitlines()
    readme = (REPO / "README.md").read_text()
    line = next(x for x in readme.splitlines() if x.startswith("python -m pip install -r \"$(python -c"))
    assert kind == "wheel" and cmd.startswith(f"{installed.python} -m pip install -r "), (kind, cmd)
    for c in (cmd, line):
        r = subprocess.run(c.replace(" -m pip install ", " -m pip install --dry-run ", 1), shell=True,
                           capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
        assert r.returncode == 0, (c, r.stdout[-2000:], r.stderr[-2000:])
        for name in ("torch", "diffusers", "insightface", "peft"):
            assert f"Requirement already satisfied: {name}" in r.stdout, (c, name, r.stdout[-2000:])
