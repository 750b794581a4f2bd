"""Every shipped workflow (``workflows/*.json``, UI format) and its API twin
(``workflows/api/<same name>.json``) checked offline with
:mod:`workflow_check`.

Without ComfyUI: every UI workflow has its twin and the twin has the same
nodes, class types and links; the core nodes (recorded schemas in
``tests/data/object_info_core.json``) have valid widgets and links, also
where a link comes from one of our nodes; unknown non-soulid node types fail.

With ComfyUI's ``comfy_api`` importable (or ``$COMFYUI_PATH`` naming a
checkout, added to ``sys.path`` of a child interpreter that prints them), our
nodes' schemas come from the code (``GET_NODE_INFO_V1``, what ``/object_info``
serves) and every check runs on every node: types exist, widget values fit
types, options and ranges, links type-check, required sockets are connected,
and the twin is exactly the prompt the editor would queue from the UI graph.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workflow_check import DATA, MUTED_MODES, SEED_CONTROL, VIRTUAL_NODES, check_api_prompt, check_ui_workflow, \
    drawn_box, layout_problems, load_core_snapshot, overlaps, ui_template, ui_templates, ui_to_api

REPO = Path(__file__).resolve().parent.parent
WF_DIR = REPO / "workflows"
UI_FILES = sorted(WF_DIR.glob("*.json"))
API_FILES = sorted((WF_DIR / "api").glob("*.json"))
OUR_PREFIX = "SoulID"
#: Input names that would carry a secret: none of our nodes may have one.
SECRET_WORDS = ("key", "secret", "token", "password", "credential")


def _load(p: Path) -> dict:
    return json.loads(p.read_text(encoding="utf-8"))


def _name(ui_path: Path) -> str:
    """The template's ``extra.soulid.name``: its API twin's stem."""
    return next(name for name, p in ui_templates().items() if p == ui_path)


def _twin(ui_path: Path) -> Path:
    return WF_DIR / "api" / f"{_name(ui_path)}.json"


def _ids(paths):
    return [_name(p) if p.parent == WF_DIR else p.stem for p in paths]


#: Prints our nodes' ``/object_info`` entries; run in a child interpreter so
#: that ComfyUI's modules never load into this one (while ``folder_paths`` is
#: loaded, :mod:`soulid.soul.paths` believes it runs inside ComfyUI).
_DUMP_SCHEMAS = """
import json, os, sys
root = os.environ.get("COMFYUI_PATH")
if root:
    sys.path.append(root)
