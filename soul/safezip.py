"""Reading zip archives from strangers without trusting them.

A shared ``.soulid`` (or a ``.char`` import) is a zip file someone else made.
:func:`open_bounded` checks it from the zip directory alone, before a single
member is inflated: member count, each member's declared uncompressed size,
the total, and the compression ratio. :meth:`BoundedZip.read` then never
returns (or holds in memory) more than a member's declared size: Python's
:mod:`zipfile` stops inflating at the declared size and checks the CRC, so a
member that lies about its size fails instead of growing.

Path inputs must be regular files under :attr:`ZipLimits.max_archive_bytes`
(checked with ``fstat`` on the opened descriptor, so ``/dev/zero`` or a FIFO is
refused at once instead of read forever).

Every refusal is a :class:`~soulid.soul.errors.SoulFileError` that names the
archive, the member and the limit.
"""
from __future__ import annotations

import io
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .errors import SoulFileError
from .paths import NotRegularFile, open_regular_file

MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class ZipLimits:
    """Limits applied to an untrusted zip archive (bytes are uncompressed unless said).

    Attributes:
        max_archive_bytes: size of the archive file itself.
        max_members: number of entries in the zip directory.
        max_member_bytes: declared uncompressed size of any one member.
        max_total_bytes: sum of the declared uncompressed sizes.
        max_ratio: uncompressed / compressed size of any member larger than
            ``ratio_floor_bytes`` (zeros deflate about 1000:1; JPEGs and
            safetensors barely compress).
        ratio_floor_bytes: members at most this large are not ratio-checked.
        member_limits: per-name-prefix caps on the uncompressed size, e.g.
            ``{"manifest.json": 16 MiB}``; the longest matching prefix wins.
    """

    max_archive_bytes: int = 4 * GiB
    max_members: int = 4096
    max_member_bytes: int = 2 * GiB
    max_total_bytes: int = 4 * GiB
    max_ratio: float = 100.0
    ratio_floor_bytes: int = 1 * MiB
    member_limits: tuple[tuple[str, int], ...] = ()

    def member_cap(self, name: str) -> int:
        best, cap = -1, self.max_member_bytes
        for prefix, limit in self.member_limits:
            if name.startswith(prefix) and len(prefix) > best:
                best, cap = len(prefix), min(limit, self.max_member_bytes)
        return cap


def _fmt(n: int) -> str:
    return f"{n / GiB:.2f} GiB" if n >= GiB else f"{n / MiB:.1f} MiB" if n >= MiB else f"{n} bytes"


def _declared_entries(f, size: int) -> int | None:
    """Entry count from the end-of-central-directory record (zip64 aware), read
    before :mod:`zipfile` builds one object per entry. None when not found."""
    tail_len = min(size, 22 + 65535 + 20 + 56)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    i = tail.rfind(b"PK\x05\x06")
    if i < 0 or len(tail) - i < 22:
        return None
    count = struct.unpack("<H", tail[i + 10 : i + 12])[0]
    if count == 0xFFFF:
        j = tail.rfind(b"PK\x06\x06", 0, i)  # zip64 end of central directory record
        if j >= 0 and len(tail) - j >= 56:
            count = struct.unpack("<Q", tail[j + 32 : j + 40])[0]
    return count


