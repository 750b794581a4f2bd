"""The native-graph workflows: Soul ID -> References -> Qwen-Image-Edit-Plus / ReferenceLatent
chain / Wan Phantom, and checkpoint -> Soul ID Apply -> KSampler -> Drift Guard (pick best).

Always: each workflow is wired as its README section says, its model files
are named in ComfyUI's own loaders (models/ folders), and it has a picture.
(Schema checks against the recorded core nodes: ``test_workflows.py``.)

With ``$COMFYUI_PATH``: in a real ComfyUI (CPU, no model weights) every
workflow loads with no missing node type, and a headless ``/prompt`` stops
at the model loaders with ComfyUI's own "Value not in list" validation, while
the part of the graph before the loaders (Soul ID Load -> References ->
preview) runs on a real Obama Soul ID. With ``$SOULID_WORKFLOW_PICTURES``
set to a folder, the run writes each workflow's picture there (how
``docs/images/soul_id_*.png`` were made).
"""
from __future__ import annotations

import io
import json
import os
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from comfy_host import REPO, comfy_host  # noqa: F401  (fixture)
from workflow_check import ui_template

WF = REPO / "workflows"
NATIVE = ["soul_id_qwen_edit_refs", "soul_id_flux_kontext_refs", "soul_id_apply_lora", "soul_id_wan_phantom"]
#: Model-file inputs of the core loaders.
LOADER_FILES = {"CheckpointLoaderSimple": ["ckpt_name"], "UNETLoader": ["unet_name"], "CLIPLoader": ["clip_name"],
                "DualCLIPLoader": ["clip_name1", "clip_name2"], "VAELoader": ["vae_name"]}
RUN_TIMEOUT = 300.0


def _api(name: str) -> dict:
    return json.loads((WF / "api" / f"{name}.json").read_text())


def _by_type(prompt: dict, typ: str) -> list[tuple[str, dict]]:
    return [(k, v) for k, v in prompt.items() if v["class_type"] == typ]


def _src(node: dict, inp: str) -> tuple[str, int]:
    v = node["inputs"][inp]
    assert isinstance(v, list), f"{inp} is not linked"
    return v[0], v[1]


@pytest.mark.parametrize("name", NATIVE)
def test_workflow_has_ui_api_and_picture(name):
    assert ui_template(name).is_file() and (WF / "api" / f"{name}.json").is_file()
    pic = REPO / "docs" / "images" / f"{name}.png"
    assert pic.is_file(), f"no picture docs/images/{name}.png"
    with Image.open(pic) as im:
        assert max(im.size) <= 1600 and min(im.size) >= 200


def test_qwen_edit_takes_the_three_numbered_references():
    p = _api("soul_id_qwen_edit_refs")
    (refs_id, refs), = _by_type(p, "SoulIDReferences")
    assert refs["inputs"]["k"] == 3
    encoders = _by_type(p, "TextEncodeQwenImageEditPlus")
    assert len(encoders) == 2
    for _, enc in encoders:
        assert [_src(enc, f"image{i}") for i in (1, 2, 3)] == [(refs_id, 2), (refs_id, 3), (refs_id, 4)]
    (_, ks), = _by_type(p, "KSampler")
    assert {_src(ks, "positive")[0], _src(ks, "negative")[0]} == {k for k, _ in encoders}


def test_kontext_chains_one_reference_latent_per_reference():
    p = _api("soul_id_flux_kontext_refs")
    (refs_id, refs), = _by_type(p, "SoulIDReferences")
    chain = dict(_by_type(p, "ReferenceLatent"))
    assert len(chain) == refs["inputs"]["k"] == 2
    slots = []
    for _, node in chain.items():
        enc = p[_src(node, "latent")[0]]
        assert enc["class_type"] == "VAEEncode" and _src(enc, "pixels")[0] == refs_id
        slots.append(_src(enc, "pixels")[1])
    assert sorted(slots) == [2, 3]
    # The chain: text -> reference 1 -> reference 2 -> guidance -> KSampler positive.
    first = next(k for k, n in chain.items() if p[_src(n, "conditioning")[0]]["class_type"] == "CLIPTextEncode")
    second = next(k for k in chain if k != first)
    assert _src(chain[second], "conditioning")[0] == first
    (_, ks), = _by_type(p, "KSampler")
    guid = p[_src(ks, "positive")[0]]
    assert guid["class_type"] == "FluxGuidance" and _src(guid, "conditioning")[0] == second


