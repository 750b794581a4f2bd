"""``soulid generate | edit | animate``: one Soul ID, any backend
(``higgsfield | wavespeed | aurashot | local``).

Images are saved as PNG with text metadata (prompt, backend, request id,
seed; never a credential); ``--json`` prints one JSON object:
``{"request_id", "backend", "cost", "files", "resumed"}``.
Exit codes: 0 done; 1 the job failed or was moderated/canceled; 2 bad input.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from ..backends.base import BACKENDS
from .cloud import interrupt_flag, progress_printer


def _common(p: argparse.ArgumentParser, soul_required: bool = False) -> None:
    p.add_argument("--backend", default="higgsfield", choices=list(BACKENDS))
    p.add_argument("--soul", required=soul_required, help="Soul ID name in the library, or a .soulid file")
    p.add_argument("--prompt", default="", help="what to make")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    g = p.add_argument_group("cost (cloud)")
    g.add_argument("--max-usd", type=float, default=None, help="refuse if the provider's estimate is above this")
    g.add_argument("--estimate", action="store_true", help="print the estimate; submit nothing")
    g.add_argument("--new", action="store_true", help="pay for a fresh run even if this exact request is in the ledger")
    g = p.add_argument_group("local backend")
    g.add_argument("--method", choices=("faceid_plusv2", "instantid"), default=None)
    g.add_argument("--steps", type=int, default=None, help="denoising steps")
    g.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale")
    g.add_argument("--model", default=None, help="diffusers folder / checkpoint name (local); DoP model (cloud)")
    g.add_argument("--lora", default=None)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="text-to-image with a Soul ID")
    _common(p)
    p.add_argument("--preset", default=None, help="style preset name or id")
    p.add_argument("--preset-strength", type=float, default=1.0)
    p.add_argument("--aspect", default=None, help="aspect ratio W:H, e.g. 3:4")
    p.add_argument("--quality", default="1080p", help="720p | 1080p (higgsfield)")
    p.add_argument("--batch", type=int, default=1, choices=(1, 4))
    p.add_argument("--enhance-prompt", action="store_true")
    p.add_argument("--reference", default=None, metavar="IMAGE", help="image reference (style / pose)")
    p.add_argument("--identity-strength", type=float, default=1.0)
    p.add_argument("--model-version", default=None, choices=("v1", "v2", "cinema"),
                   help="use the Soul ID trained for this Higgsfield model version")
    p.add_argument("--mode", default=None, choices=("id_photo",), help="aurashot: 4-in-1 ID photo sheet")
    p.add_argument("--negative", default="", help="negative prompt (local)")
    p.add_argument("--out", default=".", metavar="DIR")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("edit", help="edit an image with a Soul ID's identity")
    p.add_argument("image")
    _common(p)
    p.add_argument("--strength", type=float, default=0.6, help="0 keeps the source, 1 restyles freely")
    p.add_argument("--preset", default=None)
    p.add_argument("--quality", default="1080p")
    p.add_argument("--model-version", default=None, choices=("v1", "v2", "cinema"))
    p.add_argument("--out", default=".", metavar="DIR")
    p.set_defaults(func=cmd_edit)

    p = sub.add_parser("animate", help="animate a still (DoP on the cloud, camera / i2v locally)")
    p.add_argument("image", nargs="?")
    _common(p)
    p.add_argument("--end", default=None, metavar="IMAGE", help="end frame")
    p.add_argument("--motion", action="append", default=[], metavar="NAME[:STRENGTH]",
                   help="motion preset (repeatable, at most 2)")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--fps", type=int, default=24)
    p.add_argument("--size", default=None, metavar="WxH")
    p.add_argument("--engine", choices=("camera", "i2v"), default="camera", help="local engine")
    p.add_argument("--list-motions", action="store_true", help="list motion names and exit")
    p.add_argument("--out", default=None, metavar="FILE.mp4")
    p.set_defaults(func=cmd_animate)


# -------------------------------------------------------------------- helpers
def _soul(args):
    if not args.soul:
        return None
    from .identity import load_soul

    return load_soul(args, args.soul)


def _image(path: str) -> np.ndarray:
    from ..soul.imageio import load_photo

    return load_photo(path).rgb.astype(np.float32) / 255.0


def _options(args) -> dict:
    o = {"max_usd": args.max_usd, "estimate_only": args.estimate, "new": args.new}
    for k in ("method", "steps", "guidance", "model", "lora", "engine", "model_version", "mode"):
        v = getattr(args, k, None)
        if v is not None:
            o[k] = v
    return {k: v for k, v in o.items() if v not in (None, False)}


def _backend(name: str):
    from ..backends.base import get_backend

    try:
        return get_backend(name)
    except ImportError as e:
        raise SystemExit(f"soulid: the {name} backend is not available ({e})") from None


def _run(args, call):
    """Run ``call(backend, progress, interrupt)``; map job failures to exit 1."""
    from ..backends.engine import Canceled, Interrupted, JobFailed, Moderated

    be = _backend(args.backend)
    stop, restore = interrupt_flag()
    try:
        return call(be, progress_printer(args.json), stop), 0
    except (JobFailed, Moderated, Canceled, Interrupted) as e:
        print(f"soulid: {e}", file=sys.stderr)
        return None, 1
    except NotImplementedError as e:
        print(f"soulid: {args.backend}: {e}", file=sys.stderr)
        return None, 2
    finally:
        restore()


def save_images(res, out_dir: Path, stem: str, meta: dict) -> list[Path]:
    """Save ``res.images`` (``[B, H, W, 3]`` float32 0..1) as PNGs with text metadata."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from ..backends.media import new_output_path, temp_name

    out_dir.mkdir(parents=True, exist_ok=True)
    info = PngInfo()
    for k, v in meta.items():
        if v is not None:
            info.add_text(f"soulid:{k}", str(v))
    paths = []
    for i, img in enumerate(res.images):
        p = new_output_path(out_dir, f"{stem}_{i:02d}", ".png")  # never overwrites an earlier output
        tmp = temp_name(p)
        Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)).save(tmp, format="PNG", pnginfo=info)
        tmp.replace(p)
        paths.append(p)
    return paths