from comfy.cli_args import args
args.cpu = True  # before comfy.model_management picks a device
from soulid.nodes import all_nodes
print(json.dumps({c.GET_NODE_INFO_V1()["name"]: c.GET_NODE_INFO_V1() for c in all_nodes()}))
"""


@pytest.fixture(scope="module")
def live_schemas() -> dict[str, dict]:
    """``/object_info``-style schemas: the recorded core nodes plus ours from
    the code. Skips, with the reason, when ComfyUI's ``comfy_api`` cannot be
    imported."""
    root = os.environ.get("COMFYUI_PATH")
    if importlib.util.find_spec("comfy_api") is None and not root:
        pytest.skip("comfy_api is not importable and COMFYUI_PATH is not set: our nodes' schemas need ComfyUI "
                    "(set COMFYUI_PATH to a checkout); only the core nodes and the graph structure were checked")
    r = subprocess.run([sys.executable, "-c", _DUMP_SCHEMAS], cwd=REPO, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.skip(f"ComfyUI at {root} does not import here; our nodes' schemas were not checked:\n{r.stderr[-1500:]}")
    return {**load_core_snapshot(), **json.loads(r.stdout.strip().splitlines()[-1])}


def test_workflows_found():
    names = set(ui_templates())
    assert {"soul_id_create", "lookbook", "campaign", "id_photo", "moodboard"} <= names, names


# ----------------------------------------------------- without ComfyUI
@pytest.mark.parametrize("ui_path", UI_FILES, ids=_ids(UI_FILES))
def test_ui_workflow_is_frontend_format(ui_path):
    wf = _load(ui_path)
    assert wf.get("version") == 0.4, f"{ui_path.name}: not a ComfyUI frontend workflow (version 0.4)"
    ids = [n["id"] for n in wf["nodes"]]
    assert len(set(ids)) == len(ids), f"{ui_path.name}: duplicate node ids"
    assert wf["last_node_id"] >= max(ids), f"{ui_path.name}: last_node_id below a node id"
    assert wf["last_link_id"] >= max([link[0] for link in wf["links"]], default=0), f"{ui_path.name}: last_link_id"
    for n in wf["nodes"]:
        assert isinstance(n.get("pos"), list) and len(n["pos"]) == 2, f"{ui_path.name} node {n['id']}: no position"


@pytest.mark.parametrize("ui_path", UI_FILES, ids=_ids(UI_FILES))
def test_every_ui_workflow_has_an_api_twin_with_the_same_graph(ui_path):
    twin_path = _twin(ui_path)
    assert twin_path.is_file(), f"{ui_path.name}: no API twin at workflows/api/{twin_path.name}"
    ui, api = _load(ui_path), _load(twin_path)
    nodes = {str(n["id"]): n for n in ui["nodes"]
             if n["type"] not in VIRTUAL_NODES and n.get("mode", 0) not in MUTED_MODES}
    assert set(api) == set(nodes), f"{twin_path.name}: nodes {sorted(api)} vs the UI graph's {sorted(nodes)}"
    for nid, node in nodes.items():
        assert api[nid]["class_type"] == node["type"], f"{twin_path.name} node {nid}"
        if node.get("title"):
            assert api[nid].get("_meta", {}).get("title") == node["title"], f"{twin_path.name} node {nid}: title"
    # Links: every UI link appears as [from_id, from_slot] under the input's name, and nothing else.
    want = set()
    for _lid, src, sslot, dst, dslot, _t in ui["links"]:
        if str(dst) in nodes and str(src) in nodes:
            want.add((str(dst), nodes[str(dst)]["inputs"][dslot]["name"], str(src), sslot))
    got = {(nid, name, v[0], v[1]) for nid, n in api.items() for name, v in n["inputs"].items()
           if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str)}
    assert got == want, f"{twin_path.name}: links differ from the UI graph: extra {got - want}, missing {want - got}"


@pytest.mark.parametrize("api_path", API_FILES, ids=_ids(API_FILES))
def test_every_api_twin_has_its_ui_workflow(api_path):
    assert api_path.stem in ui_templates(), \
        f"workflows/api/{api_path.name} has no UI workflow (extra.soulid.name {api_path.stem!r})"


def _not_about_our_nodes(problems: list[str]) -> list[str]:
    """Problems left when our nodes' own inputs cannot be judged (no schema)."""
    return [p for p in problems if not (p.startswith("node ") and f" ({OUR_PREFIX}" in p.split(":")[0])]


def _output_stubs(ui: dict) -> dict[str, dict]:
    """Schemas for our nodes with only their output types, as the UI graph
    declares them, so that links from our nodes into core nodes are typed."""
    return {n["type"]: {"input": {}, "output": [o["type"] for o in n.get("outputs", [])]}
            for n in ui["nodes"] if n["type"].startswith(OUR_PREFIX)}


@pytest.mark.parametrize("ui_path", UI_FILES, ids=_ids(UI_FILES))
def test_core_nodes_and_their_links_fit_the_recorded_schemas(ui_path):
    core = load_core_snapshot()
    ui, api = _load(ui_path), _load(_twin(ui_path))
    for n in ui["nodes"]:
        assert n["type"] in core or n["type"] in VIRTUAL_NODES or n["type"].startswith(OUR_PREFIX), (
            f"{ui_path.name} node {n['id']}: {n['type']} is neither ours nor in tests/data/object_info_core.json "
            f"(record its schema there)")
    assert _not_about_our_nodes(check_ui_workflow(ui, core)) == []
    assert _not_about_our_nodes(check_api_prompt(api, {**core, **_output_stubs(ui)})) == []


@pytest.mark.parametrize("path", UI_FILES + API_FILES, ids=_ids(UI_FILES) + [f"api-{s}" for s in _ids(API_FILES)])
def test_no_secrets_in_workflows(path):
    """Credentials come from the environment or the 0600 file, never from a workflow."""
    text = path.read_text(encoding="utf-8")
    for needle in ("Key ", "Bearer ", "hf-secret", "standin-"):
        assert needle not in text, f"{path.name} contains {needle!r}"


# -------------------------------------------------------- with ComfyUI
def test_no_node_takes_a_secret(live_schemas):
    for name, info in live_schemas.items():
        if not name.startswith(OUR_PREFIX):
            continue
        for section in ("required", "optional"):
            for inp in info["input"].get(section, {}):
                assert not any(w in inp.lower() for w in SECRET_WORDS), f"{name} has an input {inp!r}"