def test_apply_lora_goes_checkpoint_apply_ksampler_pick_best_save():
    p = _api("soul_id_apply_lora")
    (ck_id, _), = _by_type(p, "CheckpointLoaderSimple")
    (ap_id, ap), = _by_type(p, "SoulIDApply")
    assert _src(ap, "model") == (ck_id, 0) and _src(ap, "clip") == (ck_id, 1)
    (ks_id, ks), = _by_type(p, "KSampler")
    assert _src(ks, "model") == (ap_id, 0)
    for side in ("positive", "negative"):
        assert _src(p[_src(ks, side)[0]], "clip") == (ap_id, 1)
    assert p[_src(ks, "latent_image")[0]]["inputs"]["batch_size"] >= 2
    (pb_id, pb), = _by_type(p, "SoulIDDriftGuardPickBest")
    assert p[_src(pb, "images")[0]]["class_type"] == "VAEDecode"
    assert any(_src(n, "images") == (pb_id, 0) for _, n in _by_type(p, "SaveImage"))


def test_wan_phantom_takes_the_references_and_checks_every_frame():
    p = _api("soul_id_wan_phantom")
    (refs_id, _), = _by_type(p, "SoulIDReferences")
    (ph_id, ph), = _by_type(p, "WanPhantomSubjectToVideo")
    pad_id, _ = _src(ph, "images")  # padded to the video aspect (ResizeAndPadImage), then Phantom
    assert _src(p[pad_id], "image") == (refs_id, 0)
    (_, ks), = _by_type(p, "KSampler")
    assert _src(ks, "positive") == (ph_id, 0) and _src(ks, "latent_image") == (ph_id, 3)
    (dec_id, _), = _by_type(p, "VAEDecode")
    (_, score), = _by_type(p, "SoulIDScore")
    assert _src(score, "images") == (dec_id, 0)
    assert any(_src(n, "images") == (dec_id, 0) for _, n in _by_type(p, "CreateVideo"))


@pytest.mark.parametrize("name", NATIVE)
def test_model_files_are_named_in_comfyui_loaders(name):
    p = _api(name)
    loaders = [(k, n) for k, n in p.items() if n["class_type"] in LOADER_FILES]
    assert loaders
    for _, n in loaders:
        for field in LOADER_FILES[n["class_type"]]:
            assert n["inputs"][field].endswith(".safetensors"), (n["class_type"], field)


# ------------------------------------------------------------ in ComfyUI
@pytest.fixture(scope="module")
def host_with_soul(comfy_host, faces):  # noqa: F811
    from soulid.soul.create import create_soul_id

    soul = create_soul_id([faces / "obama"], "my_soul", analyzer="dlib", workers=1).soul
    lib = comfy_host.user_dir / "soulid" / "library"
    lib.mkdir(parents=True, exist_ok=True)
    soul.save(lib / "my_soul.soulid")
    return comfy_host, soul


def _queue(host, prompt: dict) -> tuple[int, dict, dict | None]:
    """POST /prompt; returns (status, response, history entry or None when refused)."""
    with host.client() as c:
        r = c.post("/prompt", json={"prompt": prompt, "client_id": uuid.uuid4().hex})
        body = r.json()
        if r.status_code != 200:
            return r.status_code, body, None
        pid = body["prompt_id"]
        deadline = time.monotonic() + RUN_TIMEOUT
        while time.monotonic() < deadline:
            h = c.get(f"/history/{pid}").json()
            if pid in h and h[pid].get("status", {}).get("status_str") in ("success", "error"):
                return r.status_code, body, h[pid]
            time.sleep(0.5)
    pytest.fail(f"prompt {pid} did not finish\n{host.log_tail()}")


