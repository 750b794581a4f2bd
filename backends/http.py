"""The pack's one HTTP transport: every client is made by :func:`client`
(httpx), and every retry loop follows :data:`RETRY` (:class:`RetryPolicy`).

Used by the cloud job engine (API and media clients), result downloads
(:mod:`.media`), provider list refreshes (:mod:`.presets`) and the ComfyUI
runner (:mod:`.comfyui`). Redirects are never followed by the client: a
caller that allows one checks the target first (:func:`.media.check_url`).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator

import httpx


def client(base_url: str = "", *, timeout: float = 60.0, headers: dict | None = None,
           trust_env: bool = True) -> httpx.Client:
    """A new ``httpx.Client``: ``timeout`` seconds per read (connect at most
    10 s), redirects not followed, ``headers`` on every request.

    Args:
        base_url: prefix of relative request URLs ("" for none).
        trust_env: read proxies and ``.netrc`` from the environment (cloud
            providers); False for a ComfyUI server named explicitly.
    """
    return httpx.Client(base_url=base_url, timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
                        headers=headers or {}, follow_redirects=False, trust_env=trust_env)


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before sending a request again.

    Attributes:
        max_retries: retries after the first try.
        initial: first wait, seconds; each next wait doubles up to ``cap``.
        cap: the longest wait, seconds.
        jitter: each wait is scaled by a random factor in ``1 +- jitter``.
    """

    max_retries: int = 6
    initial: float = 1.0
    cap: float = 10.0
    jitter: float = 0.2

    @staticmethod
    def retryable(status: int) -> bool:
        """HTTP 408, 429 and 5xx are worth another try; any other status is the answer."""
        return status in (408, 429) or status >= 500

    def waits(self, initial: float | None = None, cap: float | None = None) -> Iterator[float]:
        """The ``max_retries`` waits, seconds: ``initial`` doubling to ``cap``, jittered."""
        delay = self.initial if initial is None else initial
        top = self.cap if cap is None else cap
        for _ in range(self.max_retries):
            yield delay * random.uniform(1 - self.jitter, 1 + self.jitter)
            delay = min(delay * 2, top)


#: The one retry policy of the pack.
RETRY = RetryPolicy()
