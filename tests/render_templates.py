"""Run every shipped template headless through a real ComfyUI and render its
thumbnail from what the run produced.

    COMFYUI_PATH=/path/to/ComfyUI python tests/render_templates.py [--thumbs] [--keep DIR]

One ComfyUI (``--cpu``, 127.0.0.1, a temporary base directory, see
:mod:`comfy_host`) with the cloud providers pointed at the stand-in
(:mod:`standin.server`, which renders real images with the Soul ID's photo
pasted in, and real MP4 clips). It

1. copies real fixture photos (``shared/fixtures/faces/obama``) into
   ``input/soul_photos`` and ``input/example.png``;
2. queues ``soul_id_create`` (the Soul ID ``my_soul`` every other template loads);
3. queues every other template's API twin (``workflows/api/<name>.json``),
   waits for it and collects its images (saved, previewed, and the first frame
   of a saved clip);
4. with ``--thumbs``, writes the thumbnail ``workflows/NN Title.jpg`` beside
   the template (768 x 576; the template browser shows it about 256 px wide)
   from those images.

Templates that run local diffusion models (``soul_id_qwen_edit_refs``,
``soul_id_apply_lora``, ...) stop at ComfyUI's model loaders here: there are
no weights on the test machine. For them, the part of the graph that does not
hang off a loader (:data:`LOADERS`) really runs: the Soul ID references, or
the Drift Guard (pick best) step on real fixture photos that stand in for the
decoded batch (:data:`STAND_INS`). Their thumbnail carries a two-line caption,
large enough to read on the card, saying what is shown and that it is not a
generation (:data:`NOT_A_GENERATION`); the template's note says the rest.

Prints one line per template: status, seconds, images, paid jobs on the stand-in.
Exit status 1 when a template fails.
"""
from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
from PIL import Image, ImageDraw, ImageFont

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from comfy_host import REPO, start_comfy  # noqa: E402
from standin.fixtures import cloud_env_vars, enable_cast_mode  # noqa: E402
from standin.server import StandIn  # noqa: E402
from workflow_check import ui_template, ui_templates  # noqa: E402

FACES = REPO.parent / "shared" / "fixtures" / "faces"
PHOTOS = ["obama.jpg", "obama2.jpg", "obama-480p.jpg", "obama_small.jpg", "obama4.jpg"]
THUMB = (768, 576)
#: Every template by name (``extra.soulid.name``), in the template browser's order (file name).
ORDER = list(ui_templates())
#: Core loaders of model files: nothing downstream of them runs without weights.
LOADERS = {"CheckpointLoaderSimple", "UNETLoader", "CLIPLoader", "DualCLIPLoader", "VAELoader", "CLIPVisionLoader",
           "LoraLoader", "LoraLoaderModelOnly"}
#: Template -> {node class: fixture photos}: a node whose output (an IMAGE batch)
#: fixture photos stand in for, so the steps after it run for real.
STAND_INS = {"soul_id_apply_lora": {"VAEDecode": ["obama/obama3.jpg", "biden/biden.jpg", "kit_harington/kit1.jpeg"]},
             "soul_cast_native": {"VAEDecode#11": ["obama/obama.jpg"], "VAEDecode#18": ["obama/obama4.jpg"],
                                  "VAEDecode#20": ["obama/obama2.jpg"], "VAEDecode#22": ["obama/obama3.jpg"]},
             **{name: {"VAEDecode": ["group/obama_and_biden.jpg", "group/two_people.jpg"]}
                for name in ("soul_id_cast_qwen_edit", "soul_id_cast_reference_latent", "soul_id_cast_hook_loras")}}
