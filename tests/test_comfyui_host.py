"""The pack inside a real ComfyUI (``$COMFYUI_PATH``; skipped without one).

One server for the module (see :mod:`comfy_host`). The tests find our nodes in
``/object_info``, check the shipped workflows against the live schemas and the
recorded core snapshot against the live core nodes, and run the create
workflow through ``/prompt`` on real photos, then Load + Score on the result.
"""
from __future__ import annotations

import io
import json
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from comfy_host import REPO, ComfyHost, start_comfy
from standin.fixtures import cloud_env_vars, standin_server, stats  # noqa: F401  (fixture)
from workflow_check import DATA, check_api_prompt, check_ui_workflow, ui_template

pytestmark = pytest.mark.comfyui

OUR_NODES = {"SoulIDCreate", "SoulIDLoad", "SoulIDSave", "SoulIDScore"}
CREATE_UI = ui_template("soul_id_create")
CREATE_API = REPO / "workflows" / "api" / "soul_id_create.json"
#: Real photos for the run: five of Obama at different sizes, and one of Biden
#: that the identity-outlier check must keep out of the Soul ID.
OBAMA = ["obama.jpg", "obama2.jpg", "obama-480p.jpg", "obama_small.jpg", "obama4.jpg"]
RUN_TIMEOUT = 300.0


@pytest.fixture(scope="module")
def comfy_host(tmp_path_factory, standin_server):
    """One ComfyUI for the module, its cloud providers pointed at the stand-in."""
    base = tmp_path_factory.mktemp("comfy_base")
    with start_comfy(base, env=cloud_env_vars(standin_server.url)) as host:
        yield host


@pytest.fixture(scope="module")
def object_info(comfy_host: ComfyHost) -> dict:
    with comfy_host.client() as c:
        r = c.get("/object_info")
    r.raise_for_status()
    return r.json()


def queue(host: ComfyHost, prompt: dict) -> dict:
    """POST the prompt, wait for it to finish, return its ``/history`` entry."""
    with host.client() as c:
        r = c.post("/prompt", json={"prompt": prompt, "client_id": uuid.uuid4().hex})
        assert r.status_code == 200, f"/prompt refused the workflow: {r.text}\n{host.log_tail()}"
        pid = r.json()["prompt_id"]
        deadline = time.monotonic() + RUN_TIMEOUT
        while time.monotonic() < deadline:
            h = c.get(f"/history/{pid}").json()
            if pid in h and h[pid].get("status", {}).get("completed") is not None:
                if h[pid]["status"].get("status_str") in ("success", "error"):
                    return h[pid]
            time.sleep(0.5)
    pytest.fail(f"prompt {pid} did not finish within {RUN_TIMEOUT:.0f} s\n{host.log_tail()}")


def execution_error(entry: dict) -> dict | None:
    for kind, data in entry["status"].get("messages", []):
        if kind == "execution_error":
            return data
    return None


def test_pack_imports_and_lists_nodes(comfy_host, object_info):
    log = comfy_host.log.read_text(errors="replace")
    assert "IMPORT FAILED): " + str(comfy_host.base / "custom_nodes" / "soulid") not in log, comfy_host.log_tail()
    missing = OUR_NODES - set(object_info)
    assert not missing, f"nodes missing from /object_info: {missing}\n{comfy_host.log_tail()}"
    create = object_info["SoulIDCreate"]
    assert create["output"] == ["SOUL_ID", "IMAGE", "STRING"]
    assert create["input"]["optional"]["images"][0] == "IMAGE"
    assert object_info["SoulIDSave"]["output_node"] is True
    assert object_info["SoulIDScore"]["output_is_list"] == [True, True, False]


def test_shipped_workflows_fit_live_schemas(object_info):
    assert check_ui_workflow(json.loads(CREATE_UI.read_text()), object_info) == []
    assert check_api_prompt(json.loads(CREATE_API.read_text()), object_info) == []


def test_recorded_core_snapshot_matches_host(comfy_host, object_info):
    snap = json.loads((DATA / "object_info_core.json").read_text())
    with comfy_host.client() as c:
        version = c.get("/system_stats").json()["system"]["comfyui_version"]
    for name, info in snap["object_info"].items():
        assert name in object_info, f"core node {name} missing from ComfyUI {version}"
        if version == snap["comfyui_version"]:
            # File-list dropdowns depend on the input folder's contents.
            assert _without_file_lists(object_info[name]) == _without_file_lists(info), (
                f"{name} differs from tests/data/object_info_core.json: re-record it"
            )
        else:  # another host version: what the templates rely on must still hold
            assert _contract(object_info[name]) == _contract(info), (
                f"{name} on ComfyUI {version} no longer matches what tests/data/object_info_core.json "
                f"(ComfyUI {snap['comfyui_version']}) recorded: its outputs or input types changed"
            )


