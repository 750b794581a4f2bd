"""Child-process body of the two-process save race in test_soulfile_library.py.

A module of its own (on ``tests/``, which conftest puts on ``sys.path``), so a
``spawn`` child imports only this and soulid, never the test module.
"""
from __future__ import annotations

from pathlib import Path


def save_new_names(lib_dir: str, soul_file: str, marker: float, rounds: int, barrier, results) -> None:
    """Each round, save one new name without overwrite; put ``(marker, rounds won)`` on ``results``."""
    from soulid.soul.errors import LibraryError
    from soulid.soul.library import Library
    from soulid.soul.soulfile import SoulID

    lib = Library(lib_dir)
    soul = SoulID.from_bytes(Path(soul_file).read_bytes())
    soul.created = marker
    wins = []
    for r in range(rounds):
        barrier.wait(timeout=120)  # a partner that died breaks the barrier instead of hanging this one
        try:
            lib.save(soul, f"race{r}", overwrite=False)
            wins.append(r)
        except LibraryError:
            pass
    results.put((marker, wins))
