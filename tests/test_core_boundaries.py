"""Layers run one way (nodes/cli -> backends -> soul), checked by an AST
scan of every module of the package (imports inside functions included):

* the core (``soul/``) imports no backend, no node, no ComfyUI and no
  network library;
* no module under ``backends/`` imports ``cli`` or ``nodes``;
* no module under ``nodes/`` imports ``backends.local`` (the diffusers
  package); the weight-free camera engine is ``backends.camera``;
* ``backends/local`` never imports ComfyUI;
* no import circle anywhere in the package.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOUL = ROOT / "soul"
PACKAGES = ("soul", "backends", "nodes", "cli")
COMFY = ("comfy", "comfy_api", "comfy_execution", "folder_paths", "server", "nodes")
NETWORK = ("httpx", "requests", "urllib.request", "http.client", "socket", "aiohttp", "websocket", "websockets")


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    name = ".".join(("soulid",) + parts)
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def _package_modules() -> dict[str, Path]:
    return {_module(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


MODULES = _package_modules()


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, absolute module)`` of every import in ``path``; for
    ``from X import name`` both ``X`` and ``X.name``, except that
    ``from . import submodule`` counts as the submodule only."""
    mod = _module(path)
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                src = ".".join(base + ([node.module] if node.module else []))
            else:
                src = node.module or ""
            subs = [f"{src}.{a.name}" for a in node.names]
            if not (node.level and all(s in MODULES for s in subs)):
                out.append((node.lineno, src))
            out += [(node.lineno, s) for s in subs]
    return out


def _under(mod: str, prefixes) -> bool:
    return any(mod == f or mod.startswith(f + ".") for f in prefixes)


def _violations(folder: str, forbidden) -> list[str]:
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for line, mod in _imports(path):
            if _under(mod, forbidden):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod}")
    return bad


def test_scan_resolves_relative_imports():
    mods = {m for _, m in _imports(SOUL / "idsheet.py")}
    assert "soulid.soul.grid" in mods  # `from .grid import ...`
    assert "soulid.backends.comfyui.graph" in {m for _, m in _imports(ROOT / "backends/comfyui/campaign.py")}


def test_core_imports_no_backend_no_comfyui_and_no_network():
    bad = _violations("soul", ("soulid.backends", "soulid.nodes", "soulid.cli") + COMFY + NETWORK)
    assert not bad, "\n".join(bad)


def test_backends_import_no_cli_and_no_nodes():
    bad = _violations("backends", ("soulid.cli", "soulid.nodes"))
    assert not bad, "\n".join(bad)


def test_nodes_never_import_the_diffusers_backend():
    bad = _violations("nodes", ("soulid.backends.local",))
    assert not bad, "\n".join(bad)


def test_local_backend_never_imports_comfyui():
    bad = _violations("backends/local", COMFY)
    assert not bad, "\n".join(bad)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles():
    graph = {m: {i for _, i in _imports(p) if i in MODULES and i != m} for m, p in MODULES.items()}
    assert not _cycles(graph)
