"""Hostile servers and hostile files for ``soulid run`` and ``soulid campaign``.

The server is the ComfyUI look-alike (:mod:`fake_comfy`) on 127.0.0.1; huge
answers are generated block by block as they are sent, never held. Each case
asserts the exit code, the message and that no traceback reaches the user.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from child_memory import read_peak, soulid_command
from fake_comfy import FakeComfy

from soulid.backends.comfyui.base import Deadline, Output, ServerError
from soulid.backends.comfyui.v2 import V2Worker
from soulid.cli import main

REPO = Path(__file__).resolve().parent.parent
GRAPH = {
    "1": {"class_type": "SoulIDLoad", "inputs": {"name": "my_soul"}},
    "2": {"class_type": "SoulIDGenerate", "inputs": {"soul_id": ["1", 0], "prompt": "a portrait", "seed": 5}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "shot"}},
}


def workflow(tmp_path: Path) -> Path:
    p = tmp_path / "wf.json"
    p.write_text(json.dumps(GRAPH))
    return p


def env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO.parent), os.environ.get("PYTHONPATH", "")])}


def test_a_600_mb_history_is_refused_under_300_mb(tmp_path):
    def huge(pid):
        yield b'{"' + pid.encode() + b'": {"outputs": {"3": {"text": ["'
        block = b"x" * (1 << 20)
        for _ in range(600):
            yield block
        yield b'"]}}}}'

    with FakeComfy(polls_pending=0, polls_running=0) as fake:
        fake.history_raw = huge
        peak = tmp_path / "peak"
        t0 = time.monotonic()
        p = subprocess.run(soulid_command(peak, ["run", workflow(tmp_path), "--server", "native+" + fake.url,
                                                 "--out", tmp_path / "out", "--timeout", "120"]),
                           capture_output=True, text=True, env=env(), timeout=180)
    rc, mb = read_peak(peak)
    assert rc == 2 and p.returncode == 2, p.stderr[-2000:]
    assert "over 32 MiB" in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]
    print(f"peak {mb:.0f} MB")
    assert mb < 300, f"peak {mb:.0f} MB"
    assert time.monotonic() - t0 < 60
    journal = tmp_path / "out" / ".soulid-jobs.jsonl"
    assert journal.stat().st_size < 100_000 and len(p.stdout) < 10_000


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
                                  b"[" * 70 + b"1" + b"]" * 70])
def test_deeply_nested_server_json_is_a_clear_error(tmp_path, capsys, body):
    with FakeComfy(polls_pending=0, polls_running=0) as fake:
        fake.history_raw = lambda pid: iter([body])
        rc = main(["run", str(workflow(tmp_path)), "--server", "native+" + fake.url, "--out", str(tmp_path / "o"),
                   "--timeout", "60"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert ("nested more than" in err or "non-JSON" in err) and "Traceback" not in err, err


def test_a_trickling_view_ends_at_the_timeout_and_leaves_no_part_file(tmp_path):
    with FakeComfy(polls_pending=0, polls_running=0) as fake:
        fake.trickle_view = 0.2
        t0 = time.monotonic()
        p = subprocess.run(["python", "-m", "soulid", "run", str(workflow(tmp_path)), "--server",
                            "native+" + fake.url, "--out", str(tmp_path / "out"), "--timeout", "4"],
                           capture_output=True, text=True, env=env(), timeout=120)
        took = time.monotonic() - t0
    assert p.returncode == 1 and "timed out" in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert took < 15, f"{took:.1f} s for --timeout 4"
    left = [f for f in (tmp_path / "out").rglob("*") if f.is_file() and not f.name.startswith(".soulid-jobs")
            and f.parent.name != ".soulid-locks"]
    assert not left, left


def test_2000_outputs_keep_the_journal_linear(tmp_path, capsys):
    n = 2000

    def many(pid, entry):
        entry = json.loads(json.dumps(entry))
        entry["outputs"]["3"]["images"] = [{"filename": f"o_{i:05d}.png", "subfolder": "", "type": "output"}
                                           for i in range(n)]
        return entry

    with FakeComfy(polls_pending=0, polls_running=0, history_override=many) as fake:
        for i in range(n):
            fake.files[("output", "", f"o_{i:05d}.png")] = b"\x89PNG" + i.to_bytes(4, "big")
        rc = main(["run", str(workflow(tmp_path)), "--server", "native+" + fake.url, "--out", str(tmp_path / "o"),
                   "--timeout", "600"])
    assert rc == 0, capsys.readouterr().err[-2000:]
    got = sorted(p.name for p in (tmp_path / "o").iterdir() if p.suffix == ".png")
    assert len(got) == n
    size = (tmp_path / "o" / ".soulid-jobs.jsonl").stat().st_size
    assert size < 5 << 20, f"journal {size} bytes for {n} outputs"


# ------------------------------------------------------------------- plans
def run_cli(args, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run(["python", "-m", "soulid", *map(str, args)], capture_output=True, text=True, env=env(),
                          timeout=timeout)


def test_a_10_to_the_12_row_plan_is_refused_at_once(tmp_path):
    (tmp_path / "g.json").write_text(json.dumps(GRAPH))
    axis = lambda name, n: f"{name}: [" + ", ".join(f'"{name[0]}{i}"' if name != "seeds" else str(i)
                                                    for i in range(n)) + "]\n"
    plan = tmp_path / "plan.yaml"
    plan.write_text("workflow: g.json\n" + axis("soul_ids", 1000) + axis("presets", 1000) + axis("prompts", 1000)
                    + axis("seeds", 1000))
    assert plan.stat().st_size < 40_000
    t0 = time.monotonic()
    p = run_cli(["campaign", plan, "--server", "native+http://127.0.0.1:9", "--out", tmp_path / "o"])
    assert p.returncode == 2 and "1,000,000,000,000 rows" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert time.monotonic() - t0 < 20


@pytest.mark.parametrize("what", ["plan", "workflow"])
@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_fifo_and_dev_zero_plans_and_workflows_are_refused_at_once(tmp_path, what, kind, capsys):
    special = tmp_path / "fifo"
    if kind == "fifo":
        os.mkfifo(special)
    else:
        special = Path("/dev/zero")
    if what == "plan":
        args = ["campaign", str(special), "--server", "native+http://127.0.0.1:9", "--out", str(tmp_path / "o")]
    else:
        plan = tmp_path / "plan.yaml"
        plan.write_text(f"workflow: {special}\nseeds: [1]\n")
        args = ["campaign", str(plan), "--server", "native+http://127.0.0.1:9", "--out", str(tmp_path / "o")]
    t0 = time.monotonic()
    rc = main(args)
    err = capsys.readouterr().err
    assert time.monotonic() - t0 < 2
    assert rc == 2 and "not a regular file" in err and "Traceback" not in err, err
    t0 = time.monotonic()
    rc = main(["run", str(special), "--server", "native+http://127.0.0.1:9", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert time.monotonic() - t0 < 2 and rc == 2 and "not a regular file" in err, err


def test_a_plan_that_is_not_utf8_is_a_plan_error(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_bytes(b"workflow: g.json\nprompts: ['caf\xe9']\n")
    p = run_cli(["campaign", plan, "--server", "native+http://127.0.0.1:9", "--out", tmp_path / "o"])
    assert p.returncode == 2 and "not UTF-8" in p.stderr and "Traceback" not in p.stderr, p.stderr


@pytest.mark.parametrize("value", ["1e400", "-1e400", "NaN", "Infinity"])
def test_a_set_value_out_of_range_is_a_plan_error(tmp_path, value):
    (tmp_path / "g.json").write_text(json.dumps(GRAPH))
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"workflow: g.json\nseeds: [1]\nset: ['2.seed={value}']\n")
    p = run_cli(["campaign", plan, "--server", "native+http://127.0.0.1:9", "--out", tmp_path / "o"])
    assert p.returncode == 2 and "not a usable value" in p.stderr and "Traceback" not in p.stderr, p.stderr


# ---------------------------------------------------------------------- v2
def test_a_v2_output_id_with_a_path_is_refused_unfetched():
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, content=b"secret")

    client = httpx.Client(base_url="http://127.0.0.1:1", transport=httpx.MockTransport(handler),
                          headers={"Authorization": "Bearer k"})
    w = V2Worker("http://127.0.0.1:1", api_key="k", client=client)
    out = Output(node_id="9", name="x.png", kind="images", ref={"url": None, "id": "../../../x"})
    with pytest.raises(ServerError, match="not an id"):
        w.download(out, Path("/nonexistent/never/x.png"), 1 << 20, Deadline(10))
    assert seen == []


def test_two_campaigns_on_one_out_download_each_output_once(tmp_path):
    (tmp_path / "g.json").write_text(json.dumps(GRAPH))
    plan = tmp_path / "plan.yaml"
    plan.write_text("workflow: g.json\nsoul_ids: [my_soul]\nseeds: [1, 2, 3, 4, 5, 6, 7, 8]\n")
    out = tmp_path / "out"
    with FakeComfy(polls_pending=1, polls_running=3) as fake:
        cmd = ["python", "-m", "soulid", "campaign", str(plan), "--server", "native+" + fake.url, "--out", str(out)]
        a = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        b = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        errs = [a.communicate(timeout=300)[1], b.communicate(timeout=300)[1]]
    assert a.returncode == 0 and b.returncode == 0, errs
    pngs = sorted(p.name for p in out.iterdir() if p.suffix == ".png")
    assert len(pngs) == 8, pngs  # no second copy (name_1.png) of any output
    rows = json.loads((out / "manifest.json").read_text())["rows"]
    assert sorted(f for r in rows for f in r["files"]) == pngs


def test_a_huge_error_message_stays_out_of_the_journal_and_terminal(tmp_path, capsys):
    def failing(pid, entry):
        return {"outputs": {}, "status": {"status_str": "error", "completed": False, "messages": [
            ["execution_error", {"node_id": "2", "node_type": "SoulIDGenerate", "exception_type": "ValueError",
                                 "exception_message": "boom " * (2 << 20)}]]}}

    with FakeComfy(polls_pending=0, polls_running=0, history_override=failing) as fake:
        rc = main(["run", str(workflow(tmp_path)), "--server", "native+" + fake.url, "--out", str(tmp_path / "o"),
                   "--timeout", "60"])
    cap = capsys.readouterr()
    assert rc == 1 and "node 2 (SoulIDGenerate) failed: ValueError: boom boom" in cap.err
    assert "more characters cut" in cap.err and len(cap.err) < 20_000
    assert (tmp_path / "o" / ".soulid-jobs.jsonl").stat().st_size < 20_000


def test_a_refusal_with_thousands_of_node_errors_is_clipped():
    from soulid.backends.comfyui.native import error_text

    body = {"error": {"message": "invalid prompt " * 1000},
            "node_errors": {str(i): {"class_type": "X", "errors": [{"message": "m" * 9000}]} for i in range(1000)}}
    text = error_text(body)
    assert len(text) < 40_000 and text.endswith("... and 950 more node error(s)")


def test_text_outputs_are_capped_per_job():
    from soulid.backends.comfyui.native import parse_history_entry

    entry = {"outputs": {str(i): {"text": ["x" * 100_000] * 64} for i in range(50)},
             "status": {"status_str": "success", "completed": True, "messages": []}}
    st = parse_history_entry(entry, "test")
    assert sum(len(t) for v in st.texts.values() for t in v) < 2 << 20  # 320 MB offered


def test_concurrent_download_claims_on_one_out_folder_never_fail(tmp_path):
    """Four rows in flight on one ``--out`` claim their downloads at once (``--per-worker 4``).

    A claim that tidied the shared lock folder away raced with one that had just
    made it: ``FileNotFoundError`` / ``FileExistsError`` failed a finished row.
    """
    import threading

    from soulid.backends.comfyui.jobs import _download_claim

    errors: list[BaseException] = []

    def claims(worker: int) -> None:
        for i in range(400):
            try:
                with _download_claim(tmp_path, f"w{worker}/o{i}", Deadline(10)):
                    pass
            except BaseException as e:  # noqa: BLE001 - every failure is the finding
                errors.append(e)
                return

    threads = [threading.Thread(target=claims, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, [repr(e) for e in errors[:3]]
    assert not [f for f in (tmp_path / ".soulid-locks").iterdir()], "a released claim left its lock file"
