"""Where the local pipelines find their model files.

Search order for every kind of file is :func:`soulid.soul.paths.models_dirs`
(``$SOULID_MODELS_DIR/<kind>``, then ComfyUI's registered folders, then
``<ComfyUI>/models/<kind>``), so a ComfyUI install and the CLI share one copy.

Layout (ComfyUI names; see the README, "Local models", for download sources and licences)::

    models/diffusers/<name>/model_index.json        SDXL base, diffusers layout
    models/checkpoints/<name>.safetensors           or a single-file SDXL checkpoint
    models/ipadapter/ip-adapter-faceid-plusv2_sdxl.bin            faceid_plusv2
    models/loras/ip-adapter-faceid-plusv2_sdxl_lora.safetensors   faceid_plusv2 (paired LoRA, optional)
    models/clip_vision/CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors faceid_plusv2
    models/instantid/ip-adapter.bin                               instantid
    models/controlnet/instantid/{config.json,diffusion_pytorch_model.safetensors}  instantid
        (or models/controlnet/instantid-controlnet.safetensors: the SDXL IdentityNet config is built in)
    models/insightface/models/{antelopev2,buffalo_l}/             face embeddings

A base model may also be a Hugging Face repo id (``org/name``), downloaded by
diffusers on first use where the machine can reach the hub.

Everything a method needs is checked at once: :func:`resolve` raises one
:class:`~soulid.soul.errors.ModelFilesMissing` naming every missing file and
the folder it goes in.
"""
from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ...soul.errors import ModelFilesMissing, SoulIDError
from ...soul.paths import models_dirs
from ..install import local_extra_command

METHODS = ("faceid_plusv2", "instantid")

#: Accepted file names per role, first = the name documented in the README.
FILES: dict[str, tuple[str, tuple[str, ...]]] = {
    # role: (kind folder, names)
    "faceid_adapter": ("ipadapter", ("ip-adapter-faceid-plusv2_sdxl.bin", "ip-adapter-faceid-plusv2_sdxl.safetensors")),
    "faceid_lora": ("loras", ("ip-adapter-faceid-plusv2_sdxl_lora.safetensors",)),
    "clip_vision": ("clip_vision", (
        "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors",
        "clip_vision_h.safetensors",
        "open_clip_pytorch_model.safetensors",
        "model.safetensors",
    )),
    "instantid_adapter": ("instantid", ("ip-adapter.bin", "ip-adapter.safetensors", "instantid-ip-adapter.bin")),
    "identitynet": ("controlnet", (
        "instantid",
        "InstantID",
        "instantid-controlnet.safetensors",
        "instantid/diffusion_pytorch_model.safetensors",
        "diffusion_pytorch_model.safetensors",
    )),
}
#: Roles each method needs; the paired FaceID LoRA is recommended, not required.
REQUIRED = {
    "faceid_plusv2": ("faceid_adapter", "clip_vision"),
    "instantid": ("instantid_adapter", "identitynet"),
}
OPTIONAL = {"faceid_plusv2": ("faceid_lora",), "instantid": ()}
#: Default base-model folder name under models/diffusers.
DEFAULT_BASE = "stable-diffusion-xl-base-1.0"
SDXL_CLASSES = ("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline", "StableDiffusionXLControlNetPipeline")


@dataclass(frozen=True)
class BaseModel:
    """The SDXL base: ``kind`` is ``"diffusers"`` (a folder with
    model_index.json), ``"single_file"`` (a .safetensors/.ckpt checkpoint) or
    ``"hub"`` (a Hugging Face repo id); ``ref`` is the path or the repo id."""

    kind: str
    ref: str


@dataclass(frozen=True)
class Resolved:
    """Every file one method uses (paths as strings, hashable: part of the
    pipeline cache key)."""

    method: str
    base: BaseModel
    files: tuple[tuple[str, str], ...] = ()
    loras: tuple[tuple[str, float], ...] = field(default=())

    def get(self, role: str) -> str | None:
        return dict(self.files).get(role)


def _where(kind: str) -> str:
    return str(models_dirs(kind)[0])


# ------------------------------------------------- one missing-setup report


@dataclass(frozen=True)
class ModelSource:
    """Where a model file comes from and what it costs to hold: ``url`` a
    download page, ``size`` on disk and ``vram`` while running (approximate,
    fp16/bf16 on CUDA)."""

    url: str
    size: str
    vram: str = ""


