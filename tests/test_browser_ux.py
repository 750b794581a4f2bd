"""The editor checks (tests/browser_ux.py) in CI, on the host's own frontend
(1.27.10) and on the newest published one ($SOULID_NEW_FRONTEND_ROOT, 1.58.1,
set up by .ci/comfyui_host.sh), in headless Chromium against a real ComfyUI.

On each frontend: an old workflow (``soul`` socket) loads renamed and runs;
Soul ID Load lists a Soul ID the editor's own Run created, without a reload,
and draws its front reference and verdict; an API key typed in Settings ›
Soul ID runs a cloud node with no restart and is found in neither the page's
storage, the settings file nor the workflow; after an error and after a
Cancel no node shows the previous run's result (each shows its own line,
"may still run at the provider; Run again resumes it" on paid nodes); the
prompt box keeps its height; widgets the mode ignores are greyed out;
motions are a list; the template browser lists the pack in reading order,
Create first. The script exits 1 when any check fails. About 1-2 minutes per
frontend on 2 CPU cores.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import browser_script

pytestmark = [pytest.mark.slow, pytest.mark.comfyui]

TESTS = Path(__file__).resolve().parent


@pytest.mark.parametrize("frontend", [None, "new"], ids=["host-frontend", "newest-frontend"])
def test_editor_checks_in_the_browser(frontend, tmp_path):
    cmd = browser_script(TESTS / "browser_ux.py", tmp_path, newest_frontend=bool(frontend))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, cwd=TESTS.parent)
    print(r.stdout)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    lines = r.stdout.splitlines()
    for must in ("cancel", "error", "template browser: reading order, Create first", "no key in the workflow"):
        assert any(line.startswith("ok ") and must in line for line in lines), f"no passing check about {must!r}"
    assert not any(line.startswith("FAIL") for line in lines)