def _view(host, item: dict) -> np.ndarray:
    with host.client() as c:
        r = c.get("/view", params={k: item[k] for k in ("filename", "subfolder", "type")})
    r.raise_for_status()
    return np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))


@pytest.mark.comfyui
@pytest.mark.parametrize("name", NATIVE)
def test_workflow_loads_and_stops_at_the_model_loaders(host_with_soul, name):
    host, soul = host_with_soul
    with host.client() as c:
        info = c.get("/object_info").json()
    ui = json.loads(ui_template(name).read_text())
    missing = {n["type"] for n in ui["nodes"] if n["type"] not in ("Note", "MarkdownNote")} - set(info)
    assert not missing, f"{name}: node types missing in ComfyUI: {missing}"

    prompt = _api(name)
    status, body, entry = _queue(host, prompt)
    errors = body.get("node_errors", {})
    loaders = {k for k, n in prompt.items() if n["class_type"] in LOADER_FILES}
    # ComfyUI's own validation names every model loader whose file is missing, and nothing else.
    assert set(errors) == loaders, (status, body)
    for nid, e in errors.items():
        kinds = {x["type"] for x in e["errors"]}
        assert kinds == {"value_not_in_list"}, e
        details = " ".join(x["details"] for x in e["errors"])
        for field in LOADER_FILES[prompt[nid]["class_type"]]:
            assert f"{field}: '{prompt[nid]['inputs'][field]}' not in" in details
    refs = _by_type(prompt, "SoulIDReferences")
    if not refs:  # every output hangs off a loader: the prompt is refused as a whole
        assert status == 400 and entry is None
        _write_apply_picture(soul)
        return
    # The part before the loaders ran: the references preview on the real Soul ID.
    assert status == 200 and entry["status"]["status_str"] == "success", (body, entry and entry["status"])
    ran = set(entry["outputs"])
    (refs_id, refs_node), = refs
    preview = next(k for k, n in prompt.items() if n["class_type"] == "PreviewImage"
                   and n["inputs"]["images"] == [refs_id, 0])
    assert preview in ran and ran <= {preview, refs_id}, ran  # References shows its roles on the node
    imgs = [_view(host, it) for it in entry["outputs"][preview]["images"]]
    k = refs_node["inputs"]["k"]
    assert len(imgs) == k and all(im.shape == imgs[0].shape for im in imgs)
    assert all(im.std() > 20 for im in imgs)
    _write_refs_picture(name, imgs, k)


# ------------------------------------------------------------- pictures
def _picture_dir() -> Path | None:
    d = os.environ.get("SOULID_WORKFLOW_PICTURES")
    return Path(d) if d else None


def _label(img: Image.Image, lines: list[str]) -> Image.Image:
    from PIL import ImageDraw

    band = 18 * len(lines) + 10
    out = Image.new("RGB", (img.width, img.height + band), (24, 24, 24))
    out.paste(img, (0, 0))
    d = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        d.text((8, img.height + 6 + 18 * i), line, fill=(235, 235, 235))
    return out


