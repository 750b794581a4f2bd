"""Soul ID Cast Guard and Soul ID Hook nodes.

* ``SoulIDCastGuard``: two or three Soul IDs + an IMAGE batch (generated
  candidates, or a clip's frames) -> every face assigned to its Soul ID and
  checked against that Soul ID's own threshold (:mod:`soulid.soul.cast_guard`).
  Outputs per-character face MASKs ``[B, H, W]`` (the face the matching gave
  each character, passed or not, so an inpaint pass can repair only the face
  that drifted), the image where every member passes (pick best), and the
  report.
* ``SoulIDHook``: a Soul ID's stored persona LoRA -> ComfyUI HOOKS through
  ``comfy.hooks.create_hook_lora``, exactly as core ``CreateHookLora`` does
  with a file; with core ``ConditioningSetProperties`` (mask + hooks) two
  persona LoRAs share one image, each on its own region.
"""
from __future__ import annotations

import json

import numpy as np
import torch
from comfy_api.latest import io, ui

from ..soul import cast_guard
from ..soul.soulfile import LORA_ARCHITECTURES
from .comfy_progress import comfy_hooks
from .convert import image_to_uint8_list
from .types import SoulIDType

CATEGORY = "Soul ID/guard"
MEMBERS = 3


class SoulIDCastGuard(io.ComfyNode):
    """Check every face of a multi-person image against its own Soul ID."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SoulIDCastGuard",
            display_name="Soul ID Cast Guard",
            category=CATEGORY,
            description="Several people in one image: finds every face, gives each face to one Soul ID by an "
                        "optimal matching on cosine similarity, and checks it against that Soul ID's own "
                        "threshold. Reports missing characters, unknown faces, identity confusion (a face that "
                        "is another member's) and copy-paste (a face closer to one reference photo than to the "
                        "person). Masks of each character's face feed an inpaint pass that repairs only that "
                        "face. All Soul IDs must share an analyzer.",
            inputs=[
                SoulIDType.Input(id="soul_id_1", tooltip="First character."),
                SoulIDType.Input(id="soul_id_2", optional=True, tooltip="Second character."),
                SoulIDType.Input(id="soul_id_3", optional=True, tooltip="Third character."),
                io.Image.Input(id="images", tooltip="Images to check [B, H, W, 3]: a batch of candidates, or "
                                                    "a clip's frames."),
                io.Float.Input(id="mask_grow", default=0.15, min=0.0, max=1.0, step=0.05,
                               tooltip="Grow each face box by this share of its size on every side."),
                io.Combo.Input(id="on_fail", options=["return_best", "error"], default="return_best",
                               tooltip="When no image has every character passing: return the best anyway "
                                       "(passed = false), or stop the run."),
            ],
            outputs=[
                io.Image.Output(id="best_image", display_name="best image",
                                tooltip="The image where every character passes with the highest lowest "
                                        "similarity [1, H, W, 3] (else the one with fewest missing)."),
                io.Mask.Output(id="mask_1", display_name="face mask 1",
                               tooltip="Character 1's face in every image [B, H, W] (1 inside the box)."),
                io.Mask.Output(id="mask_2", display_name="face mask 2", tooltip="Character 2's face [B, H, W]."),
                io.Mask.Output(id="mask_3", display_name="face mask 3", tooltip="Character 3's face [B, H, W]."),
                io.Boolean.Output(id="passed", display_name="passed",
                                  tooltip="Every character passes in the best image."),
                io.Int.Output(id="index", display_name="best index", tooltip="The best image's position."),
                io.String.Output(id="report", display_name="report (JSON)",
                                 tooltip="Per image: faces (box, Soul ID, similarity, runner-up, copy-paste), "
                                         "missing, unknown faces, confusions; per character: its similarity "
                                         "in each image, the minimum and the worst image."),
            ],
        )

    @classmethod
    def execute(cls, soul_id_1, images, mask_grow, on_fail, soul_id_2=None, soul_id_3=None) -> io.NodeOutput:
        souls = [s for s in (soul_id_1, soul_id_2, soul_id_3) if s is not None]
        cast = cast_guard.Cast(souls)
        frames = image_to_uint8_list(images)
        # Frames of a batch (a clip's frames too) are checked like a clip: per character the similarity of
        # each image, its minimum and the worst image (time = index; connect a video's frames in order).
        progress, interrupt = comfy_hooks()
        clip = cast_guard.check_cast_frames(cast, frames, list(range(len(frames))), "batch", progress, interrupt)
        reps = clip.frames
        for i, r in enumerate(reps):
            r.label, r.time = f"image {i}", None
        masks = np.zeros((MEMBERS, len(frames), *frames[0].shape[:2]), np.float32)
        for b, r in enumerate(reps):
            masks[: len(souls), b] = cast_guard.face_masks(r, cast.names, mask_grow)
        best = cast_guard.pick_best(reps)
        passed = best is not None
        if best is None:
            if on_fail == "error":
                raise cast_guard.CastGuardError("Cast Guard: no image has every character passing\n"
                                                + "\n".join(r.text() for r in reps))
            best = min(range(len(reps)), key=lambda i: (len(reps[i].missing), len(reps[i].confusions)))
        text = "\n".join(r.text() for r in reps)
        chars = {k: {"similarities": [None if x is None else round(x, 4) for x in v["similarities"]],
                     "minimum": None if v["minimum"] is None else round(v["minimum"], 4),
                     "worst_index": int(v["worst_time"]), "passed": v["passed"]}
                 for k, v in clip.characters.items()}
        report = json.dumps({"souls": cast.names, "analyzer": cast.analyzer.name, "best": best,
                             "characters": chars, "images": [r.as_dict() for r in reps]})
        m = torch.from_numpy(masks)
        return io.NodeOutput(images[best][None], m[0], m[1], m[2], passed, int(best), report,
                             ui=ui.PreviewText(value=text))


class SoulIDHook(io.ComfyNode):
    """A Soul ID's persona LoRA as ComfyUI HOOKS (like Create Hook LoRA)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SoulIDHook",
            display_name="Soul ID Hook (persona LoRA)",
            category=CATEGORY,
            description="Turns the persona LoRA stored in the Soul ID into HOOKS, like core Create Hook LoRA does "
                        "with a file. Put the hooks and a region MASK on a conditioning with Cond Set Props: each "
                        "character's LoRA then acts only on its own region, so two personas share one image.",
            inputs=[
                SoulIDType.Input(id="soul_id", tooltip="The Soul ID whose persona LoRA to use."),
                io.Combo.Input(id="architecture", options=["auto", *LORA_ARCHITECTURES], default="auto",
                               tooltip="Which stored LoRA: auto takes the only one the Soul ID has."),
                io.Float.Input(id="strength_model", default=1.0, min=-20.0, max=20.0, step=0.01,
                               tooltip="LoRA strength on the diffusion model."),
                io.Float.Input(id="strength_clip", default=1.0, min=-20.0, max=20.0, step=0.01,
                               tooltip="LoRA strength on the text encoder (when the LoRA has its weights)."),
                io.Hooks.Input(id="prev_hooks", optional=True, tooltip="Hooks to combine with."),
            ],
            outputs=[io.Hooks.Output(id="hooks", display_name="hooks", tooltip="The persona LoRA as HOOKS.")],
        )

    @classmethod
    def execute(cls, soul_id, architecture, strength_model, strength_clip, prev_hooks=None) -> io.NodeOutput:
        import comfy.hooks
        from safetensors.torch import load as st_load

        prev = comfy.hooks.HookGroup() if prev_hooks is None else prev_hooks
        if strength_model == 0 and strength_clip == 0:
            return io.NodeOutput(prev.clone())
        if architecture == "auto":
            if len(soul_id.loras) != 1:
                have = ", ".join(sorted(soul_id.loras)) or "none"
                raise cast_guard.CastGuardError(
                    f"Soul ID {soul_id.name!r} holds {len(soul_id.loras)} persona LoRAs ({have}): pick the "
                    "architecture" if soul_id.loras else
                    f"Soul ID {soul_id.name!r} has no persona LoRA: train one (soul_id_train_lora workflow, "
                    "`soulid train`) or attach a file with `soulid lora attach`")
            architecture = next(iter(soul_id.loras))
        lora = st_load(soul_id.lora(architecture).data)
        hooks = comfy.hooks.create_hook_lora(lora=lora, strength_model=strength_model, strength_clip=strength_clip)
        return io.NodeOutput(prev.clone_and_combine(hooks),
                             ui=ui.PreviewText(value=f"{soul_id.name}: persona LoRA ({architecture}) as hooks"))


NODES = [SoulIDCastGuard, SoulIDHook]
