"""The two-character (cast) templates: Qwen-Image-Edit-Plus image1/image2, a
ReferenceLatent chain, and two persona LoRAs as hooks on masked SDXL regions.

Always: each is wired as its note says (both Soul IDs feed the model, every
graph ends in the Cast Guard on the decoded batch), and its loaders carry
``properties.models`` download entries. With ``$COMFYUI_PATH``: in a real
ComfyUI with two real Soul IDs (Obama, Biden) the graph validates up to the
model loaders, and with fixture photos standing in for the decoded batch
(:func:`render_templates.runnable_part`) the Cast Guard runs headless and
keeps the photo where both faces pass; Soul ID Hook turns a stored persona
LoRA into HOOKS in the same host.
"""
from __future__ import annotations

import json
import shutil

import pytest

from comfy_host import REPO, comfy_host  # noqa: F401  (fixture)
from workflow_check import ui_template

WF = REPO / "workflows"
CAST = ["soul_id_cast_qwen_edit", "soul_id_cast_reference_latent", "soul_id_cast_hook_loras"]
LOADERS = {"CheckpointLoaderSimple", "UNETLoader", "CLIPLoader", "DualCLIPLoader", "VAELoader"}


def _api(name: str) -> dict:
    return json.loads((WF / "api" / f"{name}.json").read_text())


def _one(p: dict, typ: str) -> tuple[str, dict]:
    (hit,) = [(k, v) for k, v in p.items() if v["class_type"] == typ]
    return hit


def _soul_of(p: dict, nid: str) -> str:
    """The Soul ID name a SOUL_ID link (or a node hanging off one) comes from."""
    node = p[nid]
    if node["class_type"] == "SoulIDLoad":
        return node["inputs"]["name"]
    return _soul_of(p, node["inputs"]["soul_id"][0])


@pytest.mark.parametrize("name", CAST)
def test_cast_template_ends_in_the_cast_guard_on_both_soul_ids(name):
    p = _api(name)
    dec_id, _ = _one(p, "VAEDecode")
    _, guard = _one(p, "SoulIDCastGuard")
    assert guard["inputs"]["images"] == [dec_id, 0]
    assert {_soul_of(p, guard["inputs"]["soul_id_1"][0]), _soul_of(p, guard["inputs"]["soul_id_2"][0])} == \
        {"my_soul", "my_soul_2"}
    ui = json.loads(ui_template(name).read_text())
    for n in ui["nodes"]:
        if n["type"] in LOADERS:
            models = n["properties"].get("models")
            files = [v for v in n["widgets_values"] if isinstance(v, str) and v.endswith(".safetensors")]
            assert models and [m["name"] for m in models] == files, n
            assert all(m["url"].startswith("https://huggingface.co/") and m["directory"] for m in models)
    assert any(n["type"] == "MarkdownNote" for n in ui["nodes"])


def test_qwen_edit_gets_one_character_per_image_input():
    p = _api("soul_id_cast_qwen_edit")
    encs = [n for n in p.values() if n["class_type"] == "TextEncodeQwenImageEditPlus"]
    assert len(encs) == 2
    for enc in encs:
        assert _soul_of(p, enc["inputs"]["image1"][0]) == "my_soul"
        assert _soul_of(p, enc["inputs"]["image2"][0]) == "my_soul_2"
        assert "image3" not in enc["inputs"]
    assert "image 1" in encs[0]["inputs"]["prompt"] and "image 2" in encs[0]["inputs"]["prompt"]


def test_reference_latent_chain_carries_both_characters():
    p = _api("soul_id_cast_reference_latent")
    refs = {k: v for k, v in p.items() if v["class_type"] == "ReferenceLatent"}
    assert len(refs) == 2
    second = next(k for k, v in refs.items() if v["inputs"]["conditioning"][0] in refs)
    first = p[second]["inputs"]["conditioning"][0]
    souls = []
    for k in (first, second):
        enc = p[refs[k]["inputs"]["latent"][0]]
        assert enc["class_type"] == "VAEEncode"
        souls.append(_soul_of(p, enc["inputs"]["pixels"][0]))
    assert souls == ["my_soul", "my_soul_2"]
    _, guidance = _one(p, "FluxGuidance")
    assert guidance["inputs"]["conditioning"] == [second, 0]


