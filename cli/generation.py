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
from ..soul.imageio import to_uint8
from .common import budget, configured, interrupt_flag, library, load_soul, progress_printer


#: Backends that charge per request.
PAID = ("higgsfield", "wavespeed", "aurashot")
#: Clip formats ``animate --out`` writes (by suffix).
CLIP_SUFFIXES = (".mp4", ".gif")


def _common(p: argparse.ArgumentParser, soul_required: bool = False) -> None:
    p.add_argument("--backend", default=None, choices=list(BACKENDS),
                   help="where to run (required unless a default is configured: $SOULID_BACKEND); "
                        "higgsfield, wavespeed and aurashot charge per request")
    p.add_argument("--soul", required=soul_required, help="Soul ID name in the library, or a .soulid file")
    p.add_argument("--prompt", default="", help="what to make")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    g = p.add_argument_group("cost (cloud)")
    g.add_argument("--max-usd", type=float, default=None,
                   help="refuse if the provider's estimate is above this (default: $SOULID_MAX_USD when set)")
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
    p.add_argument("--out", default=None, metavar="FILE.mp4|FILE.gif",
                   help="clip file (default: a new file in the per-user outputs folder, printed)")
    p.set_defaults(func=cmd_animate)


# -------------------------------------------------------------------- helpers
def _soul(args):
    if not args.soul:
        return None

    return load_soul(args, args.soul)


def _image(path: str) -> np.ndarray:
    from ..soul.imageio import load_photo, to_float01

    return to_float01(load_photo(path).rgb)


def choose_backend(args) -> str:
    """``--backend``, else the configured default; never a paid one by accident.

    Raises:
        SoulIDError: no backend given and none configured.
    """
    from ..soul.errors import SoulIDError

    name = getattr(args, "backend", None) or configured("backend")
    if not name:
        raise SoulIDError(
            f"choose where to run with --backend {{{','.join(BACKENDS)}}} ({', '.join(PAID)} charge per "
            "request; local runs on this machine), or set a default in $SOULID_BACKEND"
        )
    if name not in BACKENDS:
        raise SoulIDError(f"backend must be one of {', '.join(BACKENDS)}, not {name!r} (from $SOULID_BACKEND)")
    args.backend = name
    return name


def _options(args) -> dict:
    o = {"max_usd": budget(args), "estimate_only": args.estimate, "new": args.new}
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


def estimate_text(cost: dict | None) -> str:
    if not cost:
        return "no estimate"
    usd = cost.get("usd")
    parts = [f"${float(usd):.4f}" if usd is not None else None,
             f"{cost['credits']:g} credits" if cost.get("credits") is not None else None]
    return " / ".join(p for p in parts if p) or "no estimate"


def _announce_cost(args, be, call, req) -> None:
    """Before a paid submit: ask the provider's estimate (submits nothing) and
    print it, or say that there is none, with the budget in force."""
    if args.backend not in PAID or args.estimate:
        return
    opts = dict(req.options)
    req.options = {**opts, "estimate_only": True}
    try:
        res = call(be, None, None)
        est = estimate_text(res.cost)
    except NotImplementedError:
        est = "no estimate"
    finally:
        req.options = opts
    cap = opts.get("max_usd")
    print(f"{args.backend}: estimate {est}" + (f"; budget ${cap:.2f}" if cap is not None else "; no budget set "
          "(--max-usd or $SOULID_MAX_USD)") + "; submitting", file=sys.stderr)


def _run(args, call, req=None):
    """Run ``call(backend, progress, interrupt)`` after printing the estimate;
    map job failures to exit 1 and an interrupt to 130."""
    from ..backends.engine import Canceled, JobFailed, Moderated
    from ..soul.errors import Interrupted

    be = _backend(args.backend)
    if req is not None:
        _announce_cost(args, be, call, req)
    stop, restore = interrupt_flag()
    try:
        return call(be, progress_printer(args.json), stop), 0
    except Interrupted as e:
        print(f"soulid: {e}", file=sys.stderr)
        return None, 130
    except (JobFailed, Moderated, Canceled) as e:
        print(f"soulid: {e}", file=sys.stderr)
        return None, 1
    except NotImplementedError as e:
        print(f"soulid: {args.backend}: {e}", file=sys.stderr)
        return None, 2
    finally:
        restore()


