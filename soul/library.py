"""The Soul ID library: a folder of ``NAME.soulid`` files.

Where: ``$SOULID_LIBRARY``, else ComfyUI's user directory (``user/soulid/library``)
inside ComfyUI, else the per-user data directory (see :mod:`soulid.soul.paths`);
the CLI's ``--library DIR`` overrides all of them.

Names are validated (no path separators, no ``..``, no control or reserved
characters, at most :data:`MAX_NAME_LEN` characters and :data:`MAX_NAME_BYTES`
bytes of UTF-8); overwriting an existing entry needs ``overwrite=True``; every
write is atomic, and a save without ``overwrite`` never replaces an entry
another process or thread saved first. The folder is created 0700, files 0600.
"""
from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path

from .errors import LibraryError
from .paths import APP, atomic_write_bytes, comfy_dirs, comfy_library_dir, data_dir, private_mkdir, try_lock
from .settings import get_setting
from .soulfile import SUFFIX, SoulID

MAX_NAME_LEN = 64
#: File names are limited to 255 bytes; a library file is NAME + ".soulid",
#: its temp file about 50 bytes more.
MAX_NAME_BYTES = 128
#: Mode of library files (face photos and embeddings are personal data).
FILE_MODE = 0o600
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
    try:
        size = len(n.encode("utf-8"))
    except UnicodeEncodeError:
        raise LibraryError(f"Soul ID name {n!r} holds bytes that are not valid text (UTF-8)") from None
    if size > MAX_NAME_BYTES:
        raise LibraryError(
            f"Soul ID name {n[:20]!r}... is {size} bytes in UTF-8 (at most {MAX_NAME_BYTES}; "
            "emoji and accented letters take 2-4 bytes each)"
        )
    if ".." in n:
        raise LibraryError(f"Soul ID name {n!r} contains '..'")
    m = _BAD_CHARS.search(n)
    if m:
        raise LibraryError(f"Soul ID name {n!r} contains the forbidden character {m.group()!r} (no path separators or control characters)")
    if n.startswith("."):
        raise LibraryError(f"Soul ID name {n!r} starts with '.'")
    return n


def library_location(override: str | os.PathLike | None = None) -> tuple[Path, str]:
    """The Soul ID library folder and where that choice came from.

    Order: ``override`` (``--library``) > ``$SOULID_LIBRARY`` > ComfyUI's user
    directory handed in by the nodes > ``soulid config set library`` >
    ComfyUI's library under ``$COMFYUI_PATH`` > the per-user data folder.

    Returns:
        ``(folder, source)``, ``source`` in words (``"--library"``,
        ``"$SOULID_LIBRARY"``, ``"ComfyUI"``, ``"soulid config"``,
        ``"$COMFYUI_PATH"``, ``"default"``). The folder is not created.
    """
    if override:
        return Path(override), "--library"
    if os.environ.get("SOULID_LIBRARY"):
        return Path(os.environ["SOULID_LIBRARY"]), "$SOULID_LIBRARY"
    comfy = comfy_dirs()
    if comfy is not None and comfy.user_dir is not None:
        return comfy.user_dir / APP / "library", "ComfyUI"
    configured = get_setting("library")
    if configured:
        return Path(configured).expanduser(), "soulid config"
    if os.environ.get("COMFYUI_PATH"):
        return comfy_library_dir(os.environ["COMFYUI_PATH"]), "$COMFYUI_PATH"
    return data_dir() / "library", "default"


def library_dir(override: str | os.PathLike | None = None) -> Path:
    """The Soul ID library folder (see :func:`library_location`), created 0700."""
    return private_mkdir(library_location(override)[0])


