"""Campaigns and the Comfy API v2 client, without a ComfyUI host.

Workers are the v2 stand-in (:mod:`standin_v2`, the contract as
``comfy-api-proxy`` serves it) and the native ComfyUI look-alike
(:mod:`fake_comfy`), both on 127.0.0.1. ``soulid campaign`` runs in this
process, or in a child process where the test kills it with SIGKILL.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fake_comfy import FakeComfy, guard_similarity
from standin_v2 import StandinV2

from soulid.backends.comfyui.base import Deadline, Upload, job_key
from soulid.backends.comfyui.v2 import V2Worker
from soulid.cli import main

REPO = Path(__file__).resolve().parent.parent
GRAPH = {
    "1": {"class_type": "SoulIDLoad", "inputs": {"name": "my_soul"}, "_meta": {"title": "Soul ID Load"}},
    "2": {"class_type": "SoulIDGenerate", "inputs": {"soul_id": ["1", 0], "prompt": "a portrait", "seed": 5},
          "_meta": {"title": "Shot"}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "camp/shot"}},
}


def write_plan(tmp_path: Path, text: str, graph: dict = GRAPH) -> Path:
    (tmp_path / "graph.json").write_text(json.dumps(graph))
    p = tmp_path / "plan.yaml"
    p.write_text("workflow: graph.json\n" + text)
    return p


PLAN12 = "soul_ids: [my_soul]\nprompts: [studio, street, beach]\nseeds: [1, 2, 3, 4]\n"


def manifest(out: Path) -> list[dict]:
    return json.loads((out / "manifest.json").read_text())["rows"]


def check_manifest(out: Path, n: int) -> list[dict]:
    rows = manifest(out)
    assert [r["row"] for r in rows] == list(range(n))
    assert all(r["status"] == "done" and r["files"] and r["job_id"] for r in rows), rows
    files = [f for r in rows for f in r["files"]]
    assert len(set(files)) == len(files) == n  # one file per row, none overwritten
    on_disk = {p.name for p in out.iterdir() if p.suffix == ".png"}
    assert on_disk == set(files)  # every output is in the manifest
    csv_lines = (out / "manifest.csv").read_text().splitlines()
    assert csv_lines[0].startswith("row,kind,soul_id,preset,prompt,seed,status,worker,job_id,files")
    assert len(csv_lines) == n + 1
    return rows


# ------------------------------------------------------------- the v2 client
def test_v2_idempotency_key_resolves_a_reused_key_to_its_job():
    with StandinV2() as s:
        w = V2Worker(s.url)
        key = job_key(GRAPH)
        first = w.submit(GRAPH, key, Deadline(10))
        again = V2Worker(s.url).submit(GRAPH, key, Deadline(10))  # a new process: no local memory
        other = w.submit(GRAPH, job_key(GRAPH, salt="x"), Deadline(10))
    assert first == again != other
    assert s.posts == 3 and len(s.jobs) == 2  # the second POST was refused as a reuse, not run


def test_v2_uploads_each_photo_once_per_worker(faces):
    photo = faces / "obama" / "obama.jpg"
    with StandinV2() as s:
        for _ in range(2):
            w = V2Worker(s.url)
            for seed in (1, 2):
                g = json.loads(json.dumps(GRAPH))
                g["4"] = {"class_type": "LoadImage", "inputs": {"image": ""}}
                g["2"]["inputs"]["seed"] = seed
                g = w.prepare(g, [Upload("4", "image", [photo])], Deadline(10))
                assert g["4"]["inputs"]["image"] == {"__type": "core/ASSET", "info": {"id": next(iter(s.assets))}}
    assert s.upload_posts == 1 and s.uploaded_bytes == photo.stat().st_size


def test_v2_refused_graph_names_the_node(tmp_path, capsys):
    bad = {"1": {"class_type": "NoSuchNode", "inputs": {}}}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with StandinV2() as s:
        code = main(["run", str(tmp_path / "bad.json"), "--server", "v2+" + s.url, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "invalid_workflow" in err and "node 1 (NoSuchNode): Node type NoSuchNode not found" in err
    # The refusal released the key: nothing was created.
    assert s.jobs == {}


# --------------------------------------------------------------- campaigns
def test_campaign_spreads_over_v2_and_native_and_rerun_submits_nothing(tmp_path, capsys):
    plan = write_plan(tmp_path, PLAN12)
    out = tmp_path / "out"
    with StandinV2(job_seconds=0.1) as v2, FakeComfy(polls_pending=0, polls_running=1) as native:
        args = ["campaign", str(plan), "--server", v2.url, "--server", "native+" + native.url, "--out", str(out),
                "--per-worker", "2"]
        assert main(args) == 0
        first = (len(v2.jobs), len(native.received))
        assert main(args) == 0
        assert (len(v2.jobs), len(native.received), v2.posts) == (*first, first[0])
    assert first[0] > 0 and first[1] > 0 and sum(first) == 12
    rows = check_manifest(out, 12)
    assert {r["worker"] for r in rows} == {v2.url, native.url}
    assert [(r["prompt"], r["seed"]) for r in rows[:5]] == [("studio", 1), ("studio", 2), ("studio", 3),
                                                            ("studio", 4), ("street", 1)]
    err = capsys.readouterr().err
    assert "queued 12  running 0  done 0  failed 0" not in err  # counts move as jobs start
    assert "done 12  failed 0" in err and "12 already finished" in err


def test_kill9_halfway_then_rerun_gives_one_job_per_row(tmp_path):
    plan = write_plan(tmp_path, PLAN12)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO.parent / "i10.pkg"), os.environ.get("PYTHONPATH", "")])}
    with StandinV2(job_seconds=0.3) as v2, FakeComfy(polls_pending=2, polls_running=2) as native:
        cmd = [sys.executable, "-m", "soulid", "campaign", str(plan), "--server", v2.url,
               "--server", native.url, "--out", str(out), "--per-worker", "2"]
        child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        t0 = time.monotonic()
        while len(v2.jobs) + len(native.received) < 6 and time.monotonic() - t0 < 60:
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait()
        at_kill = len(v2.jobs) + len(native.received)
        assert 6 <= at_kill < 12
        assert main(["campaign", str(plan), "--server", v2.url, "--server", native.url, "--out", str(out)]) == 0
        # Exactly one job per plan row, counted on the workers themselves.
        assert len(v2.jobs) + len(native.received) == 12
        keys = [j["metadata"] for j in v2.jobs.values()] + [b["prompt_id"] for b in native.received]
        assert len(set(keys)) == 12
    check_manifest(out, 12)


def _stop_after(worker: StandinV2, jobs: int, how: str, thaw_after: float = 0.0) -> None:
    def stop():
        while len(worker.jobs) < jobs:
            time.sleep(0.01)
        worker.kill() if how == "kill" else worker.freeze()
        if thaw_after:
            time.sleep(thaw_after)
            worker.frozen.clear()
    threading.Thread(target=stop, daemon=True).start()


def _keys(worker: StandinV2) -> set[str]:
    return {j["metadata"] for j in worker.jobs.values()}


def test_a_hung_worker_is_drained_and_its_jobs_wait_for_it_never_running_twice(tmp_path, capsys, monkeypatch):
    """A worker that stops answering is drained: rows it never got run elsewhere; rows whose job it
    may hold wait, and when it answers again their jobs are picked up there. One job per row."""
    from soulid.backends.comfyui import campaign
    monkeypatch.setattr(campaign, "RECHECK_S", 0.5)
    plan = write_plan(tmp_path, PLAN12)
    out = tmp_path / "out"
    with StandinV2(job_seconds=0.15) as a, StandinV2(job_seconds=0.15) as b:
        _stop_after(a, 3, "freeze", thaw_after=3.0)
        code = main(["campaign", str(plan), "--server", a.url, "--server", b.url, "--out", str(out),
                     "--worker-timeout", "1"])
        a.frozen.clear()
        on_a, on_b = _keys(a), _keys(b)
    assert code == 0
    assert not on_a & on_b, "a row ran on both workers"
    assert len(on_a) + len(on_b) == 12 and len(on_a) >= 3 and len(on_b) >= 1
    rows = check_manifest(out, 12)
    assert sum(r["worker"] == a.url for r in rows) == len(on_a)  # every job on a was picked up there
    err = capsys.readouterr().err
    assert f"worker {a.url} drained" in err and f"worker {a.url} answers again" in err
    assert "rather than run twice elsewhere" in err


def test_a_dead_worker_leaves_its_rows_unrun_until_a_rerun_without_it(tmp_path, capsys):
    """A worker gone for good: the rows it never got finish elsewhere; the rows it may hold are not run
    twice behind the user's back (exit 1, and the message says how to choose). A rerun without that
    worker runs them on the others."""
    plan = write_plan(tmp_path, PLAN12)
    out = tmp_path / "out"
    with StandinV2(job_seconds=0.15) as a, StandinV2(job_seconds=0.15) as b:
        _stop_after(a, 3, "kill")
        code = main(["campaign", str(plan), "--server", a.url, "--server", b.url, "--out", str(out),
                     "--worker-timeout", "1", "--job-timeout", "4"])
        on_a, on_b = _keys(a), _keys(b)
        err = capsys.readouterr().err
        assert code == 1, err
        assert not on_a & on_b, "a row ran on both workers"
        assert len(on_a) + len(on_b) == 12 and len(on_b) >= 1
        done = [r for r in manifest(out) if r["status"] == "done"]
        waiting = 12 - len(done)
        assert 1 <= waiting <= len(on_a)
        assert f"rerun without --server {a.url}" in err and "may then run twice" in err
        assert main(["campaign", str(plan), "--server", b.url, "--out", str(out)]) == 0
        assert len(_keys(b)) == len(on_b) + waiting  # only the unfinished rows ran again
    check_manifest(out, 12)


def test_jobs_a_worker_forgot_are_submitted_again_under_a_new_key(tmp_path, capsys):
    plan = write_plan(tmp_path, PLAN12)
    out = tmp_path / "out"
    with StandinV2(job_seconds=0.1) as s:
        def restart():
            while len(s.jobs) < 4:
                time.sleep(0.01)
            s.forget()
        threading.Thread(target=restart, daemon=True).start()
        args = ["campaign", str(plan), "--server", s.url, "--out", str(out)]
        assert main(args) == 0
        posts = s.posts
        assert main(args) == 0 and s.posts == posts  # the rerun follows the resubmissions
    check_manifest(out, 12)
    assert "submitting it again" in capsys.readouterr().err


def test_manifest_carries_the_drift_guard_score(tmp_path):
    graph = {**GRAPH, "4": {"class_type": "SoulIDDriftGuard", "inputs": {"soul_id": ["1", 0], "images": ["2", 0]}}}
    plan = write_plan(tmp_path, "seeds: [11, 12, 13]\n", graph)
    with FakeComfy(polls_pending=0, polls_running=0) as native:
        assert main(["campaign", str(plan), "--server", native.url, "--out", str(tmp_path / "o")]) == 0
    rows = check_manifest(tmp_path / "o", 3)
    for r in rows:
        assert r["drift_score"] == round(max(guard_similarity(r["seed"], i) for i in range(3)), 4)
    csv_text = (tmp_path / "o" / "manifest.csv").read_text()
    assert f"{rows[0]['drift_score']:.4f}" in csv_text


def test_a_failed_node_is_not_retried_blindly(tmp_path, capsys):
    plan = write_plan(tmp_path, "prompts: [studio, FAIL]\nseeds: [1, 2]\n")
    out = tmp_path / "out"
    with StandinV2() as s:
        args = ["campaign", str(plan), "--server", s.url, "--out", str(out)]
        assert main(args) == 1
        assert s.posts == 4
        assert main(args) == 1 and s.posts == 4  # the failures stand
        assert main([*args, "--retry-failed"]) == 1 and s.posts == 6  # a deliberate new attempt
    rows = manifest(out)
    assert [r["status"] for r in rows] == ["done", "done", "failed", "failed"]
    assert "node 2 (SoulIDGenerate) failed: FailNode: failed on purpose" in rows[2]["error"]
    assert "row 2 (r0002_FAIL" not in capsys.readouterr().err  # labels carry soul/preset/seed only


def test_key_from_the_environment_only(tmp_path, monkeypatch, capsys):
    plan = write_plan(tmp_path, "seeds: [1, 2]\n")
    with StandinV2(token="sekret-key-123") as s:
        monkeypatch.delenv("COMFY_API_KEY", raising=False)
        assert main(["campaign", str(plan), "--server", s.url, "--out", str(tmp_path / "a")]) == 1
        assert "HTTP 401" in capsys.readouterr().err and s.jobs == {}
        monkeypatch.setenv("COMFY_API_KEY", "sekret-key-123")
        assert main(["campaign", str(plan), "--server", s.url, "--out", str(tmp_path / "b")]) == 0
    check_manifest(tmp_path / "b", 2)
    for f in (tmp_path / "b").rglob("*"):
        assert not f.is_file() or b"sekret" not in f.read_bytes(), f
    with pytest.raises(SystemExit):
        pass_url = "v2+http://user:sekret@127.0.0.1:9"
        raise SystemExit(main(["campaign", str(plan), "--server", pass_url, "--out", str(tmp_path / "c")]))
    assert "no credentials in the URL" in capsys.readouterr().err


@pytest.mark.parametrize("text, message", [
    ("seeds: [one]\n", "seeds.0: Input should be a valid integer"),
    ("colour: red\n", "colour: Extra inputs are not permitted"),
    ("seeds: [1]\ntargets: {seed: Nope.seed}\n", "no node 'Nope'"),
    ("- a\n- b\n", "a plan is a mapping"),
])
def test_bad_plans_name_the_field(tmp_path, capsys, text, message):
    p = tmp_path / "plan.yaml"
    if text.startswith("-"):
        p.write_text(text)
    else:
        p = write_plan(tmp_path, text)
    assert main(["campaign", str(p), "--server", "http://127.0.0.1:9", "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


# ------------------------------------------------------- bulk Soul ID creation
@pytest.fixture
def photo_sets(tmp_path, faces) -> Path:
    sets = tmp_path / "sets"
    for person, names in {"obama": ["obama.jpg", "obama2.jpg", "obama4.jpg"], "biden": ["biden.jpg", "biden2.jpg"]}.items():
        (sets / person).mkdir(parents=True)
        for n in names:
            shutil.copy(faces / person / n, sets / person / n)
    return sets


def test_create_campaign_on_workers_uploads_each_set_once(tmp_path, photo_sets):
    plan = tmp_path / "plan.yaml"
    plan.write_text("kind: create\nsets: ['sets/*']\n")
    out = tmp_path / "out"
    with StandinV2() as a, StandinV2() as b:
        args = ["campaign", str(plan), "--server", a.url, "--server", b.url, "--out", str(out), "--per-worker", "1"]
        assert main(args) == 0 and main(args) == 0
        jobs = list(a.jobs.values()) + list(b.jobs.values())
        assert len(jobs) == 2 and len(a.jobs) == len(b.jobs) == 1
        # Each set's photos went to one worker, into one folder named by the set's content.
        assert sorted(len(s.inputs) for s in (a, b)) == [2, 3] and a.upload_posts + b.upload_posts == 5
        folders = sorted(j["workflow"]["1"]["inputs"]["folder"] for j in jobs)
        assert all(f.startswith("soulid-") for f in folders)
        assert sorted(j["workflow"]["1"]["inputs"]["name"] for j in jobs) == ["biden", "obama"]
    rows = manifest(out)
    assert [(r["soul_id"], r["status"]) for r in rows] == [("biden", "done"), ("obama", "done")]
    assert rows[0]["files"] == ["r0000_biden_soul_id_2_photos.png"]


def test_create_sets_sharing_a_photo_fail_clearly_on_v2(tmp_path, photo_sets):
    shutil.copy(photo_sets / "obama" / "obama.jpg", photo_sets / "biden" / "obama_copy.jpg")
    plan = tmp_path / "plan.yaml"
    plan.write_text("kind: create\nsets: [sets/obama, sets/biden]\n")
    with StandinV2() as s:
        assert main(["campaign", str(plan), "--server", s.url, "--out", str(tmp_path / "o"), "--per-worker", "1"]) == 1
    rows = manifest(tmp_path / "o")
    assert [r["status"] for r in rows] == ["done", "failed"]
    assert "obama_copy.jpg: the same photo is already on" in rows[1]["error"] and "give each photo set" in rows[1]["error"]


def test_create_campaign_locally_on_two_processes(tmp_path, photo_sets):
    plan = tmp_path / "plan.yaml"
    plan.write_text("kind: create\nsets: [sets/obama, sets/biden]\n")
    lib = tmp_path / "lib"
    assert main(["--library", str(lib), "campaign", str(plan), "--local", "2", "--out", str(tmp_path / "out")]) == 0
    rows = manifest(tmp_path / "out")
    assert [r["soul_id"] for r in rows] == ["obama", "biden"]
    for r, n in zip(rows, (3, 2)):
        assert r["status"] == "done" and r["qa"]["photos"] == n and r["qa"]["accepted"] >= 1, r
    assert sorted(p.stem for p in lib.iterdir() if p.suffix == ".soulid") == ["biden", "obama"]
