"""What a ComfyUI user meets around the nodes: API keys set from the editor,
a library the editor can list, old workflows that still run, and a tooltip on
every input. One real ComfyUI (``$COMFYUI_PATH``) for the module, its cloud
providers pointed at the stand-in WITHOUT keys in the environment: the keys
come only through ``POST /soulid/keys``, while the server runs.
"""
from __future__ import annotations

import json
import re
import shutil
import stat
import time

import pytest

from comfy_host import REPO, start_comfy
from render_templates import error_of, queue
from standin.fixtures import cloud_env_vars, standin_server, stats  # noqa: F401  (fixture)
from standin.server import AURASHOT_KEY, KEY_ID, KEY_SECRET

pytestmark = pytest.mark.comfyui

KEY_VARS = ("HF_KEY", "HF_API_KEY", "HF_API_SECRET", "WAVESPEED_API_KEY", "AURASHOT_API_KEY")
OBAMA = ["obama.jpg", "obama2.jpg", "obama4.jpg", "obama-480p.jpg"]


@pytest.fixture(scope="module")
def host(tmp_path_factory, standin_server):
    base = tmp_path_factory.mktemp("comfy_ux")
    env = {k: v for k, v in cloud_env_vars(standin_server.url).items() if k not in KEY_VARS}
    with start_comfy(base, env=env) as h:
        yield h


def create_prompt(name: str, folder: str, train_remote: str = "none") -> dict:
    api = json.loads((REPO / "workflows" / "api" / "soul_id_create.json").read_text())
    for n in api.values():
        if n["class_type"] == "SoulIDCreate":
            n["inputs"].update(name=name, folder=folder, analyzer="dlib", train_remote=train_remote)
    return api


@pytest.fixture(scope="module")
def anna(host, faces):
    """A Soul ID created through /prompt while the server (and the editor) runs."""
    folder = host.input_dir / "soul" / "anna"
    folder.mkdir(parents=True)
    for n in OBAMA:
        shutil.copy(faces / "obama" / n, folder / n)
    with host.client() as c:
        assert c.get("/soulid/library").json()["names"] == []
    entry = queue(host, create_prompt("anna", "soul/anna"))
    assert entry["status"]["status_str"] == "success", error_of(entry) + host.log_tail()
    return "anna"


def test_library_route_lists_a_soul_id_created_while_running(host, anna):
    with host.client() as c:
        lib = c.get("/soulid/library").json()
        front = c.get("/soulid/library/front", params={"name": anna})
        missing = c.get("/soulid/library/front", params={"name": "nobody"})
    assert lib["names"] == [anna]
    e = lib["entries"][0]
    assert e["verdict"] in ("usable", "strong", "weak") and e["accepted"] >= 3 and e["photos"] == len(OBAMA)
    assert 0.5 < e["threshold"] < 1.0
    assert front.status_code == 200 and front.headers["content-type"] == "image/jpeg"
    assert front.content[:2] == b"\xff\xd8" and len(front.content) > 2000
    assert missing.status_code == 404 and "nobody" in missing.json()["error"]


def test_create_checks_the_key_before_analysing(host, faces):
    """train_remote on and no key: Create fails at once, naming the setting; nothing analysed or uploaded."""
    folder = host.input_dir / "soul" / "keyless"
    folder.mkdir(parents=True)
    for n in OBAMA:
        shutil.copy(faces / "obama" / n, folder / n)
    before = host.log.read_text(errors="replace").count("soulid: ")
    t0 = time.monotonic()
    entry = queue(host, create_prompt("keyless", "soul/keyless", train_remote="higgsfield"))
    err = error_of(entry)
    assert entry["status"]["status_str"] == "error"
    assert "no higgsfield API key" in err and "Settings > Soul ID > API keys" in err and "Nothing was analysed" in err
    # Progress lines of the analysis ("soulid: photo 1/4 ...") never started.
    assert host.log.read_text(errors="replace").count("soulid: ") == before, host.log_tail()
    assert time.monotonic() - t0 < 30
    with host.client() as c:
        assert "keyless" not in c.get("/soulid/library").json()["names"]


