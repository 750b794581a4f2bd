"""One persona LoRA from ComfyUI's own trainer to every consumer.

Core ``TrainLoraNode`` runs with the widget values of the shipped
``soul_id_train_lora`` template (bf16 training and LoRA dtype, its rank,
learning rate, optimizer, loss, seed; only the step count is cut to a few) on
a tiny SDXL built from ComfyUI's own classes. Its LORA_MODEL then goes through
Soul ID Attach LoRA, a ``.soulid`` file round trip and Soul ID Apply; the
result must equal core ``LoraModelLoader`` on the same LORA_MODEL exactly, and
the LoRA must change the output. The same stored LoRA then drives
``soulid generate --backend local`` (the diffusers pipelines) on the tiny
diffusers SDXL of the same architecture.

Needs ``$COMFYUI_PATH``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from comfy_inprocess import comfy_modules, need_comfy

need_comfy()
torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("peft")

import local_tiny_models as tiny  # noqa: E402
from workflow_check import ui_template  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: Training steps for the test (the template trains 800; the wiring is the same).
TEST_STEPS = 3
#: The tiny diffusers SDXL (local_tiny_models) in ComfyUI's UNetModel terms.
TINY_COMFY_UNET = dict(
    image_size=16, in_channels=4, out_channels=4, model_channels=32, num_res_blocks=[1, 1], channel_mult=[1, 2],
    transformer_depth=[0, 1], transformer_depth_output=[0, 0, 1, 1], transformer_depth_middle=1,
    num_head_channels=16, context_dim=tiny.CROSS, adm_in_channels=80, use_linear_in_transformer=True,
    use_spatial_transformer=True, legacy=False, num_classes="sequential", use_temporal_attention=False,
)


def template_train_values() -> dict:
    """The ``TrainLoraNode`` widget values of ``workflows/10 Train a persona LoRA (local).json``, by input name."""
    wf = json.loads(ui_template("soul_id_train_lora").read_text())
    node = next(n for n in wf["nodes"] if n["type"] == "TrainLoraNode")
    names = ["batch_size", "grad_accumulation_steps", "steps", "learning_rate", "rank", "optimizer",
             "loss_function", "seed", None, "training_dtype", "lora_dtype", "algorithm", "gradient_checkpointing",
             "existing_lora"]  # None: the seed's control_after_generate widget
    return {k: v for k, v in zip(names, node["widgets_values"]) if k is not None}


def tiny_comfy_sdxl(seed: int = 0):
    """A ModelPatcher around ComfyUI's SDXL model class with the tiny test UNet. Its size
    embedder is 8 wide (``addition_time_embed_dim`` of the tiny diffusers UNet) instead of 256."""
    import comfy.ldm.modules.diffusionmodules.openaimodel as oai
    import comfy.model_patcher
    import comfy.supported_models

    model = comfy.supported_models.SDXL(dict(TINY_COMFY_UNET)).get_model({}, device="cpu")
    model.embedder = oai.Timestep(8)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"),
                                            offload_device=torch.device("cpu"))


def tiny_unet_output(patcher):
    g = torch.Generator().manual_seed(0)
    x, ctx, y = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, tiny.CROSS, generator=g), torch.randn(1, 80, generator=g)
    patcher.patch_model()
    try:
        with torch.no_grad():
            return patcher.model.diffusion_model(x, timesteps=torch.tensor([500.0]), context=ctx, y=y).clone()
    finally:
        patcher.unpatch_model()


@pytest.fixture(scope="module")
def trained(faces, tmp_path_factory):
    """``(model, LORA_MODEL, steps, loss, stored Soul ID file)`` after TrainLoraNode + Attach + Save."""
    from soulid.soul.create import create_soul_id
    from soulid.soul.soulfile import SoulID

    soul = create_soul_id([faces / "obama" / "obama.jpg"], "anna", analyzer="dlib", workers=1).soul
    with comfy_modules():
        from comfy_extras.nodes_train import TrainLoraNode

        from soulid.nodes import lora as lora_nodes

        model = tiny_comfy_sdxl()
        values = {**template_train_values(), "steps": TEST_STEPS}
        assert values["lora_dtype"] == "bf16" and values["training_dtype"] == "bf16"
        g = torch.Generator().manual_seed(1)
        latents = {"samples": torch.randn(2, 4, 8, 8, generator=g)}
        positive = [[torch.randn(1, 4, tiny.CROSS, generator=g), {"pooled_output": torch.randn(1, 32, generator=g)}]]
        _, lora, loss, steps = TrainLoraNode().train(model=model, latents=latents, positive=positive, **values)
        assert {v.dtype for v in lora.values()} == {torch.bfloat16}
        new = lora_nodes.SoulIDAttachLoRA.execute(soul_id=soul, lora=lora, model=model, trigger="ohwx person",
                                                  steps=steps, loss=loss).args[0]
        path = tmp_path_factory.mktemp("soul") / "anna.soulid"
        new.save(path)
        back = SoulID.load(path)
        yield type("T", (), {"model": model, "lora": lora, "steps": steps, "loss": loss, "soul": back,
                             "nodes": lora_nodes, "values": values})


def test_trained_lora_attach_roundtrip_apply_equals_core_lora_loader(trained):
    from comfy_extras.nodes_train import LoraModelLoader

    model, soul = trained.model, trained.soul
    stored = soul.lora("sdxl")
    assert stored.metadata["steps"] == TEST_STEPS and len(stored.metadata["loss_curve"]) == TEST_STEPS
    assert stored.metadata["rank"] == trained.values["rank"]
    ours, _, report = trained.nodes.SoulIDApply.execute(model=model, soul_id=soul, strength_model=1.0,
                                                        strength_clip=1.0, min_match=1.0).args
    core = LoraModelLoader().load_lora_model(model=model, lora=trained.lora, strength_model=1.0)[0]
    rep = json.loads(report)
    assert rep["fraction"] == 1.0 and rep["shape_mismatch"] == 0
    base, a, b = tiny_unet_output(model), tiny_unet_output(ours), tiny_unet_output(core)
    assert torch.equal(a, b), f"Soul ID Apply differs from LoraModelLoader by {(a - b).abs().max():.3g}"
    assert (a - base).abs().max() > 0, "the trained LoRA did not change the output"
    assert set(ours.patches) == set(core.patches)


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    return tiny.build_all(tmp_path_factory.mktemp("tiny") / "models")


def test_comfyui_layout_merges_into_diffusers_as_comfyui_patches(trained, models_root):
    """Every weight delta the diffusers UNet gets equals the one ComfyUI's LoRA loader makes."""
    import copy

    from comfy_extras.nodes_train import LoraModelLoader
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load as st_load

    from soulid.backends.local import lora_layout

    stored = st_load(trained.soul.lora("sdxl").data)
    assert lora_layout.lora_layout(stored) == "comfyui"
    assert any(k.endswith(".diff_b") for k in stored) and any(k.endswith(".diff") for k in stored)
    model = trained.model
    before = {k: v.clone() for k, v in model.model.state_dict().items()}
    core = LoraModelLoader().load_lora_model(model=model, lora=trained.lora, strength_model=0.7)[0]
    core.patch_model()
    try:
        comfy_delta = {k[len("diffusion_model."):]: v.float() - before[k].float()
                       for k, v in core.model.state_dict().items() if k.startswith("diffusion_model.")}
    finally:
        core.unpatch_model()
    unet = UNet2DConditionModel.from_pretrained(models_root / "diffusers" / "tiny-sdxl", subfolder="unet")
    orig = copy.deepcopy(unet.state_dict())
    changed = lora_layout.merge_comfy_lora(unet, stored, scale=0.7)
    names = lora_layout.ldm_to_diffusers(unet.config, comfy_delta)
    after = unet.state_dict()
    compared = 0
    for ldm, d in comfy_delta.items():
        if not d.abs().max() > 0:
            continue
        dk = names[ldm]
        torch.testing.assert_close(after[dk] - orig[dk], d, rtol=1e-4, atol=1e-6, msg=f"{ldm} -> {dk}")
        compared += 1
    assert compared == changed > 50


