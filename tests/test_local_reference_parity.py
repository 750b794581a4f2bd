"""The local InstantID / FaceID Plus v2 paths behave as their references
(InstantX InstantID pipeline and cubiq ComfyUI_InstantID; h94 IP-Adapter-FaceID):

* the Resampler InstantID calls directly runs where its weights are, whatever
  the offload mode (device tracked at call time);
* an edit's keypoints are the ones of the face found in the image being edited;
* keypoint dots are 10 px at every image size (reference ``draw_kps``);
* FaceID Plus v2 without its paired LoRA warns on every run, and
  ``require_faceid_lora`` makes it an error.

Generation itself is replaced by a recorder where only the pipeline inputs
matter (no denoising needed to check them)."""
from __future__ import annotations

import logging

import numpy as np
import pytest

pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")


from soulid.backends.base import EditRequest, GenerateRequest  # noqa: E402
from soulid.backends.local import LocalBackend, pipelines  # noqa: E402
from soulid.backends.local.embeddings import EmbeddingError  # noqa: E402
from soulid.backends.local.instantid import IdentityTokens, draw_keypoints  # noqa: E402
from soulid.soul.errors import ModelFilesMissing  # noqa: E402
from tiny_fixtures import _models_env, models_root, soul  # noqa: E402,F401  (fixtures)


@pytest.fixture
def recorded(monkeypatch):
    """Replace the diffusion run by a recorder of its inputs."""
    calls = []

    def fake_run(key, params, embedding, **kw):
        calls.append({"key": key, "params": params, **kw})
        h, w = (kw["image"].shape[:2] if kw.get("image") is not None else (params.height, params.width))
        return np.zeros((1, h, w, 3), np.float32), {"seed": 0, "steps": 1, "method": key.resolved.method}

    monkeypatch.setattr(pipelines, "run", fake_run)
    return calls


# ------------------------------------------------------------------ Resampler device
def test_resampler_runs_where_its_weights_are_under_offload():
    """offload=model keeps the UNet (and its image projection) on the CPU until the UNet's
    forward; the tokens are made for a run on another device (meta here, standing in for CUDA)."""
    from diffusers.models.embeddings import IPAdapterPlusImageProjection

    proj = IPAdapterPlusImageProjection(embed_dims=512, output_dims=64, hidden_dims=64, depth=1, dim_head=16,
                                        heads=4, num_queries=4)
    seen = []

    def check(module, args):
        w = next(module.parameters())
        seen.append((args[0].device.type, w.device.type))
        assert args[0].device == w.device, f"Resampler called on {args[0].device} with weights on {w.device}"

    proj.register_forward_pre_hook(check)
    pipe = type("Pipe", (), {})()
    pipe.controlnet = torch.nn.Linear(2, 2)
    pipe.unet = type("U", (), {})()
    pipe.unet.encoder_hid_proj = type("E", (), {"image_projection_layers": [proj]})()
    tokens = IdentityTokens(pipe)
    tokens.set(np.random.default_rng(0).normal(size=512).astype(np.float32), torch.device("meta"), torch.float32)
    assert seen == [("cpu", "cpu")]
    assert tokens.tokens.device.type == "meta" and tuple(tokens.tokens.shape) == (2, 4, 64)
    tokens.remove()


# ------------------------------------------------------------------ keypoints
def _disc(radius):
    """Pixels of a filled OpenCV circle of ``radius`` (the reference's dot)."""
    import cv2

    m = np.zeros((64, 64), np.uint8)
    cv2.circle(m, (32, 32), radius, 1, -1)
    return int(m.sum())


@pytest.mark.parametrize("size", [512, 1024, 2048])
def test_keypoint_dots_are_10_px_at_every_size_as_reference_draw_kps(size):
    """The reference draws every dot with ``cv2.circle(..., 10, color, -1)`` and limbs of
    stick width 4 at 60 % intensity, whatever the image size."""
    s = size / 1024
    kps = np.array([[380, 400], [640, 400], [512, 560], [400, 760], [620, 760]], np.float64) * s
    img = draw_keypoints(size, size, kps)
    colours = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255))
    for (x, y), c in zip(kps, colours):
        x, y = int(x), int(y)
        win = img[y - 30:y + 31, x - 30:x + 31]
        dot = np.all(win == c, axis=-1)
        assert dot.sum() == _disc(10), (size, c, int(dot.sum()))
        ys, xs = np.nonzero(dot)
        assert xs.max() - xs.min() == 20 and ys.max() - ys.min() == 20  # diameter 2 x 10 + 1 px
    # Limbs at 60 % (255 * 0.6 -> 153), e.g. halfway from the left eye to the nose.
    mid = ((kps[0] + kps[2]) / 2).astype(int)
    assert tuple(img[mid[1], mid[0]]) == (153, 0, 0)