@pytest.mark.parametrize("ui_path", UI_FILES, ids=_ids(UI_FILES))
def test_workflow_fits_the_node_schemas(ui_path, live_schemas):
    ui, api = _load(ui_path), _load(_twin(ui_path))
    assert check_ui_workflow(ui, live_schemas) == []
    assert check_api_prompt(api, live_schemas) == []
    # The twin is what the editor queues for the UI graph, widget values included.
    plain = {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}
    assert plain == ui_to_api(ui, live_schemas)


def test_checker_catches_a_broken_workflow(live_schemas):
    """The checks above can fail: a wrong option, a value out of range and a
    link of the wrong type in a shipped workflow are all reported."""
    ui = _load(ui_template("lookbook"))
    gen = next(n for n in ui["nodes"] if n["type"] == "SoulIDGenerate")
    gen["widgets_values"][3] = "5:7"  # aspect_ratio
    gen["widgets_values"][10] = 999  # max_usd, max 100
    ui["links"][0][5] = "IMAGE"
    problems = "\n".join(check_ui_workflow(ui, live_schemas))
    assert "'5:7' not in" in problems and "999 above the maximum 100" in problems and "carries IMAGE" in problems


# ------------------------------------------- what a user meets (no ComfyUI)
def recorded_soulid_schemas() -> dict[str, dict]:
    """Our nodes' ``/object_info`` entries recorded in tests/data (kept in step
    with the code by :func:`test_recorded_soulid_schemas_match_the_code`)."""
    return json.loads((DATA / "object_info_soulid.json").read_text())["object_info"]


def _offline_schemas() -> dict[str, dict]:
    return {**load_core_snapshot(), **recorded_soulid_schemas()}


#: Our nodes that can pay a provider.
PAID_NODES = {"SoulIDGenerate", "SoulIDEdit", "SoulIDDoPAnimate", "SoulIDDriftGuard", "SoulIDIDPhotoSheet",
              "SoulIDTrainRemote", "SoulIDCast"}


@pytest.mark.parametrize("ui_path", UI_FILES, ids=_ids(UI_FILES))
def test_no_two_nodes_overlap_as_drawn(ui_path):
    """Boxes as the frontend draws them (title bar + the height its widgets
    need) overlap nowhere, and every stored size is at least the drawn one."""
    assert layout_problems(_load(ui_path), _offline_schemas()) == []


def test_layout_check_catches_an_overlap():
    wf = _load(ui_template("lookbook"))
    gens = [n for n in wf["nodes"] if n["type"] == "SoulIDGenerate"]
    gens[1]["pos"] = [gens[0]["pos"][0], gens[0]["pos"][1] + gens[0]["size"][1] - 20]
    gens[0]["size"][1] = 200  # the old, too-small stored size
    problems = "\n".join(layout_problems(wf, _offline_schemas()))
    assert "overlap as drawn" in problems and "stored height 200 below" in problems


@pytest.mark.parametrize("ui_path", UI_FILES, ids=_ids(UI_FILES))
def test_groups_label_the_steps(ui_path):
    """Every node but the notes sits wholly inside one titled group; groups do not overlap."""
    wf = _load(ui_path)
    schemas = _offline_schemas()
    groups = [(g["title"], (g["bounding"][0], g["bounding"][1], g["bounding"][0] + g["bounding"][2],
                            g["bounding"][1] + g["bounding"][3])) for g in wf.get("groups", [])]
    assert len(groups) >= 2 and all(t.strip() for t, _ in groups), f"{ui_path.name}: no step groups"
    for g in wf["groups"]:  # the title fits its group (about 0.55 em per character)
        assert len(g["title"]) * 0.55 * g.get("font_size", 24) <= g["bounding"][2], f"{ui_path.name}: {g['title']!r}"
    for i, (t, a) in enumerate(groups):
        for t2, b in groups[i + 1:]:
            assert not overlaps(a, b), f"{ui_path.name}: groups {t!r} and {t2!r} overlap"
    for n in wf["nodes"]:
        box = drawn_box(n, schemas.get(n["type"]))
        inside = [t for t, g in groups if g[0] <= box[0] and g[1] <= box[1] and box[2] <= g[2] and box[3] <= g[3]]
        partly = [t for t, g in groups if overlaps(g, box)]
        if n["type"] in VIRTUAL_NODES:
            assert not partly, f"{ui_path.name}: note {n['id']} overlaps group(s) {partly}"
        else:
            assert len(inside) == 1 and partly == inside, f"{ui_path.name} node {n['id']}: in {inside}, touches {partly}"


