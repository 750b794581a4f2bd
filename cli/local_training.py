"""``soulid train NAME --provider local``: a persona LoRA trained on this
machine from the Soul ID's photos, stored in the ``.soulid``; and the LoRA
lines of ``soulid show``."""
from __future__ import annotations

import argparse
import json
import sys


def add_local_train_arguments(p: argparse.ArgumentParser) -> None:
    """The ``--provider local`` options of ``soulid train``."""
    g = p.add_argument_group("local training (--provider local)")
    g.add_argument("--base", default="", help="SDXL base: diffusers folder, .safetensors checkpoint, or a name in "
                                              "ComfyUI's models/diffusers or models/checkpoints")
    g.add_argument("--steps", type=int, default=None, help="training steps (default: 40 per photo, 400..1600)")
    g.add_argument("--rank", type=int, default=16, help="LoRA rank (default 16)")
    g.add_argument("--batch", type=int, default=None,
                   help="samples per step (default: 4 on CUDA, 1 on CPU; default steps keep 40 samples per photo)")
    g.add_argument("--resolution", type=int, default=1024, help="training resolution, px (default 1024)")
    g.add_argument("--lr", type=float, default=1e-4, help="learning rate (default 1e-4)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--trigger", default="ohwx", help="trigger token used in the captions and in prompts (default ohwx)")
    g.add_argument("--class-word", default="person", help="class word in the captions (person, man, woman...)")
    g.add_argument("--captions", default=None, metavar="FILE",
                   help="text file, one caption per accepted photo (see `soulid show`), replacing the defaults")
    g.add_argument("--flip", action="store_true",
                   help="also train on mirrored photos (off by default: mirroring blurs an asymmetric face)")
    g.add_argument("--resume", action="store_true", help="continue from the last checkpoint of this training")
    g.add_argument("--checkpoint-every", type=int, default=100, help="steps between resumable checkpoints")
    g.add_argument("--mixed-precision", default="auto", choices=("auto", "bf16", "fp16", "no"))
    g.add_argument("--no-gradient-checkpointing", action="store_true", help="faster, more GPU memory")
    g.add_argument("--8bit-adam", dest="adam8", action="store_true", help="bitsandbytes 8-bit AdamW where installed")
    g.add_argument("--device", default=None, help="cuda, cpu, ... (default: CUDA when available)")
    g.add_argument("--check-images", type=int, default=4, help="held-out images scored after training (0: skip)")
    g.add_argument("--check-steps", type=int, default=25, help="denoising steps per check image")


def cmd_train_local(args) -> int:
    from ..backends.local.training import TrainSettings, checkpoint_path, train_persona
    from ..soul.errors import Interrupted
    from .common import interrupt_flag, library, progress_printer

    lib = library(args)
    soul = lib.load(args.name)
    settings = TrainSettings(
        rank=args.rank, steps=args.steps, batch_size=args.batch, learning_rate=args.lr, resolution=args.resolution, seed=args.seed,
        mixed_precision=args.mixed_precision, gradient_checkpointing=not args.no_gradient_checkpointing,
        use_8bit_adam=args.adam8, checkpoint_every=args.checkpoint_every, device=args.device, flip=args.flip,
        log_every=max(1, min(10, args.checkpoint_every or 10)),
    )
    with lib.hold(soul.name, "a local training"):  # rename/delete and a second training refuse meanwhile
        stop, restore = interrupt_flag()
        try:
            r = train_persona(soul, args.base, settings, trigger=args.trigger, class_word=args.class_word,
                              captions=args.captions, resume=args.resume, check_images=args.check_images,
                              check_steps=args.check_steps, progress=progress_printer(args.json), interrupt=stop,
                              keep_checkpoint=True)
        except Interrupted as e:
            ck = checkpoint_path(soul.name)
            hint = f"; continue with --resume (checkpoint {ck})" if ck.exists() else ""
            print(f"soulid: {e}{hint}", file=sys.stderr)
            return 130
        finally:
            restore()
        soul = lib.load(args.name)  # re-read: keep anything written meanwhile
        soul.attach_lora(r.arch, r.data, r.metadata)
        path = lib.save(soul, overwrite=True)
        checkpoint_path(soul.name).unlink(missing_ok=True)  # only once the LoRA is saved
    if args.json:
        print(json.dumps({"soul": soul.name, "arch": r.arch, "path": str(path), "warnings": r.warnings,
                          **{k: r.metadata[k] for k in ("steps", "rank", "resolution", "final_loss", "training_seconds",
                                                        "resumed_from_step", "trigger")},
                          "check": r.metadata.get("check")}))
    else:
        for w in r.warnings:
            print(f"warning: {w}", file=sys.stderr)
        print(f"{soul.name}: persona LoRA for {r.arch} saved in {path}")
        for line in lora_lines(soul):
            print(f"  {line}")
    return 0


def lora_lines(soul) -> list[str]:
    """Human-readable lines about each persona LoRA of ``soul`` (for ``soulid show``)."""
    out = []
    for arch, lora in sorted(soul.loras.items()):
        m = lora.metadata
        h = (m.get("base_model_hash") or "")[:12]
        loss = m.get("final_loss")
        out.append(
            f"LoRA {arch}: base {m.get('base_model', '?')}{f' (sha256 {h}...)' if h else ''}, rank {m.get('rank', '?')}, "
            f"{m.get('steps', '?')} steps at {m.get('resolution', '?')} px, trigger {m.get('trigger', '?')!r}, "
            f"final loss {loss if loss is None else round(float(loss), 4)}, "
            f"{m.get('training_seconds', '?')} s, {m.get('source', '?')}, {len(lora.data) / 1e6:.1f} MB")
        c = m.get("check")
        if c:
            sim = c.get("mean_similarity")
            out.append(f"  check: {c.get('k')} held-out images, mean similarity "
                       f"{'n/a (no face found)' if sim is None else f'{sim:.3f}'}, pass rate {100 * c.get('pass_rate', 0):.0f} % "
                       f"(threshold {c.get('threshold', 0):.3f}, {c.get('analyzer')})")
        else:
            out.append("  check: not run")
        for w in m.get("warnings", []):
            out.append(f"  warning: {w}")
    return out
