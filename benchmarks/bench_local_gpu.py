"""Local identity pipelines on a CUDA GPU: seconds per image at 1024x1024 with
30 denoising steps, and peak VRAM, for each method, stock versus optimised
settings side by side.

Speed does not depend on weight values, so the models are the real SDXL
architecture (UNet 2.6 B, VAE, CLIP-L + OpenCLIP-bigG text encoders, ViT-H
image encoder, IdentityNet ControlNet, IP-Adapter FaceID Plus v2 / InstantID
adapters) built from their configs with random weights, saved in fp16 to a
ComfyUI-style models folder and loaded through :class:`LocalBackend` exactly
as users' files are.

* stock: float16, diffusers defaults (SDPA attention), no compile;
* optimised: bfloat16, channels-last, ``torch.compile`` of the UNet
  (``options["optimise"]``); the two warm-up images (load, then the
  ``torch.compile`` warm-up) are timed and reported separately, not in s/image.

    python benchmarks/bench_local_gpu.py [--runs 3] [--methods faceid_plusv2,instantid] [--keep DIR]

Without CUDA it prints a message and exits 0. Target (issue 4): faceid_plusv2
<= 1.5 s/image on one H100.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the tiny builder's adapter layouts

SDXL_UNET = dict(
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(5, 10, 20),
    transformer_layers_per_block=(1, 2, 10), cross_attention_dim=2048, use_linear_projection=True,
    addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
)
SDXL_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    sample_size=1024, scaling_factor=0.13025, force_upcast=True,
)


def build_models(root: Path) -> None:
    """Random-weight SDXL + adapters in the layout users download."""
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPVisionConfig

    import local_tiny_models as layouts

    torch.manual_seed(0)
    with torch.device("cuda"):  # initialise on the GPU: minutes faster than CPU init
        unet = UNet2DConditionModel(**SDXL_UNET).half()
        vae = AutoencoderKL(**SDXL_VAE).half()
        te1 = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                           num_attention_heads=12, projection_dim=768, vocab_size=49408)).half()
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(
            hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
            projection_dim=1280, vocab_size=49408, hidden_act="gelu")).half()
    tok = layouts._tokenizer(root / "_tok")
    tok.model_max_length = 77
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=te1, text_encoder_2=te2, tokenizer=tok, tokenizer_2=tok, unet=unet,
        scheduler=EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                         steps_offset=1, timestep_spacing="leading"),
    )
    pipe.save_pretrained(root / "diffusers" / "stable-diffusion-xl-base-1.0")
    vit_h = CLIPVisionConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                             image_size=224, patch_size=14, projection_dim=1024, hidden_act="gelu")
    layouts.build_faceid(root, unet, clip_hidden=1280, cross=2048, vision=vit_h)
    with torch.device("cuda"):
        cn = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 96, 256)).half()
    layouts.build_instantid(root, unet, cross=2048, resampler_dim=1280, controlnet=cn)
    del pipe, unet, vae, te1, te2, cn
    torch.cuda.empty_cache()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="timed images per setting (after warm-up)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--methods", default="faceid_plusv2,instantid")
    ap.add_argument("--keep", default="", help="models folder to build into / reuse")
    ap.add_argument("--json", default="", help="write results here")
    ap.add_argument("--soul", default="", help="a saved .soulid to use instead of building one from the "
                    "fixture photos (for machines without dlib)")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("bench_local_gpu: torch is not installed; nothing to measure.")
        return 0
    if not torch.cuda.is_available():
        print("bench_local_gpu: no CUDA device here; this benchmark needs one (run it on a GPU machine). Skipped.")
        return 0

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="soulid_bench_")) / "models"
    if not (root / "diffusers" / "stable-diffusion-xl-base-1.0" / "model_index.json").exists():
        t = time.perf_counter()
        build_models(root)
        print(f"built random-weight SDXL models in {time.perf_counter() - t:.0f} s at {root}")
    os.environ["SOULID_MODELS_DIR"] = str(root)

    import local_tiny_models as layouts
    from soulid.backends.base import GenerateRequest
    from soulid.backends.local import LocalBackend, pipelines

    if args.soul:
        from soulid.soul.soulfile import SoulID

        soul = SoulID.load(args.soul)
    else:
        soul = layouts.soul_with_embeddings(HERE.parents[1] / "shared" / "fixtures" / "faces")
    settings = {
        "stock": {"dtype": "float16"},
        "optimised": {"dtype": "bfloat16", "optimise": True},
    }
    name = torch.cuda.get_device_name(0)
    print(f"device: {name}; {args.size}x{args.size}, {args.steps} steps, CFG on, batch 1")
    results = []
    for method in [m for m in args.methods.split(",") if m]:
        for label, opts in settings.items():
            pipelines.release()
            b = LocalBackend()
            req = lambda seed: GenerateRequest(  # noqa: E731
                "portrait photo of a person", soul=soul, width=args.size, height=args.size, seed=seed,
                options={"method": method, "steps": args.steps, **opts})
            warm = []
            for w in range(2):  # load + compile warm-up, timed and reported on its own
                torch.cuda.synchronize()
                t = time.perf_counter()
                b.generate(req(w))
                torch.cuda.synchronize()
                warm.append(time.perf_counter() - t)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            times = []
            for i in range(args.runs):
                torch.cuda.synchronize()
                t = time.perf_counter()
                b.generate(req(100 + i))
                torch.cuda.synchronize()
                times.append(time.perf_counter() - t)
            peak = torch.cuda.max_memory_allocated() / 2**30
            s = sorted(times)[len(times) // 2]
            results.append({"method": method, "setting": label, "s_per_image": s, "peak_vram_gib": peak,
                            "warmup_s": [round(x, 2) for x in warm], **opts})
            print(f"  {method:14s} {label:9s} {s:6.2f} s/image  peak {peak:5.1f} GiB  "
                  f"(warm-up: load {warm[0]:.1f} s, second image {warm[1]:.1f} s; compile included there)")
    for method in {r["method"] for r in results}:
        st = next(r for r in results if r["method"] == method and r["setting"] == "stock")
        op = next(r for r in results if r["method"] == method and r["setting"] == "optimised")
        print(f"  {method}: optimised / stock = {op['s_per_image'] / st['s_per_image']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": name, "size": args.size, "steps": args.steps, "results": results}, indent=1))
    pipelines.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
