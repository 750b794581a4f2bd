"""Where soulid keeps its files, and how it writes and reads them safely.

Resolution order, for each directory:

* an environment variable (``SOULID_LIBRARY``, ``SOULID_DATA_DIR``,
  ``SOULID_CONFIG_DIR``, ``SOULID_MODELS_DIR``) always wins;
* inside ComfyUI, the directories the nodes handed in when they loaded
  (:func:`set_comfy_dirs`: ComfyUI's user, input and models directories);
* for the library outside ComfyUI: the one set with ``soulid config set
  library PATH``, else ComfyUI's (``<user dir>/soulid/library``) when
  ``$COMFYUI_PATH`` names a ComfyUI checkout, so that the CLI and ComfyUI
  share one library;
* otherwise the per-user directories of :mod:`platformdirs`.

Nothing here imports or inspects ComfyUI. Folders soulid creates for its own
data are 0700; library files are written 0600.
"""
from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import platformdirs

APP = "soulid"
#: Temp files of interrupted writes older than this (s) are removed by the next write in their folder.
ORPHAN_AGE_S = 300.0
_TMP_SUFFIX = ".soulid-tmp"


@dataclass
class ComfyDirs:
    """ComfyUI's folders, handed in by the nodes (:func:`set_comfy_dirs`)."""

    base_path: Path | None = None
    user_dir: Path | None = None
    input_dir: Path | None = None
    models_dir: Path | None = None
    model_folders: Callable[[str], list[str]] | None = None


_comfy: ComfyDirs | None = None


def set_comfy_dirs(base_path=None, user_dir=None, input_dir=None, models_dir=None,
                   model_folders: Callable[[str], list[str]] | None = None) -> None:
    """Tell the core where ComfyUI keeps its files (called by the nodes when
    ComfyUI loads them; the core never imports ComfyUI's ``folder_paths``).

    Args:
        base_path: ComfyUI's root folder.
        user_dir: ComfyUI's user directory (the library is ``<user_dir>/soulid/library``).
        input_dir: ComfyUI's input directory (node folder inputs must stay inside it).
        models_dir: ComfyUI's ``models`` folder.
        model_folders: ``kind -> [folder, ...]``: ComfyUI's registered model
            folders (``folder_paths.get_folder_paths``), extra paths included.
    """
    global _comfy
    as_path = lambda v: None if v is None else Path(v)  # noqa: E731
    _comfy = ComfyDirs(as_path(base_path), as_path(user_dir), as_path(input_dir), as_path(models_dir), model_folders)


def comfy_dirs() -> ComfyDirs | None:
    """What :func:`set_comfy_dirs` was given (None outside ComfyUI)."""
    return _comfy


def inside_comfy() -> bool:
    """True when running inside ComfyUI (the nodes handed their folders in)."""
    return _comfy is not None


def comfy_root() -> Path | None:
    """Root of the ComfyUI installation: the host's, else ``$COMFYUI_PATH``."""
    if _comfy is not None and _comfy.base_path is not None:
        return _comfy.base_path
    env = os.environ.get("COMFYUI_PATH")
    return Path(env) if env else None


def private_mkdir(p: Path) -> Path:
    """Create folder ``p`` (and its parents); ``p`` itself is created 0700."""
    p = Path(p)
    if not p.is_dir():
        p.parent.mkdir(parents=True, exist_ok=True)
        try:
            p.mkdir(mode=0o700)
        except FileExistsError:
            pass
    return p


def data_dir() -> Path:
    """Per-user data directory (job ledger, caches). Created 0700 on demand."""
    env = os.environ.get("SOULID_DATA_DIR")
    if env:
        p = Path(env)
    elif _comfy is not None and _comfy.user_dir is not None:
        p = _comfy.user_dir / APP
    else:
        p = Path(platformdirs.user_data_dir(APP, appauthor=False))
    return private_mkdir(p)


