"""`soulid animate --list-motions` works without cloud credentials."""
from __future__ import annotations

import os
import subprocess
import sys

from soulid.backends.local.camera import MOTIONS


def test_list_motions_without_credentials():
    p = subprocess.run([sys.executable, "-m", "soulid", "animate", "--list-motions"],
                       capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert p.returncode == 0, p.stderr
    listed = [line.split()[0] for line in p.stdout.splitlines()]
    assert listed == list(MOTIONS)
    assert "no higgsfield API key" in p.stderr
