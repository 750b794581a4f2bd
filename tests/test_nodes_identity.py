"""Soul ID nodes run in-process, and the shipped create workflow checked
against their schemas.

Needs ComfyUI's ``comfy_api``: importable already, or from the checkout named
by ``$COMFYUI_PATH`` (appended to ``sys.path``, with ``--cpu`` set as ComfyUI's
launcher would). Skipped otherwise, saying why.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from comfy_host import REPO
from soulid.soul.errors import LibraryError, NoUsablePhotos, SoulIDError
from soulid.soul.imageio import downscale, load_photo
from soulid.soul.library import Library
from soulid.soul.soulfile import SoulID
from workflow_check import check_api_prompt, check_ui_workflow, load_core_snapshot, schemas_from_nodes, ui_template, ui_to_api

if importlib.util.find_spec("comfy_api") is None and not os.environ.get("COMFYUI_PATH"):
    pytest.skip("comfy_api is not importable and COMFYUI_PATH is not set (a ComfyUI checkout)", allow_module_level=True)
torch = pytest.importorskip("torch", reason="ComfyUI's IMAGE type is a torch tensor")


@pytest.fixture(scope="module")
def cui():
    """ComfyUI's modules and our nodes, imported for this module only.

    Imported here rather than at collection, and removed from ``sys.modules``
    afterwards: while ``folder_paths`` is loaded the core believes it runs
    inside ComfyUI (:mod:`soulid.soul.paths`), which would change other tests.
    """
    root = os.environ.get("COMFYUI_PATH")
    before = set(sys.modules)
    added = bool(root) and importlib.util.find_spec("comfy_api") is None and root not in sys.path
    if added:
        sys.path.append(root)

    def cleanup():
        base = os.path.realpath(root) if root else None
        for name in set(sys.modules) - before:
            f = getattr(sys.modules[name], "__file__", None) or ""
            if name.startswith("soulid.nodes") or (base and os.path.realpath(f).startswith(base + os.sep)):
                del sys.modules[name]
        if added:
            sys.path.remove(root)

    try:
        from comfy.cli_args import args

        args.cpu = True  # before comfy.model_management picks a device
        import comfy.model_management
        import comfy.utils
        import comfy_api.latest  # noqa: F401
        import folder_paths

        from soulid.nodes import convert, identity
    except ImportError as e:
        cleanup()
        pytest.skip(f"ComfyUI at {root} does not import here: {e}")
    yield SimpleNamespace(mm=comfy.model_management, utils=comfy.utils, fp=folder_paths, convert=convert, nodes=identity)
    cleanup()


FOLDER_PHOTOS = ["obama.jpg", "obama2.jpg", "obama-480p.jpg"]


@pytest.fixture
def input_dir(cui, tmp_path):
    old = cui.fp.get_input_directory()
    d = tmp_path / "comfy_input"
    d.mkdir()
    cui.fp.set_input_directory(str(d))
    yield d
    cui.fp.set_input_directory(old)


def _batch(cui, paths, side=384):
    """IMAGE batch of real photos, letterboxed to one square size."""
    out = []
    for p in paths:
        rgb = downscale(load_photo(p).rgb, side)
        canvas = np.zeros((side, side, 3), np.uint8)
        canvas[: rgb.shape[0], : rgb.shape[1]] = rgb
        out.append(canvas)
    return cui.convert.np_to_image(np.stack(out))


@pytest.fixture(scope="module")
def created(cui, faces, tmp_path_factory):
    """One Create run: a folder of three Obama photos plus a one-image batch."""
    d = tmp_path_factory.mktemp("comfy_input")
    (d / "me").mkdir()
    for n in FOLDER_PHOTOS:
        shutil.copy(faces / "obama" / n, d / "me" / n)
    old = cui.fp.get_input_directory()
    cui.fp.set_input_directory(str(d))
    calls = []
    cui.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: calls.append((value, total)))
    try:
        out = cui.nodes.SoulIDCreate.execute(
            name="me", folder="me", analyzer="dlib", max_photos=80, images=_batch(cui, [faces / "obama" / "obama4.jpg"])
        )
    finally:
        cui.utils.set_progress_bar_global_hook(None)
        cui.fp.set_input_directory(old)
    return out, calls


def test_create_from_folder_and_batch(created):
    out, calls = created
    soul, sheet, report = out.args
    assert isinstance(soul, SoulID) and soul.name == "me"
    assert {p.source for p in soul.photos} == set(FOLDER_PHOTOS) | {"image_0"}
    assert soul.primary_analyzer == "dlib"
    rep = json.loads(report)
    assert len(rep["photos"]) == 4 and rep["summary"]["accepted"] == 4
    # QA sheet: IMAGE [1, H, W, 3] float32 0..1 with four tiles in one row.
    assert sheet.dtype == torch.float32 and sheet.ndim == 4 and sheet.shape[0] == 1 and sheet.shape[3] == 3
    assert sheet.shape[2] >= 4 * 256 and 0.0 <= float(sheet.min()) and float(sheet.max()) <= 1.0
    assert float(sheet.std()) > 0.05
    # The progress bar (in thousandths, the pack's fraction progress) advanced once per photo, to the end.
    assert [v for v, _ in calls] == [250, 500, 750, 1000] and calls[-1] == (1000, 1000)


def test_create_fingerprint_follows_folder_contents(cui, input_dir, faces):
    (input_dir / "set").mkdir()
    shutil.copy(faces / "obama" / "obama.jpg", input_dir / "set" / "a.jpg")
    first = cui.nodes.SoulIDCreate.fingerprint_inputs(name="x", folder="set", analyzer="dlib", max_photos=80)
    assert first == cui.nodes.SoulIDCreate.fingerprint_inputs(name="x", folder="set", analyzer="dlib", max_photos=80)
    shutil.copy(faces / "obama" / "obama2.jpg", input_dir / "set" / "b.jpg")
    assert cui.nodes.SoulIDCreate.fingerprint_inputs(name="x", folder="set", analyzer="dlib", max_photos=80) != first


@pytest.mark.parametrize("folder", ["..", "../elsewhere", "/etc", "sub/../../x"])
def test_create_refuses_folders_outside_input(cui, input_dir, folder):
    with pytest.raises(SoulIDError, match="outside ComfyUI's input directory"):
        cui.nodes.SoulIDCreate.execute(name="x", folder=folder, analyzer="dlib", max_photos=80)


def test_create_refuses_symlink_out_of_input(cui, input_dir, tmp_path):
    (tmp_path / "outside").mkdir()
    (input_dir / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(SoulIDError, match="outside ComfyUI's input directory"):
        cui.nodes.SoulIDCreate.execute(name="x", folder="link", analyzer="dlib", max_photos=80)


def test_create_needs_photos(cui, input_dir):
    with pytest.raises(SoulIDError, match="no such folder"):
        cui.nodes.SoulIDCreate.execute(name="x", folder="missing", analyzer="dlib", max_photos=80)
    with pytest.raises(SoulIDError, match="give a folder"):
        cui.nodes.SoulIDCreate.execute(name="x", folder="  ", analyzer="dlib", max_photos=80)
    with pytest.raises(LibraryError, match="forbidden character"):
        cui.nodes.SoulIDCreate.execute(name="a/b", folder="", analyzer="dlib", max_photos=80)


def test_create_without_a_face_says_why(cui, input_dir, faces):
    # The sky and wall above Obama's head in obama-1080p: a real photo crop with no face.
    rgb = load_photo(faces / "obama" / "obama-1080p.jpg").rgb[:200, :300]
    with pytest.raises(NoUsablePhotos, match=r"image_0: .*face"):
        cui.nodes.SoulIDCreate.execute(name="x", folder="", analyzer="dlib", max_photos=80, images=cui.convert.np_to_image(rgb))


def test_create_stops_when_interrupted(cui, input_dir, faces):
    (input_dir / "set").mkdir()
    for n in FOLDER_PHOTOS:
        shutil.copy(faces / "obama" / n, input_dir / "set" / n)
    cui.mm.interrupt_current_processing(True)
    try:
        with pytest.raises(cui.mm.InterruptProcessingException):
            cui.nodes.SoulIDCreate.execute(name="x", folder="set", analyzer="dlib", max_photos=80)
    finally:
        cui.mm.interrupt_current_processing(False)


def test_save_load_roundtrip(cui, created):
    soul = created[0].args[0]
    saved = cui.nodes.SoulIDSave.execute(soul_id=soul, name="", overwrite=False)
    path = saved.args[0]
    assert path == str(Library().path("me")) and os.path.isfile(path)
    assert "saved Soul ID 'me'" in saved.ui.as_dict()["text"][0]
    with pytest.raises(LibraryError, match="already exists"):
        cui.nodes.SoulIDSave.execute(soul_id=soul, name="", overwrite=False)
    cui.nodes.SoulIDSave.execute(soul_id=soul, name="", overwrite=True)
    # Saving under another name leaves the (shared, cached) input untouched.
    cui.nodes.SoulIDSave.execute(soul_id=soul, name="copy", overwrite=False)
    assert soul.name == "me"
    assert Library().list() == ["copy", "me"]

    # The dropdown lists the library; a missing name is refused with the reason.
    options = cui.nodes.SoulIDLoad.GET_NODE_INFO_V1()["input"]["required"]["name"][1]["options"]
    assert options == ["copy", "me"]
    assert cui.nodes.SoulIDLoad.validate_inputs(name="me") is True
    msg = cui.nodes.SoulIDLoad.validate_inputs(name="nobody")
    assert "no Soul ID named 'nobody'" in msg and "copy, me" in msg
    assert "contains '..'" in cui.nodes.SoulIDLoad.validate_inputs(name="../me")

    loaded = cui.nodes.SoulIDLoad.execute(name="copy").args[0]
    assert loaded.name == "copy"
    np.testing.assert_allclose(loaded.analyzer("dlib").embeddings, soul.analyzer("dlib").embeddings, atol=1e-6)
    before = cui.nodes.SoulIDLoad.fingerprint_inputs(name="me")
    os.utime(path, ns=(0, 0))
    assert cui.nodes.SoulIDLoad.fingerprint_inputs(name="me") != before


def test_score_same_person_other_person_and_no_face(cui, created, faces):
    soul = created[0].args[0]
    batch = _batch(cui, [faces / "obama" / "obama3.jpg", faces / "biden" / "biden2.jpg"])
    blank = torch.full_like(batch[:1], 0.5)
    out = cui.nodes.SoulIDScore.execute(soul_id=soul, images=torch.cat([batch, blank]))
    sims, same, report = out.args
    thr = soul.analyzer("dlib").threshold
    assert len(sims) == len(same) == 3
    assert sims[0] >= thr and same[0] is True
    assert sims[1] < thr and same[1] is False
    assert sims[1] < sims[0]
    assert sims[2] == cui.nodes.NO_FACE_SIMILARITY and same[2] is False
    rows = json.loads(report)
    assert rows[2]["similarity"] is None and rows[2]["reason"] == "no face found"
    assert out.ui.as_dict()["text"][0].splitlines()[2] == "2: no face found"


# ------------------------------------------------------------ workflows
@pytest.fixture(scope="module")
def schemas(cui):
    return {**load_core_snapshot(), **schemas_from_nodes(cui.nodes.NODES)}


def _create_workflows():
    ui = json.loads(ui_template("soul_id_create").read_text())
    api = json.loads((REPO / "workflows" / "api" / "soul_id_create.json").read_text())
    return ui, api


def test_create_workflow_is_valid_and_matches_its_api_twin(schemas):
    ui, api = _create_workflows()
    assert check_ui_workflow(ui, schemas) == []
    assert check_api_prompt(api, schemas) == []
    assert ui_to_api(ui, schemas) == {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}
    assert ui["version"] == 0.4 and ui["last_node_id"] == max(n["id"] for n in ui["nodes"])
    assert ui["last_link_id"] == max(link[0] for link in ui["links"])


def _broken(mutate):
    ui, _ = _create_workflows()
    ui = copy.deepcopy(ui)
    mutate({n["type"]: n for n in ui["nodes"]}, ui)
    return ui


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda n, w: n["SoulIDCreate"]["widgets_values"].__setitem__(2, "facenet"), "'facenet' not in"),
        (lambda n, w: n["SoulIDCreate"]["widgets_values"].__setitem__(3, 500), "above the maximum 80"),
        (lambda n, w: n["SoulIDCreate"]["widgets_values"].__setitem__(3, "80"), "not an integer"),
        (lambda n, w: n["SoulIDCreate"]["widgets_values"].append("extra"), "more than the widgets"),
        (lambda n, w: n["SoulIDSave"]["widgets_values"].pop(), "too few"),
        (lambda n, w: n["SoulIDSave"].__setitem__("type", "SoulIDSafe"), "unknown node type"),
        (lambda n, w: w["links"][0].__setitem__(5, "IMAGE"), "wants SOUL_ID"),
        (lambda n, w: w["links"][1].__setitem__(2, 0), "output 0 is SOUL_ID"),
        (lambda n, w: n["PreviewImage"]["inputs"][0].__setitem__("link", None), "required input 'images'"),
    ],
)
def test_workflow_checker_catches_broken_workflows(schemas, mutate, expected):
    problems = check_ui_workflow(_broken(mutate), schemas)
    assert any(expected in p for p in problems), problems


def test_api_checker_catches_broken_prompts(schemas):
    _, api = _create_workflows()
    api["1"]["inputs"]["analyzer"] = "facenet"
    api["3"]["inputs"]["soul_id"] = ["1", 1]
    del api["2"]["inputs"]["images"]
    problems = check_api_prompt(api, schemas)
    assert any("'facenet' not in" in p for p in problems)
    assert any("wants SOUL_ID" in p for p in problems)
    assert any("required input 'images' missing" in p for p in problems)