def log_to_soul(args, res, images: list | None, files: list[Path]) -> None:
    """Append the generation to the Soul ID's character log (as the Character
    Log node does) when ``--soul`` names a library Soul ID; a ``.soulid``
    file given by path is left untouched."""
    if not args.soul or args.soul.endswith(".soulid") or res.info.get("estimate_only"):
        return
    from ..soul.charlog import append_entry

    lib = library(args)
    soul = lib.load(args.soul)
    extra = {"request_id": res.request_id, "files": [str(f) for f in files], "command": args.command}
    if res.cost:
        extra["cost"] = res.cost
    for m in getattr(args, "motion", None) or []:
        extra.setdefault("motions", []).append(m)
    for img in images or [None]:
        append_entry(soul, args.prompt or "", image=img, preset=getattr(args, "preset", None), seed=args.seed,
                     backend=args.backend, model=getattr(args, "model", None) or "",
                     negative_prompt=getattr(args, "negative", "") or "", extra=extra)
    lib.save(soul, overwrite=True)


def save_images(res, out_dir: Path, stem: str, meta: dict) -> list[Path]:
    """Save ``res.images`` (``[B, H, W, 3]`` float32 0..1) as PNGs with text metadata."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from ..backends.media import new_output_path
    from ..soul.paths import atomic_path

    out_dir.mkdir(parents=True, exist_ok=True)
    info = PngInfo()
    for k, v in meta.items():
        if v is not None:
            info.add_text(f"soulid:{k}", str(v))
    paths = []
    for i, img in enumerate(res.images):
        p = new_output_path(out_dir, f"{stem}_{i:02d}", ".png")  # never overwrites an earlier output
        with atomic_path(p) as tmp:
            Image.fromarray(to_uint8(img)).save(tmp, format="PNG", pnginfo=info)
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
    if args.backend == "local" or not res.request_id:  # nothing was sent anywhere: no request to name
        print(f"{args.backend}: made here, free")
    else:
        cost = f", cost {res.cost}" if res.cost else ""
        print(f"{args.backend} request {res.request_id}{' (resumed)' if d['resumed'] else ''}{cost}")
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
        log_to_soul(args, res, list(res.images), files)
    _report(args, res, files)
    return 0


def _need_prompt(args) -> None:
    from ..soul.errors import SoulIDError

    if not (args.prompt or "").strip():
        raise SoulIDError(f"{args.command}: --prompt is empty; say what to make (nothing was submitted)")


# ------------------------------------------------------------------ commands
def cmd_generate(args) -> int:
    from ..backends.base import GenerateRequest

    choose_backend(args)
    _need_prompt(args)
    req = GenerateRequest(prompt=args.prompt, soul=_soul(args), preset=args.preset,
                          preset_strength=args.preset_strength, aspect=args.aspect, quality=args.quality,
                          batch=args.batch, seed=args.seed, enhance_prompt=args.enhance_prompt,
                          image_reference=_image(args.reference) if args.reference else None,
                          identity_strength=args.identity_strength, negative_prompt=args.negative,
                          options=_options(args))
    res, rc = _run(args, lambda be, pr, it: be.generate(req, pr, it), req)
    return rc if res is None else _image_command(args, res)


def cmd_edit(args) -> int:
    from ..backends.base import EditRequest

    choose_backend(args)
    if args.backend in PAID:
        _need_prompt(args)
    req = EditRequest(image=_image(args.image), prompt=args.prompt, soul=_soul(args), strength=args.strength,
                      preset=args.preset, quality=args.quality, seed=args.seed, options=_options(args))
    res, rc = _run(args, lambda be, pr, it: be.edit(req, pr, it), req)
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
    """Local camera moves (when ``backends.camera`` is importable) and,
    for higgsfield, the provider's motions."""
    names = []
    try:
        from ..backends.camera import MOTIONS

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


def clip_path(args) -> Path:
    """Where ``animate`` writes: ``--out`` (``.mp4`` or ``.gif``), else a new
    file in the per-user outputs folder (never the current folder unasked).

    Raises:
        SoulIDError: another suffix.
    """
    from ..soul.errors import SoulIDError
    from ..soul.paths import data_dir

    if args.out:
        out = Path(args.out)
        if out.suffix.lower() not in CLIP_SUFFIXES:
            raise SoulIDError(f"--out {args.out}: clips are written as {' or '.join(CLIP_SUFFIXES)}, "
                              f"not {out.suffix or 'a file without a suffix'}")
        return out
    from ..backends.media import new_output_path

    # A local name (the photo's stem), never the provider's request id, never over an earlier clip.
    return new_output_path(data_dir() / "outputs", Path(args.image).stem, ".mp4")