@pytest.mark.parametrize("ui_path", UI_FILES, ids=_ids(UI_FILES))
def test_seeds_are_fixed_so_run_again_pays_nothing(ui_path):
    """No seed in a template is randomized (or incremented): Run again must
    resume or reuse the same paid request."""
    for n in _load(ui_path)["nodes"]:
        controls = [v for v in n.get("widgets_values") or [] if isinstance(v, str) and v in SEED_CONTROL]
        assert all(v == "fixed" for v in controls), f"{ui_path.name} node {n['id']} ({n['type']}): {controls}"
        if n["type"] in PAID_NODES and n["type"] != "SoulIDTrainRemote":
            assert controls == ["fixed"], f"{ui_path.name} node {n['id']} ({n['type']}): seed control {controls}"


@pytest.mark.parametrize("ui_path", UI_FILES, ids=_ids(UI_FILES))
def test_paid_nodes_have_a_budget(ui_path):
    schemas = recorded_soulid_schemas()
    for n in _load(ui_path)["nodes"]:
        if n["type"] in PAID_NODES - {"SoulIDTrainRemote"}:
            req = schemas[n["type"]]["input"]["required"]
            assert "max_usd" in req and "new_run" in req, f"{n['type']} has no max_usd/new_run"


def test_template_file_names_are_their_titles_in_reading_order():
    """Both frontends (1.27.10 and 1.58.1) title a custom pack's template card
    with its file name and read nothing else, so the file name is the title:
    ``NN Title.json``, numbered from 01 (Create a Soul ID) in reading order,
    with a name every OS accepts; the API twin is ``api/<extra.soulid.name>.json``."""
    import re

    stems = [p.stem for p in UI_FILES]
    assert [s[:2] for s in stems] == [f"{i:02d}" for i in range(1, len(stems) + 1)], stems
    for p in UI_FILES:
        m = _load(p).get("extra", {}).get("soulid", {})
        assert p.stem == f"{p.stem[:2]} {m.get('title')}", f"{p.name}: file name is not '<NN> <extra.soulid.title>'"
        assert 3 <= len(m["title"]) <= 60 and not re.search(r'[<>:"/\\|?*%#]', p.name), f"{p.name}: not a portable title"
        assert isinstance(m.get("name"), str) and m["name"].isidentifier(), f"{p.name}: extra.soulid.name {m.get('name')!r}"
        d = m.get("description")
        assert isinstance(d, str) and 20 <= len(d) <= 160 and "\n" not in d, f"{p.name}: one-line description {d!r}"
    assert list(ui_templates())[0] == "soul_id_create" and stems[0] == "01 Create a Soul ID"
    assert len(set(ui_templates())) == len(UI_FILES)


@pytest.mark.parametrize("ui_path", UI_FILES, ids=_ids(UI_FILES))
def test_template_has_a_thumbnail_from_a_run(ui_path):
    """ComfyUI's template browser (frontend 1.27 in ComfyUI 0.3.64) shows
    ``<name>.jpg`` next to the workflow; it must be a real picture (rendered
    from a headless run by ``tests/render_templates.py``), not a placeholder."""
    import numpy as np
    from PIL import Image

    thumb = ui_path.with_suffix(".jpg")
    assert thumb.is_file(), f"no thumbnail {thumb.name}"
    img = Image.open(thumb)
    assert img.format == "JPEG" and min(img.size) >= 256, (img.format, img.size)
    a = np.asarray(img.convert("L"), dtype=np.float32)
    assert a.std() > 20, f"{thumb.name} looks blank (std {a.std():.1f})"


def test_every_output_is_named_for_what_it_carries():
    """No output is shown under its bare type name, and no node has two
    outputs of one name; the UI templates show the same names."""
    schemas = recorded_soulid_schemas()
    for name, info in schemas.items():
        names = info["output_name"]
        assert len(set(names)) == len(names), f"{name}: duplicate output names {names}"
        for out_name, typ in zip(names, info["output"]):
            assert out_name != typ, f"{name}: an output is shown as its type {typ!r}"
    for p in UI_FILES:
        for n in _load(p)["nodes"]:
            if n["type"] in schemas:
                assert [o["name"] for o in n.get("outputs", [])] == schemas[n["type"]]["output_name"], \
                    f"{p.name} node {n['id']} ({n['type']}): stale output names"


def test_recorded_soulid_schemas_match_the_code(live_schemas):
    rec = recorded_soulid_schemas()
    ours = {k: v for k, v in live_schemas.items() if k.startswith(OUR_PREFIX)}
    assert set(rec) <= set(ours), f"recorded nodes missing from the code: {set(rec) - set(ours)}"
    for name, info in rec.items():
        live = ours[name]
        for key in ("output", "output_name", "input_order", "output_node"):
            assert live[key] == info[key], f"{name}.{key} differs from tests/data/object_info_soulid.json: re-record it"


