"""Training checkpoints: written atomically every N steps, read on resume.

One file (``torch.save`` of plain tensors, numbers and strings, read back with
``weights_only=True``): the LoRA parameters, the optimizer state, the step,
the loss accumulators and a fingerprint of what was being trained (settings
that change the result, captions, photos, base model). A resume with another
fingerprint is refused rather than silently mixing two runs.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

from ....soul.errors import SoulIDError
from ....soul.paths import atomic_write_bytes, private_mkdir


class CheckpointError(SoulIDError):
    """A checkpoint cannot be used for this run (other settings/data, or corrupt)."""


def save(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` to ``path`` atomically (a crash keeps the previous checkpoint),
    0600 in a 0700 folder: it holds the persona's weights."""
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    folder = private_mkdir(Path(path).parent)
    os.chmod(folder, 0o700)  # also a folder made by an earlier version
    atomic_write_bytes(path, buf.getvalue(), mode=0o600)


def load(path: str | os.PathLike, fingerprint: str) -> dict | None:
    """The checkpoint at ``path``, or None when there is none.

    Raises:
        CheckpointError: unreadable, or written by a run with another fingerprint.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        return None
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated/corrupt files
        raise CheckpointError(f"{p}: unreadable training checkpoint ({type(e).__name__}: {e}); delete it to start over") from None
    if state.get("fingerprint") != fingerprint:
        raise CheckpointError(
            f"{p}: checkpoint of another run (different settings, captions, photos or base model); "
            "train without --resume to start over"
        )
    return state
