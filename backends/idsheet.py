"""The ID photo sheet through a backend: the one place where the sheet's
views (:mod:`soulid.soul.idsheet`) become :class:`~.base.GenerateRequest`\\ s."""
from __future__ import annotations

import numpy as np

from ..soul.idsheet import ViewFn, ViewRequest
from .base import GenerateRequest


def generate_request(v: ViewRequest, soul, quality: str = "1080p", options: dict | None = None) -> GenerateRequest:
    """The :class:`~.base.GenerateRequest` of one ID-sheet view for ``soul``."""
    return GenerateRequest(prompt=v.prompt, soul=soul, aspect=v.aspect, quality=quality, seed=v.seed,
                           negative_prompt=v.negative_prompt, options=dict(options or {}))


def view_generator(backend, soul, quality: str = "1080p", options: dict | None = None) -> ViewFn:
    """A :data:`soulid.soul.idsheet.ViewFn` that generates each view with
    ``backend`` (any :class:`~.base.Backend`) and ``soul``'s identity.

    Returns:
        ``generate_view(request, interrupt) -> (image [H, W, 3] float32 0..1,
        {"request_id", "cost"})``.
    """

    def generate_view(v: ViewRequest, interrupt=None) -> tuple[np.ndarray, dict]:
        res = backend.generate(generate_request(v, soul, quality, options), progress=None, interrupt=interrupt)
        return res.images[0], {"request_id": res.request_id, "cost": res.cost}

    return generate_view


__all__ = ["generate_request", "view_generator"]
