"""Where soulid keeps its files.

Resolution order, for each directory:

* an environment variable (``SOULID_LIBRARY``, ``SOULID_DATA_DIR``,
  ``SOULID_CONFIG_DIR``, ``SOULID_MODELS_DIR``) always wins;
* inside ComfyUI (its ``folder_paths`` module is loaded), ComfyUI's user and
  models directories;
* otherwise the per-user directories of :mod:`platformdirs`.

Nothing here imports ComfyUI: ``folder_paths`` is only read when the host has
already imported it.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import platformdirs

APP = "soulid"


def _comfy_folder_paths():
    """ComfyUI's ``folder_paths`` module when running inside ComfyUI, else None."""
    return sys.modules.get("folder_paths")


def comfy_root() -> Path | None:
    """Root of the ComfyUI installation: the host's, else ``$COMFYUI_PATH``."""
    fp = _comfy_folder_paths()
    if fp is not None and hasattr(fp, "base_path"):
        return Path(fp.base_path)
    env = os.environ.get("COMFYUI_PATH")
    return Path(env) if env else None


def data_dir() -> Path:
    """Per-user data directory (job ledger, caches). Created on demand."""
    env = os.environ.get("SOULID_DATA_DIR")
    if env:
        p = Path(env)
    else:
        fp = _comfy_folder_paths()
        if fp is not None and hasattr(fp, "get_user_directory"):
            p = Path(fp.get_user_directory()) / APP
        else:
            p = Path(platformdirs.user_data_dir(APP, appauthor=False))
    p.mkdir(parents=True, exist_ok=True)
    return p


def library_dir(override: str | os.PathLike | None = None) -> Path:
    """The Soul ID library folder: ``override`` > ``$SOULID_LIBRARY`` > ComfyUI
    user dir ``soulid/library`` > platformdirs user data dir ``library``."""
    if override:
        p = Path(override)
    elif os.environ.get("SOULID_LIBRARY"):
        p = Path(os.environ["SOULID_LIBRARY"])
    else:
        p = data_dir() / "library"
    p.mkdir(parents=True, exist_ok=True)
    return p


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
    ``kind`` (``folder_paths.get_folder_paths``), then ``<comfy root>/models/<kind>``;
    with none of these, the per-user ``<data dir>/models/<kind>``, so that a
    missing-model message can always name a real folder on this machine.
    """
    out: list[Path] = []
    env = os.environ.get("SOULID_MODELS_DIR")
    if env:
        out.append(Path(env) / kind)
    fp = _comfy_folder_paths()
    if fp is not None:
        try:
            out += [Path(p) for p in fp.get_folder_paths(kind)]
        except Exception:  # kind not registered with ComfyUI
            if hasattr(fp, "models_dir"):
                out.append(Path(fp.models_dir) / kind)
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


def atomic_write_bytes(path: str | os.PathLike, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` atomically: a temp file in the same folder,
    fsync, then :func:`os.replace`. A crash leaves the old file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666 if mode is None else mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
