"""Exceptions raised by the soulid core.

Every error names the file or field it is about and the reason, so that a
message shown in ComfyUI or printed by the CLI is enough to act on.
"""
from __future__ import annotations


class SoulIDError(Exception):
    """Base class for every error the soulid core raises on purpose."""


class PhotoError(SoulIDError):
    """A photo could not be decoded or used.

    Attributes:
        source: the file name (or label) of the photo.
        reason: a short human-readable reason, e.g. ``"truncated file"``.
    """

    def __init__(self, source: str, reason: str):
        self.source = str(source)
        self.reason = reason
        super().__init__(f"{self.source}: {reason}")


class ModelFilesMissing(SoulIDError):
    """Model files are missing. ``missing`` lists every expected path."""

    def __init__(self, what: str, missing: list[str], hint: str = ""):
        self.what = what
        self.missing = list(missing)
        lines = [f"{what}: {len(self.missing)} model file(s) missing:"]
        lines += [f"  - {p}" for p in self.missing]
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))


class SoulFileError(SoulIDError):
    """A ``.soulid`` file is unreadable, corrupt or of an unsupported version."""


class LibraryError(SoulIDError):
    """A library operation was refused (bad name, missing entry, no overwrite)."""


class NoUsablePhotos(SoulIDError):
    """No photo of the set passed QA, so no Soul ID could be made."""


class Interrupted(SoulIDError):
    """The one interrupt exception of the pack: the user asked to stop.

    Raised by every long-running step (photo analysis, cloud jobs, local
    denoising, camera renders, drift-guard loops) when its ``interrupt``
    callable (:data:`soulid.soul.progress.InterruptFn`) returns True. Inside
    ComfyUI the nodes turn it into ComfyUI's own interruption; the CLI exits
    130 on it.

    Attributes:
        request_id: the cloud request left behind (canceled or resumable),
            when a cloud job was interrupted; else None.
    """

    def __init__(self, msg: str = "interrupted", request_id: str | None = None):
        self.request_id = request_id
        super().__init__(msg)
