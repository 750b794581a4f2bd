"""A small Comfy API v2 stand-in on 127.0.0.1 (see :mod:`.server`)."""
from .server import StandinV2

__all__ = ["StandinV2"]
