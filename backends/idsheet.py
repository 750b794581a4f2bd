"""The ID photo sheet through a backend: the one place where the sheet's
views (:mod:`soulid.soul.idsheet`) become :class:`~.base.GenerateRequest`\\ s."""
from __future__ import annotations

import numpy as np

from ..soul.idsheet import ViewFn, ViewRequest
from .base import GenerateRequest


def view_generator(backend, soul, quality: str = "1080p", options: dict | None = None) -> ViewFn:
    """A :data:`soulid.soul.idsheet.ViewFn` that generates each view with
    ``backend`` (any :class:`~.base.Backend`) and ``soul``'s identity.

    Returns:
        ``generate_view(request, interrupt) -> (image [H, W, 3] float32 0..1,
        {"request_id", "cost"})``.
    """

    def generate_view(v: ViewRequest, interrupt=None) -> tuple[np.ndarray, dict]:
        req = GenerateRequest(prompt=v.prompt, soul=soul, aspect=v.aspect, quality=quality, seed=v.seed,
                              negative_prompt=v.negative_prompt, options=dict(options or {}))
        res = backend.generate(req, progress=None, interrupt=interrupt)
        return res.images[0], {"request_id": res.request_id, "cost": res.cost}

    return generate_view


__all__ = ["view_generator"]