def test_hook_loras_sit_on_their_own_half_of_the_image():
    p = _api("soul_id_cast_hook_loras")
    combos = {k: v for k, v in p.items() if v["class_type"] == "ConditioningSetPropertiesAndCombine"}
    assert len(combos) == 2
    x_by_soul = {}
    for c in combos.values():
        hook = p[c["inputs"]["hooks"][0]]
        assert hook["class_type"] == "SoulIDHook" and hook["inputs"]["architecture"] == "sdxl"
        mask = p[c["inputs"]["mask"][0]]
        assert mask["class_type"] == "MaskComposite"
        src = p[mask["inputs"]["source"][0]]["inputs"]
        dst = p[mask["inputs"]["destination"][0]]["inputs"]
        assert src["value"] == 1.0 and dst["value"] == 0.0 and src["width"] * 2 == dst["width"]
        x_by_soul[_soul_of(p, hook["inputs"]["soul_id"][0])] = mask["inputs"]["x"]
    assert x_by_soul == {"my_soul": 0, "my_soul_2": 608}
    _, ks = _one(p, "KSampler")
    last = next(k for k, c in combos.items() if c["inputs"]["cond"][0] in combos)
    assert ks["inputs"]["positive"] == [last, 0]


# ------------------------------------------------------------ in ComfyUI
@pytest.fixture(scope="module")
def host_with_cast(comfy_host, faces):  # noqa: F811
    from soulid.soul.create import create_soul_id

    lib = comfy_host.user_dir / "soulid" / "library"
    lib.mkdir(parents=True, exist_ok=True)
    obama = create_soul_id([faces / "obama"], "my_soul", analyzer="dlib", workers=1).soul
    biden = create_soul_id([faces / "biden"], "my_soul_2", analyzer="dlib", workers=1).soul
    obama.save(lib / "my_soul.soulid")
    biden.save(lib / "my_soul_2.soulid")
    return comfy_host


@pytest.mark.comfyui
@pytest.mark.parametrize("name", CAST)
def test_cast_template_runs_headless_up_to_the_models_and_the_guard_on_stand_ins(host_with_cast, faces, name):
    from render_templates import STAND_INS, queue, runnable_part

    host = host_with_cast
    prompt = _api(name)
    with host.client() as c:
        r = c.post("/prompt", json={"prompt": prompt})
    errors = r.json().get("node_errors", {})
    # Only the model loaders fail validation (no weights here): both Soul IDs and every other node are fine.
    assert r.status_code == 400 and set(errors) == {k for k, n in prompt.items() if n["class_type"] in LOADERS}

    for photos in STAND_INS[name].values():
        for photo in photos:
            shutil.copy(faces / photo, host.input_dir / photo.split("/")[-1])
    part = runnable_part(name, prompt)
    guard_id, _ = _one(part, "SoulIDCastGuard")
    entry = queue(host, part, timeout=300)
    assert entry["status"]["status_str"] == "success", entry["status"]
    text = " ".join(entry["outputs"][guard_id]["text"])
    # group/obama_and_biden.jpg: both faces found and passing, the small background face unknown
    assert "image 0: PASS" in text and "missing" not in text.split("image 1")[0], text
    assert "my_soul " in text and "my_soul_2 " in text


@pytest.mark.comfyui
def test_soul_id_hook_runs_headless(host_with_cast, faces):
    """Soul ID Hook in a real ComfyUI: a Soul ID holding an SDXL persona LoRA (made by the training
    code path) becomes HOOKS; a Soul ID without one is refused with the reason."""
    from local_tiny_models import persona_lora_bytes
    from render_templates import error_of, queue
    from soulid.soul.soulfile import SoulID

    host = host_with_cast
    lib = host.user_dir / "soulid" / "library"
    soul = SoulID.load(lib / "my_soul.soulid")
    soul.name = "hooked"
    soul.attach_lora("sdxl", persona_lora_bytes()[0], {"source": "test"})
    soul.save(lib / "hooked.soulid")

    def prompt(name):
        return {"1": {"class_type": "SoulIDLoad", "inputs": {"name": name}},
                "2": {"class_type": "SoulIDHook", "inputs": {"soul_id": ["1", 0], "architecture": "auto",
                                                             "strength_model": 1.0, "strength_clip": 1.0}},
                "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}}

    ok = queue(host, prompt("hooked"), timeout=120)
    assert ok["status"]["status_str"] == "success", error_of(ok)
    assert "hooked: persona LoRA (sdxl) as hooks" in " ".join(ok["outputs"]["2"]["text"])
    bad = queue(host, prompt("my_soul"), timeout=120)
    assert bad["status"]["status_str"] == "error" and "has no persona LoRA" in error_of(bad)
