"""Persona LoRA nodes: Soul ID Apply and Soul ID Attach LoRA.

* ``SoulIDApply``: MODEL (+ optional CLIP) + SOUL_ID + strength -> the
  user's own MODEL (and CLIP) patched with the persona LoRA the Soul ID holds
  for that model's architecture, through ComfyUI's own
  ``comfy.sd.load_lora_for_models`` (which patches a clone: the input MODEL
  is left as it was, and LoRAs applied before or after stack as usual). The
  share of LoRA tensors that ComfyUI's key map matched, by name and by the
  shape of the weight each patches, is reported; below ``min_match`` the node
  refuses, since the LoRA belongs to another base (a same-named LoRA of a
  model of another width is named with both shapes).
* ``SoulIDAttachLoRA``: a LoRA trained in the graph (core ``TrainLoraNode``'s
  LORA_MODEL, a dict of tensors) stored in the Soul ID under the MODEL's
  architecture, with its trigger, steps and loss curve.

Architecture ids (:data:`soulid.soul.soulfile.LORA_ARCHITECTURES`) are read
from the MODEL's ComfyUI model config class (``comfy.supported_models``) via
:data:`COMFY_ARCHITECTURES`.
"""
from __future__ import annotations

import copy
import json
import time

from comfy_api.latest import io, ui

from ..soul.errors import SoulIDError
from .types import SOUL_ID_TIP, SoulIDType

CATEGORY = "Soul ID/native"
#: ComfyUI model config class (``comfy.supported_models``; ``type(model.model.model_config).__name__``)
#: -> soulid LoRA architecture id. One table: configs absent here have no persona LoRA id.
COMFY_ARCHITECTURES = {
    "SD15": "sd15", "SD15_instructpix2pix": "sd15",
    "SDXL": "sdxl", "SDXL_instructpix2pix": "sdxl",
    "SD3": "sd3",
    "Flux": "flux", "FluxInpaint": "flux", "FluxSchnell": "flux",
    "Flux2": "flux2",
    "QwenImage": "qwen_image",
    "WAN21_T2V": "wan21", "WAN21_I2V": "wan21", "WAN21_FunControl2V": "wan21", "WAN21_Vace": "wan21",
    "WAN21_Camera": "wan21", "WAN21_HuMo": "wan21",
    "WAN22_T2V": "wan22", "WAN22_S2V": "wan22", "WAN22_Camera": "wan22", "WAN22_Animate": "wan22",
    "HunyuanVideo": "hunyuan_video", "HunyuanVideoI2V": "hunyuan_video", "HunyuanVideoSkyreelsI2V": "hunyuan_video",
    "Lumina2": "lumina2",
}
#: Default share of LoRA tensors that must match the model.
MIN_MATCH = 0.9
#: Key prefixes of text-encoder LoRA tensors (not counted when no CLIP is connected).
_TEXT_ENCODER_PREFIXES = ("lora_te", "text_encoder", "te1.", "te2.", "lora_clip", "text_encoders.")


class PersonaLoRAError(SoulIDError):
    """The persona LoRA cannot be applied to this model (architecture, key match)."""


def model_architecture(model) -> tuple[str, str]:
    """``(soulid architecture id, ComfyUI config name)`` of a MODEL (ModelPatcher), from
    ``type(model.model.model_config)`` and its base classes through :data:`COMFY_ARCHITECTURES`.

    Raises:
        PersonaLoRAError: a config soulid has no persona-LoRA id for.
    """
    cls = type(model.model.model_config)
    config = cls.__name__
    # The nearest class in the table: a config subclassing a known one (a variant) maps like its parent;
    # the LoRA key match then tells whether the LoRA really fits.
    arch = next((COMFY_ARCHITECTURES[c.__name__] for c in cls.__mro__ if c.__name__ in COMFY_ARCHITECTURES), None)
    if arch is None:
        known = ", ".join(sorted(set(COMFY_ARCHITECTURES.values())))
        raise PersonaLoRAError(f"this MODEL is a {config} model, which soulid has no persona LoRA id for "
                               f"(supported: {known})")
    return arch, config


class _UseRecorder(dict):
    """A state dict that records which keys ComfyUI's LoRA loader read."""

    def __init__(self, *args):
        super().__init__(*args)
        self.used: set[str] = set()

    def __getitem__(self, key):
        value = super().__getitem__(key)
        self.used.add(key)
        return value

    def get(self, key, default=None):
        if key in self:
            self.used.add(key)
        return super().get(key, default)


def _shape(t) -> list[int]:
    return [int(d) for d in t.shape]


