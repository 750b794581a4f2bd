"""``soulid run``: the headless runner.

Part 1 (always): the runner against a small ComfyUI look-alike that the test
starts on 127.0.0.1 (stdlib :mod:`http.server`). It speaks ComfyUI's routes
(``POST /prompt``, ``GET /queue``, ``GET /history/{id}``, ``GET /view``,
https://docs.comfy.org/development/comfyui-server/comms_routes) with the same
JSON shapes as ComfyUI 0.3.64's ``server.py`` / ``execution.py``, keeps each
prompt pending then running for a few polls, and "executes" a few node types:
``SoulIDGenerate`` renders a PNG whose colour comes from its seed,
``SaveImage`` stores it for ``/view``, ``SoulIDLoad`` fails for names not in
its library, with ComfyUI's ``execution_error`` message.

Part 2 (with ``$COMFYUI_PATH``): every API twin in ``workflows/api/`` runs
headless through a real ComfyUI on CPU, cloud nodes pointed at the API
stand-in (``SOULID_HIGGSFIELD_URL`` ...; the keys are in the host's 0600
credentials file, never in the workflow), on a Soul ID made from real photos
and trained on the stand-in. Workflows whose nodes need local model weights
are skipped, saying so. With ``$SOULID_WORKFLOW_PICTURES`` set to a folder
the run also writes a small picture of each workflow's result there (how
``docs/images/`` was made).
"""
from __future__ import annotations

import io
import json
import os
import shutil
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image

from soulid.cli import main

REPO = Path(__file__).resolve().parent.parent
API_DIR = REPO / "workflows" / "api"


from fake_comfy import FakeComfy, seed_colour  # noqa: E402
from workflow_check import ui_template  # noqa: E402


GRAPH = {
    "1": {"class_type": "SoulIDLoad", "inputs": {"name": "my_soul"}, "_meta": {"title": "Soul ID Load"}},
    "2": {"class_type": "SoulIDGenerate", "inputs": {"soul_id": ["1", 0], "prompt": "a portrait", "seed": 5},
          "_meta": {"title": "Close-up"}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "look/closeup"},
          "_meta": {"title": "Save Image"}},
    "4": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "look/copy"},
          "_meta": {"title": "Save Image"}},
    "5": {"class_type": "SoulIDScore", "inputs": {"soul_id": ["1", 0], "images": ["2", 0]},
          "_meta": {"title": "Soul ID Score"}},
}


@pytest.fixture
def graph_file(tmp_path) -> Path:
    p = tmp_path / "graph.json"
    p.write_text(json.dumps(GRAPH))
    return p


def run_cli(*args) -> int:
    return main(["run", *map(str, args)])


def test_success_applies_overrides_and_downloads_outputs(graph_file, tmp_path, capsys):
    out = tmp_path / "out"
    with FakeComfy() as fake:
        code = run_cli(graph_file, "--server", fake.url, "--out", out, "--timeout", 30,
                       "--set", "Close-up.seed=77", "--set", "SoulIDLoad.name=my_soul", "--set", "3.filename_prefix=look/x")
    cap = capsys.readouterr()
    assert code == 0, cap.err
    body = fake.received[0]
    assert body["client_id"] and body["prompt"]["2"]["inputs"]["seed"] == 77  # JSON number, not "77"
    assert body["prompt"]["3"]["inputs"]["filename_prefix"] == "look/x"
    assert json.loads(graph_file.read_text()) == GRAPH  # the file itself is left alone
    # Both SaveImage outputs downloaded byte for byte, into their subfolder.
    for name in ("x_00001_.png", "copy_00001_.png"):
        saved = out / "look" / name
        assert saved.read_bytes() == fake.files[("output", "look", name)]
        assert f"node {'3' if name.startswith('x') else '4'}: {saved}" in cap.out
    px = np.asarray(Image.open(out / "look" / "x_00001_.png").convert("RGB"))
    assert px.shape == (64, 48, 3) and tuple(px[0, 0]) == seed_colour(77) != seed_colour(5)
    assert {v["type"] for v in fake.views} == {"output"}
    # Progress from /queue, then the text output of the Score node.
    assert "queued (0 ahead)" in cap.err and "running" in cap.err
    assert "node 5 (SoulIDScore): image 1: 0.912 same person" in cap.out