def _contract(info: dict) -> dict:
    """What a graph depends on in a node's schema, whatever the ComfyUI version:
    output types, and each recorded input's type (a combo counts as "COMBO")."""
    def kind(entry):
        t = entry[0] if entry else None
        return "COMBO" if isinstance(t, list) or t == "COMBO" else t
    return {"output": list(info.get("output", [])),
            "input": {sec: {k: kind(v) for k, v in (info.get("input", {}).get(sec) or {}).items()}
                      for sec in ("required", "optional")}}


def _without_file_lists(info: dict) -> dict:
    info = json.loads(json.dumps(info))
    for section in info["input"].values():
        for entry in section.values():
            if len(entry) > 1 and isinstance(entry[1], dict) and any(k.endswith("_upload") for k in entry[1]):
                entry[0] = [] if isinstance(entry[0], list) else entry[0]
                entry[1].pop("options", None)
    return info


def test_templates_are_served_under_their_titles(comfy_host):
    """ComfyUI lists every template by file name (what both frontends show as
    the card title) and serves it, and its thumbnail, at the URL the browser
    builds from that name (spaces and parentheses percent-encoded)."""
    from urllib.parse import quote

    stems = sorted(p.stem for p in (REPO / "workflows").glob("*.json"))
    with comfy_host.client() as c:
        listed = c.get("/workflow_templates").json()
        assert sorted(listed.get("soulid", [])) == stems, listed
        assert "01 Create a Soul ID" in listed["soulid"]
        for stem in stems:
            served = c.get(f"/api/workflow_templates/soulid/{quote(stem)}.json")
            assert served.status_code == 200, stem
            assert served.json() == json.loads((REPO / "workflows" / f"{stem}.json").read_text()), stem
            thumb = c.get(f"/api/workflow_templates/soulid/{quote(stem)}.jpg")
            assert thumb.status_code == 200 and thumb.content[:3] == b"\xff\xd8\xff", stem
    assert CREATE_UI.stem == "01 Create a Soul ID"


def test_create_workflow_runs_on_real_photos(comfy_host, faces):
    api = json.loads(CREATE_API.read_text())
    folder = comfy_host.input_dir / api["1"]["inputs"]["folder"]
    folder.mkdir(parents=True, exist_ok=True)
    for name in OBAMA:
        shutil.copy(faces / "obama" / name, folder / name)
    shutil.copy(faces / "biden" / "biden.jpg", folder / "biden.jpg")
    api["1"]["inputs"]["name"] = "obama"

    entry = queue(comfy_host, api)
    assert entry["status"]["status_str"] == "success", f"{execution_error(entry)}\n{comfy_host.log_tail()}"

    # The Create node shows the full QA report and the sheet on itself.
    shown = entry["outputs"]["1"]
    assert shown["text"][0].startswith("obama: ") and " accepted, verdict " in shown["text"][0]
    assert "biden.jpg" in shown["text"][0] and len(shown["text"][0].splitlines()) == 1 + len(OBAMA) + 1
    assert len(shown["images"]) == 1

    # The QA sheet reached the Preview Image node and is a real picture.
    images = entry["outputs"]["2"]["images"]
    assert len(images) == 1
    with comfy_host.client() as c:
        r = c.get("/view", params={k: images[0][k] for k in ("filename", "subfolder", "type")})
    assert r.status_code == 200
    sheet = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    assert sheet.shape[0] > 256 and sheet.shape[1] > 5 * 256
    assert sheet.std() > 20  # thumbnails, not a blank canvas

    # The Soul ID is in the library inside ComfyUI's user directory.
    from soulid.soul.soulfile import SoulID

    path = comfy_host.user_dir / "soulid" / "library" / "obama.soulid"
    assert path.is_file(), sorted(p.name for p in comfy_host.user_dir.rglob("*"))
    assert str(path) in entry["outputs"]["3"]["text"][0]
    soul = SoulID.load(path)
    assert soul.name == "obama"
    sources = {p.source for p in soul.photos}
    assert "biden.jpg" not in sources
    assert len(sources) >= 3 and sources <= set(OBAMA)
    report = {Path(p["path"]).name: p for p in soul.qa_report["photos"]}
    assert set(report) == set(OBAMA) | {"biden.jpg"}
    assert report["biden.jpg"]["excluded"] or report["biden.jpg"]["rating"] == "rejected"

    # Load it back by name (saved after the dropdown was built) and score a
    # photo of the same person and one of another against it.
    for name in ("obama3.jpg",):
        shutil.copy(faces / "obama" / name, comfy_host.input_dir / name)
    shutil.copy(faces / "biden" / "biden2.jpg", comfy_host.input_dir / "biden2.jpg")
    score = {
        "1": {"class_type": "SoulIDLoad", "inputs": {"name": "obama"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "obama3.jpg"}},
        "3": {"class_type": "LoadImage", "inputs": {"image": "biden2.jpg"}},
        "4": {"class_type": "ImageBatch", "inputs": {"image1": ["2", 0], "image2": ["3", 0]}},
        "5": {"class_type": "SoulIDScore", "inputs": {"soul_id": ["1", 0], "images": ["4", 0]}},
    }
    entry = queue(comfy_host, score)
    assert entry["status"]["status_str"] == "success", f"{execution_error(entry)}\n{comfy_host.log_tail()}"
    lines = entry["outputs"]["5"]["text"][0].splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("same person"), lines
    assert lines[1].endswith("different"), lines