def _source(faces):
    from soulid.soul.imageio import load_photo

    rgb = load_photo(faces / "kit_harington" / "kit2.jpeg").rgb[::4, ::4][:92, :156]
    return np.ascontiguousarray(rgb).astype(np.float32) / 255


def test_edit_keypoints_come_from_the_face_in_the_source(soul, faces, recorded):
    from soulid.soul.analysis import get_analyzer
    from soulid.soul.imageio import to_uint8

    dlib = get_analyzer("dlib")
    src = _source(faces)
    LocalBackend(analyzer=dlib).edit(EditRequest(src, "a man", soul=soul, strength=0.6, seed=1,
                                                 options={"method": "instantid", "steps": 2}))
    face = dlib.largest_face(to_uint8(src))
    assert face is not None
    want = draw_keypoints(156, 92, face.keypoints)
    got = recorded[-1]["keypoint_image"]
    np.testing.assert_array_equal(got, want)


def test_edit_without_a_face_in_the_source_says_so(soul, recorded):
    from soulid.soul.analysis import get_analyzer

    flat = np.full((92, 156, 3), 0.5, np.float32)
    with pytest.raises(EmbeddingError, match=r"source image: no face found for the InstantID keypoints.*pose_image"):
        LocalBackend(analyzer=get_analyzer("dlib")).edit(
            EditRequest(flat, "a man", soul=soul, strength=0.6, seed=1, options={"method": "instantid", "steps": 2}))
    assert recorded == []


# ------------------------------------------------------------------ FaceID LoRA
def _faceid(soul):
    return GenerateRequest("a man", soul=soul, width=64, height=64, seed=1,
                           options={"method": "faceid_plusv2", "steps": 1})


def test_faceid_without_its_lora_warns_on_every_run(soul, recorded, caplog):
    with caplog.at_level(logging.WARNING, logger="soulid"):
        LocalBackend().generate(_faceid(soul))
        LocalBackend().generate(_faceid(soul))
    warned = [r for r in caplog.records if "WITHOUT its paired LoRA" in r.getMessage()]
    assert len(warned) == 2 and "ip-adapter-faceid-plusv2_sdxl_lora.safetensors" in warned[0].getMessage()
    assert len(recorded) == 2


def test_require_faceid_lora_makes_it_an_error(soul, recorded, monkeypatch):
    req = _faceid(soul)
    req.options["require_faceid_lora"] = True
    with pytest.raises(ModelFilesMissing, match="ip-adapter-faceid-plusv2_sdxl_lora.safetensors"):
        LocalBackend().generate(req)
    monkeypatch.setenv("SOULID_REQUIRE_FACEID_LORA", "1")
    with pytest.raises(ModelFilesMissing, match="require_faceid_lora"):
        LocalBackend().generate(_faceid(soul))
    assert recorded == []


def test_faceid_with_its_lora_is_quiet(soul, recorded, caplog, models_root, tmp_path, monkeypatch):
    import shutil

    root = tmp_path / "models"
    shutil.copytree(models_root, root)
    shutil.copy(root / "loras" / "persona.safetensors", root / "loras" / "ip-adapter-faceid-plusv2_sdxl_lora.safetensors")
    monkeypatch.setenv("SOULID_MODELS_DIR", str(root))
    req = _faceid(soul)
    req.options["require_faceid_lora"] = True
    with caplog.at_level(logging.WARNING, logger="soulid"):
        LocalBackend().generate(req)
    assert not [r for r in caplog.records if "paired LoRA" in r.getMessage()]
    assert any(p.endswith("ip-adapter-faceid-plusv2_sdxl_lora.safetensors") for p, _ in recorded[-1]["key"].resolved.loras)