#: Download source, size and VRAM per role (sizes from the model repositories).
SOURCES: dict[str, ModelSource] = {
    "sdxl_base": ModelSource("https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0 "
                             "(the diffusers folders; the fp16 variant is enough)", "about 7 GB (fp16)",
                             "about 10 GB at 1024x1024 (about 6 GB with offload: model)"),
    "faceid_adapter": ModelSource("https://huggingface.co/h94/IP-Adapter-FaceID", "1.5 GB", "+1.5 GB"),
    "faceid_lora": ModelSource("https://huggingface.co/h94/IP-Adapter-FaceID", "0.4 GB", "+0.4 GB"),
    "clip_vision": ModelSource("https://huggingface.co/h94/IP-Adapter (models/image_encoder/model.safetensors, "
                               "renamed)", "2.5 GB", "+1.3 GB"),
    "instantid_adapter": ModelSource("https://huggingface.co/InstantX/InstantID (ip-adapter.bin)", "1.7 GB", "+1.7 GB"),
    "identitynet": ModelSource("https://huggingface.co/InstantX/InstantID (ControlNetModel/)", "2.5 GB", "+2.5 GB"),
    "antelopev2": ModelSource("https://github.com/deepinsight/insightface/tree/master/python-package "
                              "(model zoo: antelopev2)", "0.4 GB", "CPU is enough"),
    "buffalo_l": ModelSource("https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip",
                             "0.3 GB", "CPU is enough"),
    "i2v": ModelSource("https://huggingface.co/Wan-AI/Wan2.2-TI2V-5B-Diffusers", "about 34 GB",
                       "24 GB with offload: model"),
}
#: Python packages of the local extra each step imports (module names).
PACKAGES = {
    "generate": ("torch", "diffusers", "transformers", "accelerate"),
    "i2v": ("torch", "diffusers", "transformers", "accelerate"),
    "lora": ("peft",),
    "insightface": ("insightface", "onnxruntime"),
}


class LocalSetupMissing(ModelFilesMissing):
    """Packages and/or model files a local step needs are missing.

    One error names everything at once: the extra to install and each missing
    file with its real path on this machine, a download source, its size and
    the VRAM it needs.

    Attributes:
        packages: missing Python modules (``torch``, ``diffusers``...).
        missing: missing file paths (as :class:`ModelFilesMissing`).
    """

    def __init__(self, what: str, packages: list[str], files: list[tuple[str, str, ModelSource | None]]):
        self.packages = list(packages)
        lines = []
        if packages:
            lines.append(f"missing Python package(s): {', '.join(packages)}; install the local extra: "
                         f"{local_extra_command()}")
        for path, role, src in files:
            facts = f" ({role}" + (f"; {src.size}, VRAM {src.vram}; from {src.url}" if src else "") + ")"
            lines.append(f"  - {path}{facts}")
        if files:
            lines.append("Put each file at the path shown (or set SOULID_MODELS_DIR to a folder with the same "
                         "sub-folders, or COMFYUI_PATH to a ComfyUI install).")
        ModelFilesMissing.__init__(self, what, [f for f, _, _ in files])
        head = f"{what}: " + (f"{len(packages)} package(s)" if packages else "") + \
            (" and " if packages and files else "") + (f"{len(files)} model file(s)" if files else "") + " missing:"
        Exception.__init__(self, "\n".join([head] + lines))


def missing_packages(*steps: str) -> list[str]:
    """Modules of :data:`PACKAGES` for ``steps`` that cannot be imported here."""
    out = []
    for step in steps:
        for mod in PACKAGES.get(step, ()):
            try:
                found = importlib.util.find_spec(mod) is not None
            except (ImportError, ValueError):
                found = False
            if mod not in out and not found:
                out.append(mod)
    return out


def _pack_files(pack: str) -> list[tuple[str, str, ModelSource | None]]:
    from ...soul.analysis.insightface_analyzer import PACKS, REQUIRED_ROLES, find_pack

    try:
        find_pack(pack)
        return []
    except ModelFilesMissing:
        d = models_dirs("insightface")[0] / "models" / pack
        return [(str(d / PACKS[pack][r]), f"insightface {pack} {r}", SOURCES[pack]) for r in REQUIRED_ROLES]


def check_analyzer(name: str) -> None:
    """Check an insightface analyzer's packages and pack files at once
    (``insightface`` -> antelopev2, ``insightface_buffalo_l`` -> buffalo_l);
    other analyzers need nothing beyond the base install.

    Raises:
        LocalSetupMissing: one error naming every missing package and file.
    """
    pack = {"insightface": "antelopev2", "insightface_buffalo_l": "buffalo_l"}.get(name)
    if pack is None:
        return
    pkgs, files = missing_packages("insightface"), _pack_files(pack)
    if pkgs or files:
        raise LocalSetupMissing(f"analyzer {name}", pkgs, files)


