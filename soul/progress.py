"""The one progress and interrupt signature of the pack.

Every long-running step takes ``progress`` and ``interrupt`` keyword
arguments of these types (both optional):

* ``progress(fraction, message)``: ``fraction`` is the share done, a float in
  ``[0, 1]``, or None when the step cannot tell (a cloud job waiting in a
  provider's queue); ``message`` is one short human-readable line
  ("photo 3/20: obama.jpg", "denoising step 12/30").
* ``interrupt()``: returns True when the user asked to stop; the step then
  raises :class:`soulid.soul.errors.Interrupted` at its next safe point.
"""
from __future__ import annotations

from typing import Callable

from .errors import Interrupted

ProgressFn = Callable[[float | None, str], None]
InterruptFn = Callable[[], bool]


def report(progress: ProgressFn | None, fraction: float | None, message: str) -> None:
    """Call ``progress`` if given (fraction clipped to [0, 1])."""
    if progress is not None:
        progress(None if fraction is None else min(1.0, max(0.0, float(fraction))), message)


def check(interrupt: InterruptFn | None, where: str = "") -> None:
    """Raise :class:`Interrupted` if ``interrupt`` says so.

    Args:
        interrupt: the caller's interrupt callable, or None.
        where: what was running, for the message ("photo 4 of 20").
    """
    if interrupt is not None and interrupt():
        raise Interrupted(f"interrupted{' at ' + where if where else ''}")
