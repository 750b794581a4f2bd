"""Soul ID Cast Guard and Soul ID Hook, in-process with ComfyUI (``$COMFYUI_PATH``).

The Cast Guard runs on composites of the real fixture photos; the Hook node
turns two Soul IDs' persona LoRAs into HOOKS, core ``ConditioningSetProperties``
puts each on one half of the image, and one sampling step of a tiny in-memory
ComfyUI SDXL (:mod:`comfy_inprocess`) shows that each LoRA changes only its own
region.
"""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from comfy_inprocess import comfy_modules, kohya_lora, need_comfy, tiny_model
from soulid.soul.create import create_soul_id
from test_cast_guard import composite

need_comfy()
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def cui():
    with comfy_modules():
        import comfy.hooks
        import comfy.sample
        from comfy_extras.nodes_hooks import ConditioningSetProperties

        from soulid.nodes import cast_guard as nodes

        yield type("CUI", (), {"nodes": nodes, "hooks": comfy.hooks, "sample": comfy.sample,
                               "set_props": ConditioningSetProperties})


@pytest.fixture(scope="module")
def souls(faces):
    obama = create_soul_id([faces / "obama" / n for n in ("obama.jpg", "obama2.jpg", "obama-720p.jpg")], "obama",
                           analyzer="dlib", workers=1).soul
    biden = create_soul_id([faces / "biden"], "biden", analyzer="dlib", workers=1).soul
    return obama, biden


def _batch(faces, scenes) -> torch.Tensor:
    imgs = [composite(faces, rels, 420, 1520) for rels in scenes]
    return torch.from_numpy(np.stack(imgs).astype(np.float32) / 255.0)


def test_cast_guard_node_masks_and_pick_best(cui, souls, faces):
    obama, biden = souls
    images = _batch(faces, [("obama/obama4.jpg", "kit_harington/kit2.jpeg"),  # biden replaced by a stranger
                            ("biden/biden2.jpg", "obama/obama3.jpg")])  # both, swapped order
    out = cui.nodes.SoulIDCastGuard.execute(soul_id_1=obama, soul_id_2=biden, images=images, mask_grow=0.1,
                                            on_fail="return_best")
    best, m1, m2, m3, passed, index, report = out.args
    assert passed and index == 1 and torch.equal(best[0], images[1])
    B, H, W = images.shape[:3]
    for m in (m1, m2, m3):
        assert m.shape == (B, H, W) and m.dtype == torch.float32
    assert m3.sum() == 0  # no third character
    rep = json.loads(report)
    assert rep["souls"] == ["obama", "biden"] and rep["analyzer"] == "dlib"
    first, second = rep["images"]
    biden_sims = rep["characters"]["biden"]["similarities"]
    assert rep["characters"]["biden"]["worst_index"] == 0 and biden_sims[0] < biden_sims[1]
    assert rep["characters"]["biden"]["minimum"] == biden_sims[0] and not rep["characters"]["biden"]["passed"]
    assert rep["characters"]["obama"]["passed"]
    assert first["missing"] == ["biden"] and first["unknown_faces"] == 1 and not first["passed"]
    assert [f["soul"] for f in second["faces"]] == ["biden", "obama"] and second["passed"]
    # masks sit on each character's face: in image 1 biden is on the left, obama on the right
    (ob,) = [f for f in second["faces"] if f["soul"] == "obama"]
    cx, cy = int((ob["box"][0] + ob["box"][2]) / 2), int((ob["box"][1] + ob["box"][3]) / 2)
    assert m1[1, cy, cx] == 1 and m2[1, cy, cx] == 0
    (bi,) = [f for f in second["faces"] if f["soul"] == "biden"]
    bx, by = int((bi["box"][0] + bi["box"][2]) / 2), int((bi["box"][1] + bi["box"][3]) / 2)
    assert m2[1, by, bx] == 1 and m1[1, by, bx] == 0
    assert (m1[1] * m2[1]).sum() == 0 and 0 < m1[1].sum() < H * W / 4
    # in image 0 the stranger's face is biden's mask: the face an inpaint pass should repair
    kit = first["faces"][1]
    assert kit["soul"] is None and kit["candidate"] == "biden"
    kx, ky = int((kit["box"][0] + kit["box"][2]) / 2), int((kit["box"][1] + kit["box"][3]) / 2)
    assert m2[0, ky, kx] == 1 and m1[0, ky, kx] == 0

    with pytest.raises(Exception, match="no image has every character passing"):
        cui.nodes.SoulIDCastGuard.execute(soul_id_1=obama, soul_id_2=biden, images=images[:1], mask_grow=0.1,
                                          on_fail="error")


def _with_lora(soul, name, model, seed):
    from safetensors.torch import save

    s = copy.deepcopy(soul)
    s.name = name
    s.attach_lora("sdxl", save({k: v.contiguous() for k, v in kohya_lora(model, seed=seed).items()}), {"source": "test"})
    return s


def test_hook_loras_change_only_their_masked_region(cui, souls):
    model = tiny_model("sdxl")
    anna = _with_lora(souls[0], "anna", model, 1)
    bob = _with_lora(souls[1], "bob", model, 2)
    hook = cui.nodes.SoulIDHook.execute
    ha = hook(soul_id=anna, architecture="auto", strength_model=1.0, strength_clip=1.0).args[0]
    hb = hook(soul_id=bob, architecture="sdxl", strength_model=1.0, strength_clip=1.0).args[0]
    assert isinstance(ha, cui.hooks.HookGroup) and len(ha.hooks) == 1
    assert len(hook(soul_id=bob, architecture="auto", strength_model=1.0, strength_clip=1.0,
                    prev_hooks=ha).args[0].hooks) == 2

    g = torch.Generator().manual_seed(0)
    cond = [[torch.randn(1, 4, 64, generator=g), {"pooled_output": torch.randn(1, 1280, generator=g),
                                                  "width": 64, "height": 64}]]
    H = W = 8
    left = torch.zeros(1, H, W)
    left[..., : W // 2] = 1
    right = 1 - left

    def one_step(hooks_left, hooks_right):
        props = cui.set_props()
        pos = (props.set_properties(cond, 1.0, "default", mask=left, hooks=hooks_left)[0]
               + props.set_properties(cond, 1.0, "default", mask=right, hooks=hooks_right)[0])
        noise = torch.randn(1, 4, H, W, generator=torch.Generator().manual_seed(1))
        return cui.sample.sample(model, noise, 1, 1.0, "euler", "normal", pos, cond, torch.zeros(1, 4, H, W),
                                 seed=1, disable_pbar=True)

    plain = one_step(None, None)
    a = one_step(ha, None)
    ab = one_step(ha, hb)
    d_a, d_b = (a - plain).abs(), (ab - a).abs()
    # anna's LoRA changes the left half only, bob's the right half only
    assert d_a[..., : W // 2].max() > 0.1 and d_a[..., W // 2:].max() < 1e-3
    assert d_b[..., W // 2:].max() > 0.1 and d_b[..., : W // 2].max() < 1e-3
    assert model.patches == {}  # the hooks never patched the shared MODEL itself

    # a Soul ID without a LoRA, or with several and no choice, is refused with the reason
    with pytest.raises(Exception, match="has no persona LoRA"):
        hook(soul_id=souls[0], architecture="auto", strength_model=1.0, strength_clip=1.0)
    two = copy.deepcopy(anna)
    two.attach_lora("sd15", anna.lora("sdxl").data, {"source": "test"})
    with pytest.raises(Exception, match="pick the architecture"):
        hook(soul_id=two, architecture="auto", strength_model=1.0, strength_clip=1.0)