def check_local(step: str, method: str = "faceid_plusv2", model: str = "", lora: str = "", soul=None,
                i2v_model: str = "") -> None:
    """Check everything a local step needs before any work starts.

    Args:
        step: ``generate`` (also edit) or ``i2v`` (image-to-video); ``camera``
            needs nothing beyond the base install.
        method: generate/edit method (:data:`METHODS`).
        soul: the Soul ID; when it lacks the embedding space of ``method``,
            the insightface pack that computes it is needed too.

    Raises:
        LocalSetupMissing: one error naming every missing package and file.
    """
    steps = [step] + (["lora"] if lora else [])
    files: list[tuple[str, str, ModelSource | None]] = []
    if step == "i2v":
        try:
            find_i2v(i2v_model)
        except ModelFilesMissing as e:
            files += [(m, "Wan image-to-video, diffusers layout", SOURCES["i2v"]) for m in e.missing]
        what = "local animate (engine i2v)"
    elif step == "generate":
        what = f"local {method}"
        try:
            resolve(method, model, lora)
        except ModelFilesMissing as e:
            for m in e.missing:
                role = next((r for r, (k, names) in FILES.items() if names[0] in m), "sdxl_base" if "SDXL" in m or
                            DEFAULT_BASE in m or model in m else "")
                files.append((m.split(" (")[0], m.split(" (", 1)[1].rstrip(")") if " (" in m else role,
                              SOURCES.get(role)))
        space = {"instantid": ("insightface", "antelopev2"), "faceid_plusv2": ("insightface_buffalo_l", "buffalo_l")}
        name, pack = space.get(method, (None, None))
        if pack and (soul is None or name not in getattr(soul, "analyzers", {})):
            steps.append("insightface")
            files += _pack_files(pack)
    else:
        raise ValueError(f"step must be generate or i2v, not {step!r}")
    pkgs = missing_packages(*steps)
    if pkgs or files:
        raise LocalSetupMissing(what, pkgs, files)


def find(kind: str, names: tuple[str, ...] | list[str]) -> Path | None:
    """First existing ``<dir>/<name>`` over :func:`models_dirs` (``kind``) x ``names``;
    a name may be a file or a folder. Absolute paths are taken as they are."""
    for name in names:
        p = Path(name).expanduser()
        if p.is_absolute():
            if p.exists():
                return p
            continue
        for d in models_dirs(kind):
            if (d / name).exists():
                return d / name
    return None


def _is_sdxl_folder(p: Path) -> bool:
    try:
        cls = json.loads((p / "model_index.json").read_text()).get("_class_name", "")
    except (OSError, ValueError):
        return False
    return cls in SDXL_CLASSES


def find_base(model: str = "") -> BaseModel | None:
    """Locate the SDXL base model.

    ``model`` may be: empty (the first SDXL folder in ``models/diffusers``,
    preferring :data:`DEFAULT_BASE`); a folder name in ``models/diffusers``;
    a checkpoint file name in ``models/checkpoints``; an absolute path to
    either; or a Hugging Face repo id ``org/name``. Returns None when nothing
    matches.
    """
    model = (model or "").strip()
    if model:
        p = Path(model).expanduser()
        cands = [p] if p.is_absolute() else [d / model for d in models_dirs("diffusers") + models_dirs("checkpoints")]
        for c in cands:
            if c.is_dir() and (c / "model_index.json").is_file():
                return BaseModel("diffusers", str(c))
            if c.is_file() and c.suffix.lower() in (".safetensors", ".ckpt", ".sft"):
                return BaseModel("single_file", str(c))
        if not p.is_absolute() and model.count("/") == 1 and not model.endswith((".safetensors", ".ckpt")):
            return BaseModel("hub", model)
        return None
    for d in models_dirs("diffusers"):
        if _is_sdxl_folder(d / DEFAULT_BASE):
            return BaseModel("diffusers", str(d / DEFAULT_BASE))
    for d in models_dirs("diffusers"):
        if d.is_dir():
            for c in sorted(d.iterdir()):
                if c.is_dir() and _is_sdxl_folder(c):
                    return BaseModel("diffusers", str(c))
    return None


