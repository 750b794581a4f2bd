"""One ``--server`` entry -> a connected :class:`~.base.Worker`.

``v2+http(s)://HOST`` is a Comfy API v2 endpoint, ``native+http(s)://HOST``
a ComfyUI server's own API; a plain ``http(s)://`` URL is probed: ``GET
/api/v2/health`` answering JSON means v2, else ``GET /system_stats``
answering JSON means native ComfyUI. The v2 key comes from the environment
(``COMFY_API_KEY``) only, never from a plan, a URL or a manifest.
"""
from __future__ import annotations

import os
from urllib.parse import urlsplit

import httpx

from .. import http
from .base import REQUEST_TIMEOUT_S, Deadline, ServerError, Worker, WorkerDown
from .native import NativeWorker
from .v2 import V2Worker

#: Environment variable holding the Comfy API key sent to v2 servers.
API_KEY_ENV = "COMFY_API_KEY"


def split_scheme(entry: str) -> tuple[str | None, str]:
    """``(kind or None, http URL)`` of one ``--server`` entry.

    Raises:
        ServerError: not ``[v2+|native+]http(s)://HOST[:PORT]``, or a URL
            carrying user:password (keys belong in the environment).
    """
    kind = None
    for prefix in ("v2+", "native+"):
        if entry.startswith(prefix):
            kind, entry = prefix[:-1], entry[len(prefix):]
    parts = urlsplit(entry)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServerError(f"--server {entry!r}: expected [v2+|native+]http(s)://HOST:PORT")
    if parts.username or parts.password:
        raise ServerError(f"--server {parts.hostname}: no credentials in the URL; set {API_KEY_ENV} instead")
    if parts.query or parts.fragment:
        raise ServerError(f"--server {entry!r}: no query or fragment")
    return kind, entry.rstrip("/")


def probe(url: str, timeout: float = 10.0) -> str:
    """``"v2"`` or ``"native"`` for the server at ``url``.

    Raises:
        WorkerDown: unreachable. ServerError: neither API answers.
    """
    def answers_json(c: httpx.Client, route: str) -> bool:
        with c.stream("GET", route) as r:  # the status and type only: a body is never read
            return r.status_code == 200 and "json" in r.headers.get("content-type", "")

    with http.client(url, timeout=timeout, trust_env=False) as c:
        try:
            if answers_json(c, "/api/v2/health"):
                return "v2"
            if answers_json(c, "/system_stats"):
                return "native"
        except httpx.TransportError as e:
            raise WorkerDown(f"cannot reach ComfyUI at {url} ({type(e).__name__}: {e})") from None
    raise ServerError(f"{url} answers neither the Comfy API v2 (/api/v2/health) nor ComfyUI's "
                      f"/system_stats; force the kind with v2+{url} or native+{url}")


def connect(entry: str, deadline: Deadline | None = None, request_timeout: float = REQUEST_TIMEOUT_S) -> Worker:
    """A worker for one ``--server`` entry (probing when no ``v2+``/``native+`` prefix).
    ``request_timeout``: seconds one request may take before the worker counts as down."""
    kind, url = split_scheme(entry)
    if kind is None:
        kind = probe(url, timeout=(deadline.timeout(10.0) if deadline else 10.0))
    if kind == "v2":
        return V2Worker(url, api_key=os.environ.get(API_KEY_ENV) or None, request_timeout=request_timeout)
    return NativeWorker(url, request_timeout=request_timeout)
