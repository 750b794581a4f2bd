"""Safe transfer of provider media: URL checks, streamed downloads, decoding.

* :func:`check_url` is the SSRF guard: HTTPS only (plain HTTP only to a
  loopback host, and only when loopback is allowed, i.e. the configured API
  is itself on loopback); no private, link-local, multicast, reserved or
  unspecified address, checked on every address the host name resolves to
  (OWASP SSRF prevention cheat sheet,
  https://cheatsheetseries.owasp.org/cheatsheets/Server_Side_Request_Forgery_Prevention_Cheat_Sheet.html).
* :func:`download` never sends an auth header, follows at most
  :data:`MAX_REDIRECTS` redirects itself (each hop re-checked), streams to a
  temp file with a size cap, checks the content type and the magic bytes,
  then renames atomically.
* :func:`decode_images` turns files into IMAGE-layout arrays; :func:`probe_video`
  reads an MP4's frame rate, frame count and size with PyAV.
"""
from __future__ import annotations

import ipaddress
import math
import os
import re
import socket
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import numpy as np

from ..soul.errors import SoulIDError
from ..soul.imageio import sniff, to_float01, to_rgb  # noqa: F401  (sniff: the one magic-byte sniffer)
from ..soul.paths import publish, temp_path
from .http import RETRY

#: Largest accepted result, bytes (images 64 MiB, videos 512 MiB).
MAX_BYTES = {"image": 64 << 20, "video": 512 << 20}
MAX_REDIRECTS = 3
#: Default total deadline of one result download, seconds.
DOWNLOAD_DEADLINE_S = 600.0
_CTYPES = {
    "image": ("image/png", "image/jpeg", "image/webp"),
    "video": ("video/mp4", "video/quicktime"),
}


class MediaError(SoulIDError):
    """A result could not be downloaded or decoded (truncated, wrong type, too big)."""


class UnsafeURL(MediaError):
    """A URL was refused by the SSRF / host checks."""


class InvalidNumber(SoulIDError, ValueError):
    """A numeric option (timeout, deadline, budget) is NaN, infinite, negative
    or not a number."""


