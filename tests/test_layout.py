"""CONTRIBUTING's "Layout" block matches the tree: it names every top-level
folder and every sub-package, and every path it names exists."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _layout_paths() -> list[str]:
    text = (ROOT / "CONTRIBUTING.md").read_text()
    block = re.search(r"^## Layout\n.*?^```\n(.*?)^```", text, re.S | re.M)
    assert block, "CONTRIBUTING.md has no Layout code block"
    return [line.split()[0] for line in block.group(1).splitlines() if line.strip()]


def _tracked_top_level() -> set[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode == 0 and out.stdout:
        names = {f.split("/")[0] for f in out.stdout.splitlines()}
    else:  # not a git checkout (an sdist): what is on disk
        names = {p.name for p in ROOT.iterdir()}
    return {n + "/" if (ROOT / n).is_dir() else n for n in names if not n.startswith(".") and not n.endswith(".egg-info")}


def test_every_named_path_exists():
    missing = [p for p in _layout_paths() if not (ROOT / p.rstrip("/")).exists()]
    assert not missing, f"CONTRIBUTING.md Layout names paths that do not exist: {missing}"


def test_every_folder_and_sub_package_is_named():
    named = set(_layout_paths())
    folders = {n for n in _tracked_top_level() if n.endswith("/")} | {"__init__.py", "__main__.py"}
    subpackages = {f"{p.parent.relative_to(ROOT).as_posix()}/" for pkg in ("soul", "backends", "nodes", "cli")
                   for p in (ROOT / pkg).glob("*/__init__.py")}
    missing = sorted((folders | subpackages) - named)
    assert not missing, f"CONTRIBUTING.md Layout does not name: {missing}"