def local_sdxl_config() -> str | None:
    """A local SDXL diffusers folder usable as ``config=`` for single-file
    loading (so that no hub access is needed), or None."""
    b = find_base("")
    return b.ref if b is not None and b.kind == "diffusers" else None


def find_lora(name: str) -> Path | None:
    """A LoRA file by name (``models/loras``) or absolute path."""
    if not name:
        return None
    names = [name] if name.endswith(".safetensors") else [name, f"{name}.safetensors"]
    p = find("loras", names)
    return p if p is not None and p.is_file() else None


def resolve(method: str, model: str = "", lora: str = "", lora_scale: float = 1.0,
            faceid_lora_scale: float = 1.0, what: str = "") -> Resolved:
    """Every file ``method`` needs, found in the model folders.

    Args:
        method: ``"faceid_plusv2"`` or ``"instantid"``.
        model: base model (see :func:`find_base`).
        lora: optional persona LoRA (file name in ``models/loras`` or a path).
        lora_scale: persona LoRA weight.
        faceid_lora_scale: weight of the paired FaceID LoRA when present.

    Raises:
        ValueError: unknown method.
        ModelFilesMissing: one error listing every missing file, each with the
            folder it goes in.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    missing: list[str] = []
    base = find_base(model)
    if base is None:
        if model:
            missing.append(f"{model} (SDXL base: a folder with model_index.json in {_where('diffusers')}, "
                           f"a checkpoint in {_where('checkpoints')}, or a Hugging Face repo id)")
        else:
            missing.append(f"{_where('diffusers')}/{DEFAULT_BASE}/model_index.json (SDXL base model, diffusers layout)")
    files = []
    for role in REQUIRED[method]:
        kind, names = FILES[role]
        p = find(kind, names)
        if p is None:
            missing.append(f"{_where(kind)}/{names[0]} ({role.replace('_', ' ')})")
        else:
            files.append((role, str(p)))
    loras: list[tuple[str, float]] = []
    for role in OPTIONAL[method]:
        kind, names = FILES[role]
        p = find(kind, names)
        if p is not None and p.is_file():
            files.append((role, str(p)))
            loras.append((str(p), float(faceid_lora_scale)))
    if lora:
        p = find_lora(lora)
        if p is None:
            missing.append(f"{_where('loras')}/{lora if lora.endswith('.safetensors') else lora + '.safetensors'} (persona LoRA)")
        else:
            loras.append((str(p), float(lora_scale)))
    if missing:
        raise ModelFilesMissing(
            what or f"local {method}", missing,
            "Put each file in the folder shown (or set SOULID_MODELS_DIR to a folder with these sub-folders); "
            "download sources and licences: README.md, section 'Local models'.",
        )
    return Resolved(method, base, tuple(files), tuple(loras))


# ------------------------------------------------------------------ loaders
class ModelLoadError(SoulIDError):
    """A model file exists but cannot be used (wrong kind, corrupt, wrong shapes)."""


def load_state_dict(path: str) -> dict:
    """Tensors of a ``.safetensors`` or ``.bin`` file (``.bin`` via
    ``torch.load(weights_only=True)``: no code execution from pickles).

    Raises:
        ModelLoadError: unreadable or not a tensor file.
    """
    import torch

    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # safetensors/pickle raise many types for bad files
        raise ModelLoadError(f"{path}: cannot read model file ({type(e).__name__}: {e})") from None


#: Attention heads by CLIP vision width: ViT-B/16 (768), ViT-L/14 (1024),
#: ViT-H/14 (1280), ViT-bigG/14 (1664), from the open_clip model configs.
_CLIP_HEADS = {768: 12, 1024: 16, 1280: 16, 1664: 16}


def clip_vision_config(sd: dict):
    """A ``transformers.CLIPVisionConfig`` matching a CLIP vision state dict
    (transformers key layout, as in ComfyUI's clip_vision files): width,
    patch size, image size, depth, MLP width and projection size are read from
    the tensor shapes; heads from :data:`_CLIP_HEADS` (else width // 64)."""
    from transformers import CLIPVisionConfig

    pre = "vision_model."
    patch = sd[pre + "embeddings.patch_embedding.weight"]
    hidden, _, ps, _ = patch.shape
    n_pos = sd[pre + "embeddings.position_embedding.weight"].shape[0]
    grid = int(round((n_pos - 1) ** 0.5))
    layers = len({k.split(".")[3] for k in sd if k.startswith(pre + "encoder.layers.")})
    inter = sd[pre + "encoder.layers.0.mlp.fc1.weight"].shape[0]
    proj = sd["visual_projection.weight"].shape[0] if "visual_projection.weight" in sd else hidden
    return CLIPVisionConfig(
        hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
        num_attention_heads=_CLIP_HEADS.get(hidden, max(1, hidden // 64)), image_size=grid * ps,
        patch_size=ps, projection_dim=proj, hidden_act="gelu",
    )


def load_clip_vision(path: str, dtype=None):
    """``(CLIPVisionModelWithProjection, CLIPImageProcessor)`` from a ComfyUI
    clip_vision file (single ``.safetensors``) or a transformers folder.

    Raises:
        ModelLoadError: not a CLIP vision model in the transformers layout.
    """
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    p = Path(path)
    if p.is_dir():
        model = CLIPVisionModelWithProjection.from_pretrained(p, torch_dtype=dtype)
    else:
        sd = load_state_dict(path)
        if "vision_model.embeddings.patch_embedding.weight" not in sd:
            raise ModelLoadError(
                f"{path}: not a CLIP vision model in the transformers layout (no "
                "vision_model.embeddings.patch_embedding.weight); use the h94/IP-Adapter "
                "models/image_encoder/model.safetensors file renamed as documented"
            )
        sd = {k: v for k, v in sd.items() if k.startswith(("vision_model.", "visual_projection."))}
        model = CLIPVisionModelWithProjection(clip_vision_config(sd))
        model.load_state_dict(sd, strict=False)
        if dtype is not None:
            model.to(dtype)
    size = model.config.image_size
    proc = CLIPImageProcessor(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size},
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    return model.eval(), proc


#: IdentityNet's ControlNet config (InstantX/InstantID ControlNetModel/config.json;
#: the SDXL ControlNet architecture), used when only the weights file is present.
IDENTITYNET_CONFIG = {
    "_class_name": "ControlNetModel",
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "class_embed_type": None,
    "conditioning_channels": 3,
    "conditioning_embedding_out_channels": [16, 32, 96, 256],
    "controlnet_conditioning_channel_order": "rgb",
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "global_pool_conditions": False,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_attention_heads": None,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "projection_class_embeddings_input_dim": 2816,
    "resnet_time_scale_shift": "default",
    "transformer_layers_per_block": [1, 2, 10],
    "upcast_attention": None,
    "use_linear_projection": True,
}


def load_identitynet(path: str, dtype=None):
    """IdentityNet as a ``diffusers.ControlNetModel`` from a folder
    (config.json + weights) or a single diffusers-layout ``.safetensors`` file
    (with :data:`IDENTITYNET_CONFIG`).

    Raises:
        ModelLoadError: the weights do not fit the config.
    """
    from diffusers import ControlNetModel

    p = Path(path)
    if p.is_dir():
        return ControlNetModel.from_pretrained(p, torch_dtype=dtype)
    cfg_file = p.with_suffix(".json")
    cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else dict(IDENTITYNET_CONFIG)
    model = ControlNetModel.from_config(cfg)
    try:
        model.load_state_dict(load_state_dict(path), strict=True)
    except RuntimeError as e:
        raise ModelLoadError(f"{path}: not an SDXL IdentityNet ControlNet in diffusers layout ({str(e)[:300]})") from None
    return model.to(dtype) if dtype is not None else model


def hub_offline() -> bool:
    """True when Hugging Face hub access is switched off by the environment."""
    return os.environ.get("HF_HUB_OFFLINE", "") in ("1", "true", "True")


#: The Wan image-to-video pipeline folder used when none is named.
DEFAULT_I2V = "Wan2.2-TI2V-5B-Diffusers"


def find_i2v(model: str = "") -> str:
    """Folder (or hub id) of the Wan I2V pipeline.

    Raises:
        ModelFilesMissing: naming the expected model_index.json.
    """
    name = model or DEFAULT_I2V
    p = Path(name).expanduser()
    cands = [p] if p.is_absolute() else [d / name for d in models_dirs("diffusers")]
    for c in cands:
        if (c / "model_index.json").is_file():
            return str(c)
    if model and not p.is_absolute() and model.count("/") == 1:
        return model  # a Hugging Face repo id, downloaded by diffusers
    where = str(models_dirs("diffusers")[0]) if models_dirs("diffusers") else "<ComfyUI>/models/diffusers"
    raise ModelFilesMissing("local i2v (Wan image-to-video)", [f"{where}/{name}/model_index.json"],
                           "Download the Wan-AI/Wan2.2-TI2V-5B-Diffusers repository into that folder (README, section 'Local models').")
