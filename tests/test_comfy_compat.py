"""The pack's V3 calls fit ComfyUI 0.3.64 and the newest published
``comfy_api.latest`` alike (issue 11, item 4). Runs without ComfyUI.

``tests/data/comfy_v3_signatures.json`` records, for both versions, the
keyword parameters of every V3 constructor the nodes use and the public names
of ``comfy_api.latest``, ``io`` and ``ui``. This test reads every node module
(``nodes/*.py``) as a syntax tree and checks each call into the V3 API:

* keyword arguments only (``io.NodeOutput`` takes the output values
  positionally, as its signature says);
* every keyword exists in both versions' signatures;
* every ``io.X`` / ``ui.X`` / ``comfy_api.latest`` name used exists in both;
* no private (underscore) names, no ``comfy_io``, no ``MODEL_PATCH``,
  ``AutogrowDynamic`` or ``ComboDynamic``, no socket types as loose strings
  (a core type such as ``"IMAGE"`` passed to ``io.Custom``).
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NODE_FILES = sorted((REPO / "nodes").glob("*.py"))
SIGS = json.loads((Path(__file__).parent / "data" / "comfy_v3_signatures.json").read_text())["versions"]
WIDGETS = {"Boolean", "Int", "Float", "String", "Combo"}
FORBIDDEN = ("comfy_io", "MODEL_PATCH", "AutogrowDynamic", "ComboDynamic")
CORE_TYPES = {"IMAGE", "MASK", "LATENT", "CONDITIONING", "MODEL", "CLIP", "VAE", "STRING", "INT", "FLOAT",
              "BOOLEAN", "COMBO", "VIDEO", "AUDIO", "SAMPLER", "SIGMAS", "NOISE", "GUIDER", "CONTROL_NET"}


def _chain(node) -> list[str]:
    """``io.Combo.Input`` -> ``["io", "Combo", "Input"]`` (empty when not a plain name chain)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return []


def _custom_type_names(trees) -> set[str]:
    """Module-level names bound to ``io.Custom(...)`` (our socket types)."""
    names = set()
    for tree in trees.values():
        for st in tree.body:
            if isinstance(st, ast.Assign) and isinstance(st.value, ast.Call) and _chain(st.value.func) == ["io", "Custom"]:
                names |= {t.id for t in st.targets if isinstance(t, ast.Name)}
    return names


def v3_calls(files=None) -> list[tuple[str, str, ast.Call]]:
    """``(where, signature key, call)`` for every call into the V3 API in ``files`` (default: nodes/)."""
    trees = {p: ast.parse(p.read_text(encoding="utf-8"), filename=str(p)) for p in (files or NODE_FILES)}
    customs = _custom_type_names(trees)
    out = []
    for p, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            c = _chain(node.func)
            key = None
            if c[:1] == ["io"] and len(c) == 2 and c[1] in ("Schema", "NodeOutput", "Custom"):
                key = c[1]
            elif c[:1] == ["io"] and len(c) == 3 and c[2] in ("Input", "Output"):
                key = f"{c[1]}.Input" if (c[2] == "Input" and c[1] in WIDGETS) else c[2]
            elif len(c) == 2 and c[0] in customs and c[1] in ("Input", "Output"):
                key = c[1]
            elif c[:1] == ["ui"] and len(c) == 2:
                key = f"ui.{c[1]}"
            if key:
                out.append((f"{p.name}:{node.lineno} {'.'.join(c)}", key, node))
    return out


CALLS = v3_calls()


def test_the_walk_finds_the_schema_calls():
    keys = {k for _, k, _ in CALLS}
    assert {"Schema", "Combo.Input", "Int.Input", "Float.Input", "String.Input", "Boolean.Input", "Input", "Output",
            "NodeOutput", "Custom", "ui.PreviewText", "ui.PreviewImage"} <= keys, keys
    assert len(CALLS) > 100


@pytest.mark.parametrize("version", sorted(SIGS))
def test_every_keyword_we_pass_exists(version):
    sigs = SIGS[version]["signatures"]
    bad = []
    for where, key, call in CALLS:
        assert key in sigs, f"{where}: no recorded signature for {key} in {version}"
        if call.args and key != "NodeOutput":
            bad.append(f"{where}: {len(call.args)} positional argument(s) (keyword arguments only)")
        for kw in call.keywords:
            if kw.arg is None and key == "Schema" and _chain(getattr(kw.value, "func", kw.value)) == ["search_aliases"]:
                # nodes.compat.search_aliases(): the one keyword a host may lack, passed only
                # where its io.Schema has it (checked below against the newest comfy_api)
                continue
            if kw.arg is None:
                bad.append(f"{where}: **kwargs hides the keywords")
            elif kw.arg not in sigs[key]:
                bad.append(f"{where}: keyword {kw.arg!r} is not a parameter of {key} in ComfyUI {version}")
    assert bad == []


def test_search_aliases_is_a_schema_field_of_the_newest_comfy_api():
    """The conditional ``**search_aliases()`` names a real field: the newest
    recorded ``io.Schema`` has it (0.3.64 does not, and gets none)."""
    assert "search_aliases" in SIGS["newest"]["signatures"]["Schema"]


@pytest.mark.parametrize("version", sorted(SIGS))
def test_every_name_we_use_exists(version):
    names = {"io": set(SIGS[version]["io_names"]), "ui": set(SIGS[version]["ui_names"])}
    latest = set(SIGS[version]["latest_names"])
    bad = []
    for p in NODE_FILES:
        tree = ast.parse(p.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                c = _chain(node)
                if len(c) >= 2 and c[0] in names and c[1] not in names[c[0]]:
                    bad.append(f"{p.name}:{node.lineno} {c[0]}.{c[1]}")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("comfy_api"):
                if node.module != "comfy_api.latest":
                    bad.append(f"{p.name}:{node.lineno} from {node.module} (only comfy_api.latest)")
                bad += [f"{p.name}:{node.lineno} {a.name}" for a in node.names if a.name not in latest]
    assert bad == [], f"not in ComfyUI {version}: {bad}"


def test_no_private_removed_or_loose_names():
    bad = []
    for p in NODE_FILES:
        text = p.read_text(encoding="utf-8")
        bad += [f"{p.name}: {w}" for w in FORBIDDEN if w in text]
        bad += [f"{p.name}: {m.group(0)}" for m in re.finditer(r"\b(?:io|ui)\._\w+", text)]
        bad += [f"{p.name}: {m.group(0)}" for m in re.finditer(r"comfy_api\.\w+\._\w+", text)]
    for where, key, call in CALLS:
        if key == "Custom":
            kw = {k.arg: k.value for k in call.keywords}
            v = kw.get("io_type")
            if not (isinstance(v, ast.Constant) and isinstance(v.value, str)) or v.value in CORE_TYPES:
                bad.append(f"{where}: io.Custom must name our own socket type, not {ast.dump(v) if v else None}")
        if key == "Output" and not any(k.arg == "display_name" for k in call.keywords):
            bad.append(f"{where}: output without a display_name")
    assert bad == []


def test_the_check_catches_a_positional_call(tmp_path):
    """The walk reports a positional id and an unknown keyword."""
    f = tmp_path / "bad.py"
    f.write_text('from comfy_api.latest import io\nX = io.Combo.Input("mode", choices=["a"])\n')
    (where, key, call), = v3_calls([f])
    assert key == "Combo.Input" and call.args and call.keywords[0].arg == "choices"
    assert "choices" not in SIGS["newest"]["signatures"]["Combo.Input"]
