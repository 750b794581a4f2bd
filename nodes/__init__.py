"""ComfyUI V3 nodes (``comfy_api.latest``), one module per capability.

Node bodies stay thin: they convert ComfyUI types (IMAGE ``[B, H, W, C]``
float32 0..1 torch tensors, VIDEO objects) with :mod:`.convert`, and call the
core (:mod:`soulid.soul`) or a backend (:mod:`soulid.backends`).
Only this package imports ComfyUI, and only when ComfyUI loads it.
"""
from __future__ import annotations

import importlib
import logging

from comfy_api.latest import ComfyExtension

#: Capability modules; each defines ``NODES``, a list of ``io.ComfyNode`` classes.
NODE_MODULES = ("identity", "generate", "animate", "presets", "guard", "native", "lora")

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
    return nodes


def hand_in_comfy_dirs() -> None:
    """Give the core ComfyUI's folders (the core never reads ``folder_paths`` itself)."""
    import folder_paths

    from ..soul.paths import set_comfy_dirs

    set_comfy_dirs(base_path=folder_paths.base_path, user_dir=folder_paths.get_user_directory(),
                   input_dir=folder_paths.get_input_directory(), models_dir=folder_paths.models_dir,
                   model_folders=folder_paths.get_folder_paths)


class SoulIDExtension(ComfyExtension):
    async def get_node_list(self):
        hand_in_comfy_dirs()
        return all_nodes()
