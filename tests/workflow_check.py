"""Offline checks of ComfyUI workflow files against node schemas.

Schemas are ``/object_info``-style dicts (``{"input": {"required": {...},
"optional": {...}}, "input_order": ..., "output": [...]}``): our nodes' come
from code (``node_cls.GET_NODE_INFO_V1()``, the same dict ComfyUI serves), the
core nodes' from ``tests/data/object_info_core.json``, recorded from the
ComfyUI version named in that file.

Formats:

* UI workflow (what the frontend saves, ``"version": 0.4``): ``nodes`` with
  ``id/type/inputs/outputs/widgets_values``; ``links`` as
  ``[link_id, from_node, from_slot, to_node, to_slot, type]``. Schema:
  https://docs.comfy.org/specs/workflow_json
* API prompt (what ``POST /prompt`` takes): ``{node_id: {"class_type",
  "inputs": {name: value | [from_node_id, from_slot]}}}``.
  https://docs.comfy.org/development/comfyui-server/comms_routes

The rules follow ComfyUI's own ``execution.validate_inputs`` (types, min/max,
combo options, ``*`` and comma-separated socket types).
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
#: The shipped templates: ``NN Title.json`` (UI format, what the template browser lists) and
#: ``api/<name>.json``, the API twin named by the UI file's ``extra.soulid.name``.
WORKFLOWS = DATA.parent.parent / "workflows"


@functools.cache
def ui_templates() -> dict[str, Path]:
    """``{name: UI template path}`` in reading order (file name), ``name`` the
    template's ``extra.soulid.name`` (also its API twin's stem). Read once per
    process (the shipped files do not change under a test run); do not modify."""
    out = {}
    for p in sorted(WORKFLOWS.glob("*.json")):
        out[json.loads(p.read_text(encoding="utf-8"))["extra"]["soulid"]["name"]] = p
    return out


def ui_template(name: str) -> Path:
    """The UI template whose ``extra.soulid.name`` is ``name`` (``soul_id_create`` ...)."""
    return ui_templates()[name]
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
#: Frontend-only nodes: no backend schema, never sent to /prompt.
VIRTUAL_NODES = {"Note", "MarkdownNote"}
#: Values of the extra "control after generate" widget the frontend adds after seeds.
SEED_CONTROL = {"fixed", "increment", "decrement", "randomize"}
#: Entries ComfyUI puts in a model-file dropdown whatever is on disk (VAELoader's
#: ``pixel_space``): a list holding only these is a file list recorded empty.
FILE_LIST_BUILTINS = {"pixel_space"}
#: Node modes: 0 always, 2 never (muted), 4 bypass.
MUTED_MODES = {2, 4}


def load_core_snapshot() -> dict[str, dict]:
    """The recorded ``/object_info`` subset of core ComfyUI nodes."""
    return json.loads((DATA / "object_info_core.json").read_text())["object_info"]


def schemas_from_nodes(node_classes) -> dict[str, dict]:
    """``/object_info`` entries of V3 node classes, from their schemas."""
    out = {}
    for cls in node_classes:
        info = cls.GET_NODE_INFO_V1()
        out[info["name"]] = info
    return out


# ------------------------------------------------------------- input specs
def _inputs(schema: dict) -> list[tuple[str, object, dict, bool]]:
    """``(name, type, cfg, optional)`` in the frontend's order (required, optional)."""
    out = []
    for section in ("required", "optional"):
        spec = schema.get("input", {}).get(section, {})
        order = schema.get("input_order", {}).get(section, list(spec))
        for name in order:
            entry = spec[name]
            typ = entry[0]
            cfg = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
            out.append((name, typ, cfg, section == "optional"))
    return out


def _kind(typ, cfg: dict) -> str:
    if isinstance(typ, list):
        return "COMBO"
    return typ


def _options(typ, cfg: dict) -> list:
    return typ if isinstance(typ, list) else list(cfg.get("options", []))


def _is_widget(typ, cfg: dict) -> bool:
    return _kind(typ, cfg) in WIDGET_TYPES and not cfg.get("forceInput")


def _widget_slots(schema: dict) -> list[tuple[str, object, dict, str | None]]:
    """Widget slots ``(name, type, cfg, extra)`` in ``widgets_values`` order;
    ``extra`` names the frontend-added value that follows (seed control, upload)."""
    slots = []
    for name, typ, cfg, _ in _inputs(schema):
        if not _is_widget(typ, cfg):
            continue
        extra = None
        if _kind(typ, cfg) == "INT" and (cfg.get("control_after_generate") or name in ("seed", "noise_seed")):
            extra = "seed_control"
        elif any(cfg.get(k) for k in ("image_upload", "video_upload", "audio_upload")):
            extra = "upload"
        slots.append((name, typ, cfg, extra))
    return slots


