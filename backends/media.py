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
import os
import socket
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import numpy as np

from ..soul.errors import SoulIDError
from ..soul.imageio import sniff, to_float01, to_uint8  # noqa: F401  (sniff: the one magic-byte sniffer)

#: Largest accepted result, bytes (images 64 MiB, videos 512 MiB).
MAX_BYTES = {"image": 64 << 20, "video": 512 << 20}
MAX_REDIRECTS = 3
_CTYPES = {
    "image": ("image/png", "image/jpeg", "image/webp"),
    "video": ("video/mp4", "video/quicktime"),
}


class MediaError(SoulIDError):
    """A result could not be downloaded or decoded (truncated, wrong type, too big)."""


class UnsafeURL(MediaError):
    """A URL was refused by the SSRF / host checks."""


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
        allow_loopback: accept ``http://127.0.0.1...`` (tests, local proxies).
        host: if given, the URL's host:port must equal it (status/cancel URLs
            must stay on the configured API host).
        what: name used in the message (``"status URL"``...).

    Raises:
        UnsafeURL: not http(s), plain HTTP off loopback, wrong host, or an
            address that is private, link-local, multicast, reserved or
            unspecified (loopback only when ``allow_loopback``).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UnsafeURL(f"{what} {url!r} is not an http(s) URL")
    if host is not None and parts.netloc.lower() != host.lower():
        raise UnsafeURL(f"{what} {url!r} is not on the configured API host {host}")
    addrs = _addresses(parts.hostname)
    for a in addrs:
        if a.is_loopback:
            if allow_loopback:
                continue
            raise UnsafeURL(f"{what} {url!r} points at a loopback address ({a})")
        if a.is_private or a.is_link_local or a.is_multicast or a.is_reserved or a.is_unspecified:
            raise UnsafeURL(f"{what} {url!r} points at a private or link-local address ({a})")
    if parts.scheme == "http" and not all(a.is_loopback for a in addrs):
        raise UnsafeURL(f"{what} {url!r}: plain HTTP is accepted only on loopback; HTTPS required")
    return url


_EXT = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "video/mp4": ".mp4"}


def download(client: httpx.Client, url: str, dest: Path, kind: str = "image", *,
             allow_loopback: bool = False, max_bytes: int | None = None, retries: int = 2) -> Path:
    """Stream ``url`` to ``dest`` (extension set from the sniffed type).

    No auth header is sent (``client`` must be a bare client). Network errors
    and truncated bodies are retried ``retries`` times.

    Returns:
        The final path (``dest`` with ``.png|.jpg|.webp|.mp4``).

    Raises:
        UnsafeURL: the URL or a redirect target fails :func:`check_url`.
        ResultExpired: HTTP 403/404/410 (the provider's link has expired).
        MediaError: other HTTP errors, too large, wrong content type or magic
            bytes, truncated after all retries.
    """
    cap = max_bytes or MAX_BYTES[kind]
    last: Exception | None = None
    for _ in range(retries + 1):
        try:
            return _download_once(client, url, dest, kind, cap, allow_loopback)
        except (httpx.TransportError, _Truncated) as e:
            last = e
    raise MediaError(f"download of {kind} result failed after {retries + 1} tries: {last}")


class _Truncated(Exception):
    pass


def _download_once(client, url, dest, kind, cap, allow_loopback) -> Path:
    cur = url
    for _hop in range(MAX_REDIRECTS + 1):
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
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
            n, head = 0, b""
            try:
                with open(tmp, "wb") as f:
                    try:
                        for chunk in r.iter_bytes(1 << 16):
                            n += len(chunk)
                            if n > cap:
                                raise MediaError(f"{kind} result exceeds the {cap} byte limit")
                            if len(head) < 16:
                                head += chunk[:16]
                            f.write(chunk)
                    except httpx.RemoteProtocolError as e:
                        raise _Truncated(f"truncated download ({n} bytes received): {e}") from None
                    f.flush()
                    os.fsync(f.fileno())
                if length and n != int(length):
                    raise _Truncated(f"truncated download: {n} of {length} bytes")
                found = sniff(head)
                if found is None or not found.startswith(kind):
                    raise MediaError(f"{kind} download: content is not a {kind} (magic bytes {head[:8]!r})")
                final = dest.with_suffix(_EXT[found])
                os.replace(tmp, final)
                return final
            finally:
                if tmp.exists():
                    tmp.unlink()
    raise UnsafeURL(f"{kind} URL {url!r}: more than {MAX_REDIRECTS} redirects")


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

    a = np.asarray(image)
    if a.ndim == 4:
        a = a[0]
    if a.dtype != np.uint8:
        a = to_uint8(a)
    a = np.ascontiguousarray(a[..., :3])
    if fmt == "jpeg":
        return encode_jpeg(a, quality=95), "image/jpeg"
    return encode_png(a), "image/png"