def comfy_library_dir(root: str | os.PathLike) -> Path:
    """The library ComfyUI keeps for a checkout at ``root``: ``<root>/user/soulid/library``
    (ComfyUI's default user directory; use ``soulid config set library`` for another)."""
    return Path(root) / "user" / APP / "library"


def config_dir() -> Path:
    """Per-user configuration directory (credentials file). Created on demand."""
    env = os.environ.get("SOULID_CONFIG_DIR")
    p = Path(env) if env else Path(platformdirs.user_config_dir(APP, appauthor=False))
    p.mkdir(parents=True, exist_ok=True)
    return p


def cache_dir() -> Path:
    """Per-user cache directory (style lists, downloaded results). Created on demand."""
    env = os.environ.get("SOULID_CACHE_DIR")
    p = Path(env) if env else data_dir() / "cache"
    p.mkdir(parents=True, exist_ok=True)
    return p


def models_dirs(kind: str) -> list[Path]:
    """Folders searched for models of ``kind`` (``"insightface"``, ``"checkpoints"``,
    ``"ipadapter"``, ``"instantid"``, ``"controlnet"``, ``"loras"``,
    ``"clip_vision"``, ``"diffusers"``...), in priority order.

    ``$SOULID_MODELS_DIR/<kind>`` first, then ComfyUI's registered folders for
    ``kind`` (handed in by :func:`set_comfy_dirs`), then ``<comfy root>/models/<kind>``;
    with none of these, the per-user ``<data dir>/models/<kind>``, so that a
    missing-model message can always name a real folder on this machine.
    """
    out: list[Path] = []
    env = os.environ.get("SOULID_MODELS_DIR")
    if env:
        out.append(Path(env) / kind)
    if _comfy is not None:
        try:
            out += [Path(p) for p in _comfy.model_folders(kind)] if _comfy.model_folders else []
        except Exception:  # kind not registered with ComfyUI
            if _comfy.models_dir is not None:
                out.append(_comfy.models_dir / kind)
    root = comfy_root()
    if root is not None:
        out.append(root / "models" / kind)
    if not out:
        out.append(data_dir() / "models" / kind)
    seen: set[Path] = set()
    uniq = []
    for p in out:
        if p not in seen:
            seen.add(p)
            uniq.append(p)
    return uniq


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask is process-wide and racy)
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    m = os.umask(0o022)
    os.umask(m)
    return m


def sweep_orphans(folder: Path, older_than_s: float = ORPHAN_AGE_S) -> int:
    """Remove temp files of interrupted writes (``.*.soulid-tmp``) older than
    ``older_than_s`` from ``folder``; returns how many were removed."""
    n = 0
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for e in entries:
        if not (e.name.startswith(".") and e.name.endswith(_TMP_SUFFIX)):
            continue
        try:
            st = e.stat(follow_symlinks=False)
            if stat.S_ISREG(st.st_mode) and now - st.st_mtime > older_than_s:
                os.unlink(e.path)
                n += 1
        except OSError:
            pass
    return n


