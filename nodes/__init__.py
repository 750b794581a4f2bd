"""ComfyUI V3 nodes (``comfy_api.latest``), one module per capability.

Node bodies stay thin: they convert ComfyUI types (IMAGE ``[B, H, W, C]``
float32 0..1 torch tensors, VIDEO objects) with :mod:`.convert`, and call the
core (:mod:`soulid.soul`) or a backend (:mod:`soulid.backends`).
Only this package imports ComfyUI, and only when ComfyUI loads it.
"""
from __future__ import annotations

import importlib
import logging
import sys

from comfy_api.latest import ComfyExtension

#: Capability modules; each defines ``NODES``, a list of ``io.ComfyNode`` classes.
NODE_MODULES = ("identity", "generate", "animate", "presets", "guard", "charlog", "idphoto", "native", "lora", "cast",
                "cast_guard")

log = logging.getLogger("soulid")


def all_nodes() -> list:
    """Every node class whose module imports and whose schema builds.

    One broken module or node is logged with its traceback and left out, so
    that it does not take the rest of the pack down with it in ComfyUI.
    """
    nodes = []
    for name in NODE_MODULES:
        try:
            mod = importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"{__package__}.{name}":
                continue
            log.exception("soulid: node module %r failed to import; its nodes are unavailable", name)
            continue
        except Exception:
            log.exception("soulid: node module %r failed to import; its nodes are unavailable", name)
            continue
        for cls in getattr(mod, "NODES", []):
            try:
                cls.GET_SCHEMA()
            except Exception:
                log.exception("soulid: node %s.%s has a broken schema; left out", name, cls.__name__)
                continue
            nodes.append(cls)
    # Import the modules whose errors nodes raise lazily, then rename them all.
    for name in ("soul.errors", "backends.engine", "nodes.cloud"):
        try:
            importlib.import_module(f"{__package__.rsplit('.', 1)[0]}.{name}")
        except ImportError:
            log.exception("soulid: %s failed to import", name)
    tidy_error_names()
    return nodes


def hand_in_comfy_dirs() -> None:
    """Give the core ComfyUI's folders (the core never reads ``folder_paths`` itself)."""
    import folder_paths

    from ..soul.paths import set_comfy_dirs

    set_comfy_dirs(base_path=folder_paths.base_path, user_dir=folder_paths.get_user_directory(),
                   input_dir=folder_paths.get_input_directory(), models_dir=folder_paths.models_dir,
                   model_folders=folder_paths.get_folder_paths)


#: The name errors are shown under, whatever name ComfyUI loaded the pack as.
PUBLIC_NAME = "soulid"


def tidy_error_names() -> int:
    """Give the pack's exception classes their public module path.

    ComfyUI imports a custom-node folder under its file path with dots
    replaced (``/home/u/ComfyUI/custom_nodes/soulid``), and reports a node's
    error as ``<module>.<class>: <message>``; the headless runner and the
    browser then show that mangled path first. Renaming ``__module__`` of our
    own exception classes to ``soulid.<subpackage>`` makes the error read
    ``soulid.soul.errors.NoUsablePhotos: ...``. Returns how many were renamed.
    """
    root = __package__.rsplit(".", 1)[0]
    if root == PUBLIC_NAME:
        return 0
    n = 0
    for modname, mod in list(sys.modules.items()):
        if mod is None or not (modname == root or modname.startswith(root + ".")):
            continue
        public = PUBLIC_NAME + modname[len(root):]
        for obj in list(vars(mod).values()):
            if isinstance(obj, type) and issubclass(obj, BaseException) and obj.__module__ == modname:
                obj.__module__ = public
                n += 1
    return n


class SoulIDExtension(ComfyExtension):
    async def get_node_list(self):
        hand_in_comfy_dirs()
        add_editor_routes()
        return all_nodes()


_routes_added = False


def add_editor_routes() -> None:
    """The editor's routes (library list, front thumbnail, API keys) and the
    old-workflow prompt migration, once (see :mod:`.routes`, :mod:`.compat`).
    Called from ``get_node_list``: ComfyUI 0.3.64 never calls ``on_load``."""
    global _routes_added
    if _routes_added:
        return
    try:
        from .routes import register

        _routes_added = register()
    except Exception:
        log.exception("soulid: could not add the editor routes; the nodes still work")