class Library:
    """A folder of Soul ID files.

    Args:
        directory: the folder (created on demand); None = the default location.
    """

    def __init__(self, directory: str | os.PathLike | None = None):
        d, self.source = library_location(directory)
        try:
            self.dir = private_mkdir(d)
        except OSError as e:
            raise LibraryError(f"Soul ID library {d} ({self.source}) cannot be created ({e.strerror or e})") from None

    def describe(self) -> str:
        """``"<folder> (from <source>)"``: which library this is, for messages."""
        return f"{self.dir} (from {self.source})"

    def path(self, name: str) -> Path:
        """File path of entry ``name`` (validated)."""
        return self.dir / f"{validate_name(name)}{SUFFIX}"

    def list(self) -> list[str]:
        """Names of the Soul IDs in the library, sorted case-insensitively.

        Raises:
            LibraryError: the folder cannot be read (an unreadable library is
                never shown as an empty one).
        """
        try:
            with os.scandir(self.dir) as it:
                names = [
                    e.name[: -len(SUFFIX)]
                    for e in it
                    if e.name.endswith(SUFFIX) and not e.name.startswith(".") and e.is_file()
                ]
            if not os.access(self.dir, os.R_OK | os.X_OK):
                raise PermissionError(13, "Permission denied")
        except OSError as e:
            raise LibraryError(f"Soul ID library {self.describe()} cannot be read ({e.strerror or e})") from None
        return sorted(names, key=str.lower)

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
            raise LibraryError(f"no Soul ID named {name!r} in the library {self.describe()} (have: {have})")
        return SoulID.load(p)

    def save(self, soul: SoulID, name: str | None = None, overwrite: bool = False) -> Path:
        """Save ``soul`` as ``name`` (default: ``soul.name``), atomically.

        Raises:
            LibraryError: bad name, or the entry exists and ``overwrite`` is False.
        """
        n = validate_name(soul.name if name is None else name)
        p = self.path(n)
        if p.exists() and not overwrite:
            raise self._exists(n)
        soul.name = n
        self._write(p, soul.to_bytes(), overwrite, n)
        return p

    def _exists(self, n: str) -> LibraryError:
        return LibraryError(f"a Soul ID named {n!r} already exists in {self.dir}; pass --overwrite to replace it")

    def _write(self, p: Path, data: bytes, overwrite: bool, n: str) -> None:
        try:
            atomic_write_bytes(p, data, mode=FILE_MODE, exclusive=not overwrite)
        except FileExistsError:  # another process or thread saved this name first
            raise self._exists(n) from None
        except OSError as e:
            raise LibraryError(f"cannot save Soul ID {n!r} in {self.dir} ({e.strerror or e})") from None

    def delete(self, name: str) -> None:
        """Delete entry ``name``.

        Raises:
            LibraryError: missing, or held by a running training (:meth:`hold`).
        """
        p = self.path(name)
        if not p.is_file():
            raise LibraryError(f"no Soul ID named {name!r} in {self.dir}")
        self._refuse_if_held(name, "deleted")
        p.unlink()

    # ----------------------------------------------------------------- holds
    def _hold_path(self, name: str) -> Path:
        return self.dir / f".{validate_name(name)}.hold"

    def _held_by(self, name: str) -> str | None:
        """What holds ``name`` (e.g. ``"a local training (pid 123)"``), or None."""
        path = self._hold_path(name)
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            return None
        try:
            if not try_lock(fd):
                return os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            return None
        finally:
            os.close(fd)

    def _refuse_if_held(self, name: str, verb: str) -> None:
        holder = self._held_by(name)
        if holder:
            raise LibraryError(f"Soul ID {name!r} cannot be {verb} now: {holder} is using it; "
                               f"wait for it to finish or stop it first")

    @contextmanager
    def hold(self, name: str, what: str):
        """Hold entry ``name`` for a long job (``what``, e.g. ``"a local training"``):
        while held, :meth:`delete` and :meth:`rename` refuse it and a second
        :meth:`hold` of it refuses. The hold is an OS file lock
        (``<library>/.<name>.hold``), released when the job ends or its process dies.

        Raises:
            LibraryError: ``name`` is already held (names the holder).
        """
        private_mkdir(self.dir)
        path = self._hold_path(name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if not try_lock(fd):
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
                raise LibraryError(f"Soul ID {name!r} is already held: {holder} is using it; "
                                   f"wait for it to finish")
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{what} (pid {os.getpid()})".encode(), 0)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # releases the lock

    def rename(self, old: str, new: str, overwrite: bool = False) -> Path:
        """Rename an entry (the name inside the file changes too).

        Raises:
            LibraryError: as :meth:`load` / :meth:`save`, or ``old`` is held (:meth:`hold`).
        """
        self._refuse_if_held(old, "renamed")
        soul = self.load(old)
        dest = self.save(soul, new, overwrite=overwrite)
        if self.path(old) != dest:
            self.path(old).unlink()
        return dest

    def export(self, name: str, dest: str | os.PathLike, overwrite: bool = False, share: bool = False) -> Path:
        """Write entry ``name`` to the file ``dest`` (atomically, 0600).

        The file is re-written from the checked Soul ID, so it carries file
        names only (never a folder of this machine) and no unknown members.

        Args:
            share: also leave out the generation log (and its thumbnails), the
                provider-side remote ids (a cast's request ids too) and the QA-sheet
                thumbnails of the rejected and excluded input photos (they may
                show other people); the accepted photos' thumbnails stay, so the
                QA sheet still shows the set: for a file given to someone else.

        Raises:
            LibraryError: no such entry, or ``dest`` exists and ``overwrite`` is False.
        """
        src = self.path(name)
        if not src.is_file():
            raise LibraryError(f"no Soul ID named {name!r} in {self.dir}")
        soul = SoulID.load(src)
        if share:
            soul.log, soul.remote_ids = [], []
            if soul.cast:  # a cast's provider request ids are provider-side ids too
                soul.cast = {**soul.cast, "request_ids": {}, "redraws": []}
            photos = soul.qa_report.get("photos", [])
            keep = {d.get("thumb") for d in photos if isinstance(d, dict) and d.get("thumb")
                    and d.get("rating") != "rejected" and not d.get("excluded")}
            soul.extra_files = {k: v for k, v in soul.extra_files.items()
                                if not k.startswith(("thumbs/", "qa/")) or k in keep}
            soul.qa_report = {**soul.qa_report, "photos": [
                {k: v for k, v in d.items() if k != "thumb" or v in keep} if isinstance(d, dict) else d
                for d in photos]}
        d = Path(dest)
        if d.is_dir():
            d = d / src.name
        if d.exists() and not overwrite:
            raise LibraryError(f"{d} already exists; pass --overwrite to replace it")
        try:
            atomic_write_bytes(d, soul.to_bytes(), mode=FILE_MODE, exclusive=not overwrite)
        except FileExistsError:
            raise LibraryError(f"{d} already exists; pass --overwrite to replace it") from None
        except OSError as e:
            raise LibraryError(f"cannot write {d} ({e.strerror or e})") from None
        return d

    def import_file(self, src: str | os.PathLike, name: str | None = None, overwrite: bool = False) -> str:
        """Add a ``.soulid`` file to the library (validated by loading it first).

        Returns:
            the entry's name.

        The file is read within :data:`~soulid.soul.soulfile.SOULID_LIMITS`
        and fully validated before anything is written; members nothing
        refers to are dropped.

        Raises:
            SoulFileError: not a regular file, over a limit, or not a valid
                Soul ID file (the message names the member or field).
            LibraryError: bad name or the entry exists.
        """
        soul = SoulID.load(src)  # bounded and validated: see SoulID.from_archive
        n = validate_name((soul.name or Path(src).stem) if name is None else name)
        if self.path(n).exists() and not overwrite:
            raise self._exists(n)
        soul.name = n
        self._write(self.path(n), soul.to_bytes(), overwrite, n)
        return n

