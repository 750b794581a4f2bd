"""Post-training check: does the persona LoRA draw the person?

Generates ``k`` images from prompts not used in training (the trigger token
in new settings), on the base with the LoRA, and scores them with the drift
guard (:func:`soulid.soul.guard.check_images`: cosine similarity to the Soul
ID's centroid, judged against the person's own threshold; no face = fail).
"""
from __future__ import annotations

import numpy as np

from ....soul import progress as prog
from ....soul.guard import check_images

#: Held-out prompts (``{t}`` = "<trigger> <class word>").
HELD_OUT_PROMPTS = (
    "a photo of {t}, outdoors in a park, natural light",
    "a portrait photo of {t} smiling, studio lighting",
    "a photo of {t} looking to the side, city street at dusk",
    "a close-up photo of {t}, soft window light",
)


def run_check(soul, pipe, subject: str, k: int = 4, steps: int = 25, size: int = 1024, seed: int = 0,
              device: str = "cpu", progress=None, interrupt=None) -> dict:
    """Generate ``k`` held-out-prompt images with ``pipe`` (LoRA loaded) and score them.

    Returns:
        ``{"k", "prompts", "mean_similarity" (None when no face anywhere),
        "pass_rate" (0..1), "threshold", "analyzer", "steps", "size"}``.
    """
    import torch

    prompts = [HELD_OUT_PROMPTS[i % len(HELD_OUT_PROMPTS)].format(t=subject) for i in range(k)]
    images = []
    for i, p in enumerate(prompts):
        prog.check(interrupt, f"check image {i + 1}/{k}")
        g = torch.Generator("cpu").manual_seed(seed + i)
        with torch.inference_mode():
            out = pipe(prompt=p, num_inference_steps=steps, width=size, height=size, generator=g,
                       output_type="np").images
        images.append(np.clip(np.asarray(out[0], np.float32), 0, 1))
        prog.report(progress, (i + 1) / k, f"check image {i + 1}/{k}")
    rep = check_images(soul, images, labels=prompts)
    sims = [e.similarity for e in rep.entries if e.similarity is not None]
    return {
        "k": k, "prompts": prompts, "steps": steps, "size": size, "analyzer": rep.analyzer,
        "threshold": rep.threshold,
        "mean_similarity": round(float(np.mean(sims)), 4) if sims else None,
        "pass_rate": round(sum(e.passed for e in rep.entries) / k, 4),
        "faces_found": len(sims),
    }
