"""How this copy of soulid was installed, and the command that adds the local extra to it.

No package index carries ``soulid``, so asking pip for ``soulid[local]`` by
name works nowhere. The command that does work depends on the install in use:

* ``checkout``: a source checkout (``pyproject.toml`` beside the package,
  installed editable or run from the folder): ``pip install -e ".[local]"`` in
  that folder.
* ``comfyui``: the checkout folder inside ComfyUI's ``custom_nodes/``, loaded
  by ComfyUI: ``requirements-local.txt`` of that folder, installed with
  ComfyUI's own interpreter.
* ``wheel``: an installed package (``site-packages/soulid``): the
  ``requirements-local.txt`` shipped inside the package.

Every message that names the local extra takes its command from
:func:`local_extra_command`; tests/test_install_advice.py runs each command
for its install kind and checks that README.md gives the same ones.
"""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

#: The file beside requirements.txt (shipped in the wheel too) listing the local extra.
REQUIREMENTS_LOCAL = "requirements-local.txt"
#: The kinds :func:`install_kind` returns.
KINDS = ("checkout", "comfyui", "wheel")


def package_root() -> Path:
    """The folder of the ``soulid`` package in use (a checkout, a custom-node folder or site-packages/soulid)."""
    # abspath, not resolve: ComfyUI may load the pack through a symlink in custom_nodes/.
    return Path(os.path.abspath(__file__)).parent.parent


def install_kind(root: Path | None = None) -> str:
    """``"comfyui"`` when ``root`` sits in a ``custom_nodes`` folder, ``"checkout"`` when it holds
    ``pyproject.toml`` or ``.git``, else ``"wheel"``. ``root`` defaults to :func:`package_root`."""
    root = Path(root) if root is not None else package_root()
    if root.parent.name == "custom_nodes":
        return "comfyui"
    if (root / "pyproject.toml").is_file() or (root / ".git").exists():
        return "checkout"
    return "wheel"


def local_extra_command(root: Path | None = None, python: str | None = None) -> str:
    """The shell command that installs the local extra (torch, diffusers, transformers, accelerate,
    peft, insightface, onnxruntime) for the install at ``root`` into the interpreter ``python``
    (default: this one, which inside ComfyUI is ComfyUI's)."""
    root = Path(root) if root is not None else package_root()
    py = shlex.quote(python or sys.executable)
    kind = install_kind(root)
    if kind == "checkout":
        return f"cd {shlex.quote(str(root))} && {py} -m pip install -e \".[local]\""
    return f"{py} -m pip install -r {shlex.quote(str(root / REQUIREMENTS_LOCAL))}"