def temp_path(path: str | os.PathLike) -> Path:
    """A new, empty temp file next to ``path`` (created 0600 with ``O_EXCL``,
    unique per process, thread and call: ``.NAME.PID.TID.<random>.soulid-tmp``),
    for :func:`publish`. Creates the folder; removes orphans of crashed writes
    there (:func:`sweep_orphans`). The caller removes it if it never publishes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_orphans(path.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name[:100]}.{os.getpid()}.{threading.get_ident()}.",
                                    suffix=_TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    return Path(tmp_name)


def publish(tmp: str | os.PathLike, path: str | os.PathLike, mode: int | None = None,
            exclusive: bool = False) -> None:
    """The one way a finished temp file (:func:`temp_path`) takes its name:
    fsynced, given ``mode``, then moved onto ``path`` (``os.replace``), or,
    with ``exclusive``, linked there without replacing anything
    (:func:`link_no_clobber`; ``tmp`` then stays for the caller to remove).

    Args:
        mode: file mode (e.g. ``0o600``); default ``0o666`` less the umask.

    Raises:
        FileExistsError: ``exclusive`` and ``path`` exists.
        OSError: the move failed (the destination is unchanged).
    """
    fd = os.open(tmp, os.O_RDWR)
    try:
        os.fchmod(fd, (0o666 & ~_umask()) if mode is None else mode)
        os.fsync(fd)
    finally:
        os.close(fd)
    if exclusive:
        link_no_clobber(Path(tmp), Path(path))
    else:
        os.replace(tmp, path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, mode: int | None = None, exclusive: bool = False) -> Iterator[Path]:
    """``with atomic_path(p) as tmp:`` write the file ``tmp`` (by name: PIL,
    PyAV, a stream); when the block ends without an error, ``tmp`` is
    published onto ``p`` (:func:`publish`); on an error, or always
    afterwards, ``tmp`` is removed. A crash leaves the old file intact.

    Raises:
        FileExistsError: ``exclusive`` and ``path`` exists.
        OSError: the write or the move failed (the destination is unchanged).
    """
    tmp = temp_path(path)
    try:
        yield tmp
        publish(tmp, path, mode, exclusive)
    finally:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass


def atomic_write_bytes(path: str | os.PathLike, data: bytes, mode: int | None = None,
                       exclusive: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_path`).

    The bytes go to a temp file in the same folder, unique per process and
    thread (``.NAME.<random>.soulid-tmp``, created with ``O_EXCL``), are
    fsynced, then moved into place. A crash leaves the old file intact; temp
    files left by a crash are removed by a later write to the same folder
    once they are :data:`ORPHAN_AGE_S` old.

    Args:
        mode: file mode (e.g. ``0o600``); default ``0o666`` less the umask.
        exclusive: never replace an existing file: the temp file is
            hard-linked to ``path``, which fails if ``path`` exists, so two
            writers racing for one new name get exactly one success.

    Raises:
        FileExistsError: ``exclusive`` and ``path`` exists.
        OSError: the write failed (the destination is unchanged).
    """
    with atomic_path(path, mode, exclusive) as tmp:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_TRUNC), "wb") as f:
            f.write(data)


def link_no_clobber(tmp: Path, path: Path) -> None:
    """Give the finished temp file ``tmp`` the name ``path`` atomically, never
    replacing an existing file: a hard link (fails on an existing name), else,
    where hard links are not supported, the name claimed with ``O_EXCL`` and
    ``tmp`` renamed onto it. ``tmp`` stays for the caller to remove.

    Raises:
        FileExistsError: ``path`` exists.
    """
    try:
        os.link(tmp, path)  # atomic; fails with FileExistsError when path exists
    except FileExistsError:
        raise
    except OSError:  # no hard links here (some network/FUSE file systems): claim the name with O_EXCL
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.replace(tmp, path)


class NotRegularFile(OSError):
    """A path that must be a regular file is a FIFO, a device, a socket or
    too large. ``reason`` says which, in words."""

    def __init__(self, path, reason: str):
        self.reason = reason
        super().__init__(f"{path}: {reason}")

    @staticmethod
    def kind(mode: int) -> str:
        """Words for a non-regular file type: ``"a FIFO (named pipe)"``..."""
        if stat.S_ISFIFO(mode):
            return "a FIFO (named pipe)"
        if stat.S_ISCHR(mode):
            return "a character device"
        if stat.S_ISBLK(mode):
            return "a block device"
        if stat.S_ISSOCK(mode):
            return "a socket"
        if stat.S_ISDIR(mode):
            return "a folder"
        return "not a regular file"