class BoundedZip:
    """A checked, read-only zip archive (see :func:`open_bounded`).

    Attributes:
        label: the archive's name in messages.
        limits: the :class:`ZipLimits` it was checked against.
        infos: member name -> :class:`zipfile.ZipInfo` (directories left out).
    """

    def __init__(self, zf: zipfile.ZipFile, label: str, limits: ZipLimits, fileobj=None):
        self._zf = zf
        self._file = fileobj
        self.label = label
        self.limits = limits
        self.infos: dict[str, zipfile.ZipInfo] = {}
        total = 0
        for info in zf.infolist():
            if info.is_dir():
                continue
            name = info.filename
            if name in self.infos:
                raise SoulFileError(f"{label}: member {name!r} appears twice in the archive")
            cap = limits.member_cap(name)
            if info.file_size > cap:
                raise SoulFileError(
                    f"{label}: member {name!r} inflates to {_fmt(info.file_size)}, over the {_fmt(cap)} limit "
                    "for this member (zip-bomb guard)"
                )
            if info.file_size > limits.ratio_floor_bytes and info.compress_type != zipfile.ZIP_STORED:
                ratio = info.file_size / max(info.compress_size, 1)
                if ratio > limits.max_ratio:
                    raise SoulFileError(
                        f"{label}: member {name!r} has a compression ratio of {ratio:.0f}:1 "
                        f"({_fmt(info.compress_size)} -> {_fmt(info.file_size)}), over the "
                        f"{limits.max_ratio:.0f}:1 limit (zip-bomb guard)"
                    )
            total += info.file_size
            if total > limits.max_total_bytes:
                raise SoulFileError(
                    f"{label}: members inflate to more than {_fmt(limits.max_total_bytes)} in total "
                    "(zip-bomb guard)"
                )
            self.infos[name] = info

    def names(self) -> list[str]:
        """Member names (files only), in archive order."""
        return list(self.infos)

    def __contains__(self, name: str) -> bool:
        return name in self.infos

    def size(self, name: str) -> int:
        """Declared uncompressed size of ``name``, bytes."""
        return self.infos[name].file_size

    def read(self, name: str, max_bytes: int | None = None) -> bytes:
        """The bytes of member ``name``, at most its declared size.

        Args:
            max_bytes: a tighter cap for this read (e.g. the manifest's).

        Raises:
            SoulFileError: no such member, over ``max_bytes``, or corrupt
                (CRC mismatch, bad compressed data, unsupported method).
        """
        info = self.infos.get(name)
        if info is None:
            raise SoulFileError(f"{self.label}: member {name!r} is missing")
        if max_bytes is not None and info.file_size > max_bytes:
            raise SoulFileError(f"{self.label}: member {name!r} is {_fmt(info.file_size)}, over the {_fmt(max_bytes)} limit")
        try:
            with self._zf.open(info) as f:
                data = f.read(info.file_size + 1)
        except MemoryError:
            raise SoulFileError(f"{self.label}: member {name!r} ({_fmt(info.file_size)}) could not be read: "
                                f"not enough memory") from None
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, OSError, EOFError) as e:
            raise SoulFileError(f"{self.label}: member {name!r} is corrupt ({type(e).__name__}: {e})") from None
        except Exception as e:  # zlib.error, lzma errors...
            raise SoulFileError(f"{self.label}: member {name!r} is corrupt ({type(e).__name__}: {e})") from None
        if len(data) != info.file_size:
            raise SoulFileError(f"{self.label}: member {name!r} is corrupt (size does not match the zip directory)")
        return data

    def close(self) -> None:
        self._zf.close()
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> "BoundedZip":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_bounded(src: bytes | bytearray | str | os.PathLike, limits: ZipLimits | None = None,
                 label: str | None = None, what: str = "zip archive") -> BoundedZip:
    """Open an untrusted zip archive, checked against ``limits`` from its
    directory before anything is inflated.

    Args:
        src: the archive's bytes, or a path (must be a regular file).
        limits: :class:`ZipLimits` (default: the defaults).
        label: name used in messages (default: the file name).
        what: what the file should be, for messages (``"Soul ID file"``).

    Returns:
        :class:`BoundedZip` (a context manager); read members with
        :meth:`BoundedZip.read`.

    Raises:
        SoulFileError: not a regular file, too large, not a zip, too many
            members, a member or the total over its size limit, or a
            compression ratio over the limit.
    """
    limits = limits or ZipLimits()
    if isinstance(src, (bytes, bytearray, memoryview)):
        label = label or "<bytes>"
        if len(src) > limits.max_archive_bytes:
            raise SoulFileError(f"{label}: {_fmt(len(src))} is over the {_fmt(limits.max_archive_bytes)} archive limit")
        f, size = io.BytesIO(bytes(src)), len(src)
    else:
        label = label or os.fsdecode(Path(src).name)
        try:
            f, size = open_regular_file(src, limits.max_archive_bytes)
        except FileNotFoundError:
            raise SoulFileError(f"{label}: no such {what}") from None
        except IsADirectoryError:
            raise SoulFileError(f"{label}: is a folder, not a {what}") from None
        except NotRegularFile as e:
            raise SoulFileError(f"{label}: {e.reason}; give a {what}") from None
        except OSError as e:
            raise SoulFileError(f"{label}: cannot read ({e.strerror or e})") from None
    try:
        count = _declared_entries(f, size)
        if count is not None and count > limits.max_members:
            raise SoulFileError(f"{label}: {count} members, over the {limits.max_members} limit")
        f.seek(0)
        try:
            zf = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as e:
            raise SoulFileError(f"{label}: not a zip archive ({e})") from None
        if len(zf.infolist()) > limits.max_members:
            zf.close()
            raise SoulFileError(f"{label}: {len(zf.infolist())} members, over the {limits.max_members} limit")
        try:
            return BoundedZip(zf, label, limits, fileobj=f)
        except BaseException:
            zf.close()
            raise
    except BaseException:
        f.close()
        raise
