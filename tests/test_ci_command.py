"""The README's test command is what CI runs: `.ci/run` calls it verbatim, and
CONTRIBUTING gives the same line; the scripts it names exist and the host
snapshot it unpacks is the one beside the repository."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _test_command(md: str) -> str:
    lines = [x for x in md.splitlines() if x.startswith("python3 -m venv .venv") and "pytest" in x]
    assert len(lines) == 1, lines
    return lines[0]


def test_readme_contributing_and_ci_run_the_same_command():
    cmd = _test_command((REPO / "README.md").read_text())
    assert cmd == _test_command((REPO / "CONTRIBUTING.md").read_text())
    run = (REPO / ".ci" / "run").read_text().splitlines()
    assert cmd in run, ".ci/run does not call the README's test command verbatim"
    # torch is pinned in the same pip install as the extras and the host's requirements.
    install = next(p for p in cmd.split(" && ") if p.startswith("pip install") and "-e" in p)
    assert '"torch==2.13.0"' in install and '".[local,test]"' in install and "$SOULID_HOST_REQUIREMENTS" in install
    for script in re.findall(r"\.ci/[\w.]+", cmd):
        assert (REPO / script).is_file(), script
    host = (REPO / ".ci" / "comfyui_host.sh").read_text()
    assert "../shared/hosts/ComfyUI-0.3.64.tar.gz" in host and "COMFYUI_PATH" in host
    text = (REPO / ".ci" / "run").read_text()
    assert "CI=true" in text and '"$rc" -eq 5' in text and "apt-get install" in text