def open_regular_file(path: str | os.PathLike, max_bytes: int):
    """Open ``path`` for reading, refusing anything but a regular file of at
    most ``max_bytes``.

    The check is ``fstat`` on a descriptor opened with ``O_NONBLOCK``: a FIFO
    never blocks, ``/dev/zero`` is never read, and the file checked is the
    file read.

    Returns:
        ``(binary file object, size in bytes)``.

    Raises:
        NotRegularFile: a FIFO, device, socket, or over ``max_bytes``.
        FileNotFoundError, IsADirectoryError, PermissionError, OSError: as ``open``.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "Is a directory", str(path))
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(path, f"{NotRegularFile.kind(st.st_mode)}, not a regular file")
        if st.st_size > max_bytes:
            raise NotRegularFile(path, f"{st.st_size / (1 << 20):.1f} MiB, over the {max_bytes / (1 << 20):.0f} MiB limit")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


def read_regular_file(path: str | os.PathLike, max_bytes: int, what: str, error: type[Exception]) -> bytes:
    """The bytes of ``path``, read only when it is a regular file of at most
    ``max_bytes`` (a FIFO or ``/dev/zero`` is refused at once, never read).

    Raises:
        ``error``: missing, unreadable, not a regular file or too large (the
            message names the file, the ``what`` and the reason).
    """
    try:
        f, _size = open_regular_file(path, max_bytes)
        with f:
            data = f.read(max_bytes + 1)
    except NotRegularFile as e:
        raise error(f"{path}: cannot read the {what}: {e.reason}") from None
    except OSError as e:
        raise error(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    if len(data) > max_bytes:
        raise error(f"{path}: the {what} is over the {max_bytes:,}-byte limit")
    return data


def read_text_file(path: str | os.PathLike, max_bytes: int, what: str, error: type[Exception]) -> str:
    """A regular file's text (UTF-8), read as :func:`read_regular_file` reads it.

    Raises:
        ``error``: as :func:`read_regular_file`, or the bytes are not UTF-8.
    """
    data = read_regular_file(path, max_bytes, what, error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{path}: the {what} is not UTF-8 text (byte {e.start}: {data[e.start:e.start + 1]!r})") from None


def resolve_input_folder(base: str | os.PathLike, rel: str) -> Path:
    """The folder ``rel`` names inside ``base`` (ComfyUI's input directory).

    Args:
        base: the folder everything must stay inside.
        rel: a relative folder name typed by the user.

    Returns:
        The resolved folder (symlinks followed, still inside ``base``).

    Raises:
        ValueError: ``rel`` holds a NUL byte, is over-long, leaves ``base``
            (``..``, an absolute path elsewhere, a symlink pointing out), or
            is not a folder; the message says which.
    """
    rel = str(rel).strip()
    if "\x00" in rel:
        raise ValueError(f"folder {rel!r}: contains a NUL byte")
    if len(rel.encode("utf-8", "surrogateescape")) > 1024 or any(len(part.encode("utf-8", "surrogateescape")) > 255 for part in Path(rel).parts):
        raise ValueError(f"folder {rel[:40]!r}...: name too long")
    b = Path(base).resolve()
    try:
        p = (b / rel).resolve()
    except (OSError, RuntimeError) as e:
        raise ValueError(f"folder {rel!r}: cannot be resolved ({e})") from None
    if p != b and b not in p.parents:
        raise ValueError(f"folder {rel!r}: outside ComfyUI's input directory {b}; put the photos under it")
    if not p.is_dir():
        raise ValueError(f"folder {rel!r}: no such folder in ComfyUI's input directory {b}")
    return p


def inside(base: str | os.PathLike, path: str | os.PathLike) -> bool:
    """True when ``path``, symlinks resolved, lies inside ``base`` (resolved).
    Use it on each file of a scanned folder: a file symlink pointing out of
    ``base`` is then refused."""
    try:
        b, p = Path(base).resolve(), Path(path).resolve()
    except (OSError, RuntimeError):
        return False
    return p == b or b in p.parents


def try_lock(fd: int) -> bool:
    """Take an exclusive, non-blocking lock on the open file ``fd``; False when another
    process (or another open of the file) holds it. Released when ``fd`` is closed
    or the process dies."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