def _assign_widgets(where: str, schema: dict, values, problems: list[str]) -> dict[str, tuple]:
    """Match ``widgets_values`` to the widgets: ``{name: (type, cfg, value)}``.

    The frontend appends a value after some widgets (a seed's "control after
    generate", a file upload button); those are consumed when the count says
    they are present. A count that fits no reading is added to ``problems``.
    """
    values = list(values or [])
    slots = _widget_slots(schema)
    spare = len(values) - len(slots)
    out: dict[str, tuple] = {}
    i = 0
    for name, typ, cfg, extra in slots:
        if i >= len(values):
            problems.append(f"{where}: widgets_values has {len(values)} value(s), too few for {len(slots)} widgets")
            return out
        out[name] = (typ, cfg, values[i])
        i += 1
        if extra and spare > 0 and i < len(values) and (extra != "seed_control" or values[i] in SEED_CONTROL):
            i += 1
            spare -= 1
    if i < len(values):
        problems.append(f"{where}: widgets_values has {len(values) - i} value(s) more than the widgets")
    return out


def check_value(where: str, typ, cfg: dict, value) -> list[str]:
    """Problems with one widget value (empty list when it fits)."""
    kind = _kind(typ, cfg)
    if kind == "INT":
        if isinstance(value, bool) or not isinstance(value, int):
            return [f"{where}: {value!r} is not an integer"]
    elif kind == "FLOAT":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return [f"{where}: {value!r} is not a number"]
    elif kind == "STRING":
        return [] if isinstance(value, str) else [f"{where}: {value!r} is not text"]
    elif kind == "BOOLEAN":
        return [] if isinstance(value, bool) else [f"{where}: {value!r} is not true/false"]
    elif kind == "COMBO":
        opts = _options(typ, cfg)
        if not set(opts) - FILE_LIST_BUILTINS:  # a file or library list filled from disk at run time
            return [] if isinstance(value, str) and value else [f"{where}: {value!r} is not a name"]
        return [] if value in opts else [f"{where}: {value!r} not in {opts}"]
    else:
        return [f"{where}: socket of type {kind} given a widget value {value!r}"]
    if "min" in cfg and value < cfg["min"]:
        return [f"{where}: {value} below the minimum {cfg['min']}"]
    if "max" in cfg and value > cfg["max"]:
        return [f"{where}: {value} above the maximum {cfg['max']}"]
    return []


def types_match(out_type: str, in_type: str) -> bool:
    """ComfyUI's socket rule: equal, ``*`` on either side, or overlapping
    comma-separated sets."""
    if out_type == "*" or in_type == "*":
        return True
    return bool(set(out_type.split(",")) & set(in_type.split(",")))