def test_create_refuses_folder_outside_input(comfy_host):
    api = json.loads(CREATE_API.read_text())
    api["1"]["inputs"]["folder"] = "../user"
    api["1"]["inputs"]["name"] = "escape"
    entry = queue(comfy_host, api)
    err = execution_error(entry)
    assert entry["status"]["status_str"] == "error" and err is not None
    assert err["node_type"] == "SoulIDCreate"
    assert "outside ComfyUI's input directory" in err["exception_message"]
    # The error reads with the pack's name, not ComfyUI's mangled module path.
    assert err["exception_type"] == "soulid.soul.errors.SoulIDError", err["exception_type"]
    assert not (comfy_host.user_dir / "soulid" / "library" / "escape.soulid").exists()


def _make_soul(host: ComfyHost, faces, name: str) -> None:
    api = json.loads(CREATE_API.read_text())
    folder = host.input_dir / f"photos_{name}"
    folder.mkdir(parents=True, exist_ok=True)
    for n in OBAMA:
        shutil.copy(faces / "obama" / n, folder / n)
    api["1"]["inputs"].update(name=name, folder=folder.name)
    api["3"]["inputs"]["overwrite"] = True
    entry = queue(host, api)
    assert entry["status"]["status_str"] == "success", execution_error(entry)


def _paid(standin) -> int:
    return sum(stats(standin)["paid"].values())


def test_generate_template_pays_once_per_intent(comfy_host, standin_server, faces):
    """Queued twice, soul_generate_cloud pays once (training and the image);
    a new seed pays for one more image; the node shows the estimate."""
    _make_soul(comfy_host, faces, "cloud_soul")
    api = json.loads((REPO / "workflows" / "api" / "soul_generate_cloud.json").read_text())
    api["1"]["inputs"]["name"] = "cloud_soul"
    gen = next(k for k, v in api.items() if v["class_type"] == "SoulIDGenerate")
    p0 = _paid(standin_server)
    first = queue(comfy_host, api)
    assert first["status"]["status_str"] == "success", f"{execution_error(first)}\n{comfy_host.log_tail()}"
    p1 = _paid(standin_server)
    assert p1 - p0 == 2  # the remote training and one generation
    assert "estimated" in first["outputs"][gen]["text"][0]
    # Run again after ComfyUI dropped its cached outputs: the nodes execute
    # again, and the job ledger hands back the paid result.
    with comfy_host.client() as c:
        c.post("/free", json={"free_memory": True}).raise_for_status()
    # ComfyUI applies the flag after its next prompt: queue a small one first.
    queue(comfy_host, {"1": {"class_type": "SoulIDLoad", "inputs": {"name": "cloud_soul"}},
                       "2": {"class_type": "SoulIDSave", "inputs": {"soul_id": ["1", 0], "name": "cloud_soul_copy",
                                                                    "overwrite": True}}})
    again = queue(comfy_host, api)
    cached = [d.get("nodes", []) for kind, d in again["status"]["messages"] if kind == "execution_cached"]
    assert gen not in sum(cached, []), "Generate was served from ComfyUI's cache, not run again"
    assert "reused" in again["outputs"][gen]["text"][0]
    assert again["status"]["status_str"] == "success", execution_error(again)
    assert _paid(standin_server) == p1  # nothing paid again
    api[gen]["inputs"]["seed"] += 1
    third = queue(comfy_host, api)
    assert third["status"]["status_str"] == "success", execution_error(third)
    assert _paid(standin_server) == p1 + 1  # a new seed: one more paid image