#: The second Soul ID the two-character (cast) templates load: name, then fixture photos.
SECOND_SOUL = ("my_soul_2", ["biden/biden.jpg", "biden/biden2.jpg"])
#: Template -> ``(node class, output slot)`` shown by an added PreviewImage: an IMAGE
#: the template passes on without showing it (the training set it feeds to the trainer).
SHOW = {"soul_id_train_lora": [("SoulIDReferences", 0)]}
#: Captions of the thumbnails of templates whose model part cannot run here: two
#: short lines drawn large (:func:`thumbnail`), readable at the card's ~256 px.
NOT_A_GENERATION = {
    **{name: ["Soul ID references only", "not a generation"]
       for name in ("soul_id_qwen_edit_refs", "soul_id_flux_kontext_refs", "soul_id_wan_phantom")},
    "soul_id_train_lora": ["The training set only", "not a trained LoRA"],
    "soul_cast_native": ["QA of stand-in views", "not a generation"],
    "soul_id_apply_lora": ["Drift Guard on stand-ins", "not a generation"],
    **{name: ["Cast Guard on stand-ins", "not a generation"]
       for name in ("soul_id_cast_qwen_edit", "soul_id_cast_reference_latent", "soul_id_cast_hook_loras")},
}
#: Caption font size on the 768 x 576 thumbnail: about 15 px on a 256 px card.
CAPTION_PX = 46


def queue(host, prompt: dict, timeout: float = 600.0) -> dict:
    """POST the prompt; return its finished ``/history`` entry."""
    with host.client(timeout=60) as c:
        r = c.post("/prompt", json={"prompt": prompt, "client_id": uuid.uuid4().hex})
        if r.status_code != 200:
            return {"status": {"status_str": "refused", "messages": [["refused", r.text]]}, "outputs": {}}
        pid = r.json()["prompt_id"]
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            h = c.get(f"/history/{pid}").json()
            if pid in h and h[pid].get("status", {}).get("status_str") in ("success", "error"):
                return h[pid]
            time.sleep(0.25)
    return {"status": {"status_str": "timeout", "messages": []}, "outputs": {}}


def error_of(entry: dict) -> str:
    for kind, data in entry["status"].get("messages", []):
        if kind in ("execution_error", "refused"):
            if isinstance(data, dict):
                return f"{data.get('node_type')}: {data.get('exception_type')}: {data.get('exception_message')}"
            return str(data)[:500]
    return ""


