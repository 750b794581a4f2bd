"""Soul ID Apply and Soul ID Attach LoRA, in-process on tiny ComfyUI models built in memory.

Needs ComfyUI (``$COMFYUI_PATH``); skipped otherwise, saying why. The models
are ComfyUI's own SDXL / SD1.5 classes with a tiny random UNet
(:mod:`comfy_inprocess`), and the LoRA goes through ComfyUI's own loader.
"""
from __future__ import annotations

import json
import re

import pytest

from comfy_inprocess import comfy_modules, kohya_lora, need_comfy, tiny_model, unet_output
from soulid.soul.errors import SoulFileError
from soulid.soul.soulfile import SoulID

need_comfy()
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def cui():
    with comfy_modules():
        import comfy.sd

        from soulid.nodes import lora as lora_nodes

        yield type("CUI", (), {"sd": comfy.sd, "nodes": lora_nodes})


def _st(sd: dict) -> bytes:
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in sd.items()})


@pytest.fixture(scope="module")
def base_soul(faces) -> SoulID:
    from soulid.soul.create import create_soul_id

    return create_soul_id([faces / "obama" / "obama.jpg"], "anna", analyzer="dlib", workers=1).soul


@pytest.fixture
def make_soul(base_soul):
    """A Soul ID (one real photo) holding the given LoRAs: ``make_soul(sdxl=state_dict)``."""
    import copy

    def make(**loras) -> SoulID:
        s = copy.deepcopy(base_soul)
        for arch, sd in loras.items():
            s.attach_lora(arch, _st(sd), {"source": "test"})
        return s

    return make


def test_architecture_is_read_from_the_model(cui):
    assert cui.nodes.model_architecture(tiny_model("sdxl")) == ("sdxl", "SDXL")
    assert cui.nodes.model_architecture(tiny_model("sd15")) == ("sd15", "SD15")


def test_apply_matching_lora_changes_output_on_a_clone(cui, make_soul):
    model = tiny_model("sdxl")
    base = unet_output(model)
    soul = make_soul(sdxl=kohya_lora(model))
    out = cui.nodes.SoulIDApply.execute(model=model, soul_id=soul, strength_model=1.0, strength_clip=1.0,
                                        min_match=0.9)
    patched, clip, report = out.args
    rep = json.loads(report)
    assert rep["arch"] == "sdxl" and rep["matched"] == rep["total"] > 0 and rep["fraction"] == 1.0
    assert clip is None
    assert patched is not model and len(patched.patches) == rep["total"] // 3  # up, down, alpha per module
    assert not (unet_output(patched) - base).abs().max() < 1e-4, "the persona LoRA did not change the output"
    # The input MODEL is left unpatched: no patches, same output as before.
    assert model.patches == {}
    assert torch.equal(unet_output(model), base)
    # Strength 0 is the identity.
    zero = cui.nodes.SoulIDApply.execute(model=model, soul_id=soul, strength_model=0.0, strength_clip=1.0,
                                         min_match=0.9).args[0]
    assert torch.allclose(unet_output(zero), base, atol=1e-6)


def test_lora_of_another_base_is_refused_with_the_reason(cui, make_soul):
    sdxl, sd15 = tiny_model("sdxl"), tiny_model("sd15")
    # An SD1.5 LoRA stored (by mistake) as the Soul ID's SDXL LoRA.
    soul = make_soul(sdxl=kohya_lora(sd15))
    with pytest.raises(cui.nodes.PersonaLoRAError, match=r"belongs to another base model") as e:
        cui.nodes.SoulIDApply.execute(model=sdxl, soul_id=soul, strength_model=1.0, strength_clip=1.0,
                                      min_match=0.9)
    assert "match this SDXL model" in str(e.value)
    assert sdxl.patches == {}


def test_soul_id_without_a_lora_for_the_architecture_says_what_it_has(cui, make_soul):
    soul = make_soul(sd15=kohya_lora(tiny_model("sd15")))
    with pytest.raises(SoulFileError) as e:
        cui.nodes.SoulIDApply.execute(model=tiny_model("sdxl"), soul_id=soul, strength_model=1.0,
                                      strength_clip=1.0, min_match=0.9)
    msg = str(e.value)
    assert "no persona LoRA for 'sdxl'" in msg and "has: sd15" in msg and "soulid train" in msg


