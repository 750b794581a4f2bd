"""Image-to-video with one diffusers pipeline: **Wan 2.x I2V**
(``diffusers.WanImageToVideoPipeline``; Wan team, "Wan: Open and Advanced
Large-Scale Video Generative Models", arXiv:2503.20314,
https://huggingface.co/docs/diffusers/api/pipelines/wan).

Why Wan rather than LTX-Video: Wan's weights are Apache-2.0 (usable
commercially, like the rest of this pack's MIT code), its image conditioning
keeps the first frame's face closely, and one diffusers class serves both
Wan 2.1 I2V (14B, 480p/720p) and Wan 2.2 TI2V-5B (720p at 24 fps, fits a
24 GB GPU with model offload). LTX-Video is faster but its newer weights come
under a custom licence with revenue limits.

Model folder: ``models/diffusers/<name>/model_index.json`` (default
``Wan2.2-TI2V-5B-Diffusers``) or a Hugging Face repo id in ``options["i2v_model"]``.
The motion preset becomes prompt language (:data:`camera.MOTIONS` ``prompt``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...soul.errors import SoulIDError
from ...soul.imageio import to_uint8
from ..base import AnimateRequest, VideoResult
from .. import camera
from .models import find_i2v

#: Native frame rate of each Wan family (frames are generated at this rate).
NATIVE_FPS = {"2.2": 24, "2.1": 16}


def motion_prompt(prompt: str, motions: list[tuple[str, float]]) -> str:
    """The user's prompt followed by each move in words; strength < 0.5 says
    "subtle", >= 0.9 says "pronounced"."""
    parts = [prompt.strip()] if prompt and prompt.strip() else []
    for name, s in motions:
        words = camera.motion_spec(name).prompt
        if s < 0.5:
            words = f"subtle {words}"
        elif s >= 0.9:
            words = f"pronounced {words}"
        parts.append(words)
    parts.append("the person's face stays consistent, natural motion")
    return ", ".join(parts)


def frame_count(seconds: float, fps: float) -> int:
    """Wan generates ``4k + 1`` frames; the nearest such count to ``seconds * fps``."""
    n = max(5, int(round(seconds * fps)))
    return 4 * round((n - 1) / 4) + 1


def animate_i2v(req: AnimateRequest, out: Path, motions: list[tuple[str, float]], o: dict,
                progress=None, interrupt=None) -> VideoResult:
    """Animate ``req.image`` with Wan I2V and write an MP4 to ``out``.

    Raises:
        ModelFilesMissing: no Wan pipeline folder.
        Interrupted: interrupted between denoising steps.
    """
    import diffusers
    import torch
    from PIL import Image

    from .pipelines import _generator, _step_callback, device_and_dtype

    path = find_i2v(o.get("i2v_model", ""))
    device, dtype = device_and_dtype(o.get("device"), o.get("dtype"))
    pipe = diffusers.WanImageToVideoPipeline.from_pretrained(path, torch_dtype=getattr(torch, dtype))
    if o.get("offload", "none") == "model" and device.startswith("cuda"):
        pipe.enable_model_cpu_offload()
    else:
        pipe.to(device)
    img = np.clip(np.asarray(req.image, np.float32), 0, 1)
    w, h = req.size or (img.shape[1], img.shape[0])
    m = 32
    w, h = max(m, int(w) // m * m), max(m, int(h) // m * m)
    native = NATIVE_FPS["2.1"] if "2.1" in path else NATIVE_FPS["2.2"]
    n = frame_count(req.seconds, native)
    steps = int(o.get("steps", 30))
    gen, seed = _generator(req.seed)
    frames = pipe(
        image=Image.fromarray(to_uint8(img)).resize((w, h)),
        prompt=motion_prompt(req.prompt, motions), height=h, width=w, num_frames=n,
        num_inference_steps=steps, guidance_scale=float(o.get("guidance", 5.0)), generator=gen,
        output_type="np", callback_on_step_end=_step_callback(steps, progress, interrupt, "i2v"),
    ).frames[0]
    frames_u8 = [to_uint8(f) for f in np.asarray(frames)]
    if not frames_u8:
        raise SoulIDError("i2v: the pipeline returned no frames")
    info = camera.write_mp4(iter(frames_u8), out, native)
    return VideoResult(info.path, info.fps, info.frames, info.width, info.height,
                       info={"engine": "i2v", "model": path, "seed": seed, "prompt": motion_prompt(req.prompt, motions)})
