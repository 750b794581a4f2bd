"""The browser pass (tests/browser_pass.py) in CI: every template in a real
ComfyUI, in headless Chromium, on the host's own frontend (1.27.10) and on
the newest published one ($SOULID_NEW_FRONTEND_ROOT, 1.58.1, set up by
.ci/comfyui_host.sh), and on the newest with its Vue node renderer
("Nodes 2.0", off by default in 1.58) for templates whose nodes show text
and image results.

Each run must load every template with no unknown node, no dialog and no
overlap, run it (or stop at the model loaders where no weights exist), show
every run output on its node, and list every template in the template
browser; the pass exits 1 otherwise. About 4-6 minutes per full run on 2 CPU
cores.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import browser_script, frontend_version
from workflow_check import ui_templates

pytestmark = [pytest.mark.slow, pytest.mark.comfyui]

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
VUE_SUBSET = ["soul_id_create", "soul_generate_cloud", "soul_edit_cloud"]


@pytest.mark.parametrize("frontend, vue, only", [
    pytest.param(None, False, None, id="host-frontend"),
    pytest.param("new", False, None, id="newest-frontend"),
    pytest.param("new", True, VUE_SUBSET, id="newest-frontend-vue-nodes"),
])
def test_browser_pass(frontend, vue, only, tmp_path):
    cmd = browser_script(TESTS / "browser_pass.py", tmp_path, newest_frontend=bool(frontend))
    if vue:
        cmd.append("--vue-nodes")
    if only:
        cmd += ["--only", *only]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=REPO)
    print(r.stdout)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    names = set(ui_templates())
    assert {row["template"] for row in report["rows"]} == (set(only) if only else names)
    assert report["vue_nodes"] is vue
    if frontend:
        assert report["frontend"] == frontend_version(Path(os.environ["SOULID_NEW_FRONTEND_ROOT"]))
    else:
        from importlib.metadata import version

        assert report["frontend"] == version("comfyui-frontend-package")
    assert not report["template_browser"]["missing"]
    assert report["template_browser"]["in_reading_order"], report["template_browser"]["shown_order"]
    assert not report["template_browser"]["titles_cut_short"]

