"""Make the published torchvision 0.28.0 import on a CPU-only torch 2.13.0.

Its compiled ops need CUDA libraries and do not load; the import then fails
on two unconditional ``torch.library.register_fake`` decorators (for
``torchvision::nms`` and ``torchvision::qnms``) in ``_meta_registrations.py``
("operator torchvision::nms does not exist"). This swaps them for
``@register_meta("nms")`` / ``@register_meta("qnms")``, the guarded helper the
rest of that file uses (CONTRIBUTING.md, "Setting up a CPU-only ComfyUI").
Runs once per environment; a second run changes nothing. Exit 1 when the file
has neither form, or torchvision still does not import.
"""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

PATTERN = re.compile(r"""@torch\.library\.register_fake\(\s*["']torchvision::(nms|qnms)["']\s*\)""")


def main() -> int:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.origin:
        print("torchvision is not installed", file=sys.stderr)
        return 1
    f = Path(spec.origin).parent / "_meta_registrations.py"
    text = f.read_text()
    new, n = PATTERN.subn(lambda m: f'@register_meta("{m.group(1)}")', text)
    if n:
        f.write_text(new)
        print(f"patched {n} line(s) of {f}")
    elif not all(f'@register_meta("{op}")' in text for op in ("nms", "qnms")):
        print(f"{f}: neither the register_fake lines nor the patched ones found", file=sys.stderr)
        return 1
    r = subprocess.run([sys.executable, "-c", "import torchvision; print('torchvision', torchvision.__version__)"],
                       capture_output=True, text=True)
    print(r.stdout.strip() or r.stderr[-2000:])
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
