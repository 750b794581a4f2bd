"""Install advice for the local extra works where the user is.

No package index carries ``soulid``: ``pip install "soulid[local]"`` works
nowhere. :func:`soulid.backends.install.local_extra_command` gives the command
for the install in use (a checkout, a ComfyUI custom-node folder, an installed
wheel); here each kind is laid out for real, the command is taken from the
module *as imported from that location* and run by the shell (``pip install
--dry-run``: this interpreter already has the local extra, so pip resolves
the command completely without installing). README.md must give the same
commands, and no message may give the one that never works.
(The installed-wheel kind is run from a real wheel in test_wheel_install.py.)
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NEVER = re.compile(r"""pip install ["']?soulid\[local\]""")

_ADVICE = "from soulid.backends.install import install_kind, local_extra_command as c; print(install_kind()); print(c())"


def _advice(sys_path_first: Path, cwd: Path) -> tuple[str, str]:
    """(kind, command) as the soulid package found first on ``sys_path_first`` reports them."""
    code = f"import sys; sys.path.insert(0, {str(sys_path_first)!r}); import soulid; " \
           f"assert soulid.__file__.startswith({str(sys_path_first)!r}), soulid.__file__; " + _ADVICE
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=cwd)
    assert r.returncode == 0, r.stderr
    kind, cmd = r.stdout.strip().splitlines()
    return kind, cmd


def _run_dry(cmd: str, cwd: Path) -> subprocess.CompletedProcess:
    assert " -m pip install " in cmd
    cmd = cmd.replace(" -m pip install ", " -m pip install --dry-run ", 1)
    return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=600, cwd=cwd)


def _reqs(lines) -> list[str]:
    return [x.strip() for x in lines if x.strip() and not x.strip().startswith("#")]


def test_requirements_local_is_the_local_extra():
    local = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["local"]
    assert _reqs((REPO / "requirements-local.txt").read_text().splitlines()) == local


def test_checkout_advice_runs(tmp_path):
    # The checkout's parent on sys.path: a folder named "soulid" holding the checkout.
    parent = tmp_path / "src"
    parent.mkdir()
    (parent / "soulid").symlink_to(REPO, target_is_directory=True)
    kind, cmd = _advice(parent, tmp_path)
    assert kind == "checkout" and cmd.endswith('-m pip install -e ".[local]"'), cmd
    assert cmd.startswith(f"cd {parent / 'soulid'} && ")
    r = _run_dry(cmd, tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "Would install" in r.stdout or "already satisfied" in r.stdout, r.stdout


def test_comfyui_custom_node_advice_runs(tmp_path):
    custom = tmp_path / "ComfyUI" / "custom_nodes"
    custom.mkdir(parents=True)
    (custom / "soulid").symlink_to(REPO, target_is_directory=True)  # as a `git clone` there lays it out
    kind, cmd = _advice(custom, tmp_path)
    assert kind == "comfyui", kind
    assert cmd == f"{sys.executable} -m pip install -r {custom / 'soulid' / 'requirements-local.txt'}", cmd
    r = _run_dry(cmd, tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    for name in ("torch", "diffusers", "insightface", "peft"):
        assert f"Requirement already satisfied: {name}" in r.stdout, (name, r.stdout[-2000:])


def test_messages_and_readme_give_only_working_commands():
    offenders = []
    for p in [REPO / "README.md", REPO / "CONTRIBUTING.md", REPO / "requirements.txt",
              *[q for d in ("cli", "backends", "nodes", "soul", "web") for q in (REPO / d).rglob("*.*")]]:
        if p.suffix in (".py", ".md", ".txt", ".js") and NEVER.search(p.read_text(errors="replace")):
            offenders.append(str(p.relative_to(REPO)))
    assert offenders == [], f'`pip install "soulid[local]"` works nowhere (no index has soulid): {offenders}'
    readme = (REPO / "README.md").read_text()
    # The three forms local_extra_command gives, as README shows them.
    assert 'pip install -e ".[local]"' in readme
    assert "python -m pip install -r custom_nodes/soulid/requirements-local.txt" in readme
    assert "python -m pip install -r \"$(python -c 'import soulid, os; print(os.path.dirname(soulid.__file__))')" \
           "/requirements-local.txt\"" in readme


@pytest.mark.parametrize("kind", ["checkout", "comfyui", "wheel"])
def test_install_kind_from_layout(tmp_path, kind):
    from soulid.backends.install import install_kind, local_extra_command

    root = {"checkout": tmp_path / "soulid", "comfyui": tmp_path / "custom_nodes" / "soulid",
            "wheel": tmp_path / "site-packages" / "soulid"}[kind]
    root.mkdir(parents=True)
    (root / "__init__.py").write_text("")
    if kind != "wheel":
        (root / "pyproject.toml").write_text("")
    assert install_kind(root) == kind
    cmd = local_extra_command(root, python="py")
    want = {"checkout": f'cd {root} && py -m pip install -e ".[local]"'}.get(
        kind, f"py -m pip install -r {root / 'requirements-local.txt'}")
    assert cmd == want
