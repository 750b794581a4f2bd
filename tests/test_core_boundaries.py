"""The core (``soulid.soul``) imports no backend and no ComfyUI: an AST scan
of every module under soul/ (imports inside functions included)."""
from __future__ import annotations

import ast
from pathlib import Path

SOUL = Path(__file__).resolve().parents[1] / "soul"
FORBIDDEN = ("soulid.backends", "soulid.nodes", "comfy", "comfy_api", "folder_paths")


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, absolute module)`` of every import in ``path``."""
    pkg = ("soulid." + ".".join(path.relative_to(SOUL.parent).with_suffix("").parts)).rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = pkg.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
    return out


def test_scan_resolves_relative_imports():
    mods = {m for _, m in _imports(SOUL / "idsheet.py")}
    assert "soulid.soul.moodboard" in mods  # `from .moodboard import ...`


def test_core_imports_no_backend_and_no_comfyui():
    bad = []
    for path in sorted(SOUL.rglob("*.py")):
        for line, mod in _imports(path):
            if any(mod == f or mod.startswith(f + ".") for f in FORBIDDEN):
                bad.append(f"{path.relative_to(SOUL.parent)}:{line} imports {mod}")
    assert not bad, "\n".join(bad)
