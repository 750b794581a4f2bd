"""The Soul ID library: a folder of ``NAME.soulid`` files.

Where: ``$SOULID_LIBRARY``, else ComfyUI's user directory (``user/soulid/library``)
inside ComfyUI, else the per-user data directory (see :mod:`soulid.soul.paths`);
the CLI's ``--library DIR`` overrides all of them.

Names are validated (no path separators, no ``..``, no control or reserved
characters, at most :data:`MAX_NAME_LEN` characters); overwriting an existing
entry needs ``overwrite=True``; every write is atomic.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import LibraryError, SoulFileError
from .paths import atomic_write_bytes, library_dir
from .soulfile import SUFFIX, SoulID

MAX_NAME_LEN = 64
_BAD_CHARS = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')


def validate_name(name: str) -> str:
    """Return ``name`` stripped, or raise :class:`LibraryError` saying why it is refused."""
    if not isinstance(name, str):
        raise LibraryError(f"Soul ID name must be text, not {type(name).__name__}")
    n = name.strip()
    if not n:
        raise LibraryError("Soul ID name is empty")
    if len(n) > MAX_NAME_LEN:
        raise LibraryError(f"Soul ID name {n[:20]!r}... is {len(n)} characters (at most {MAX_NAME_LEN})")
    if ".." in n:
        raise LibraryError(f"Soul ID name {n!r} contains '..'")
    m = _BAD_CHARS.search(n)
    if m:
        raise LibraryError(f"Soul ID name {n!r} contains the forbidden character {m.group()!r} (no path separators or control characters)")
    if n.startswith("."):
        raise LibraryError(f"Soul ID name {n!r} starts with '.'")
    return n


class Library:
    """A folder of Soul ID files.

    Args:
        directory: the folder (created on demand); None = the default location.
    """

    def __init__(self, directory: str | os.PathLike | None = None):
        self.dir = library_dir(directory)

    def path(self, name: str) -> Path:
        """File path of entry ``name`` (validated)."""
        return self.dir / f"{validate_name(name)}{SUFFIX}"

    def list(self) -> list[str]:
        """Names of the Soul IDs in the library, sorted case-insensitively."""
        return sorted(
            (p.name[: -len(SUFFIX)] for p in self.dir.glob(f"*{SUFFIX}") if p.is_file() and not p.name.startswith(".")),
            key=str.lower,
        )

    def exists(self, name: str) -> bool:
        return self.path(name).is_file()

    def load(self, name: str) -> SoulID:
        """Load entry ``name``.

        Raises:
            LibraryError: no such entry (the message lists what there is).
            SoulFileError: the file is corrupt or too new.
        """
        p = self.path(name)
        if not p.is_file():
            have = ", ".join(self.list()) or "none"
            raise LibraryError(f"no Soul ID named {name!r} in {self.dir} (have: {have})")
        return SoulID.load(p)

    def save(self, soul: SoulID, name: str | None = None, overwrite: bool = False) -> Path:
        """Save ``soul`` as ``name`` (default: ``soul.name``), atomically.

        Raises:
            LibraryError: bad name, or the entry exists and ``overwrite`` is False.
        """
        n = validate_name(soul.name if name is None else name)
        p = self.path(n)
        if p.exists() and not overwrite:
            raise LibraryError(f"a Soul ID named {n!r} already exists in {self.dir}; pass overwrite to replace it")
        soul.name = n
        atomic_write_bytes(p, soul.to_bytes())
        return p

    def delete(self, name: str) -> None:
        """Delete entry ``name``. Raises :class:`LibraryError` when missing."""
        p = self.path(name)
        if not p.is_file():
            raise LibraryError(f"no Soul ID named {name!r} in {self.dir}")
        p.unlink()

    def rename(self, old: str, new: str, overwrite: bool = False) -> Path:
        """Rename an entry (the name inside the file changes too)."""
        soul = self.load(old)
        dest = self.save(soul, new, overwrite=overwrite)
        if self.path(old) != dest:
            self.path(old).unlink()
        return dest

    def export(self, name: str, dest: str | os.PathLike, overwrite: bool = False) -> Path:
        """Copy entry ``name`` to the file ``dest`` (atomically)."""
        src = self.path(name)
        if not src.is_file():
            raise LibraryError(f"no Soul ID named {name!r} in {self.dir}")
        d = Path(dest)
        if d.is_dir():
            d = d / src.name
        if d.exists() and not overwrite:
            raise LibraryError(f"{d} already exists; pass overwrite to replace it")
        atomic_write_bytes(d, src.read_bytes())
        return d

    def import_file(self, src: str | os.PathLike, name: str | None = None, overwrite: bool = False) -> str:
        """Add a ``.soulid`` file to the library (validated by loading it first).

        Returns:
            the entry's name.

        Raises:
            SoulFileError: not a valid Soul ID file.
            LibraryError: bad name or the entry exists.
        """
        p = Path(src)
        try:
            data = p.read_bytes()
        except OSError as e:
            raise SoulFileError(f"{p}: cannot read ({e.strerror or e})") from None
        soul = SoulID.from_bytes(data, label=p.name)
        n = validate_name((soul.name or p.stem) if name is None else name)
        if self.path(n).exists() and not overwrite:
            raise LibraryError(f"a Soul ID named {n!r} already exists in {self.dir}; pass overwrite to replace it")
        soul.name = n
        atomic_write_bytes(self.path(n), soul.to_bytes())
        return n
