"""Exactly one prompt per row on a real ComfyUI 0.3.64 (``$COMFYUI_PATH``).

Fast rows (an 8x8 ``EmptyImage`` saved by ``SaveImage``) finish between
two polls, which is where a client that reads ``/history`` before
``/queue`` takes a finished job for a lost one and queues it again. Five
20-row campaigns (alternating ``--per-worker`` 1 and 4) on one server must
leave exactly 20 prompts each in its history and 20 files each in its
output folder (a prompt run twice saves twice), and ``soulid run`` must
report every fast job as done.
"""
from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from comfy_host import comfy_checkout, start_comfy

from soulid.cli import main

REPS = 5
ROWS = 20


def graph(prefix: str) -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}}}


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    if comfy_checkout()[0] is None:
        pytest.fail(comfy_checkout()[1])  # a missing host is a failure, never a skip
    with start_comfy(tmp_path_factory.mktemp("comfy_once")) as h:
        yield h


def test_fast_campaign_rows_run_exactly_once(host, tmp_path):
    seen = 0
    for rep in range(REPS):
        prefix = f"once{rep}/img"
        (tmp_path / f"g{rep}.json").write_text(json.dumps(graph(prefix)))
        plan = tmp_path / f"plan{rep}.yaml"
        colours = ", ".join(str(rep * 1000 + i) for i in range(ROWS))
        plan.write_text(f"workflow: g{rep}.json\nseeds: [{colours}]\ntargets: {{seed: EmptyImage.color}}\n")
        out = tmp_path / f"out{rep}"
        rc = main(["campaign", str(plan), "--server", "native+" + host.url, "--out", str(out),
                   "--per-worker", "1" if rep % 2 == 0 else "4", "--job-timeout", "120"])
        assert rc == 0, host.log_tail()
        history = httpx.get(host.url + "/history", params={"max_items": 10000}, timeout=30).json()
        seen += ROWS
        assert len(history) == seen, f"repetition {rep}: {len(history)} prompts in history, expected {seen}"
        saved = list((host.output_dir / f"once{rep}").glob("img_*.png"))
        assert len(saved) == ROWS, f"repetition {rep}: {len(saved)} images saved for {ROWS} rows"
        rows = json.loads((out / "manifest.json").read_text())["rows"]
        assert len(rows) == ROWS and all(r["status"] == "done" and len(r["files"]) == 1 for r in rows)


def test_soulid_run_never_reports_a_finished_fast_job_as_lost(host, tmp_path, capsys):
    for i in range(REPS * 2):
        wf = tmp_path / f"run{i}.json"
        g = graph(f"run{i}/img")
        g["1"]["inputs"]["color"] = 777000 + i
        wf.write_text(json.dumps(g))
        rc = main(["run", str(wf), "--server", "native+" + host.url, "--out", str(tmp_path / f"o{i}"),
                   "--timeout", "60"])
        err = capsys.readouterr().err
        assert rc == 0, err
        assert "no longer knows" not in err
        assert len(list((host.output_dir / f"run{i}").glob("img_*.png"))) == 1