def test_failing_node_exits_1_with_its_error(graph_file, tmp_path, capsys):
    with FakeComfy(polls_pending=0, polls_running=1) as fake:
        code = run_cli(graph_file, "--server", fake.url, "--out", tmp_path / "o", "--set", "1.name=nobody")
    err = capsys.readouterr().err
    assert code == 1
    assert "node 1 (SoulIDLoad) failed" in err and "'nobody' is not in the library" in err
    assert [f.name for f in (tmp_path / "o").iterdir()] == [".soulid-jobs.jsonl"]  # no output, the journal only


def test_refused_prompt_exits_2_with_node_errors(tmp_path, capsys):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"1": {"class_type": "NoSuchNode", "inputs": {}}}))
    with FakeComfy() as fake:
        code = run_cli(p, "--server", fake.url, "--out", tmp_path / "o")
    err = capsys.readouterr().err
    assert code == 2 and "HTTP 400" in err and "node 1 (NoSuchNode): Node type NoSuchNode not found" in err


def test_timeout_leaves_the_prompt_queued(graph_file, tmp_path, capsys):
    with FakeComfy(hold=True) as fake:
        code = run_cli(graph_file, "--server", fake.url, "--out", tmp_path / "o", "--timeout", 1)
    err = capsys.readouterr().err
    assert code == 1 and "timed out after 1 s" in err and "not cancelled" in err
    assert fake.interrupts == 0 and len(fake.received) == 1


@pytest.mark.parametrize("override, message", [
    ("Save Image.filename_prefix=x", "2 nodes have the title 'Save Image' (ids 3, 4)"),
    ("9.seed=1", "no node '9'; nodes are: 1 (Soul ID Load), 2 (Close-up)"),
    ("2.soul_id=abc", "input 'soul_id' of node 2 (SoulIDGenerate) is connected to node 1"),
    ("seed=3", "expected NODE.INPUT=VALUE"),
])
def test_bad_overrides_exit_2_before_queueing(graph_file, override, message, capsys):
    with FakeComfy() as fake:
        code = run_cli(graph_file, "--server", fake.url, "--set", override)
    assert code == 2 and message in capsys.readouterr().err
    assert fake.received == []


def test_ui_format_points_at_the_api_twin(capsys):
    code = run_cli(ui_template("soul_id_create"), "--server", "http://127.0.0.1:9")
    err = capsys.readouterr().err
    assert code == 2 and "UI-format workflow" in err and str(API_DIR / "soul_id_create.json") in err


def test_unreadable_workflow_and_unreachable_server(tmp_path, graph_file, capsys):
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    assert run_cli(bad) == 2
    assert f"{bad}: not valid JSON" in capsys.readouterr().err
    with FakeComfy() as fake:
        url = fake.url
    assert run_cli(graph_file, "--server", url, "--timeout", 5) == 2  # closed port
    assert f"cannot reach ComfyUI at {url}" in capsys.readouterr().err


# ------------------------------------------- hostile servers, reruns, uploads
def _bad_filename(pid, entry):
    return {**entry, "outputs": {"3": {"images": [{"filename": 5, "subfolder": "", "type": "output"}]}}}


@pytest.mark.parametrize("override, field", [
    (lambda pid, e: "not an entry", "(entry): Input should be a valid dictionary"),
    (lambda pid, e: {**e, "outputs": ["3", {"images": []}]}, "outputs: Input should be a valid dictionary"),
    (_bad_filename, "outputs.3.images.0.filename: Input should be a valid string"),
    (lambda pid, e: {**e, "outputs": {"3": {"images": [{"filename": "a\x00b.png"}]}}},
     "outputs.3.images.0.filename: Value error, must be non-empty text without NUL bytes"),
    (lambda pid, e: {**e, "outputs": {"3": "images"}}, "outputs.3: Input should be a valid dictionary"),
])
def test_malformed_history_is_a_clear_error(graph_file, tmp_path, capsys, override, field):
    with FakeComfy(polls_pending=0, polls_running=0, history_override=override) as fake:
        code = run_cli(graph_file, "--server", fake.url, "--out", tmp_path / "o", "--timeout", 10)
    err = capsys.readouterr().err
    assert code == 2 and "malformed history entry" in err and field in err, err
    assert "Traceback" not in err and fake.views == []