def output_images(host, entry: dict) -> list[Image.Image]:
    """Every image the run produced: saved first, then previews; a clip gives its first frame."""
    found = []
    for node_out in entry.get("outputs", {}).values():
        for item in node_out.get("images", []) + node_out.get("videos", []) + node_out.get("gifs", []):
            found.append(item)
    found.sort(key=lambda i: i.get("type") != "output")
    imgs = []
    with host.client(timeout=60) as c:
        for item in found:
            r = c.get("/view", params={k: item[k] for k in ("filename", "subfolder", "type")})
            if r.status_code != 200:
                continue
            name = item["filename"].lower()
            if name.endswith((".mp4", ".webm", ".mov")):
                import av

                with av.open(io.BytesIO(r.content)) as v:
                    frames = [f.to_image() for _, f in zip(range(60), v.decode(video=0))]
                imgs.append(frames[len(frames) // 2])
            else:
                imgs.append(Image.open(io.BytesIO(r.content)).convert("RGB"))
    seen, unique = set(), []
    for im in imgs:  # a node's preview of an image that a Save/Preview node shows too
        key = im.resize((32, 32)).tobytes()
        if key not in seen:
            seen.add(key)
            unique.append(im)
    return unique


def thumbnail(imgs: list[Image.Image], caption: list[str] | None = None) -> Image.Image:
    """Up to four of the run's images on a 768 x 576 canvas (the first large),
    with ``caption`` lines in a band at the bottom when given."""
    canvas = Image.new("RGB", THUMB, (28, 30, 36))
    line_h = CAPTION_PX + 8
    band = line_h * len(caption) + 16 if caption else 0
    height = THUMB[1] - band
    picks = imgs[:4]
    if len(picks) == 1:
        cells = [(0, 0, THUMB[0], height)]
    elif picks:
        big_w = THUMB[0] * 5 // 8
        cells = [(0, 0, big_w, height)]
        n = len(picks) - 1
        for i in range(n):
            cells.append((big_w, height * i // n, THUMB[0], height * (i + 1) // n))
    for img, (l, t, r, b) in zip(picks, cells if picks else []):
        im = img.copy()
        im.thumbnail((r - l - 8, b - t - 8), Image.LANCZOS)
        canvas.paste(im, (l + (r - l - im.width) // 2, t + (b - t - im.height) // 2))
    draw = ImageDraw.Draw(canvas)
    if caption:
        font = ImageFont.load_default(size=CAPTION_PX)
        draw.rectangle((0, height, THUMB[0], THUMB[1]), fill=(16, 16, 20))
        for i, line in enumerate(caption):
            w = draw.textlength(line, font=font)
            if w > THUMB[0] - 24:
                raise ValueError(f"thumbnail caption {line!r} is {w:.0f} px wide: too long for {THUMB[0]} px")
            draw.text(((THUMB[0] - w) / 2, height + 8 + line_h * i), line,
                      fill=(250, 250, 250) if i == 0 else (255, 196, 84), font=font)
    draw.rectangle((0, 0, THUMB[0] - 1, THUMB[1] - 1), outline=(80, 84, 96))
    return canvas


def depends_on_loaders(prompt: dict) -> set[str]:
    """Ids of the nodes that are, or hang (through links) off, a model-file loader."""
    out = {k for k, n in prompt.items() if n["class_type"] in LOADERS}
    grew = True
    while grew:
        grew = False
        for k, n in prompt.items():
            if k not in out and any(isinstance(v, list) and len(v) == 2 and str(v[0]) in out
                                    for v in n["inputs"].values()):
                out.add(k)
                grew = True
    return out


def runnable_part(name: str, prompt: dict) -> dict:
    """The template's prompt without the nodes that need model weights.

    Each node named in :data:`STAND_INS` is replaced (same id, so its links
    hold) by ``LoadImage`` -> ``ImageBatch`` of the fixture photos; then every
    node that is or hangs off a loader is left out, and each output named in
    :data:`SHOW` gets a PreviewImage. A template without loaders is returned
    as it is."""
    prompt = json.loads(json.dumps(prompt))
    for key, photos in STAND_INS.get(name, {}).items():
        cls, _, only = key.partition("#")
        for nid in [k for k, n in prompt.items() if n["class_type"] == cls and only in ("", k)]:
            if len(photos) == 1:
                prompt[nid] = {"class_type": "LoadImage", "inputs": {"image": Path(photos[0]).name}}
                continue
            loads = []
            for i, photo in enumerate(photos):
                loads.append(f"{nid}_load{i}")
                prompt[loads[-1]] = {"class_type": "LoadImage", "inputs": {"image": Path(photo).name}}
            last = [loads[0], 0]
            for i, lid in enumerate(loads[1:]):
                bid = nid if i == len(loads) - 2 else f"{nid}_batch{i}"
                prompt[bid] = {"class_type": "ImageBatch", "inputs": {"image1": last, "image2": [lid, 0]}}
                last = [bid, 0]
    for cls, slot in SHOW.get(name, []):
        for nid in [k for k, n in prompt.items() if n["class_type"] == cls]:
            prompt[f"{nid}_show{slot}"] = {"class_type": "PreviewImage", "inputs": {"images": [nid, slot]}}
    drop = depends_on_loaders(prompt)
    return {k: n for k, n in prompt.items() if k not in drop}


def prepare_inputs(host) -> None:
    folder = host.input_dir / "soul_photos"
    folder.mkdir(parents=True, exist_ok=True)
    for n in PHOTOS:
        shutil.copy(FACES / "obama" / n, folder / n)
    Image.open(FACES / "obama" / "obama3.jpg").convert("RGB").save(host.input_dir / "example.png")
    second = host.input_dir / "soul_photos_2"
    second.mkdir(parents=True, exist_ok=True)
    for photo in SECOND_SOUL[1]:
        shutil.copy(FACES / photo, second / Path(photo).name)
    for photos in (p for s in STAND_INS.values() for p in s.values()):
        for photo in photos:
            shutil.copy(FACES / photo, host.input_dir / Path(photo).name)


def make_second_soul(host) -> None:
    """Create the second Soul ID (:data:`SECOND_SOUL`) with the soul_id_create template, once."""
    if getattr(host, "_second_soul", False):
        return
    api = json.loads((REPO / "workflows" / "api" / "soul_id_create.json").read_text())
    for n in api.values():
        if n["class_type"] == "SoulIDCreate":
            n["inputs"].update(name=SECOND_SOUL[0], folder="soul_photos_2")
        if n["class_type"] == "SoulIDSave":
            n["inputs"]["overwrite"] = True
    entry = queue(host, api)
    print(f"{SECOND_SOUL[0]} (second Soul ID): {entry['status']['status_str']} {error_of(entry)}", flush=True)
    host._second_soul = True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--thumbs", action="store_true", help="write the thumbnails (of the --only templates)")
    ap.add_argument("--only", nargs="*", help="template names (soul_id_create always runs first)")
    ap.add_argument("--keep", help="copy the run's images to this folder")
    a = ap.parse_args(argv)
    names = [n for n in ORDER if not a.only or n in a.only or n == "soul_id_create"]
    failed = 0
    with StandIn(queue_s=0.5, run_s=1.0) as standin, tempfile.TemporaryDirectory(prefix="soulid_tpl_") as tmp:
        env = {**cloud_env_vars(standin.url), "SOULID_POLL_INITIAL": "0.1", "SOULID_POLL_MAX": "0.25"}
        enable_cast_mode(standin.url, FACES)  # Soul Cast: a prompt draws a fixture person (see standin.server)
        with start_comfy(Path(tmp), env=env) as host:
            prepare_inputs(host)
            for name in names:
                api = json.loads((REPO / "workflows" / "api" / f"{name}.json").read_text())
                if name == "soul_id_create":
                    for n in api.values():
                        if n["class_type"] == "SoulIDCreate":
                            n["inputs"]["name"] = "my_soul"
                        if n["class_type"] == "SoulIDSave":
                            n["inputs"]["overwrite"] = True
                if name in STAND_INS and any(n["class_type"] == "SoulIDCastGuard" for n in api.values()):
                    make_second_soul(host)
                api = runnable_part(name, api)
                paid0 = httpx.get(standin.url + "/_standin/stats").json()["paid"]
                t0 = time.monotonic()
                entry = queue(host, api)
                dt = time.monotonic() - t0
                paid1 = httpx.get(standin.url + "/_standin/stats").json()["paid"]
                paid = sum(paid1.values()) - sum(paid0.values())
                status = entry["status"]["status_str"]
                imgs = output_images(host, entry) if status == "success" else []
                print(f"{name}: {status} in {dt:.1f} s, {len(imgs)} image(s), {paid} paid job(s) "
                      f"{error_of(entry)}", flush=True)
                if status != "success":
                    failed += 1
                    print(host.log_tail(30))
                    continue
                if a.keep:
                    out = Path(a.keep) / name
                    out.mkdir(parents=True, exist_ok=True)
                    for i, im in enumerate(imgs):
                        im.save(out / f"{i}.png")
                if a.thumbs and (not a.only or name in a.only):  # not soul_id_create run as the prerequisite
                    thumb = thumbnail(imgs, NOT_A_GENERATION.get(name))
                    thumb.save(ui_template(name).with_suffix(".jpg"), quality=85, optimize=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
