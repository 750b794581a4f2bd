"""Hostile widget values on the nodes that take names and files, run inside
ComfyUI (``$COMFYUI_PATH``, in this process, ``--cpu``): each is refused with
the pack's own error (a :class:`~soulid.soul.errors.SoulIDError`, so the node
shows its message) on one line, never a raw ``OSError`` / ``ValueError``.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from comfy_host import import_comfy_or_skip, run_node

import_comfy_or_skip()

from soulid.soul.create import create_soul_id  # noqa: E402
from soulid.soul.errors import SoulIDError  # noqa: E402

HOSTILE = {
    "too_long": "a" * 5000,
    "nul": "x\x00y",
    "traversal": "../../../etc/passwd",
    "escape": "\x1b[31mred\x1b[0m",
    "newlines": "a\nb\nc",
    "dev_zero": "/dev/zero",
    "fifo": "fifo.char",
}


@pytest.fixture(scope="module")
def comfy_dirs(tmp_path_factory):
    import folder_paths

    root = tmp_path_factory.mktemp("comfy_widgets")
    for sub in ("input", "output", "user"):
        (root / sub).mkdir()
    old = (folder_paths.get_input_directory(), folder_paths.get_output_directory(), folder_paths.get_user_directory())
    folder_paths.set_input_directory(str(root / "input"))
    folder_paths.set_output_directory(str(root / "output"))
    folder_paths.set_user_directory(str(root / "user"))
    os.mkfifo(root / "input" / "fifo.char")
    os.mkfifo(root / "output" / "fifo.char")
    yield root
    folder_paths.set_input_directory(old[0])
    folder_paths.set_output_directory(old[1])
    folder_paths.set_user_directory(old[2])


@pytest.fixture(scope="module")
def soul(faces):
    return create_soul_id([faces / "obama" / "obama.jpg"], "obama", analyzer="dlib", workers=1).soul


def nodes() -> dict:
    from soulid.nodes import all_nodes

    return {c.GET_SCHEMA().node_id: c for c in all_nodes()}


CASES = [
    ("SoulIDLoad", "name", {}),
    ("SoulIDSave", "name", {"overwrite": False}),
    ("SoulIDCreate", "folder", {"name": "x", "analyzer": "dlib", "max_photos": 4, "train_remote": False,
                                "model_version": "soul_2"}),
    ("SoulIDCharExport", "filename", {"k": 1, "description": "", "overwrite": False}),
    ("SoulIDCharImport", "file", {"name": "", "analyzer": "dlib"}),
    ("SoulIDCharImport", "name", {"file": "fifo.char", "analyzer": "dlib"}),
]


@pytest.mark.parametrize("value", sorted(HOSTILE))
@pytest.mark.parametrize("node_id,widget,rest", CASES, ids=[f"{n}.{w}" for n, w, _ in CASES])
def test_hostile_widget_values_are_one_line_errors(comfy_dirs, soul, node_id, widget, rest, value):
    cls = nodes()[node_id]
    inputs = dict(rest)
    if node_id in ("SoulIDSave", "SoulIDCharExport"):
        inputs["soul_id"] = soul
    inputs[widget] = HOSTILE[value]
    try:
        run_node(cls, **inputs)
    except SoulIDError as e:
        msg = str(e)
        assert "\n" not in msg.strip() or value == "newlines", msg
        assert len(msg) < 1500, msg[:300]
        assert "\x1b" not in msg and "\x00" not in msg, repr(msg)
        return
    except Exception as e:  # noqa: BLE001 - what the node shows: it must be the pack's own error
        pytest.fail(f"{node_id}.{widget}={value!r}: raw {type(e).__name__}: {str(e)[:300]}")
    if node_id == "SoulIDCharExport" and value in ("traversal", "dev_zero", "fifo"):
        # reduced to its last component: written inside the output folder's soulid/, nowhere else
        written = comfy_dirs / "output" / "soulid" / (Path(HOSTILE[value]).name.removesuffix(".char") + ".char")
        assert written.is_file() and written.stat().st_size > 0
        return
    if node_id == "SoulIDSave" and value == "fifo":
        return  # "fifo.char" is a legal Soul ID name (a library entry, not a path)
    pytest.fail(f"{node_id}.{widget}={value!r} was accepted")


@pytest.mark.parametrize("fields", [b'"refs":5', b'"text":"xyz"', b'"payloads":[1,2]', b'"created_at":"yesterday"',
                                    b'"format_version":null', b'"deep":' + b"[" * 100_000 + b"]" * 100_000])
def test_a_wrongly_typed_char_manifest_is_one_line_on_the_node(comfy_dirs, fields):
    import zipfile

    pytest.importorskip("omnichar_sdk")
    path = comfy_dirs / "input" / "bad.char"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("manifest.json", b'{"magic":"INLINECHAR","format_version":1,"name":"x",' + fields + b"}")
    with pytest.raises(SoulIDError) as e:
        run_node(nodes()["SoulIDCharImport"], file="bad.char", name="", analyzer="dlib")
    msg = str(e.value)
    assert "\n" not in msg.strip() and "bad.char: manifest" in msg and len(msg) < 1000, msg[:300]