def test_server_names_never_choose_the_path_nor_overwrite(graph_file, tmp_path, capsys):
    evil = lambda pid, e: {**e, "outputs": {"3": {"images": [  # noqa: E731
        {"filename": "../../escape.png", "subfolder": "../..", "type": "output"},
        {"filename": "/tmp/abs.png", "subfolder": "/etc", "type": "output"}]}}}
    out = tmp_path / "o"
    with FakeComfy(polls_pending=0, polls_running=0, history_override=evil) as fake:
        fake.files[("output", "../..", "../../escape.png")] = b"one"
        fake.files[("output", "/etc", "/tmp/abs.png")] = b"two"
        assert run_cli(graph_file, "--server", fake.url, "--out", out) == 0
        assert run_cli(graph_file, "--server", fake.url, "--out", out, "--new-run") == 0
    made = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.suffix == ".png")
    # Everything inside --out, the second run's same-named files beside the first's.
    assert made == ["escape.png", "escape_1.png", "etc/abs.png", "etc/abs_1.png"], made
    assert not (tmp_path.parent / "escape.png").exists() and len(fake.received) == 2
    assert (out / "escape.png").read_bytes() == (out / "escape_1.png").read_bytes() == b"one"


@pytest.mark.parametrize("value", ["nan", "-1", "0", "inf", "abc"])
def test_timeout_refuses_nan_and_negatives(graph_file, value, capsys):
    with pytest.raises(SystemExit) as e:
        run_cli(graph_file, "--timeout", value)
    assert e.value.code == 2 and "not a finite number of seconds above 0" in capsys.readouterr().err


def test_timeout_holds_when_history_hangs(graph_file, tmp_path, capsys):
    import time
    with FakeComfy(hang_history=True) as fake:
        t0 = time.monotonic()
        code = run_cli(graph_file, "--server", fake.url, "--out", tmp_path / "o", "--timeout", 3)
        took = time.monotonic() - t0
    assert code == 1 and 2.5 < took < 5.0, took
    assert "timed out after 3 s" in capsys.readouterr().err


def _run_child_rss(tmp_path, args) -> tuple[int, int, str]:
    """Run ``soulid`` in a child process; (exit code, its peak RSS in MB, stderr)."""
    import subprocess

    from child_memory import read_peak, soulid_command

    out = tmp_path / "rss.txt"
    p = subprocess.run(soulid_command(out, args), capture_output=True, text=True, env={**os.environ}, timeout=240)
    rc, peak_mb = read_peak(out)
    return rc, int(peak_mb), p.stderr


def test_huge_view_streams_to_disk_under_a_cap(graph_file, tmp_path):
    # 3 GB offered without Content-Length: the cap stops it, memory stays flat, nothing is left.
    with FakeComfy(polls_pending=0, polls_running=0, big_view=3 << 30) as fake:
        rc, rss, err = _run_child_rss(tmp_path, ["run", graph_file, "--server", fake.url, "--out", tmp_path / "a",
                                                 "--max-output-mb", 100])
    assert rc == 2 and "exceeds the 104857600 byte limit" in err, err
    assert rss < 300, f"peak RSS {rss} MB"
    assert not [p for p in (tmp_path / "a").rglob("*") if p.is_file() and p.name != ".soulid-jobs.jsonl"]
    # 320 MB accepted: written to disk, still under 300 MB of memory.
    with FakeComfy(polls_pending=0, polls_running=0, big_view=320 << 20) as fake:
        rc, rss, err = _run_child_rss(tmp_path, ["run", graph_file, "--server", fake.url, "--out", tmp_path / "b"])
    assert rc == 0, err
    assert rss < 300, f"peak RSS {rss} MB"
    assert (tmp_path / "b" / "look" / "closeup_00001_.png").stat().st_size == 320 << 20


