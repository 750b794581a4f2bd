"""Provider preset and motion lists over HTTP: the network side of
:func:`soulid.soul.presets.cached_lists` (the core only ever receives a
``fetch_json`` callable and does no network I/O itself). The authenticated
Higgsfield fetch is :meth:`soulid.backends.higgsfield.HiggsfieldBackend.fetch_json`;
this one serves a plain list endpoint (a mirror, the test stand-in).
"""
from __future__ import annotations

from ..soul.presets import FetchJson
from . import http


def http_fetch_json(base_url: str, headers: dict | None = None, timeout: float = 20.0) -> FetchJson:
    """A :data:`~soulid.soul.presets.FetchJson` doing ``GET base_url + path``
    on a client from :func:`.http.client`, tried again per :data:`.http.RETRY`
    on 408/429/5xx.

    The cloud backend supplies ``headers`` (credentials come from the
    environment or the user's credentials file, never from here).

    Raises (from the returned function):
        httpx.HTTPError: connection failure or a non-2xx status.
    """
    import time

    def fetch(path: str):
        with http.client(timeout=timeout, headers=headers) as c:
            waits = http.RETRY.waits(0.5, 2.0)
            while True:
                r = c.get(base_url.rstrip("/") + path)
                wait = next(waits, None) if http.RETRY.retryable(r.status_code) else None
                if wait is None:
                    break
                time.sleep(wait)
        r.raise_for_status()
        return r.json()

    return fetch