def _patch_shapes(patch) -> tuple[list[int] | None, object]:
    """``(shape the patch needs the weight to have, or None when unchecked; tensors it came from)``.

    A LoRA (``up @ down``) needs ``[up rows, down columns...]`` with the same element count
    per output row (ComfyUI reshapes to the weight's shape); a ``diff``/``set`` patch needs
    exactly its own shape. Other adapters (LoHa, LoKr, GLoRA, OFT, BOFT, Tucker LoRA) are
    counted by name only."""
    if isinstance(patch, tuple) and len(patch) == 2 and patch[0] in ("diff", "set"):
        return _shape(patch[1][0]), patch[1][0]
    name = getattr(patch, "name", None)
    w = getattr(patch, "weights", None)
    if name == "lora" and w is not None and w[3] is None:
        up, down, reshape = w[0], w[1], w[5]
        if reshape is not None:
            return [int(d) for d in reshape], up
        return [int(up.shape[0]), *_shape(down)[1:]], up
    return None, None


def _fits(need: list[int], have: list[int], lora_patch: bool) -> bool:
    if need == have:
        return True
    if not lora_patch or not have or need[0] != have[0]:
        return False
    per_row = 1
    for d in need[1:]:
        per_row *= d
    have_row = 1
    for d in have[1:]:
        have_row *= d
    return per_row == have_row  # a conv LoRA stored flat ([out, in*k*k]) reshapes to the weight


def lora_key_match(model, clip, lora_sd: dict) -> dict:
    """How many of a LoRA's tensors ComfyUI's key map applies to ``model`` (and ``clip``),
    by name and by shape.

    Uses ``comfy.lora.model_lora_keys_unet`` / ``model_lora_keys_clip`` and
    ``comfy.lora.load_lora`` exactly as ``comfy.sd.load_lora_for_models`` does,
    recording which tensors were read; then checks each patch against the
    shape of the weight it targets (ComfyUI itself only logs a shape mismatch
    and skips the patch, so a LoRA of a wider model with the same key names
    would otherwise count as matched and change nothing). Without ``clip``,
    text-encoder tensors are left out of the count.

    Returns:
        ``{"matched" (names and shapes fit), "total", "fraction" (0..1),
        "text_encoder_skipped", "unmatched" (up to 5 keys), "shape_mismatch"
        (count), "shape_examples" (up to 3 ``{"lora_key", "lora_shape",
        "model_key", "model_shape"}``)}``.
    """
    import comfy.lora
    import comfy.lora_convert

    key_map = comfy.lora.model_lora_keys_unet(model.model, {})
    shapes = {k: _shape(v) for k, v in model.model.state_dict().items()}
    if clip is not None:
        key_map = comfy.lora.model_lora_keys_clip(clip.cond_stage_model, key_map)
        shapes.update({k: _shape(v) for k, v in clip.cond_stage_model.state_dict().items()})
    rec = _UseRecorder(comfy.lora_convert.convert_lora(dict(lora_sd)))
    patches = comfy.lora.load_lora(rec, key_map, log_missing=False)
    by_tensor = {id(v): k for k, v in rec.items()}
    wrong: set[str] = set()
    examples = []
    for target, patch in patches.items():
        key, offset = (target[0], target[1]) if isinstance(target, tuple) else (target, None)
        have = shapes.get(key)
        need, src = _patch_shapes(patch)
        if have is None or need is None:
            continue
        if offset is not None:  # a slice of a fused weight (dim, start, length)
            have = list(have)
            have[offset[0]] = int(offset[2])
        if _fits(need, have, lora_patch=not isinstance(patch, tuple)):
            continue
        keys = set(getattr(patch, "loaded_keys", None) or ()) or {by_tensor.get(id(src), key)}
        wrong |= {k for k in keys if k in rec}
        wrong |= {k.rsplit(".lora", 1)[0] + ".alpha" for k in keys if ".lora" in k} & set(rec)
        if len(examples) < 3:
            examples.append({"lora_key": by_tensor.get(id(src), sorted(keys)[0]), "lora_shape": need,
                             "model_key": key, "model_shape": have})
    keys = list(rec.keys())
    te = [k for k in keys if clip is None and k.startswith(_TEXT_ENCODER_PREFIXES)]
    counted = [k for k in keys if k not in te]
    matched = [k for k in counted if k in rec.used and k not in wrong]
    return {
        "matched": len(matched),
        "total": len(counted),
        "fraction": len(matched) / len(counted) if counted else 0.0,
        "text_encoder_skipped": len(te),
        "unmatched": [k for k in counted if k not in rec.used][:5],
        "shape_mismatch": len([k for k in counted if k in wrong]),
        "shape_examples": examples,
    }