def test_key_from_the_settings_route_runs_a_cloud_node_without_restart(host, anna, standin_server, tmp_path):
    with host.client() as c:
        assert c.get("/soulid/keys").json()["aurashot"] == {"set": False, "source": "none"}
        gen = json.loads((REPO / "workflows" / "api" / "soul_generate_cloud.json").read_text())
        gen = {k: v for k, v in gen.items() if v["class_type"] != "SoulIDTrainRemote"}
        gen["2"]["inputs"].update(backend="aurashot", soul_id=["1", 0], seed=7, max_usd=0.0)
        gen["1"]["inputs"]["name"] = anna
        refused = queue(host, gen)
        assert refused["status"]["status_str"] == "error" and "no aurashot API key" in error_of(refused)

        r = c.post("/soulid/keys", json={"provider": "aurashot", "key": AURASHOT_KEY})
        assert r.status_code == 200 and AURASHOT_KEY not in r.text
        assert r.json()["aurashot"] == {"set": True, "source": "file"}
        bad = c.post("/soulid/keys", json={"provider": "higgsfield", "key": "no-colon"})
        assert bad.status_code == 400 and "no-colon" not in bad.text
        assert c.post("/soulid/keys", json={"provider": "higgsfield", "key": f"{KEY_ID}:{KEY_SECRET}"}).status_code == 200

    cred = host.base / "soulid_config" / "credentials.json"
    assert stat.S_IMODE(cred.stat().st_mode) == 0o600
    assert json.loads(cred.read_text())["aurashot"] == AURASHOT_KEY

    entry = queue(host, gen)  # the same server: no restart
    assert entry["status"]["status_str"] == "success", error_of(entry) + host.log_tail()
    assert stats(standin_server)

    # The key is nowhere a user shares: the workflow, the history, the PNG's metadata, the settings file.
    from PIL import Image

    png = entry["outputs"]["3"]["images"][0]
    with host.client() as c:
        hist = c.get("/history").text
        img = c.get("/view", params={k: png[k] for k in ("filename", "subfolder", "type")}).content
        settings = c.get("/settings").text
    (tmp_path / "out.png").write_bytes(img)
    meta = json.dumps(Image.open(tmp_path / "out.png").info)
    assert "prompt" in meta  # ComfyUI did write its metadata
    for where, text in (("workflow", json.dumps(gen)), ("history", hist), ("PNG metadata", meta),
                        ("settings", settings)):
        for secret in (AURASHOT_KEY, KEY_SECRET):
            assert secret not in text, f"{secret} in the {where}"
    for f in host.user_dir.rglob("*"):
        if f.is_file() and f.suffix in (".json", ".db", ".txt"):
            assert AURASHOT_KEY not in f.read_text(errors="replace"), f

    with host.client() as c:  # Remove: the next run has no key again
        assert c.post("/soulid/keys", json={"provider": "aurashot", "key": ""}).json()["aurashot"]["set"] is False
    assert "aurashot" not in json.loads(cred.read_text())


def test_old_input_ids_still_run(host, anna, faces):
    """An API workflow saved before the rename (`soul` on Drift Guard) runs unchanged."""
    shutil.copy(faces / "obama" / "obama2.jpg", host.input_dir / "o2.jpg")
    old = {
        "1": {"class_type": "SoulIDLoad", "inputs": {"name": anna}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "o2.jpg"}},
        "3": {"class_type": "SoulIDDriftGuard",
              "inputs": {"soul": ["1", 0], "images": ["2", 0], "mode": "report", "max_frames": 4, "n": 1,
                         "stop_at_first_pass": True, "backend": "none", "seed": 1, "aspect": "3:4",
                         "max_usd": 0.0, "new_run": False}},
        "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 1]}},
    }
    entry = queue(host, old)
    assert entry["status"]["status_str"] == "success", error_of(entry) + host.log_tail()
    assert "anna" in entry["outputs"]["3"]["text"][0]


def test_every_input_of_every_node_has_a_tooltip(host):
    """Over the live /object_info: every node of the pack (new ones included),
    one Soul ID input id, one naming scheme."""
    with host.client() as c:
        info = c.get("/object_info").json()
    ours = {k: v for k, v in info.items() if k.startswith("SoulID")}
    assert len(ours) >= 20
    missing, names = [], []
    for node, d in ours.items():
        assert d["display_name"].startswith("Soul ID "), d["display_name"]
        assert "ID ID" not in d["display_name"]
        for section in ("required", "optional"):
            for inp, spec in d["input"].get(section, {}).items():
                opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                if not (opts.get("tooltip") or "").strip():
                    missing.append(f"{node}.{inp}")
                if spec[0] == "SOUL_ID":
                    names.append((node, inp))
    assert missing == [], f"inputs without a tooltip: {missing}"
    # one Soul ID input is ``soul_id``; a node taking several (Cast Guard) numbers them ``soul_id_1``...
    assert names and all(re.fullmatch(r"soul_id(_[1-9])?", inp) for _, inp in names), names


def test_the_editor_knows_which_nodes_show_a_result():
    """web/soulid_ux.js gives these nodes their result box from the start (in
    the room the templates keep for it): the same set the layout check counts."""
    import re

    from workflow_check import TEXT_NODES

    js = (REPO / "web" / "soulid_ux.js").read_text()
    block = js[js.index("const TEXT_NODES = new Set(["):]
    block = block[:block.index("]);")]
    assert set(re.findall(r'"(SoulID\w+)"', block)) == TEXT_NODES


def test_old_api_workflows_migrate_to_the_current_ids_and_motion_lists():
    """Shipped API workflows, turned back into their old form (``soul`` on the
    four renamed nodes, an empty motion), come out as shipped."""
    from comfy_host import import_comfy_or_skip

    import_comfy_or_skip()  # the nodes package imports comfy_api
    from soulid.nodes.compat import RENAMED_INPUTS, migrate_prompt

    for name in ("campaign", "moodboard", "id_photo", "lookbook", "dop_animate_cloud"):
        shipped = json.loads((REPO / "workflows" / "api" / f"{name}.json").read_text())
        old = json.loads(json.dumps(shipped))
        for node in old.values():
            for oldid, new in RENAMED_INPUTS.get(node["class_type"], {}).items():
                node["inputs"][oldid] = node["inputs"].pop(new)
            if node["inputs"].get("motion_2") == "none":
                node["inputs"]["motion_2"] = ""
        assert old != shipped
        assert migrate_prompt(old) > 0 and old == shipped, name
