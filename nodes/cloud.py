"""What every paying node shares: a
backend that is closed after the run, a ``max_usd`` budget over all of a
node's attempts, the engine run off ComfyUI's event loop, and the cost line
shown on the node.

* :func:`call_backend` runs one backend method in a worker thread
  (``asyncio.to_thread``), so that independent paid nodes of one prompt wait
  on their providers side by side (the engine caps jobs in flight per
  provider). ComfyUI's interrupt flag is global, so a Cancel reaches the
  thread: a queued job is canceled, a running one is left to resume.
* :class:`Budget` turns a node's ``max_usd`` into the engine's shared budget
  (``options["budget"]``): the engine reserves each new job's estimate
  before submitting and refuses one that would go over; the node refuses a
  further attempt once the last one's price no longer fits.
* :func:`cost_text` is the line every paid node shows: the provider's
  estimate, or "no estimate" where the provider gives none.

Nothing here loads a model or touches ComfyUI; ComfyUI's progress bar and
interrupt come from :mod:`.comfy_progress`.
"""
from __future__ import annotations

import asyncio
from dataclasses import replace

from ..backends.base import get_backend
from ..backends.engine import Budget as SharedBudget
from ..soul.errors import Interrupted, SoulIDError
from .comfy_progress import comfy_hooks, raise_if_interrupted

#: The backends a paying node may use inside ComfyUI. ``local`` generation is
#: not one of them: inside ComfyUI the user's own MODEL does that natively.
CLOUD_BACKENDS = ["higgsfield", "wavespeed", "aurashot"]


class BudgetExhausted(SoulIDError):
    """The node's ``max_usd`` does not cover another attempt."""


class Budget(SharedBudget):
    """A node run's ``max_usd``: the engine's shared
    :class:`soulid.backends.engine.Budget` (the one budget of the pack, which
    reserves each new paid job's estimate before it is submitted and refuses
    one that would go over) plus what a node shows and how it plans attempts.

    Args:
        max_usd: US dollars for every attempt together; 0 or None = no limit.

    Attributes:
        attempts: attempts made (reused or resumed ones included).
        last_usd: the last attempt's price, used to refuse the next one early.
    """

    def __init__(self, max_usd: float | None, label: str = "node budget"):
        super().__init__(float(max_usd) if max_usd and max_usd > 0 else None, label)
        self.attempts = 0
        self.last_usd: float | None = None
        self.estimated = False

    def can_afford_next(self) -> bool:
        """False when the next attempt, priced like the last, would go over."""
        if self.max_usd is None:
            return True
        need = self.last_usd if self.last_usd is not None else 0.0
        return self.spent + need <= self.max_usd + 1e-9 and self.remaining > 0

    def options(self, options: dict | None) -> dict:
        """``options`` carrying this budget: the engine reserves each new paid
        job's estimate against it, so reused or resumed results cost nothing."""
        return {**dict(options or {}), "budget": self}

    def charge(self, cost: dict | None) -> None:
        """Record one finished attempt (the engine already reserved its price)."""
        self.attempts += 1
        if cost and cost.get("usd") is not None:
            self.estimated = True
            self.last_usd = float(cost["usd"])

    def text(self, reused: bool = False) -> str:
        """The budget line a node shows; ``reused``: the result came from an
        earlier paid request (resumed or reused), so nothing new was paid."""
        limit = "no limit" if self.max_usd is None else f"max ${self.max_usd:.2f}"
        if reused and self.spent <= 0:
            return f"nothing paid by this run: the earlier paid result was reused ({limit})"
        if not self.estimated:
            return f"{counted(self.attempts, 'paid attempt')}, no estimate from the provider ({limit})"
        return f"{counted(self.attempts, 'paid attempt')}, ${self.spent:.2f} spent by this run ({limit})"


