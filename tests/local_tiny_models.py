"""Build a ComfyUI-style models folder of tiny random SDXL-architecture
components for the local-pipeline tests: the same file layout and key layout
as the real downloads, a few hundred KB in all.

    <root>/diffusers/tiny-sdxl/model_index.json ...          (save_pretrained)
    <root>/ipadapter/ip-adapter-faceid-plusv2_sdxl.bin       (original IP-Adapter key layout)
    <root>/clip_vision/CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors (transformers keys)
    <root>/instantid/ip-adapter.bin                          (InstantID Resampler layout)
    <root>/controlnet/instantid/{config.json, diffusion_pytorch_model.safetensors}
    <root>/loras/persona.safetensors                         (diffusers LoRA layout)
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CROSS = 64  # unet cross-attention width (two 32-wide text encoders)


def _tokenizer(d: Path):
    from transformers import CLIPTokenizer

    d.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in "abcdefghijklmnopqrstuvwxyz,.!":
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt"), model_max_length=16)


def _unet_kwargs():
    return dict(
        block_out_channels=(32, 64), layers_per_block=1, in_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=80, cross_attention_dim=CROSS, norm_num_groups=8,
    )


def build_sdxl(root: Path, seed: int = 0):
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=16, out_channels=4, up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                **_unet_kwargs())
    vae = AutoencoderKL(block_out_channels=[16, 32], in_channels=3, out_channels=3,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                        latent_channels=4, norm_num_groups=8, sample_size=32)
    cfg = CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=32, intermediate_size=37,
                         num_attention_heads=4, num_hidden_layers=2, vocab_size=100, projection_dim=32,
                         max_position_embeddings=16)
    tok = _tokenizer(root / "_tok")
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=CLIPTextModel(cfg), text_encoder_2=CLIPTextModelWithProjection(cfg),
        tokenizer=tok, tokenizer_2=tok, unet=unet,
        scheduler=EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                         steps_offset=1, timestep_spacing="leading"),
    )
    pipe.save_pretrained(root / "diffusers" / "tiny-sdxl")
    return unet


def _ip_layers(unet, gen, cross: int = CROSS) -> dict:
    """``ip_adapter`` part: ``N.to_k_ip.weight`` / ``N.to_v_ip.weight`` for every
    cross-attention processor, numbered 1, 3, 5, ... in ``unet.attn_processors``
    order as in the original IP-Adapter files."""
    import torch

    out, i = {}, 0
    for name in unet.attn_processors:
        if not name.endswith("attn2.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = unet.config.block_out_channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(unet.config.block_out_channels))[int(name[len("up_blocks.")])]
        else:
            hidden = unet.config.block_out_channels[int(name[len("down_blocks.")])]
        for k in ("to_k_ip", "to_v_ip"):
            out[f"{2 * i + 1}.{k}.weight"] = torch.randn(hidden, cross, generator=gen) * 0.05
        i += 1
    return out


def _resampler(prefix: str, dim: int, depth: int, in_dim: int, out_dim: int, gen, latents: int | None = None) -> dict:
    """Perceiver Resampler tensors in the original IP-Adapter layout (dim_head 64)."""
    import torch

    r = lambda *s: torch.randn(*s, generator=gen) * 0.05  # noqa: E731
    inner = 64 * max(1, dim // 64)
    d = {f"{prefix}proj_in.weight": r(dim, in_dim), f"{prefix}proj_in.bias": r(dim),
         f"{prefix}proj_out.weight": r(out_dim, dim), f"{prefix}proj_out.bias": r(out_dim),
         f"{prefix}norm_out.weight": torch.ones(out_dim), f"{prefix}norm_out.bias": torch.zeros(out_dim)}
    if latents:
        d[f"{prefix}latents"] = r(1, latents, dim)
    for i in range(depth):
        p = f"{prefix}layers.{i}."
        d.update({
            p + "0.norm1.weight": torch.ones(dim), p + "0.norm1.bias": torch.zeros(dim),
            p + "0.norm2.weight": torch.ones(dim), p + "0.norm2.bias": torch.zeros(dim),
            p + "0.to_q.weight": r(inner, dim), p + "0.to_kv.weight": r(2 * inner, dim), p + "0.to_out.weight": r(dim, inner),
            p + "1.0.weight": torch.ones(dim), p + "1.0.bias": torch.zeros(dim),
            p + "1.1.weight": r(4 * dim, dim), p + "1.3.weight": r(dim, 4 * dim),
        })
    return d


def build_faceid(root: Path, unet, clip_hidden: int = 64, seed: int = 1, cross: int = CROSS, vision=None):
    """IP-Adapter FaceID Plus v2 (ProjPlusModel) + a tiny CLIP vision tower."""
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen) * 0.05  # noqa: E731
    proj = {"proj.0.weight": r(1024, 512), "proj.0.bias": r(1024), "proj.2.weight": r(cross * 4, 1024),
            "proj.2.bias": r(cross * 4), "norm.weight": torch.ones(cross), "norm.bias": torch.zeros(cross)}
    proj.update(_resampler("perceiver_resampler.", cross, 4, clip_hidden, cross, gen))
    (root / "ipadapter").mkdir(parents=True, exist_ok=True)
    torch.save({"image_proj": proj, "ip_adapter": _ip_layers(unet, gen, cross)}, root / "ipadapter" / "ip-adapter-faceid-plusv2_sdxl.bin")
    torch.manual_seed(seed)
    vis = CLIPVisionModelWithProjection(vision or CLIPVisionConfig(
        hidden_size=clip_hidden, intermediate_size=37, num_hidden_layers=2, num_attention_heads=1,
        image_size=32, patch_size=8, projection_dim=32))
    (root / "clip_vision").mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in vis.state_dict().items()},
              str(root / "clip_vision" / "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"))


def build_instantid(root: Path, unet, seed: int = 2, cross: int = CROSS, resampler_dim: int = 64, controlnet=None):
    """InstantID ip-adapter.bin (Resampler 512 -> 16 tokens) + IdentityNet ControlNet."""
    import torch
    from diffusers import ControlNetModel

    gen = torch.Generator().manual_seed(seed)
    proj = _resampler("", resampler_dim, 4, 512, cross, gen, latents=16)
    (root / "instantid").mkdir(parents=True, exist_ok=True)
    torch.save({"image_proj": proj, "ip_adapter": _ip_layers(unet, gen, cross)}, root / "instantid" / "ip-adapter.bin")
    torch.manual_seed(seed)
    cn = controlnet or ControlNetModel(conditioning_embedding_out_channels=(8, 16), **_unet_kwargs())
    cn.save_pretrained(root / "controlnet" / "instantid")


def build_lora(root: Path, unet, name: str = "persona.safetensors", seed: int = 3):
    """A LoRA on the UNet attention projections, saved as diffusers does."""
    import copy

    import torch
    from diffusers import StableDiffusionXLPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    u = copy.deepcopy(unet)
    u.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False))
    sd = get_peft_model_state_dict(u)
    StableDiffusionXLPipeline.save_lora_weights(root / "loras", unet_lora_layers=sd, weight_name=name)


def persona_lora_bytes(seed: int = 0):
    """``(bytes, unet)``: a persona LoRA file of the tiny UNet made by the
    training code path (``add_lora`` -> PEFT state dict -> ``lora_file.to_bytes``),
    with non-zero ``lora_up`` so that it changes the output."""
    import torch
    from diffusers import UNet2DConditionModel
    from peft.utils import get_peft_model_state_dict

    from soulid.backends.local.training import lora_file
    from soulid.backends.local.training.trainer import TrainSettings, add_lora

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=16, out_channels=4, up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                **_unet_kwargs())
    add_lora(unet, TrainSettings(rank=4, seed=seed))
    sd = {k: (v + 0.05 if ".lora_B." in k else v) for k, v in get_peft_model_state_dict(unet).items()}
    return lora_file.to_bytes(sd, 4, {"arch": "sdxl"}), unet


def build_all(root: Path) -> Path:
    unet = build_sdxl(root)
    build_faceid(root, unet)
    build_instantid(root, unet)
    build_lora(root, unet)
    return root


def soul_with_embeddings(faces: Path, dims=(512, 512)):
    """A Soul ID of real photos (kit_harington) with stand-in insightface
    embeddings of the given sizes (insightface packs are not downloadable
    here): ``insightface`` (antelopev2) and ``insightface_buffalo_l``."""
    from soulid.soul.analysis import get_analyzer
    from soulid.soul.imageio import encode_jpeg, load_photo
    from soulid.soul.soulfile import AnalyzerIdentity, SoulID, StoredPhoto

    dlib = get_analyzer("dlib")
    photos, kps = [], None
    for f in sorted((faces / "kit_harington").iterdir()):
        rgb = load_photo(f).rgb
        face = dlib.largest_face(rgb)
        if face is None:
            continue
        if kps is None:
            kps = {"photo": len(photos), "analyzer": "dlib", "keypoints": face.keypoints.tolist()}
        photos.append(StoredPhoto(encode_jpeg(rgb), f.name, "good", "front", rgb.shape[1], rgb.shape[0], rgb.shape[1::-1],
                                  face.box.tolist()))
    rng = np.random.default_rng(0)
    analyzers = {}
    for name, model_id, dim in (("insightface", "insightface/antelopev2", dims[0]),
                                ("insightface_buffalo_l", "insightface/buffalo_l", dims[1])):
        e = rng.normal(size=(len(photos), dim)).astype(np.float32)
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        analyzers[name] = AnalyzerIdentity(name, model_id, e, np.full(len(photos), 22.0, np.float32),
                                           list(range(len(photos))), 0.4)
    return SoulID("kit", photos, analyzers, keypoint_reference=kps)


def soul_with_embeddings_like(soul, seed: int):
    """A copy of ``soul`` with other random (unit, 512-d) embeddings: another person."""
    import copy

    other = copy.deepcopy(soul)
    rng = np.random.default_rng(seed)
    for a in other.analyzers.values():
        e = rng.normal(size=a.embeddings.shape).astype(np.float32)
        a.embeddings = e / np.linalg.norm(e, axis=1, keepdims=True)
    return other