def apply_persona_lora(model, clip, soul, strength_model: float = 1.0, strength_clip: float = 1.0,
                       min_match: float = MIN_MATCH):
    """Patch clones of ``model`` (and ``clip``) with the Soul ID's LoRA for the model's architecture.

    Returns:
        ``(model, clip or None, report dict)``.

    Raises:
        SoulFileError: the Soul ID has no LoRA for this architecture (names the ones it has
            and how to train one).
        PersonaLoRAError: unknown architecture; the LoRA has only text-encoder tensors and
            no CLIP is connected; or fewer than ``min_match`` of the LoRA's tensors match
            this model by name and shape (the message names both shapes of a mismatch).
    """
    import comfy.sd
    from safetensors.torch import load as st_load

    arch, config = model_architecture(model)
    lora = soul.lora(arch)
    sd = st_load(lora.data)  # checked by soulid.soul.lorafile when it was stored or read
    match = lora_key_match(model, clip, sd)
    report = {"soul": soul.name, "arch": arch, "comfy_config": config, "lora_sha256": lora.sha256,
              "strength_model": strength_model, "strength_clip": strength_clip if clip is not None else None,
              **match}
    if match["total"] == 0:
        raise PersonaLoRAError(
            f"Soul ID {soul.name!r}: its {arch} persona LoRA holds only text-encoder tensors "
            f"({match['text_encoder_skipped']}); connect the CLIP input of Soul ID Apply")
    if match["fraction"] < min_match:
        why = f"Unmatched, e.g.: {', '.join(match['unmatched'])}" if match["unmatched"] else ""
        if match["shape_examples"]:
            e = match["shape_examples"][0]
            why = (f"{match['shape_mismatch']} tensors have the right names but the wrong shapes, e.g. "
                   f"{e['lora_key']!r} is for a weight of shape {e['lora_shape']}, but this model's "
                   f"{e['model_key']!r} is {e['model_shape']} (a LoRA of a model of another size)"
                   + (f". {why}" if why else ""))
        raise PersonaLoRAError(
            f"Soul ID {soul.name!r}: only {match['matched']} of {match['total']} LoRA tensors "
            f"({match['fraction']:.0%}) match this {config} model (need {min_match:.0%}): the LoRA stored "
            f"as {arch!r} belongs to another base model. {why}")
    new_model, new_clip = comfy.sd.load_lora_for_models(model, clip, sd, strength_model, strength_clip)
    return new_model, new_clip, report


def _summary(report: dict) -> str:
    s = (f"{report['soul']}: persona LoRA for {report['arch']} ({report['comfy_config']}), "
         f"{report['matched']}/{report['total']} tensors matched ({report['fraction']:.0%})")
    if report.get("text_encoder_skipped"):
        s += f"; {report['text_encoder_skipped']} text-encoder tensors not applied (connect CLIP)"
    return s