def _report(args, res, files: list[Path]) -> None:
    d = {"request_id": res.request_id, "backend": args.backend, "cost": res.cost,
         "files": [str(f) for f in files], "resumed": bool(res.info.get("resumed")),
         "estimate_only": bool(res.info.get("estimate_only"))}
    if args.json:
        print(json.dumps(d))
        return
    if d["estimate_only"]:
        print(f"estimate: {res.cost or 'not offered by ' + args.backend}")
        return
    cost = f", cost {res.cost}" if res.cost else ""
    print(f"{args.backend} request {res.request_id or '-'}{' (resumed)' if d['resumed'] else ''}{cost}")
    for f in files:
        print(f)


def _image_command(args, res) -> int:
    files = []
    if not res.info.get("estimate_only"):
        stem = f"{args.soul or 'soul'}_{(res.info.get('key') or 'local')[:8]}"  # a local key, never the server's id
        stem = Path(stem).name.replace(".soulid", "")
        files = save_images(res, Path(args.out), stem, {"backend": args.backend, "request_id": res.request_id,
                                                       "prompt": args.prompt, "seed": args.seed,
                                                       "soul": args.soul})
    _report(args, res, files)
    return 0


# ------------------------------------------------------------------ commands
def cmd_generate(args) -> int:
    from ..backends.base import GenerateRequest

    req = GenerateRequest(prompt=args.prompt, soul=_soul(args), preset=args.preset,
                          preset_strength=args.preset_strength, aspect=args.aspect, quality=args.quality,
                          batch=args.batch, seed=args.seed, enhance_prompt=args.enhance_prompt,
                          image_reference=_image(args.reference) if args.reference else None,
                          identity_strength=args.identity_strength, negative_prompt=args.negative,
                          options=_options(args))
    res, rc = _run(args, lambda be, pr, it: be.generate(req, pr, it))
    return rc if res is None else _image_command(args, res)


def cmd_edit(args) -> int:
    from ..backends.base import EditRequest

    req = EditRequest(image=_image(args.image), prompt=args.prompt, soul=_soul(args), strength=args.strength,
                      preset=args.preset, quality=args.quality, seed=args.seed, options=_options(args))
    res, rc = _run(args, lambda be, pr, it: be.edit(req, pr, it))
    return rc if res is None else _image_command(args, res)


def parse_motion(text: str) -> tuple[str, float]:
    """``"NAME[:STRENGTH]"`` -> ``(name, strength)`` (default 0.5).

    Raises:
        ValueError: strength not a number in 0..1.
    """
    name, _, s = text.partition(":")
    strength = float(s) if s else 0.5
    if not name or not 0.0 <= strength <= 1.0:
        raise ValueError(f"--motion {text!r}: expected NAME[:STRENGTH] with STRENGTH in 0..1")
    return name, strength


def list_motion_names(backend: str) -> list[str]:
    """Local camera moves (when ``backends.local.camera`` is importable) and,
    for higgsfield, the provider's motions."""
    names = []
    try:
        from ..backends.local.camera import MOTIONS

        names += [f"{n}  (local)" for n in MOTIONS]
    except ImportError:
        pass
    if backend == "higgsfield":
        from ..soul.errors import SoulIDError

        try:
            names += [f"{m['name']}  (higgsfield {m['id']})" for m in _backend("higgsfield").motions()]
        except SoulIDError as e:  # no key or offline: the local moves still list
            print(f"soulid: Higgsfield motions not listed ({e})", file=sys.stderr)
    return names


def cmd_animate(args) -> int:
    from ..backends.base import AnimateRequest

    if args.list_motions:
        print("\n".join(list_motion_names(args.backend)))
        return 0
    if not args.image:
        print("soulid: animate needs an IMAGE", file=sys.stderr)
        return 2
    try:
        motions = [parse_motion(m) for m in args.motion]
        size = tuple(int(x) for x in args.size.lower().split("x")) if args.size else None
    except ValueError as e:
        print(f"soulid: {e}", file=sys.stderr)
        return 2
    req = AnimateRequest(image=_image(args.image), prompt=args.prompt,
                         end_image=_image(args.end) if args.end else None, motions=motions,
                         model=args.model or "", seed=args.seed, seconds=args.seconds, fps=args.fps,
                         size=size, soul=_soul(args), options=_options(args))
    res, rc = _run(args, lambda be, pr, it: be.animate(req, pr, it))
    if res is None:
        return rc
    files = []
    if not res.info.get("estimate_only"):
        from ..backends.media import new_output_path, temp_name

        out = Path(args.out) if args.out else new_output_path(Path.cwd(), "clip", ".mp4")  # not the server's id
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_name(out)
        shutil.copyfile(res.path, tmp)
        tmp.replace(out)
        files = [out]
    _report(args, res, files)
    return 0
