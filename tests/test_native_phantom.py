"""The Wan Phantom clip path of ``soul_id_wan_phantom`` on CPU, on a short synthetic clip.

Real Obama references (Soul ID References) -> the core WanPhantomSubjectToVideo
node with a Wan 2.1 VAE of the real architecture (random weights: 127 M
parameters, built in memory) -> the core KSampler node on a tiny Wan 2.1 T2V
model (ComfyUI's own ``WAN21_T2V`` config, one block) -> the core VAEDecode
node -> Soul ID Score on every frame. 5 frames of 64 x 64 px. The pictures
are noise (random weights); the test checks the plumbing: the references
reach the model as Phantom's time-concatenated latents and change its output,
the clip has the requested length, and every frame gets an identity verdict.

Needs ComfyUI (``$COMFYUI_PATH``); skipped otherwise, saying why.
"""
from __future__ import annotations

import json

import pytest

from comfy_inprocess import comfy_modules, need_comfy
from soulid.soul.create import create_soul_id

need_comfy()
torch = pytest.importorskip("torch")

LENGTH, SIDE = 5, 64


@pytest.fixture(scope="module")
def parts(faces):
    with comfy_modules():
        import comfy.model_patcher
        import comfy.sd
        import comfy.supported_models
        import nodes
        from comfy_extras.nodes_wan import WanPhantomSubjectToVideo

        from soulid.nodes.identity import SoulIDScore
        from soulid.nodes.native import SoulIDReferences

        g = torch.Generator().manual_seed(0)
        # The Wan 2.1 VAE is recognised by this key; its other weights are filled at random.
        vae = comfy.sd.VAE(sd={"decoder.middle.0.residual.0.gamma": torch.ones(384, 1, 1, 1)})
        wan = comfy.supported_models.WAN21_T2V({
            "image_model": "wan2.1", "model_type": "t2v", "dim": 32, "ffn_dim": 64, "num_heads": 2, "num_layers": 1,
            "text_dim": 32, "in_dim": 16, "out_dim": 16, "freq_dim": 32, "eps": 1e-6, "patch_size": (1, 2, 2),
            "window_size": (-1, -1), "qk_norm": True, "cross_attn_norm": True, "text_len": 8,
        }).get_model({}, device="cpu")
        with torch.no_grad():
            for p in list(vae.first_stage_model.parameters()) + list(wan.parameters()):
                p.normal_(0.0, 0.03, generator=g)
        model = comfy.model_patcher.ModelPatcher(wan, load_device=torch.device("cpu"),
                                                 offload_device=torch.device("cpu"))
        soul = create_soul_id([faces / "obama" / n for n in ("obama.jpg", "obama2.jpg", "obama4.jpg")], "obama",
                              analyzer="dlib", workers=1).soul
        yield {"vae": vae, "model": model, "soul": soul, "phantom": WanPhantomSubjectToVideo,
               "ksampler": nodes.KSampler(), "decode": nodes.VAEDecode(), "refs": SoulIDReferences,
               "score": SoulIDScore}


def _text(seed: int):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, 8, 32, generator=g), {}]]


def _sample(p, positive, negative, latent):
    return p["ksampler"].sample(p["model"], 3, 2, 5.0, "euler", "simple", positive, negative, latent, denoise=1.0)[0]


def test_phantom_clip_path_on_a_short_synthetic_latent(parts):
    p = parts
    refs = p["refs"].execute(soul_id=p["soul"], k=3, size=SIDE, crop="head", mode="best_k").args[0]
    pos, neg_text, neg_img_text, latent = p["phantom"].execute(
        positive=_text(1), negative=_text(2), vae=p["vae"], width=SIDE, height=SIDE, length=LENGTH, batch_size=1,
        images=refs).args
    frames_latent = (LENGTH - 1) // 4 + 1
    assert tuple(latent["samples"].shape) == (1, 16, frames_latent, SIDE // 8, SIDE // 8)
    # One latent frame per reference, concatenated in time, on the positive and the text-only negative.
    concat = pos[0][1]["time_dim_concat"]
    assert tuple(concat.shape) == (1, 16, 3, SIDE // 8, SIDE // 8)
    assert torch.equal(neg_text[0][1]["time_dim_concat"], concat)
    assert not torch.equal(neg_img_text[0][1]["time_dim_concat"], concat)

    out = _sample(p, pos, neg_img_text, latent)
    assert tuple(out["samples"].shape) == tuple(latent["samples"].shape)
    assert torch.isfinite(out["samples"]).all()
    # The references reach the model: without them, another clip.
    other = p["phantom"].execute(positive=_text(1), negative=_text(2), vae=p["vae"], width=SIDE, height=SIDE,
                                 length=LENGTH, batch_size=1, images=None).args
    assert "time_dim_concat" not in other[0][0][1]
    out2 = _sample(p, other[0], other[2], other[3])
    again = _sample(p, pos, neg_img_text, latent)
    assert torch.equal(again["samples"], out["samples"])  # deterministic: a difference is the references'
    assert (out2["samples"] - out["samples"]).abs().max() > 1e-6

    frames = p["decode"].decode(p["vae"], out)[0]
    frames = frames.reshape(-1, *frames.shape[-3:])
    assert tuple(frames.shape) == (LENGTH, SIDE, SIDE, 3)
    sims, same, report = p["score"].execute(soul_id=p["soul"], images=frames).args
    assert len(sims) == len(same) == LENGTH
    rep = json.loads(report)
    assert len(rep) == LENGTH
    # Random weights draw no face: every frame is judged, and none passes.
    assert all(s == -1.0 for s in sims) and not any(same)