# ---------------------------------------------------------------- UI format
def check_ui_workflow(wf: dict, schemas: dict[str, dict]) -> list[str]:
    """Problems in a UI-format workflow (empty list when it is sound).

    Checks node types exist, ``widgets_values`` fit the widgets (count, type,
    range, options), every link joins an existing output to an existing input
    of a matching type, the nodes' link references agree with ``links``, and
    required sockets are connected.
    """
    problems: list[str] = []
    nodes = {n["id"]: n for n in wf.get("nodes", [])}
    if len(nodes) != len(wf.get("nodes", [])):
        problems.append("duplicate node ids")
    links = {}
    for link in wf.get("links", []):
        if len(link) != 6:
            problems.append(f"link {link!r}: expected [id, from_node, from_slot, to_node, to_slot, type]")
            continue
        links[link[0]] = link

    for nid, node in nodes.items():
        typ = node.get("type")
        where = f"node {nid} ({typ})"
        if typ in VIRTUAL_NODES:
            continue
        schema = schemas.get(typ)
        if schema is None:
            problems.append(f"{where}: unknown node type")
            continue
        # widgets
        for name, (wtyp, cfg, value) in _assign_widgets(where, schema, node.get("widgets_values"), problems).items():
            problems += check_value(f"{where} widget {name!r}", wtyp, cfg, value)
        # sockets
        spec = {name: (t, cfg, opt) for name, t, cfg, opt in _inputs(schema)}
        linked = set()
        for slot, inp in enumerate(node.get("inputs", [])):
            name = inp.get("name")
            if name not in spec:
                problems.append(f"{where}: input {name!r} is not in the schema")
                continue
            t, cfg, _ = spec[name]
            want = _kind(t, cfg)
            if inp.get("link") is None:
                continue
            link = links.get(inp["link"])
            if link is None:
                problems.append(f"{where}: input {name!r} refers to missing link {inp['link']}")
                continue
            if link[3] != nid or link[4] != slot:
                problems.append(f"{where}: link {link[0]} ends at node {link[3]} slot {link[4]}, not here (slot {slot})")
            if not types_match(link[5], want):
                problems.append(f"{where}: input {name!r} wants {want}, link {link[0]} carries {link[5]}")
            linked.add(name)
        for name, (t, cfg, opt) in spec.items():
            if not opt and not _is_widget(t, cfg) and name not in linked:
                problems.append(f"{where}: required input {name!r} ({_kind(t, cfg)}) is not connected")
        outs = schema.get("output", [])
        for slot, out in enumerate(node.get("outputs", [])):
            if slot >= len(outs):
                problems.append(f"{where}: output slot {slot} not in the schema ({len(outs)} outputs)")
                continue
            if out.get("type") != outs[slot]:
                problems.append(f"{where}: output {slot} typed {out.get('type')}, schema says {outs[slot]}")
            for lid in out.get("links") or []:
                link = links.get(lid)
                if link is None or link[1] != nid or link[2] != slot:
                    problems.append(f"{where}: output {slot} lists link {lid}, which does not start here")

    for lid, (_, src, sslot, dst, dslot, ltype) in links.items():
        if src not in nodes or dst not in nodes:
            problems.append(f"link {lid}: joins missing node(s) {src} -> {dst}")
            continue
        s = schemas.get(nodes[src].get("type"))
        if s is not None:
            outs = s.get("output", [])
            if sslot >= len(outs):
                problems.append(f"link {lid}: node {src} has no output slot {sslot}")
            elif not types_match(outs[sslot], ltype):
                problems.append(f"link {lid}: typed {ltype}, node {src} output {sslot} is {outs[sslot]}")
        dins = nodes[dst].get("inputs", [])
        if dslot >= len(dins) or dins[dslot].get("link") != lid:
            problems.append(f"link {lid}: node {dst} input slot {dslot} does not refer back to it")
    return problems


def ui_to_api(wf: dict, schemas: dict[str, dict]) -> dict:
    """The API prompt a UI workflow queues (what the frontend's "Queue" sends,
    less ``_meta``): widgets by name, links as ``[from_id, slot]``. Virtual,
    muted and bypassed nodes are left out."""
    nodes = {n["id"]: n for n in wf["nodes"]}
    links = {link[0]: link for link in wf.get("links", [])}
    prompt = {}
    for nid, node in nodes.items():
        if node["type"] in VIRTUAL_NODES or node.get("mode", 0) in MUTED_MODES:
            continue
        schema = schemas[node["type"]]
        inputs = {name: v for name, (_, _, v) in _assign_widgets("", schema, node.get("widgets_values"), []).items()}
        for inp in node.get("inputs", []):
            if inp.get("link") is not None:
                link = links[inp["link"]]
                inputs[inp["name"]] = [str(link[1]), link[2]]
        prompt[str(nid)] = {"class_type": node["type"], "inputs": inputs}
    return prompt


# --------------------------------------------------------------- API format
def check_api_prompt(prompt: dict, schemas: dict[str, dict]) -> list[str]:
    """Problems in an API-format prompt (empty list when it is sound)."""
    problems: list[str] = []
    for nid, node in prompt.items():
        typ = node.get("class_type")
        where = f"node {nid} ({typ})"
        schema = schemas.get(typ)
        if schema is None:
            problems.append(f"{where}: unknown node type")
            continue
        given = node.get("inputs", {})
        spec = {name: (t, cfg, opt) for name, t, cfg, opt in _inputs(schema)}
        for name in given:
            if name not in spec:
                problems.append(f"{where}: input {name!r} is not in the schema")
        for name, (t, cfg, opt) in spec.items():
            if name not in given:
                if not opt:
                    problems.append(f"{where}: required input {name!r} missing")
                continue
            v = given[name]
            if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str):
                src = prompt.get(v[0])
                if src is None:
                    problems.append(f"{where}: input {name!r} links to missing node {v[0]}")
                    continue
                outs = schemas.get(src.get("class_type"), {}).get("output", [])
                if not isinstance(v[1], int) or v[1] >= len(outs):
                    problems.append(f"{where}: input {name!r} links to missing output {v[1]} of node {v[0]}")
                elif not types_match(outs[v[1]], _kind(t, cfg)):
                    problems.append(f"{where}: input {name!r} wants {_kind(t, cfg)}, node {v[0]} output {v[1]} is {outs[v[1]]}")
            elif _is_widget(t, cfg):
                problems += check_value(f"{where} input {name!r}", t, cfg, v)
            else:
                problems.append(f"{where}: socket {name!r} ({_kind(t, cfg)}) needs a link, got {v!r}")
    return problems