class ResultExpired(MediaError):
    """The provider no longer serves a result (HTTP 403/404/410 on the media URL)."""


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: Host names of cloud metadata services, refused before any DNS lookup.
METADATA_HOSTS = frozenset({
    "metadata", "metadata.google.internal", "metadata.goog", "metadata.azure.com", "instance-data",
    "instance-data.ec2.internal", "metadata.oraclecloud.com", "metadata.tencentyun.com",
    "metadata.platformequinix.com", "100-100-100-200.aliyun",
})
#: Non-global IPv4 ranges that :attr:`ipaddress.IPv4Address.is_global` misses
#: on some Python versions (RFC 6890 special-purpose registry).
_EXTRA_V4 = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "240.0.0.0/4", "255.255.255.255/32"))
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def _embedded_v4(a: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (IPv4-mapped, 6to4, Teredo
    client, NAT64, IPv4-compatible), or None."""
    if a.ipv4_mapped is not None:
        return a.ipv4_mapped
    if a.sixtofour is not None:
        return a.sixtofour
    if a.teredo is not None:
        return a.teredo[1]
    if any(a in n for n in _NAT64):
        return ipaddress.IPv4Address(int(a) & 0xFFFFFFFF)
    if int(a) >> 32 == 0 and int(a) > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(int(a) & 0xFFFFFFFF)
    return None


def refusal(addr, allow_loopback: bool = False) -> str | None:
    """Why ``addr`` (an IP address) must not be fetched, or None if it is a
    global unicast address (or loopback while ``allow_loopback``)."""
    a = ipaddress.ip_address(addr) if isinstance(addr, str) else addr
    if isinstance(a, ipaddress.IPv6Address):
        v4 = _embedded_v4(a)
        if v4 is not None:
            why = refusal(v4, allow_loopback)
            return f"{why} (embedded in {a})" if why else None
    if a.is_loopback:
        return None if allow_loopback else "a loopback address"
    if a.is_unspecified:
        return "the unspecified address"
    if a.is_link_local:
        return "a link-local address (cloud metadata lives there)"
    if a.is_multicast:
        return "a multicast address"
    if isinstance(a, ipaddress.IPv4Address) and any(a in n for n in _EXTRA_V4):
        return "a shared, reserved or special-purpose address"
    if a.is_private or a.is_reserved or not a.is_global:
        return "a private or non-global address"
    return None


def _addresses(host: str) -> list[ipaddress._BaseAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise UnsafeURL(f"cannot resolve host {host!r} ({e.strerror})") from None
    return [ipaddress.ip_address(i[4][0].split("%")[0]) for i in infos]


def check_url(url: str, *, allow_loopback: bool = False, host: str | None = None, what: str = "URL") -> str:
    """Refuse ``url`` unless it is safe to fetch; returns it unchanged.

    Args:
        url: absolute URL.
        allow_loopback: accept ``http://127.0.0.1...`` (tests, local proxies);
            the engine sets it only when the configured API is itself on loopback.
        host: if given, the URL's host:port must equal it (status/cancel URLs
            must stay on the configured API host).
        what: name used in the message (``"status URL"``...).

    Raises:
        UnsafeURL: not http(s), plain HTTP off loopback, wrong host, a known
            cloud-metadata host name, or any address that is not global
            unicast (private, shared 100.64.0.0/10, 192.0.0.0/24, link-local,
            multicast, reserved, unspecified, and the IPv4-mapped, 6to4,
            Teredo and NAT64 forms of those), checked on every address the
            host name resolves to; loopback only when ``allow_loopback``.
    """
    parts = urlsplit(url)
    try:
        hostname = parts.hostname
    except ValueError:
        hostname = None
    if parts.scheme not in ("https", "http") or not hostname:
        raise UnsafeURL(f"{what} {url!r} is not an http(s) URL")
    if host is not None and parts.netloc.lower() != host.lower():
        raise UnsafeURL(f"{what} {url!r} is not on the configured API host {host}")
    name = hostname.rstrip(".").lower()
    if name in METADATA_HOSTS:
        raise UnsafeURL(f"{what} {url!r} names a cloud metadata host")
    if name == "localhost" and not allow_loopback:
        raise UnsafeURL(f"{what} {url!r} points at a loopback address (localhost)")
    addrs = _addresses(hostname)
    for a in addrs:
        why = refusal(a, allow_loopback)
        if why:
            raise UnsafeURL(f"{what} {url!r} points at {why} ({a})")
    if parts.scheme == "http" and not all(a.is_loopback for a in addrs):
        raise UnsafeURL(f"{what} {url!r}: plain HTTP is accepted only on loopback; HTTPS required")
    return url


_EXT = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "video/mp4": ".mp4"}


def download(client: httpx.Client, url: str, dest: Path, kind: str = "image", *,
             allow_loopback: bool = False, max_bytes: int | None = None, retries: int = 2,
             deadline_s: float | None = None) -> Path:
    """Stream ``url`` to ``dest`` (extension set from the sniffed type).

    No auth header is sent (``client`` must be a bare client). Network errors
    and truncated bodies are retried ``retries`` times (waits of
    :data:`.http.RETRY`). The body streams to a
    uniquely named temp file in ``dest``'s folder (memory stays at one 64 KiB
    chunk), under three bounds: the client's per-read timeout, the size cap
    and a total deadline for the whole download, retries and redirects
    included.

    Args:
        max_bytes: size cap (default :data:`MAX_BYTES` of ``kind``).
        deadline_s: total seconds allowed (default ``$SOULID_DOWNLOAD_TIMEOUT``
            or :data:`DOWNLOAD_DEADLINE_S`); finite and > 0.

    Returns:
        The final path (``dest`` with ``.png|.jpg|.webp|.mp4``).

    Raises:
        UnsafeURL: the URL or a redirect target fails :func:`check_url`.
        ResultExpired: HTTP 403/404/410 (the provider's link has expired).
        MediaError: other HTTP errors, too large, wrong content type or magic
            bytes, truncated after all retries.
    """
    cap = max_bytes or MAX_BYTES[kind]
    if deadline_s is None:
        deadline_s = number(os.environ.get("SOULID_DOWNLOAD_TIMEOUT", DOWNLOAD_DEADLINE_S),
                            "SOULID_DOWNLOAD_TIMEOUT", positive=True)
    deadline = time.monotonic() + number(deadline_s, "download deadline_s", positive=True)
    waits = replace(RETRY, max_retries=retries).waits(0.2, 2.0)
    while True:
        try:
            return _download_once(client, url, dest, kind, cap, allow_loopback, deadline, deadline_s)
        except (httpx.TransportError, _Truncated) as e:
            last = e
        wait = next(waits, None)
        if wait is None or time.monotonic() + wait >= deadline:
            break
        time.sleep(wait)
    raise MediaError(f"download of {kind} result failed after {retries + 1} tries: {last}")


class _Truncated(Exception):
    pass


def _download_once(client, url, dest, kind, cap, allow_loopback, deadline, deadline_s) -> Path:
    cur = url

    def late() -> None:
        if time.monotonic() > deadline:
            raise MediaError(f"{kind} download did not finish within its {deadline_s:g} s deadline")

    for _hop in range(MAX_REDIRECTS + 1):
        late()
        check_url(cur, allow_loopback=allow_loopback, what=f"{kind} URL")
        with client.stream("GET", cur, follow_redirects=False) as r:
            if r.is_redirect:
                cur = urljoin(cur, r.headers.get("location", ""))
                continue
            if r.status_code in (403, 404, 410):
                raise ResultExpired(f"{kind} result is no longer available (HTTP {r.status_code}); it has expired")
            if r.status_code != 200:
                raise MediaError(f"{kind} download failed: HTTP {r.status_code}")
            ctype = r.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype not in _CTYPES[kind] and ctype != "application/octet-stream":
                raise MediaError(f"{kind} download: unexpected content type {ctype or 'none'!r}")
            length = r.headers.get("content-length")
            if length and int(length) > cap:
                raise MediaError(f"{kind} result is {int(length)} bytes, over the {cap} byte limit")
            tmp = temp_path(dest)
            n, head = 0, b""
            try:
                with open(tmp, "wb") as f:
                    try:
                        for chunk in r.iter_bytes():  # each network read as it arrives (no buffering up)
                            n += len(chunk)
                            late()
                            if n > cap:
                                raise MediaError(f"{kind} result exceeds the {cap} byte limit")
                            if len(head) < 16:
                                head += chunk[:16]
                            f.write(chunk)
                    except httpx.RemoteProtocolError as e:
                        raise _Truncated(f"truncated download ({n} bytes received): {e}") from None
                if length and n != int(length):
                    raise _Truncated(f"truncated download: {n} of {length} bytes")
                found = sniff(head)
                if found is None or not found.startswith(kind):
                    raise MediaError(f"{kind} download: content is not a {kind} (magic bytes {head[:8]!r})")
                final = dest.with_suffix(_EXT[found])
                publish(tmp, final)
                return final
            finally:
                if tmp.exists():
                    tmp.unlink()
    raise UnsafeURL(f"{kind} URL {url!r}: more than {MAX_REDIRECTS} redirects")


def number(value, name: str, *, positive: bool = False, allow_none: bool = False) -> float | None:
    """``value`` as a finite float >= 0 (> 0 when ``positive``), for timeouts,
    deadlines and budgets.

    Raises:
        InvalidNumber: (a ``ValueError``) NaN, infinite, negative (or 0 when
            ``positive``), or not a number; the message names ``name`` and the value.
    """
    if value is None and allow_none:
        return None
    try:
        if isinstance(value, bool):
            raise TypeError
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidNumber(f"{name} must be a number, not {value!r}") from None
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise InvalidNumber(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, not {value!r}")
    return v


#: Characters never kept in a file name made from outside text (server ids, names).
UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def safe_stem(text: str, default: str = "output", max_len: int = 80) -> str:
    """A file-name stem made only of ``[A-Za-z0-9._-]``, without leading dots
    or path parts: ``"../x"`` -> ``"x"``, ``"/abs/x"`` -> ``"abs_x"``. Never
    empty (``default``)."""
    stem = UNSAFE_NAME_CHARS.sub("_", str(text)).strip("._-")
    stem = re.sub(r"\.{2,}", ".", stem)[:max_len].strip("._-")
    return stem or default


def new_output_path(folder: str | os.PathLike, stem: str, suffix: str) -> Path:
    """Reserve a new file in ``folder`` named from a local ``stem`` (made safe
    by :func:`safe_stem`): ``stem.suffix``, else ``stem-1.suffix``,
    ``stem-2.suffix``... The file is created empty with ``O_EXCL``, so two
    processes or threads never get the same name and an earlier output is
    never overwritten; write it with :func:`soulid.soul.paths.atomic_path`.

    Raises:
        OSError: ``folder`` cannot be created or written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    base = safe_stem(stem)
    suffix = "." + safe_stem(suffix.lstrip("."), "bin")
    for i in range(10000):
        p = folder / (f"{base}{suffix}" if i == 0 else f"{base}-{i}{suffix}")
        try:
            os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            return p
        except FileExistsError:
            continue
    raise OSError(f"{folder}: no free name for {base}{suffix}")


def decode_images(paths: list[Path]) -> np.ndarray:
    """Decode image files to ``[B, H, W, 3]`` float32 0..1.

    Images of different sizes are resized (Lanczos) to the first one's size,
    since an IMAGE batch has one size.

    Raises:
        MediaError: a file is not a decodable image.
    """
    from PIL import Image

    from ..soul.errors import PhotoError
    from ..soul.imageio import load_photo

    arrs = []
    for p in paths:
        try:
            rgb = load_photo(p).rgb
        except PhotoError as e:
            raise MediaError(f"downloaded result {e}") from None
        if arrs and rgb.shape != arrs[0].shape:
            h, w = arrs[0].shape[:2]
            rgb = np.asarray(Image.fromarray(rgb).resize((w, h), Image.LANCZOS))
        arrs.append(rgb)
    if not arrs:
        raise MediaError("the provider returned no images")
    return to_float01(np.stack(arrs))


def probe_video(path: Path) -> tuple[float, int, int, int]:
    """``(fps, frames, width, height)`` of a video file, read with PyAV.

    Raises:
        MediaError: not a decodable video.
    """
    import av

    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            frames = s.frames or sum(1 for _ in c.decode(s))
            return float(s.average_rate or 0), int(frames), int(s.width), int(s.height)
    except (av.error.FFmpegError, IndexError) as e:
        raise MediaError(f"{path.name}: not a decodable video ({e})") from None


def to_upload_bytes(image: np.ndarray, fmt: str = "png") -> tuple[bytes, str]:
    """``[H, W, 3]`` float32 0..1 (or uint8) -> ``(encoded bytes, content type)``."""
    from ..soul.imageio import encode_jpeg, encode_png

    a = to_rgb(image)
    if fmt == "jpeg":
        return encode_jpeg(a, quality=95), "image/jpeg"
    return encode_png(a), "image/png"
