"""soulid: keep one person's face the same across AI images and clips.

This file is both the ``soulid`` Python package and ComfyUI's entry point for
the custom-node pack. Importing it is cheap: it imports neither ComfyUI, torch
nor diffusers; ComfyUI calls :func:`comfy_entrypoint`, which imports the nodes.
"""
from __future__ import annotations

__version__ = "0.1.0"

#: Folder ComfyUI serves to the browser: web/soulid.js shows a node's result text on it.
WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    """ComfyUI V3 entry point: returns the pack's ``ComfyExtension``."""
    from .nodes import SoulIDExtension

    return SoulIDExtension()