def preflight(backend, req, budget: Budget, attempts: int, what: str) -> int:
    """How many of ``attempts`` priced like ``req`` fit the budget, asked
    before anything is paid (the provider's estimate, nothing submitted).

    Returns ``attempts`` when there is no limit or the provider gives no
    estimate (the engine then refuses the first job it cannot check).

    Raises:
        BudgetExhausted: not even one attempt fits.
    """
    if budget.max_usd is None:
        return attempts
    est = backend.generate(replace(req, options={**req.options, "estimate_only": True}), None, None).cost
    if not est or est.get("usd") is None:
        return attempts
    each = float(est["usd"])
    fit = attempts if each <= 0 else min(attempts, int((budget.max_usd + 1e-9) // each))
    if fit < 1:
        raise BudgetExhausted(f"{what}: one attempt is estimated at ${each:.2f}, above max_usd "
                              f"${budget.max_usd:.2f}; nothing was submitted")
    return fit


class BudgetedBackend:
    """A backend whose every call goes through one :class:`Budget`: the
    request's ``options`` get the remaining ``max_usd``, the result's cost is
    charged, and an attempt the budget cannot cover raises
    :class:`BudgetExhausted` before anything is submitted."""

    def __init__(self, backend, budget: Budget):
        self.backend = backend
        self.budget = budget
        self.name = getattr(backend, "name", "")

    def _call(self, method: str, req, progress=None, interrupt=None):
        if not self.budget.can_afford_next():
            raise BudgetExhausted(
                f"max_usd ${self.budget.max_usd:.2f} is spent (${self.budget.spent:.2f} over "
                f"{counted(self.budget.attempts, 'attempt')}); the next attempt was not submitted")
        req = replace(req, options=self.budget.options(req.options))
        res = getattr(self.backend, method)(req, progress, interrupt)
        self.budget.charge(res.cost)
        return res

    def generate(self, req, progress=None, interrupt=None):
        return self._call("generate", req, progress, interrupt)

    def edit(self, req, progress=None, interrupt=None):
        return self._call("edit", req, progress, interrupt)

    def animate(self, req, progress=None, interrupt=None):
        return self._call("animate", req, progress, interrupt)


def open_backend(name: str, **backend_kw):
    """The backend called ``name``; a missing optional package becomes a
    readable error."""
    try:
        return get_backend(name, **backend_kw)
    except ModuleNotFoundError as e:
        raise SoulIDError(f"the {name} backend is not available here ({e})") from None


def close_backend(backend) -> None:
    """Close the backend's HTTP clients (its ``close()``, when it has one)."""
    close = getattr(getattr(backend, "backend", backend), "close", None)
    if close is not None:
        close()


def run_with_backend(name: str, work, **backend_kw):
    """``work(backend, progress, interrupt)`` with a fresh backend that is
    closed afterwards; an interrupt surfaces as ComfyUI's own exception."""
    progress, interrupt = comfy_hooks()
    be = open_backend(name, **backend_kw)
    try:
        return work(be, progress, interrupt)
    except Exception as e:
        if isinstance(e, Interrupted):
            raise_if_interrupted()
        from . import tidy_error_names

        tidy_error_names()  # a provider module imported just now: its errors read "soulid...." too
        raise
    finally:
        close_backend(be)


async def call_backend(name: str, method: str, req, budget: Budget | None = None, **backend_kw):
    """``backend.<method>(req)`` in a worker thread, through ``budget``."""
    def work(be, progress, interrupt):
        target = BudgetedBackend(be, budget) if budget is not None else be
        return getattr(target, method)(req, progress, interrupt)

    return await asyncio.to_thread(run_with_backend, name, work, **backend_kw)


def counted(n: int, noun: str) -> str:
    """``"1 paid attempt"``, ``"3 paid attempts"``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def cost_text(provider: str, cost: dict | None, reused: bool = False) -> str:
    """One line for the node: the provider's estimate, or "no estimate"."""
    tail = " (reused: not paid again)" if reused else ""
    if not cost or cost.get("usd") is None:
        return f"{provider}: no estimate{tail}"
    credits = f", {cost['credits']:g} credits" if cost.get("credits") is not None else ""
    return f"{provider}: ${float(cost['usd']):.2f} estimated{credits}{tail}"
