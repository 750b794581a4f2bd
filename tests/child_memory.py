"""The peak memory of a child process, measured after its ``exec``.

``ru_maxrss`` (from ``wait4`` or ``getrusage``) is useless for a child of a
big test process: Linux keeps the high-water mark across ``fork`` + ``exec``,
so a child of a 1.3 GB pytest reports at least 1.3 GB whatever it did. The
``VmHWM`` line of ``/proc/self/status`` belongs to the address space, which
``exec`` replaces, so the child reports that instead, at exit.
"""
from __future__ import annotations

import sys
from pathlib import Path

#: ``python -c`` program: run ``soulid ARGS`` (argv[2:]) and write the exit
#: code and the peak resident memory in KiB to the file argv[1] at exit.
SOULID_WITH_PEAK = r"""
import atexit, sys
out = sys.argv[1]
code = [0]
def _peak():
    hwm = next((l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')), '0')
    open(out, 'w').write(f'{code[0]} {hwm}')
atexit.register(_peak)
from soulid.cli import main
try:
    code[0] = main(sys.argv[2:]) or 0
except SystemExit as e:
    code[0] = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
sys.exit(code[0])
"""


def soulid_command(peak_file: Path, args) -> list[str]:
    """The argv that runs ``soulid ARGS`` and records its peak memory in ``peak_file``."""
    return [sys.executable, "-c", SOULID_WITH_PEAK, str(peak_file), *map(str, args)]


def read_peak(peak_file: Path) -> tuple[int, float]:
    """``(exit code, peak resident memory in MB)`` written by :data:`SOULID_WITH_PEAK`."""
    rc, kib = peak_file.read_text().split()
    return int(rc), int(kib) / 1024