def test_nodes_that_show_a_result_are_drawn_with_it():
    """Every node class whose code returns ``ui.PreviewText`` (the result box
    ``web/soulid.js`` adds) or ``ui.PreviewImage`` is counted with that room in
    the drawn height (:data:`workflow_check.TEXT_NODES` / ``PREVIEW_NODES``)."""
    import ast

    from workflow_check import PREVIEW_NODES, TEXT_NODES

    shows = {"PreviewText": set(), "PreviewImage": set()}
    for p in sorted((REPO / "nodes").glob("*.py")):
        for cls in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if not isinstance(cls, ast.ClassDef):
                continue
            ids = [kw.value.value for c in ast.walk(cls) if isinstance(c, ast.Call) for kw in c.keywords
                   if kw.arg == "node_id" and isinstance(kw.value, ast.Constant)]
            for c in ast.walk(cls):
                if isinstance(c, ast.Attribute) and isinstance(c.value, ast.Name) and c.value.id == "ui" \
                        and c.attr in shows:
                    shows[c.attr].update(ids)
    assert shows["PreviewText"], "the walk found no node that shows a text"
    assert shows["PreviewText"] - TEXT_NODES == set()
    assert shows["PreviewImage"] - PREVIEW_NODES == set()


#: The canvas of a 1080p screen (less the frontend's bars): what "fits the screen" means below.
SCREEN_CANVAS = (1840, 960)


@pytest.mark.parametrize("ui_path", UI_FILES, ids=_ids(UI_FILES))
def test_template_opens_on_its_start_and_fits_a_screen(ui_path):
    """Both frontends restore ``extra.ds`` when a template opens. At that view
    the graph's top-left corner (the note, the first group's title) sits clear
    of the left bar and below the top bars (1.58 floats its sidebar over the
    canvas's first ~65 px and its graph menu and Run bar over the first
    ~90 px; the browser pass checks it on the page), at a zoom where the
    frontend still draws widgets (LiteGraph's low-quality threshold is 0.6).
    Fitting the whole graph to a 1080p screen needs no less than 44 % zoom
    (the campaign template needed 36 % before it was laid out in columns)."""
    from workflow_check import TITLE_H

    wf = _load(ui_path)
    ds = wf["extra"]["ds"]
    s, (ox, oy) = float(ds["scale"]), ds["offset"]
    xs = [n["pos"][0] for n in wf["nodes"]] + [g["bounding"][0] for g in wf["groups"]]
    ys = [n["pos"][1] - TITLE_H for n in wf["nodes"]] + [g["bounding"][1] for g in wf["groups"]]
    x2 = [n["pos"][0] + n["size"][0] for n in wf["nodes"]] + [g["bounding"][0] + g["bounding"][2] for g in wf["groups"]]
    y2 = [n["pos"][1] + n["size"][1] for n in wf["nodes"]] + [g["bounding"][1] + g["bounding"][3] for g in wf["groups"]]
    left, top = (min(xs) + ox) * s, (min(ys) + oy) * s
    assert 0.6 <= s <= 1.0, f"{ui_path.name}: opens at {s:.0%}"
    assert 80 <= left <= 130 and 100 <= top <= 160, f"{ui_path.name}: its top-left corner opens at ({left:.0f}, {top:.0f}) px"
    fit = min(SCREEN_CANVAS[0] / (max(x2) - min(xs)), SCREEN_CANVAS[1] / (max(y2) - min(ys)))
    assert fit >= 0.44, f"{ui_path.name}: {max(x2) - min(xs)} x {max(y2) - min(ys)} fits a 1080p screen only at {fit:.0%}"


def test_thumbnail_captions_read_at_card_size():
    """The template browser shows a thumbnail about 256 px wide (both
    frontends): a caption must stay at least 14 px tall there and fit the width."""
    from PIL import Image, ImageFont

    from render_templates import CAPTION_PX, NOT_A_GENERATION, THUMB, thumbnail

    font = ImageFont.load_default(size=CAPTION_PX)
    x0, y0, x1, y1 = font.getbbox("Ag")
    assert (y1 - y0) * 256 / THUMB[0] >= 14
    photo = Image.new("RGB", (300, 400), (120, 90, 80))
    for name, lines in NOT_A_GENERATION.items():
        assert name in ui_templates() and 1 <= len(lines) <= 2, name
        thumbnail([photo], lines)  # raises when a line is wider than the thumbnail
    with pytest.raises(ValueError):
        thumbnail([photo], ["a caption far too long to be read on a card of the template browser"])