def test_rerun_submits_nothing_and_uploads_once(graph_file, tmp_path, faces, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("obama.jpg", "obama2.jpg", "obama4.jpg"):
        shutil.copy(faces / "obama" / name, photos / name)
    out = tmp_path / "o"
    with FakeComfy(polls_pending=0, polls_running=0) as fake:
        for _ in range(2):
            assert run_cli(graph_file, "--server", fake.url, "--out", out, "--upload", f"1.photos={photos}") == 0
        # Journal lost (a new --out): the server is asked for the job's prompt_id, still one job.
        assert run_cli(graph_file, "--server", "native+" + fake.url, "--out", tmp_path / "o2",
                       "--upload", f"1.photos={photos}") == 0
        # A changed graph is a new job, but the photos are on the server already.
        assert run_cli(graph_file, "--server", fake.url, "--out", out, "--upload", f"1.photos={photos}",
                       "--set", "2.seed=9") == 0
    assert len(fake.received) == 2 and len(fake.uploads) == 3
    sub = fake.received[0]["prompt"]["1"]["inputs"]["photos"]
    assert sub.startswith("soulid-") and sorted(n for s, n in fake.uploads) == sorted(p.name for p in photos.iterdir())
    assert {fake.inputs[(sub, p.name)] for p in photos.iterdir()} == {p.read_bytes() for p in photos.iterdir()}
    assert "already done" in capsys.readouterr().err


def test_a_rerun_after_a_broken_download_fetches_only_what_is_missing(graph_file, tmp_path, capsys):
    out = tmp_path / "o"
    with FakeComfy(polls_pending=0, polls_running=0) as fake:
        fake.fail_views.add("copy_00001_.png")
        assert run_cli(graph_file, "--server", fake.url, "--out", out) == 2
        assert "HTTP 500" in capsys.readouterr().err
        assert run_cli(graph_file, "--server", fake.url, "--out", out) == 0
    names = [v["filename"] for v in fake.views]
    assert names.count("closeup_00001_.png") == 1 and names.count("copy_00001_.png") == 2
    assert sorted(p.name for p in (out / "look").iterdir()) == ["closeup_00001_.png", "copy_00001_.png"]
    assert len(fake.received) == 1


def test_next_server_when_the_first_is_down(graph_file, tmp_path, capsys):
    with FakeComfy() as dead:
        url = dead.url
    with FakeComfy(polls_pending=0, polls_running=0) as fake:
        code = run_cli(graph_file, "--server", url, "--server", fake.url, "--out", tmp_path / "o")
    assert code == 0 and len(fake.received) == 1
    assert (tmp_path / "o" / "look" / "closeup_00001_.png").is_file()


# ------------------------------------------------- real ComfyUI (COMFYUI_PATH)
API_FILES = sorted(API_DIR.glob("*.json"))
HOST_RUN_TIMEOUT = 300
OBAMA = ["obama.jpg", "obama2.jpg", "obama-480p.jpg", "obama_small.jpg", "obama4.jpg"]
#: Overrides per workflow for the host run: the create workflow must not
#: replace the Soul ID the others load; Higgsfield's v1 DoP route offers no
#: cost estimate, so a max_usd cap cannot be enforced there and the engine
#: refuses the job (CostLimit): run it uncapped (0) against the stand-in.
HOST_SETS = {"soul_id_create": ["Soul ID Create.name=fresh_soul"], "dop_animate_cloud": ["Soul ID DoP Animate.max_usd=0"]}
#: Output nodes whose files the runner must download.
FILE_NODES = {"SaveImage", "PreviewImage", "SaveVideo"}
PICTURE_SIDE, PICTURE_MAX_BYTES = 720, 300_000


#: Core nodes that load model files from ComfyUI's models/ folders.
MODEL_LOADERS = {"CheckpointLoaderSimple", "UNETLoader", "CLIPLoader", "DualCLIPLoader", "VAELoader", "LoraLoader",
                 "LoraLoaderModelOnly", "CLIPVisionLoader"}


def needs_local_weights(prompt: dict) -> str | None:
    """Why a workflow cannot run here (a local diffusion/i2v pipeline needs model weights), or None."""
    for nid, n in prompt.items():
        i, typ = n["inputs"], n["class_type"]
        if typ in MODEL_LOADERS:
            return (f"node {nid} ({typ}) loads model files this machine does not have; "
                    f"tests/test_native_workflows.py checks that the graph stops there with ComfyUI's own message")
        if i.get("backend") == "local" and not (typ == "SoulIDDoPAnimate" and i.get("engine", "camera") == "camera"):
            return (f"node {nid} ({typ}) runs the local pipeline, which needs model weights this machine does not "
                    f"have (the camera engine and the cloud stand-in run here)")
    return None


@pytest.fixture(scope="module")
def cloud_host(tmp_path_factory, faces):
    """A real ComfyUI with the pack, its cloud backends pointed at the API
    stand-in, keys in its 0600 credentials file, and ``my_soul`` (real Obama
    photos, trained on the stand-in) in its library.

    Yields ``(host, standin, soul)``."""
    from comfy_host import comfy_checkout, start_comfy

    root, why = comfy_checkout()
    if root is None:
        pytest.skip(why)
    from standin.fixtures import cloud_env_vars
    from standin.server import AURASHOT_KEY, KEY_ID, KEY_SECRET, WAVESPEED_KEY, StandIn

    from soulid.backends.credentials import save_key
    from soulid.backends.remote_training import train_remote
    from soulid.soul.create import create_soul_id
    from soulid.soul.library import Library

    base = tmp_path_factory.mktemp("comfy_run")
    own = base / "_test_process"
    with StandIn(queue_s=0.05, run_s=0.05) as standin, pytest.MonkeyPatch.context() as mp:
        for k, v in cloud_env_vars(standin.url).items():
            mp.setenv(k, v)
        for var in ("SOULID_DATA_DIR", "SOULID_CACHE_DIR", "SOULID_LIBRARY"):
            mp.setenv(var, str(own / var.lower()))
        # The host's config dir (start_comfy points SOULID_CONFIG_DIR there); its
        # environment gets no keys, so the nodes read them from this 0600 file.
        mp.setenv("SOULID_CONFIG_DIR", str(base / "soulid_config"))
        for provider, key in (("higgsfield", f"{KEY_ID}:{KEY_SECRET}"), ("wavespeed", WAVESPEED_KEY),
                              ("aurashot", AURASHOT_KEY)):
            save_key(provider, key)
        res = create_soul_id([faces / "obama" / n for n in OBAMA[:4]], "my_soul", analyzer="dlib", workers=1)
        assert res.soul is not None, res.report
        train_remote(res.soul, "higgsfield", "v1")
        Library(base / "user" / "soulid" / "library").save(res.soul)
        (base / "input" / "soul_photos").mkdir(parents=True)
        for n in OBAMA:
            shutil.copy(faces / "obama" / n, base / "input" / "soul_photos" / n)
        Image.open(faces / "obama" / "obama3.jpg").convert("RGB").save(base / "input" / "example.png")
        with start_comfy(base) as host:
            yield host, standin, res.soul


def _decode_outputs(out: Path) -> tuple[dict[str, np.ndarray], dict[str, list[np.ndarray]]]:
    """Images and videos (frames) under ``out``, by path relative to it."""
    import av

    images, videos = {}, {}
    for p in sorted(out.rglob("*")):
        if not p.is_file() or p.name == ".soulid-jobs.jsonl":  # the runner's job journal
            continue
        rel = p.relative_to(out).as_posix()
        if p.suffix.lower() in (".mp4", ".webm", ".mov"):
            with av.open(str(p)) as c:
                videos[rel] = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        else:
            images[rel] = np.asarray(Image.open(p).convert("RGB"))
    return images, videos


def _same_person(soul, img: np.ndarray) -> bool:
    from soulid.soul.score import score_images

    return bool(score_images(soul, [img])[0].same_person)


def _write_picture(stem: str, images: dict, videos: dict) -> None:
    """A small PNG of the workflow's result for the docs (``$SOULID_WORKFLOW_PICTURES``)."""
    folder = os.environ.get("SOULID_WORKFLOW_PICTURES")
    if not folder:
        return
    if videos:
        frames = next(iter(videos.values()))
        picks = [frames[int(i)] for i in np.linspace(0, len(frames) - 1, 4)]
        pic = Image.fromarray(np.concatenate(picks, axis=1))
    else:
        # the sheet / board when there is one, else the largest picture
        key = max(images, key=lambda k: (any(w in k for w in ("sheet", "board", "ComfyUI_temp")), images[k].size))
        pic = Image.fromarray(images[key])
    pic.thumbnail((PICTURE_SIDE * (2 if videos else 1), PICTURE_SIDE), Image.LANCZOS)
    target = Path(folder) / f"{stem}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    pic.save(target, optimize=True)
    while target.stat().st_size > PICTURE_MAX_BYTES:  # 256 colours, then smaller, until it fits
        pic = pic.resize((pic.width * 4 // 5, pic.height * 4 // 5), Image.LANCZOS) if pic.mode == "P" else pic
        pic = pic.convert("RGB").quantize(256, dither=Image.Dither.NONE)
        pic.save(target, optimize=True)


def _check_lookbook(images, videos, text, soul):
    shots = {k.split("/")[1].split("_")[0]: v for k, v in images.items() if k.startswith("lookbook/")}
    assert set(shots) == {"closeup", "fullbody", "studio", "sheet"}, sorted(images)
    assert shots["closeup"].shape[0] * 3 == shots["closeup"].shape[1] * 4  # 3:4
    assert abs(shots["fullbody"].shape[0] / shots["fullbody"].shape[1] - 1.5) < 0.01  # 2:3
    for k in ("closeup", "fullbody", "studio"):
        assert _same_person(soul, shots[k]), f"{k}: the face did not hold"
    assert shots["sheet"].shape[1] >= 3 * 384  # three tiles in a row


def _check_campaign(images, videos, text, soul):
    kept = [v for k, v in images.items() if k.startswith("campaign/variant")]
    assert len(kept) == 3 and all(_same_person(soul, v) for v in kept)
    assert any(k.startswith("campaign/board") for k in images)
    reports = [line for line in text.splitlines() if "(SoulIDDriftGuard)" in line]
    assert len(reports) == 3, text  # each variant's Drift Guard shows its own report


def _check_id_photo(images, videos, text, soul):
    (sheet,) = [v for k, v in images.items() if k.startswith("id_photo/sheet")]
    assert sheet.shape[0] >= 1024 and sheet.shape[1] >= 1024  # 2 x 2 tiles of 512 px
    lines = [x for x in text.split("(SoulIDScore): ", 1)[1].splitlines() if x.strip()][:4]
    assert len(lines) == 4 and all(x.endswith("same person") for x in lines), text


def _check_create(images, videos, text, soul, host):
    assert (host.user_dir / "soulid" / "library" / "fresh_soul.soulid").is_file()
    assert any(v.shape[1] > 5 * 200 for v in images.values())  # the QA sheet: a row of thumbnails


def _check_one_face(images, videos, text, soul):
    assert len(images) + len(videos) == 1, (sorted(images), sorted(videos))
    for img in images.values():
        assert _same_person(soul, img)
    for frames in videos.values():
        assert len(frames) >= 24 and _same_person(soul, frames[0]) and _same_person(soul, frames[-1])


HOST_CHECKS = {"lookbook": _check_lookbook, "campaign": _check_campaign, "id_photo": _check_id_photo,
               "soul_generate_cloud": _check_one_face, "soul_edit_cloud": _check_one_face,
               "dop_animate_cloud": _check_one_face, "soul_animate_local": _check_one_face}


@pytest.mark.comfyui
@pytest.mark.parametrize("api_path", API_FILES, ids=[p.stem for p in API_FILES])
def test_api_twin_runs_headless_in_comfyui(cloud_host, api_path, tmp_path, capsys):
    host, standin, soul = cloud_host
    prompt = json.loads(api_path.read_text())
    out = tmp_path / "out"
    if needs_local_weights(prompt):
        # No weights on any test machine: a user without the files meets ComfyUI
        # refusing what hangs off the loaders, and the part free of them running.
        from render_templates import depends_on_loaders

        dep = depends_on_loaders(prompt)
        free = [k for k, n in prompt.items() if n["class_type"] in FILE_NODES and k not in dep]
        files = {v for n in prompt.values() if n["class_type"] in MODEL_LOADERS
                 for v in n["inputs"].values() if isinstance(v, str) and v.endswith((".safetensors", ".ckpt", ".pt"))}
        code = run_cli(api_path, "--server", host.url, "--out", out, "--timeout", HOST_RUN_TIMEOUT)
        cap = capsys.readouterr()
        assert "Traceback" not in cap.err
        if not free:  # every output needs a model file: the whole graph is refused, the files named
            assert code == 2 and "refused the workflow" in cap.err and "not in" in cap.err, cap.err
            assert files and any(f in cap.err for f in files), (files, cap.err)
        else:  # the reference previews run and are downloaded
            assert code == 0, cap.err
            for nid in free:
                assert f"node {nid}: {out}" in cap.out, f"no file downloaded for node {nid}\n{cap.out}"
        return
    sets = [a for s in HOST_SETS.get(api_path.stem, []) for a in ("--set", s)]
    cast = api_path.stem.startswith("soul_cast")  # Soul Cast: the stand-in draws a fixture person from the words
    if cast:
        from conftest import fixtures_root
        from standin.fixtures import enable_cast_mode

        enable_cast_mode(standin.url, fixtures_root())
    try:
        code = run_cli(api_path, "--server", host.url, "--out", out, "--timeout", HOST_RUN_TIMEOUT, *sets)
    finally:
        if cast:
            httpx.post(standin.url + "/_standin/config", json={"cast_people": {}}).raise_for_status()
    cap = capsys.readouterr()
    assert code == 0, f"{cap.err}\n{host.log_tail()}"
    for nid, n in prompt.items():
        if n["class_type"] in FILE_NODES:
            assert f"node {nid}: {out}" in cap.out, f"no file downloaded for node {nid} ({n['class_type']})\n{cap.out}"
    images, videos = _decode_outputs(out)
    assert images or videos
    for k, img in images.items():
        assert img.std() > 10, f"{k} is blank"
    check = HOST_CHECKS.get(api_path.stem)
    if api_path.stem == "soul_id_create":
        _check_create(images, videos, cap.out, soul, host)
    elif check is not None:
        check(images, videos, cap.out, soul)
    elif api_path.stem == "moodboard":
        (board,) = images.values()
        assert board.shape[1] >= 2 * 384 and board.shape[0] >= 2 * 384  # 2 x 2 tiles
    _write_picture(api_path.stem, images, videos)


@pytest.mark.comfyui
def test_failing_cloud_job_exits_1_with_the_providers_reason(cloud_host, tmp_path, capsys):
    host, standin, _ = cloud_host
    import httpx

    httpx.post(standin.url + "/_standin/faults", json={"faults": [
        {"kind": "failed", "path": "/higgsfield-ai/soul", "count": 1, "reason": "out of GPUs"}]}).raise_for_status()
    code = run_cli(API_DIR / "soul_generate_cloud.json", "--server", host.url, "--out", tmp_path / "o",
                   "--set", "Soul ID Generate.seed=424242", "--timeout", HOST_RUN_TIMEOUT)  # a request not in the ledger
    err = capsys.readouterr().err
    assert code == 1, err
    assert "(SoulIDGenerate) failed" in err and "out of GPUs" in err, err
    assert [f.name for f in (tmp_path / "o").iterdir()] == [".soulid-jobs.jsonl"]  # no output, the journal only
