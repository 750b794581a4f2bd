"""Face analyzers behind one interface; see :func:`get_analyzer`."""
from __future__ import annotations

from .base import Face, FaceAnalyzer, HeadPose, KEYPOINT_NAMES  # noqa: F401
from .registry import ANALYZER_NAMES, available_analyzers, get_analyzer  # noqa: F401