# ------------------------------------------------------------ drawn layout
#: LiteGraph's title bar, drawn above a node's ``pos`` (not part of ``size``).
TITLE_H = 30
#: One socket row or one single-line widget row, as the frontend draws it
#: (20 px widget + 4 px spacing).
ROW_H = 24
#: A multiline text widget (its textarea's smallest drawn height).
MULTILINE_H = 100
#: Padding the frontend adds below the last row.
BOTTOM_PAD = 8
#: Our nodes that show an image on themselves after a run (``ui`` preview);
#: the frontend draws it below the widgets, so the stored size keeps room.
PREVIEW_NODES = {"SoulIDCreate", "SoulIDDriftGuard", "SoulIDIDPhotoSheet", "SoulIDFromImages", "SoulIDCast"}
#: Room for such a preview.
PREVIEW_H = 240
#: Our nodes that show a result text after a run: ``web/soulid.js`` adds a
#: read-only text box (:data:`MULTILINE_H`) under their widgets.
TEXT_NODES = {"SoulIDCreate", "SoulIDSave", "SoulIDScore", "SoulIDGenerate", "SoulIDEdit", "SoulIDTrainRemote",
              "SoulIDDoPAnimate", "SoulIDDriftGuard", "SoulIDIDPhotoSheet", "SoulIDCharacterLog", "SoulIDReferences",
              "SoulIDDriftGuardPickBest", "SoulIDApply", "SoulIDAttachLoRA", "SoulIDCharExport", "SoulIDFromImages",
              "SoulIDCast", "SoulIDCastGuard", "SoulIDHook"}


def computed_height(node: dict, schema: dict | None) -> int:
    """The body height the frontend computes for ``node`` (title excluded):
    socket rows (max of inputs and outputs), then one row per widget (a seed's
    "control after generate" and an upload button are rows of their own), a
    multiline text box at :data:`MULTILINE_H`, and what a node shows after a
    run: the image of :data:`PREVIEW_NODES`, the text box of :data:`TEXT_NODES`."""
    if schema is None:
        return int(node.get("size", [0, 0])[1])
    sockets_in = [n for n, t, c, _ in _inputs(schema) if not _is_widget(t, c)]
    rows = max(len(sockets_in), len(schema.get("output", [])))
    h = rows * ROW_H
    for _name, typ, cfg, extra in _widget_slots(schema):
        h += MULTILINE_H if (_kind(typ, cfg) == "STRING" and cfg.get("multiline")) else ROW_H
        if extra:
            h += ROW_H
    if node.get("type") in PREVIEW_NODES:
        h += PREVIEW_H
    if node.get("type") in TEXT_NODES:
        h += MULTILINE_H
    return h + BOTTOM_PAD


def drawn_box(node: dict, schema: dict | None) -> tuple[float, float, float, float]:
    """``(left, top, right, bottom)`` of a node as drawn: title bar included,
    the body at least as tall as :func:`computed_height` (the frontend grows
    a node whose stored ``size`` is too small)."""
    x, y = node["pos"]
    w, h = node.get("size", [200, 60])
    h = max(h, computed_height(node, schema))
    return (x, y - TITLE_H, x + w, y + h)


def overlaps(a, b, margin: float = 0.0) -> bool:
    return a[0] < b[2] + margin and b[0] < a[2] + margin and a[1] < b[3] + margin and b[1] < a[3] + margin


def layout_problems(wf: dict, schemas: dict[str, dict]) -> list[str]:
    """Pairs of nodes whose drawn boxes overlap, and nodes whose stored
    ``size`` is below what the frontend draws."""
    problems = []
    nodes = wf.get("nodes", [])
    boxes = {n["id"]: drawn_box(n, schemas.get(n["type"])) for n in nodes}
    for n in nodes:
        need = computed_height(n, schemas.get(n["type"]))
        if n.get("size", [0, 0])[1] < need:
            problems.append(f"node {n['id']} ({n['type']}): stored height {n['size'][1]} below the drawn {need}")
    for i, a in enumerate(nodes):
        for b in nodes[i + 1:]:
            if overlaps(boxes[a["id"]], boxes[b["id"]]):
                problems.append(f"nodes {a['id']} ({a['type']}) and {b['id']} ({b['type']}) overlap as drawn: "
                                f"{boxes[a['id']]} / {boxes[b['id']]}")
    return problems