def _save_picture(img: Image.Image, path: Path) -> None:
    """A small PNG (256-colour palette) for the docs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img.convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(path, optimize=True)


def _write_refs_picture(name: str, imgs: list[np.ndarray], k: int) -> None:
    d = _picture_dir()
    if d is None:
        return
    tile = 320
    strip = Image.new("RGB", (tile * len(imgs), tile))
    for i, im in enumerate(imgs):
        strip.paste(Image.fromarray(im).resize((tile, round(tile * im.shape[0] / im.shape[1]))), (i * tile, 0))
    target = {"soul_id_qwen_edit_refs": "TextEncodeQwenImageEditPlus image1..image3",
              "soul_id_flux_kontext_refs": "the ReferenceLatent chain (FLUX Kontext)",
              "soul_id_wan_phantom": "WanPhantomSubjectToVideo images"}[name]
    _save_picture(_label(strip, [f"{name}: the {k} Soul ID references fed to {target},",
                                 "from a real headless run on the Obama fixture Soul ID (front first).",
                                 "Not a generation: no model weights on the test machine."]), d / f"{name}.png")


def _write_apply_picture(soul) -> None:
    """The Drift Guard (pick best) node on real candidates: three fixture photos and a blank."""
    d = _picture_dir()
    if d is None:
        return
    from soulid.soul.guard import best_of_n
    from soulid.soul.imageio import load_photo
    from soulid.soul.grid import moodboard

    faces = REPO.parent / "shared" / "fixtures" / "faces"
    cands = [load_photo(faces / p).rgb for p in ("biden/biden.jpg", "obama/obama3.jpg", "obama/obama2.jpg")]
    res = best_of_n(soul, lambda i: cands[i], len(cands), stop_at_first_pass=False)
    entries = [{"score": e.similarity, "passed": e.passed,
                "caption": "kept" if e.index == res.index else "candidate"} for e in res.report.entries]
    board = Image.fromarray(moodboard(cands, entries, columns=3, tile=300, title="Drift Guard (pick best)"))
    _save_picture(_label(board, ["soul_id_apply_lora: the Drift Guard (pick best) step on real candidates.",
                                 "Not a generation: the candidates are fixture photos (no SDXL weights here)."]),
                  d / "soul_id_apply_lora.png")


@pytest.mark.parametrize("name", NATIVE)
def test_no_two_nodes_overlap_on_the_canvas(name):
    """Node boxes (position, size, plus the 30 px title bar above) stay apart."""
    ui = json.loads(ui_template(name).read_text())
    boxes = [(n["id"], n["pos"][0], n["pos"][1] - 30, n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])
             for n in ui["nodes"]]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            apart = a[3] <= b[1] or b[3] <= a[1] or a[4] <= b[2] or b[4] <= a[2]
            assert apart, f"{name}: nodes {a[0]} and {b[0]} overlap"


# ------------------------------------------------------------ as ComfyUI ships them
#: ComfyUI models folder of each core loader's files (folder_paths names).
LOADER_DIRECTORY = {"CheckpointLoaderSimple": "checkpoints", "UNETLoader": "diffusion_models",
                    "CLIPLoader": "text_encoders", "DualCLIPLoader": "text_encoders", "VAELoader": "vae",
                    "LoraLoader": "loras", "LoraLoaderModelOnly": "loras", "CLIPVisionLoader": "clip_vision",
                    "ControlNetLoader": "controlnet", "UpscaleModelLoader": "upscale_models"}


def _all_loaders():
    out = []
    for path in sorted(WF.glob("*.json")):
        wf = json.loads(path.read_text())
        for n in wf["nodes"]:
            if n["type"] in LOADER_DIRECTORY or n["type"].endswith("Loader"):
                out.append(pytest.param(path.name, n, id=f"{path.stem}-{n['id']}-{n['type']}"))
    return out


@pytest.mark.parametrize("wf_name,node", _all_loaders())
def test_every_loader_carries_its_download_entries(wf_name, node):
    """As ComfyUI's official templates: ``properties.models`` names each file of the loader
    (name == widget value) with an https URL ending in that file and the models folder it
    goes in, so the frontend's Missing Models dialog can offer the download."""
    from urllib.parse import urlparse

    files = [v for v in node.get("widgets_values") or [] if isinstance(v, str) and v.endswith(".safetensors")]
    models = (node.get("properties") or {}).get("models")
    assert files and models, f"{wf_name} node {node['id']} ({node['type']}): no properties.models"
    assert [m["name"] for m in models] == files, (wf_name, node["id"])
    for m in models:
        u = urlparse(m["url"])
        assert u.scheme == "https" and u.netloc == "huggingface.co", m
        assert u.path.endswith("/" + m["name"]) and "/resolve/" in u.path, m
        assert m["directory"] == LOADER_DIRECTORY[node["type"]], m


def test_qwen_edit_samples_through_cfgnorm_as_the_official_template():
    """ComfyUI's image_qwen_image_edit_2509 template: ModelSamplingAuraFlow -> CFGNorm -> KSampler."""
    p = _api("soul_id_qwen_edit_refs")
    (_, ks), = _by_type(p, "KSampler")
    norm_id, _ = _src(ks, "model")
    assert p[norm_id]["class_type"] == "CFGNorm" and p[norm_id]["inputs"]["strength"] == 1.0
    ms_id, _ = _src(p[norm_id], "model")
    assert p[ms_id]["class_type"] == "ModelSamplingAuraFlow" and p[_src(p[ms_id], "model")[0]]["class_type"] == "UNETLoader"


