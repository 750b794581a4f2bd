"""Bounded downloads of job outputs and safe local file names.

* :func:`stream_to_file` streams one HTTP response to a uniquely named temp
  file in the destination folder, 64 KiB at a time (memory stays flat for
  any size), refuses a body over ``max_bytes`` (from ``Content-Length``
  before reading, and while reading), and ends at a total ``deadline`` as
  well as on each read's timeout, so a server trickling one byte a second
  cannot hold it forever. The temp file is then hard-linked to its final
  name, which never replaces an existing file.
* :func:`safe_name` makes a local file name from a server's name: only the
  last path component, only ``[A-Za-z0-9._-]``, no leading dot, at most
  100 bytes; the server never chooses a folder.
"""
from __future__ import annotations

from pathlib import Path

import httpx

from ...soul.paths import publish, temp_path
from ..media import UNSAFE_NAME_CHARS
from .base import REQUEST_TIMEOUT_S, Deadline, DeadlineExceeded, ServerError, WorkerDown

#: Default largest output accepted, bytes (2 GiB: a long video).
MAX_OUTPUT_BYTES = 2 << 30
CHUNK = 1 << 16


class Redirected(ServerError):
    """The server answered a redirect; ``location`` is where (not followed here)."""

    def __init__(self, what: str, location: str):
        self.location = location
        super().__init__(f"{what}: redirected to {location[:200]!r}")


def safe_name(server_name: object, fallback: str) -> str:
    """A local file name made from ``server_name`` (see the module docstring);
    ``fallback`` when nothing usable is left."""
    text = str(server_name).replace("\\", "/").rsplit("/", 1)[-1] if isinstance(server_name, str) else ""
    text = UNSAFE_NAME_CHARS.sub("_", text).lstrip("._")
    stem, dot, ext = text.rpartition(".")
    if not dot:
        stem, ext = text, ""
    ext = ext[:12]
    stem = stem[: 100 - len(ext) - 1]
    name = f"{stem}.{ext}" if stem and ext else (stem or "")
    return name or fallback


def place_no_clobber(tmp: Path, dest: Path) -> Path:
    """Give ``tmp`` the name ``dest``, or ``stem_1.ext``, ``stem_2.ext`` ... when
    taken (:func:`soulid.soul.paths.publish` with ``exclusive``: nothing is replaced).
    ``tmp`` is removed. Returns the final path."""
    stem, suffix = dest.stem, dest.suffix
    for i in range(100000):
        cand = dest if i == 0 else dest.with_name(f"{stem}_{i}{suffix}")
        try:
            publish(tmp, cand, mode=0o600, exclusive=True)  # fsynced, never over an existing file
        except FileExistsError:
            continue
        tmp.unlink(missing_ok=True)
        return cand
    raise ServerError(f"{dest}: no free file name")


def stream_to_file(client: httpx.Client, url: str, dest: Path, *, params: dict | None = None,
                   max_bytes: int = MAX_OUTPUT_BYTES, deadline: Deadline, what: str = "output",
                   request_timeout: float = REQUEST_TIMEOUT_S) -> Path:
    """Stream ``GET url`` into ``dest`` (or a free ``dest_N`` name); return the path written.

    Raises:
        WorkerDown: transport error or timeout (the server is unusable).
        ServerError: HTTP status other than 200, a body over ``max_bytes``,
            a truncated body. Nothing is left on disk.
        DeadlineExceeded: ``deadline`` passed while reading.
    """
    tmp = temp_path(dest)
    try:
        with open(tmp, "wb") as f:
            try:
                with client.stream("GET", url, params=params, timeout=deadline.timeout(request_timeout)) as r:
                    if r.is_redirect:
                        raise Redirected(what, r.headers.get("location", ""))
                    if r.status_code != 200:
                        raise ServerError(f"{what}: HTTP {r.status_code} from {r.request.url.path}")
                    length = r.headers.get("content-length")
                    if length and length.isdigit() and int(length) > max_bytes:
                        raise ServerError(f"{what} is {int(length)} bytes, over the {max_bytes} byte limit "
                                          f"(--max-output-mb)")
                    n = 0
                    for chunk in r.iter_raw():  # as the bytes arrive: a trickle still meets the deadline
                        n += len(chunk)
                        if n > max_bytes:
                            raise ServerError(f"{what} exceeds the {max_bytes} byte limit (--max-output-mb)")
                        f.write(chunk)
                        if deadline.expired():
                            raise DeadlineExceeded(f"{what}: download not finished before the deadline "
                                                   f"({n} bytes received)")
                    if length and length.isdigit() and n != int(length):
                        raise ServerError(f"{what}: truncated ({n} of {length} bytes)")
            except httpx.TimeoutException:
                if deadline.expired():
                    raise DeadlineExceeded(f"{what}: download not finished before the deadline") from None
                raise WorkerDown(f"{what}: the server stopped sending") from None
            except httpx.TransportError as e:
                raise WorkerDown(f"{what}: download failed ({e})") from None
        return place_no_clobber(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