def test_stored_comfyui_lora_drives_generate_backend_local(trained, models_root, faces, monkeypatch):
    from soulid.backends.base import GenerateRequest
    from soulid.backends.local import LocalBackend, pipelines

    monkeypatch.setenv("SOULID_MODELS_DIR", str(models_root))
    soul = tiny.soul_with_embeddings(faces)

    def gen(s):
        req = GenerateRequest("ohwx person, a portrait", soul=s, width=64, height=64, seed=3,
                              options={"method": "faceid_plusv2", "steps": 2})
        return LocalBackend(device="cpu").generate(req).images

    plain = gen(soul)
    stored = trained.soul.lora("sdxl")
    soul.attach_lora("sdxl", stored.data, stored.metadata)
    with_lora = gen(soul)
    pipelines.release()
    assert with_lora.shape == plain.shape and np.isfinite(with_lora).all()
    assert np.abs(with_lora - plain).max() > 0, "the ComfyUI-trained LoRA did not change the local image"


def test_unconvertible_layout_refused_with_what_to_do(models_root, faces, monkeypatch, tmp_path):
    from safetensors.torch import save

    from soulid.backends.base import GenerateRequest
    from soulid.backends.local import LocalBackend
    from soulid.backends.local.lora_layout import LoRALayoutError

    monkeypatch.setenv("SOULID_MODELS_DIR", str(models_root))
    soul = tiny.soul_with_embeddings(faces)
    # A ComfyUI-layout LoKr LoRA: not a LoRA/diff key the diffusers backend can apply.
    soul.attach_lora("sdxl", save({"diffusion_model.input_blocks.0.0.lokr_w1": torch.ones(2, 2)}), {})
    req = GenerateRequest("a portrait", soul=soul, width=64, height=64, seed=3,
                          options={"method": "faceid_plusv2", "steps": 1})
    with pytest.raises(LoRALayoutError, match=r"lokr_w1.*Soul ID Apply.*soulid train"):
        LocalBackend(device="cpu").generate(req)