@pytest.mark.parametrize("order", ["before", "after"])
def test_other_loras_applied_before_or_after_still_apply(cui, make_soul, order):
    model = tiny_model("sdxl")
    persona = kohya_lora(model, seed=1)
    other = kohya_lora(model, seed=7, scale=0.3)
    soul = make_soul(sdxl=persona)

    def apply_persona(m):
        return cui.nodes.SoulIDApply.execute(model=m, soul_id=soul, strength_model=1.0, strength_clip=1.0,
                                             min_match=0.9).args[0]

    def apply_other(m):
        return cui.sd.load_lora_for_models(m, None, other, 1.0, 0.0)[0]

    both = apply_other(apply_persona(model)) if order == "after" else apply_persona(apply_other(model))
    # Every patched weight carries both LoRAs.
    assert all(len(v) == 2 for v in both.patches.values()), {k: len(v) for k, v in both.patches.items()}
    out_both = unet_output(both)
    for single in (apply_persona(model), apply_other(model)):
        assert (unet_output(single) - out_both).abs().max() > 1e-4
    assert model.patches == {}


def test_schemas_keep_the_training_workflow_contract(cui):
    """Soul ID Attach LoRA: soul_id, lora (LORA_MODEL), model, trigger, optional steps / loss -> soul_id."""
    info = cui.nodes.SoulIDAttachLoRA.GET_NODE_INFO_V1()
    assert info["input"]["required"]["soul_id"][0] == "SOUL_ID"
    assert info["input"]["required"]["lora"][0] == "LORA_MODEL"
    assert info["input"]["required"]["model"][0] == "MODEL"
    assert info["input"]["required"]["trigger"][0] == "STRING"
    assert info["input"]["optional"]["steps"][0] == "INT" and info["input"]["optional"]["loss"][0] == "LOSS_MAP"
    assert info["output"] == ["SOUL_ID"] and info["output_name"] == ["soul_id"]
    apply = cui.nodes.SoulIDApply.GET_NODE_INFO_V1()
    assert apply["output"] == ["MODEL", "CLIP", "STRING"] and apply["input"]["optional"]["clip"][0] == "CLIP"


def test_attach_lora_stores_the_trained_lora_under_the_model_architecture(cui, make_soul):
    model = tiny_model("sdxl")
    trained = kohya_lora(model, seed=3)
    soul = make_soul()
    loss = {"loss": [torch.tensor(0.9), torch.tensor(0.5), torch.tensor(0.3)]}
    new = cui.nodes.SoulIDAttachLoRA.execute(soul_id=soul, lora=trained, model=model, trigger="ohwx anna",
                                             steps=30, loss=loss).args[0]
    assert soul.loras == {}, "the input Soul ID was changed"
    stored = new.lora("sdxl")
    md = stored.metadata
    assert md["trigger"] == "ohwx anna" and md["steps"] == 30 and md["rank"] == 4
    assert md["loss_curve"] == pytest.approx([0.9, 0.5, 0.3]) and md["final_loss"] == pytest.approx(0.3)
    # It survives a save / load and then applies with every key matched.
    back = SoulID.from_bytes(new.to_bytes())
    rep = json.loads(cui.nodes.SoulIDApply.execute(model=model, soul_id=back, strength_model=1.0,
                                                   strength_clip=1.0, min_match=1.0).args[2])
    assert rep["fraction"] == 1.0


def test_same_named_lora_of_a_twice_as_wide_model_is_refused_with_both_shapes(cui, make_soul):
    narrow, wide = tiny_model("sdxl"), tiny_model("sdxl", width=64)
    lora = kohya_lora(wide)
    assert set(lora) == set(kohya_lora(narrow)), "the test needs the same key names"
    soul = make_soul(sdxl=lora)
    with pytest.raises(cui.nodes.PersonaLoRAError) as e:
        cui.nodes.SoulIDApply.execute(model=narrow, soul_id=soul, strength_model=1.0, strength_clip=1.0,
                                      min_match=0.9)
    msg = str(e.value)
    assert "only 0 of" in msg and "wrong shapes" in msg, msg
    m = re.search(r"for a weight of shape \[(\d+), (\d+)\], but this model's '([^']+)' is \[(\d+), (\d+)\]", msg)
    assert m, msg
    lora_shape, model_shape = [int(m[1]), int(m[2])], [int(m[4]), int(m[5])]
    assert lora_shape == list(wide.model.state_dict()[m[3]].shape)
    assert model_shape == list(narrow.model.state_dict()[m[3]].shape) and lora_shape != model_shape
    assert narrow.patches == {}
    # The wide model itself takes it.
    rep = json.loads(cui.nodes.SoulIDApply.execute(model=wide, soul_id=soul, strength_model=1.0, strength_clip=1.0,
                                                   min_match=1.0).args[2])
    assert rep["fraction"] == 1.0 and rep["shape_mismatch"] == 0