class SoulIDApply(io.ComfyNode):
    """Apply the Soul ID's persona LoRA to your own MODEL (and CLIP), via ComfyUI's LoRA loader on a clone."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SoulIDApply",
            display_name="Soul ID Apply (persona LoRA)",
            category=CATEGORY,
            description="Patches the MODEL (and CLIP when connected) with the persona LoRA the Soul ID holds for "
                        "this model's architecture, like Load LoRA. Refuses a LoRA whose tensors do not match "
                        "the model (it belongs to another base). Train one with the soul_id_train_lora workflow "
                        "or `soulid train`, or attach a file with `soulid lora attach`.",
            inputs=[
                io.Model.Input(id="model", tooltip="Your diffusion model (checkpoint / UNet loader output)."),
                SoulIDType.Input(id="soul_id", tooltip=SOUL_ID_TIP),
                io.Float.Input(id="strength_model", default=1.0, min=-4.0, max=4.0, step=0.05,
                               tooltip="LoRA strength on the diffusion model (1 = as trained)."),
                io.Clip.Input(id="clip", optional=True, tooltip="Also patch the text encoder when the LoRA has "
                                                               "text-encoder weights."),
                io.Float.Input(id="strength_clip", default=1.0, min=-4.0, max=4.0, step=0.05,
                               tooltip="LoRA strength on the text encoder (used only with clip connected)."),
                io.Float.Input(id="min_match", default=MIN_MATCH, min=0.0, max=1.0, step=0.01,
                               tooltip="Refuse when a smaller share of the LoRA's tensors match this model."),
            ],
            outputs=[
                io.Model.Output(id="model_out", display_name="model + persona LoRA"),
                io.Clip.Output(id="clip_out", display_name="clip + persona LoRA"),
                io.String.Output(id="report", display_name="LoRA key match (JSON)",
                                 tooltip="Architecture and key match (JSON)."),
            ],
        )

    @classmethod
    def execute(cls, model, soul_id, strength_model, strength_clip, min_match, clip=None) -> io.NodeOutput:
        new_model, new_clip, report = apply_persona_lora(model, clip, soul_id, strength_model, strength_clip,
                                                         min_match)
        return io.NodeOutput(new_model, new_clip, json.dumps(report),
                             ui=ui.PreviewText(value=_summary(report)))


def _loss_curve(loss) -> list[float]:
    values = (loss or {}).get("loss", []) if isinstance(loss, dict) else []
    return [float(v) for v in values]


def attach_trained_lora(soul, lora_sd: dict, model, trigger: str, steps: int | None = None, loss=None):
    """A copy of ``soul`` with ``lora_sd`` stored under the MODEL's architecture.

    Returns:
        ``(new Soul ID, PersonaLoRA)``; the input Soul ID is not changed.

    Raises:
        PersonaLoRAError: unknown architecture or an empty LoRA.
    """
    from safetensors.torch import save as st_save

    if not lora_sd:
        raise PersonaLoRAError("Soul ID Attach LoRA: the LoRA is empty (connect TrainLoraNode's lora output)")
    arch, config = model_architecture(model)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in lora_sd.items()}
    curve = _loss_curve(loss)
    ranks = [int(v.shape[0]) for k, v in tensors.items() if k.endswith((".lora_down.weight", ".lora_A.weight"))]
    metadata = {
        "base_model": config, "comfy_model_type": str(getattr(model.model, "model_type", "")), "arch": arch,
        "rank": max(ranks) if ranks else None, "steps": int(steps) if steps is not None else None,
        "trigger": trigger, "final_loss": curve[-1] if curve else None, "loss_curve": curve,
        "source": "trained", "trainer": "comfyui TrainLoraNode", "attached": time.time(),
    }
    metadata = {k: v for k, v in metadata.items() if v is not None}
    new = copy.copy(soul)
    new.loras = dict(soul.loras)
    lora = new.attach_lora(arch, st_save(tensors, metadata={"soulid_arch": arch, "trigger": trigger}), metadata)
    return new, lora


class SoulIDAttachLoRA(io.ComfyNode):
    """Store a LoRA trained in the graph (TrainLoraNode) in the Soul ID, under the MODEL's architecture."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SoulIDAttachLoRA",
            display_name="Soul ID Attach LoRA",
            category=CATEGORY,
            description="Stores a trained LoRA (core Train LoRA's lora output) in the Soul ID as its persona LoRA "
                        "for the MODEL's architecture, with the trigger, steps and loss curve. Save the Soul ID "
                        "afterwards (Soul ID Save) to keep it.",
            inputs=[
                SoulIDType.Input(id="soul_id", tooltip=SOUL_ID_TIP),
                io.LoraModel.Input(id="lora", tooltip="LORA_MODEL from Train LoRA."),
                io.Model.Input(id="model", tooltip="The MODEL it was trained on (its architecture is recorded)."),
                io.String.Input(id="trigger", default="ohwx person", tooltip="Trigger words used in the captions."),
                io.Int.Input(id="steps", optional=True, min=0, max=10_000_000, force_input=True,
                             tooltip="Training steps (Train LoRA's steps output)."),
                io.LossMap.Input(id="loss", optional=True, tooltip="Train LoRA's loss output (the curve is stored)."),
            ],
            outputs=[SoulIDType.Output(id="soul_id_out", display_name="soul_id",
                                       tooltip="The Soul ID with the persona LoRA (save it with Soul ID Save).")],
        )

    @classmethod
    def execute(cls, soul_id, lora, model, trigger, steps=None, loss=None) -> io.NodeOutput:
        new, stored = attach_trained_lora(soul_id, lora, model, trigger, steps, loss)
        md = stored.metadata
        text = (f"{new.name}: persona LoRA for {stored.arch} stored ({len(stored.data) / 1e6:.1f} MB, "
                f"rank {md.get('rank')}, steps {md.get('steps')}, final loss {md.get('final_loss')})")
        return io.NodeOutput(new, ui=ui.PreviewText(value=text))


NODES = [SoulIDApply, SoulIDAttachLoRA]