def test_phantom_references_are_padded_to_the_video_aspect_in_the_graph():
    p = _api("soul_id_wan_phantom")
    (_, ph), = _by_type(p, "WanPhantomSubjectToVideo")
    pad_id, _ = _src(ph, "images")
    pad = p[pad_id]
    assert pad["class_type"] == "ResizeAndPadImage" and pad["inputs"]["padding_color"] == "white"
    assert (pad["inputs"]["target_width"], pad["inputs"]["target_height"]) == (ph["inputs"]["width"], ph["inputs"]["height"])
    assert p[_src(pad, "image")[0]]["class_type"] == "SoulIDReferences"


def test_phantom_sees_the_whole_head_not_a_crop_through_it(faces, monkeypatch):
    """The template's pad node and WanPhantomSubjectToVideo's own resize (comfy.utils.common_upscale,
    centre crop), in ComfyUI, on a real Soul ID's square head reference: every row of the head
    reaches Phantom, and the sides are white, as Phantom's own reference loader pads."""
    from comfy_inprocess import comfy_modules, need_comfy

    need_comfy()
    torch = pytest.importorskip("torch")
    from soulid.soul.create import create_soul_id
    from soulid.soul.references import reference_images

    p = _api("soul_id_wan_phantom")
    (_, ph), = _by_type(p, "WanPhantomSubjectToVideo")
    (_, refs_node), = _by_type(p, "SoulIDReferences")
    (pad_id, pad), = _by_type(p, "ResizeAndPadImage")
    W, H = ph["inputs"]["width"], ph["inputs"]["height"]
    soul = create_soul_id([faces / "obama"], "obama", analyzer="dlib", workers=1).soul
    ri = refs_node["inputs"]
    ref = reference_images(soul, k=1, size=ri["size"], crop=ri["crop"]).images[0]
    img = torch.from_numpy(np.asarray(ref, np.float32) / 255.0)[None]
    with comfy_modules():
        import sys

        import comfy.utils

        # Something in ComfyUI puts its comfy/ folder first on sys.path, where comfy/utils.py
        # would shadow ComfyUI's utils package that nodes_images (via server) imports.
        monkeypatch.setattr(sys, "path", [d for d in sys.path if Path(d).name != "comfy"])
        from comfy_extras.nodes_images import ResizeAndPadImage

        def phantom_view(x):  # what WanPhantomSubjectToVideo.execute does to its images
            return comfy.utils.common_upscale(x.movedim(-1, 1), W, H, "bilinear", "center").movedim(1, -1)[0]

        kw = {k: pad["inputs"][k] for k in ("target_width", "target_height", "padding_color", "interpolation")}
        padded = ResizeAndPadImage().resize_and_pad(img, **kw)[0]
        seen = phantom_view(padded)
        cropped = phantom_view(img)
    h, w = img.shape[1:3]
    inner = round(w * H / h)  # the reference's width once fitted to the video height
    left = (W - inner) // 2
    assert torch.all(seen[:, : left - 1] == 1.0) and torch.all(seen[:, left + inner + 1:] == 1.0), "sides not white"
    # Every row of the reference is there: the fitted reference's top and bottom rows match the original's.
    fitted = torch.nn.functional.interpolate(img.movedim(-1, 1), size=(H, inner), mode="area").movedim(1, -1)[0]
    body = seen[:, left + 2: left + inner - 2]
    assert (body - fitted[:, 2:-2]).abs().mean() < 0.02
    # Without the pad, Phantom's centre crop keeps only the middle band of the square head shot:
    # the top of the head and the chin are gone (what the pad avoids).
    band = round(w * H / W)
    top = (h - band) // 2
    assert w == W and band < 0.6 * h
    assert (cropped - img[0, top:top + band]).abs().max() < 1e-3
