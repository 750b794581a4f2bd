"""Custom socket types shared by the soulid nodes."""
from __future__ import annotations

from comfy_api.latest import io

#: A :class:`soulid.soul.soulfile.SoulID` travelling between nodes.
SoulIDType = io.Custom(io_type="SOUL_ID")
#: A style preset (:class:`soulid.soul.presets.StylePreset`).
StylePresetType = io.Custom(io_type="SOUL_STYLE_PRESET")
#: A motion preset for DoP Animate.
MotionPresetType = io.Custom(io_type="SOUL_MOTION_PRESET")

#: The one tooltip of every node's ``soul_id`` input.
SOUL_ID_TIP = "The Soul ID: from Soul ID Create, or picked from the library with Soul ID Load."
