"""`soulid animate --list-motions` works without cloud credentials."""
from __future__ import annotations

import os
import subprocess
import sys

from soulid.backends.camera import MOTIONS


def test_list_motions_without_credentials():
    p = subprocess.run([sys.executable, "-m", "soulid", "animate", "--list-motions", "--backend", "higgsfield"],
                       capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert p.returncode == 0, p.stderr
    listed = [line.split()[0] for line in p.stdout.splitlines()]
    assert listed == list(MOTIONS)
    assert "no higgsfield API key" in p.stderr
    # without a backend: the local moves only, no provider asked
    p = subprocess.run([sys.executable, "-m", "soulid", "animate", "--list-motions"],
                       capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert p.returncode == 0 and [line.split()[0] for line in p.stdout.splitlines()] == list(MOTIONS)
    assert "higgsfield" not in p.stderr


def test_one_table_of_moves_in_the_core():
    from soulid.soul.motions import LOCAL_MOVES, move_aliases

    assert [m.name for m in LOCAL_MOVES] == list(MOTIONS)
    assert all(MOTIONS[m.name].description == m.description for m in LOCAL_MOVES)
    assert move_aliases()["orbit"] == "orbit_right"
