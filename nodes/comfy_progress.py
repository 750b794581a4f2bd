"""The one ComfyUI progress and interrupt adaptor of the pack.

:func:`comfy_hooks` binds the :mod:`soulid.soul.progress` signatures
(``progress(fraction, message)``, ``interrupt()``) to ComfyUI's progress bar
and interrupt flag, for every long-running node, paid or not;
:func:`raise_if_interrupted` turns the pack's
:class:`soulid.soul.errors.Interrupted` back into ComfyUI's own exception.
ComfyUI is imported lazily, so this module imports outside ComfyUI too.
"""
from __future__ import annotations

import logging

log = logging.getLogger("soulid")

_STEPS = {"uploading": 0, "queued": 1, "concurrency": 1, "running": 2, "succeeded": 3}


def comfy_hooks():
    """``(progress, interrupt)`` bound to ComfyUI's progress bar (in
    thousandths) and interrupt flag (:mod:`soulid.soul.progress` signatures),
    for every long-running node, paid or not. Outside ComfyUI: ``(None, None)``."""
    try:
        import comfy.model_management
        import comfy.utils
    except ImportError:
        return None, None
    bar = comfy.utils.ProgressBar(1000)

    def progress(frac, msg: str = "") -> None:
        if msg:
            log.info("soulid: %s", msg)
        if frac is None:
            for k, v in _STEPS.items():
                if k in (msg or ""):
                    frac = v / 3
                    break
        if frac is not None:
            bar.update_absolute(round(1000 * max(0.0, min(1.0, frac))), 1000)

    return progress, comfy.model_management.processing_interrupted


def raise_if_interrupted() -> None:
    """Turn a pending ComfyUI interrupt into ComfyUI's own exception."""
    try:
        import comfy.model_management
    except ImportError:
        return
    comfy.model_management.throw_exception_if_processing_interrupted()