#: Longest side of a GIF, px (a GIF holds every pixel of every frame).
GIF_MAX_SIDE = 480
#: Above this size a GIF comes with a warning that the MP4 is far smaller.
GIF_WARN_BYTES = 8_000_000


def gif_plan(frames: list, fps: float) -> tuple[list, list[int]]:
    """GIF frames and per-frame durations (ms) for a clip at ``fps``.

    GIF delays are whole hundredths of a second, so 24 fps cannot be one
    delay (4 cs plays at 25 fps): the delays alternate (4, 4, 5, ...) so that
    frame ``i`` starts at ``i / fps`` to within 10 ms and the clip lasts its
    real length. Frames are scaled to at most :data:`GIF_MAX_SIDE` px and
    share one 256-colour palette taken from the middle frame.

    Args:
        frames: PIL images, RGB.
        fps: the clip's frame rate, > 0.

    Returns:
        ``(palette images, durations in ms)``, one duration per frame.
    """
    from PIL import Image

    w, h = frames[0].size
    scale = min(1.0, GIF_MAX_SIDE / max(w, h))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        frames = [f.resize(size, Image.LANCZOS) for f in frames]
    ref = frames[len(frames) // 2].convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    out = [f.convert("RGB").quantize(palette=ref, dither=Image.Dither.NONE) for f in frames]
    starts = [round(100 * i / fps) for i in range(len(frames) + 1)]  # centiseconds
    durations = [10 * max(2, b - a) for a, b in zip(starts, starts[1:])]
    return out, durations


def write_clip(src: Path, out: Path) -> None:
    """Copy or convert the MP4 ``src`` to ``out`` atomically: ``.mp4`` as is,
    ``.gif`` decoded with PyAV and written by Pillow (looping, the clip's frame rate, see :func:`gif_plan`)."""
    from ..soul.paths import atomic_path

    if out.suffix.lower() == ".gif":
        import av

        with av.open(str(src)) as c:
            stream = c.streams.video[0]
            rate = float(stream.average_rate or 24)
            frames = [f.to_image() for f in c.decode(stream)]
        gif_frames, durations = gif_plan(frames, rate)
        with atomic_path(out) as tmp:
            gif_frames[0].save(tmp, format="GIF", save_all=True, append_images=gif_frames[1:], loop=0,
                               duration=durations, optimize=True, disposal=1)
            size = tmp.stat().st_size
        if size > GIF_WARN_BYTES:
            print(f"warning: {out.name} is {size / 1e6:.1f} MB ({len(gif_frames)} frames); "
                  "an .mp4 of the same clip is far smaller", file=sys.stderr)
    elif src.resolve() != out.resolve():
        with atomic_path(out) as tmp:
            shutil.copyfile(src, tmp)


def cmd_animate(args) -> int:
    from ..backends.base import AnimateRequest

    if args.list_motions:
        print("\n".join(list_motion_names(args.backend or configured("backend") or "")))
        return 0
    if not args.image:
        print("soulid: animate needs an IMAGE", file=sys.stderr)
        return 2
    choose_backend(args)
    try:
        motions = [parse_motion(m) for m in args.motion]
        size = tuple(int(x) for x in args.size.lower().split("x")) if args.size else None
    except ValueError as e:
        print(f"soulid: {e}", file=sys.stderr)
        return 2
    out = clip_path(args) if not args.estimate else None
    options = _options(args)
    if out is not None and args.backend == "local" and out.suffix.lower() == ".mp4":
        options["out"] = str(out)  # the local engine writes the clip in place
    req = AnimateRequest(image=_image(args.image), prompt=args.prompt,
                         end_image=_image(args.end) if args.end else None, motions=motions,
                         model=args.model or "", seed=args.seed, seconds=args.seconds, fps=args.fps,
                         size=size, soul=_soul(args), options=options)
    res, rc = _run(args, lambda be, pr, it: be.animate(req, pr, it), req)
    if res is None:
        return rc
    files = []
    if not res.info.get("estimate_only"):
        write_clip(Path(res.path), out)
        if args.backend == "local" and Path(res.path).resolve() != out.resolve():
            Path(res.path).unlink(missing_ok=True)
        files = [out]
        log_to_soul(args, res, [_image(args.image)], files)
    _report(args, res, files)
    return 0
