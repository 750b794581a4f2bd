"""One way to do each thing: an AST scan of the package that fails when a
second copy of a pack-wide protocol appears (CONTRIBUTING, "One way").

* interrupt: one exception class ``Interrupted`` (soul/errors.py); nothing
  raises or catches the built-in ``InterruptedError``; no exception is
  matched by its class name;
* progress: ``ProgressFn``/``InterruptFn`` are defined only in
  soul/progress.py; an annotated ``progress`` argument uses ``ProgressFn``;
  no ``on_step``-style integer callbacks;
* ComfyUI's progress bar and interrupt flag are touched only by
  nodes/comfy_progress.py;
* atomic writes: ``os.replace``/``os.rename`` and whole-file ``os.fsync``
  only in soul/paths.py;
* HTTP: httpx clients are made only in backends/http.py, the retryable
  status set (408, 429) is written only there; no second HTTP library;
* images: ``to_uint8``/``to_float01``/``to_rgb`` are defined only in
  soul/imageio.py, and no private ``_as_uint8``/``_uint8``/``_float`` wrapper;
* photo suffixes: one literal list (soul/imageio.py ``PHOTO_EXTENSIONS``);
* names: ``JobSpec``, ``cost_text``, ``DOP_MODELS`` and ``_RATING_RANK``
  are each defined in one module only.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted(p for pkg in ("soul", "backends", "nodes", "cli") for p in (ROOT / pkg).rglob("*.py"))
TREES = {p.relative_to(ROOT).as_posix(): ast.parse(p.read_text(), str(p)) for p in FILES}


def _where(pred) -> list[str]:
    return [f"{rel}:{n.lineno}" for rel, tree in TREES.items() for n in ast.walk(tree) if pred(n)]


def _attr(n: ast.AST, obj: str, names: tuple[str, ...]) -> bool:
    return (isinstance(n, ast.Attribute) and n.attr in names
            and isinstance(n.value, ast.Name) and n.value.id == obj)


def _defs(name: str) -> set[str]:
    """Modules that define ``name`` at top level (class, function or assignment)."""
    out = set()
    for rel, tree in TREES.items():
        for n in tree.body:
            if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name:
                out.add(rel)
            elif isinstance(n, (ast.Assign, ast.AnnAssign)):
                targets = n.targets if isinstance(n, ast.Assign) else [n.target]
                if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                    out.add(rel)
    return out


def _only_in(hits: list[str], allowed: set[str]) -> list[str]:
    return [h for h in hits if h.rsplit(":", 1)[0] not in allowed]


def test_the_scan_sees_the_package():
    assert "soul/errors.py" in TREES and "backends/http.py" in TREES and len(TREES) > 60


def test_one_interrupt_exception():
    classes = _where(lambda n: isinstance(n, ast.ClassDef) and n.name in ("Interrupted", "_Stop"))
    assert [h.rsplit(":", 1)[0] for h in classes] == ["soul/errors.py"], classes
    builtin = _where(lambda n: isinstance(n, ast.Name) and n.id == "InterruptedError")
    assert not builtin, f"use soulid.soul.errors.Interrupted, not InterruptedError: {builtin}"
    by_name = _where(lambda n: isinstance(n, ast.Compare) and isinstance(n.left, ast.Attribute)
                     and n.left.attr == "__name__" and isinstance(n.left.value, ast.Call)
                     and isinstance(n.left.value.func, ast.Name) and n.left.value.func.id == "type")
    assert not by_name, f"match exceptions with isinstance, not by class name: {by_name}"


def test_one_progress_signature():
    defs = _where(lambda n: isinstance(n, (ast.Assign, ast.AnnAssign)) and any(
        isinstance(t, ast.Name) and t.id in ("ProgressFn", "InterruptFn")
        for t in (n.targets if isinstance(n, ast.Assign) else [n.target])))
    assert {h.rsplit(":", 1)[0] for h in defs} == {"soul/progress.py"}, defs
    bad = []
    for rel, tree in TREES.items():
        for n in ast.walk(tree):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for a in n.args.args + n.args.kwonlyargs:
                    if a.arg == "on_step":
                        bad.append(f"{rel}:{n.lineno} {n.name}(on_step)")
                    if a.arg == "progress" and a.annotation is not None and "ProgressFn" not in ast.unparse(a.annotation):
                        bad.append(f"{rel}:{n.lineno} {n.name}(progress: {ast.unparse(a.annotation)})")
    assert not bad, "progress is soul.progress.ProgressFn (fraction, message):\n" + "\n".join(bad)


def test_one_comfyui_progress_adaptor():
    hits = _where(lambda n: isinstance(n, ast.Attribute) and n.attr in (
        "ProgressBar", "processing_interrupted", "throw_exception_if_processing_interrupted"))
    assert not _only_in(hits, {"nodes/comfy_progress.py"}), hits


def test_one_atomic_write():
    hits = _where(lambda n: _attr(n, "os", ("replace", "rename", "renames")) or _attr(n, "shutil", ("move",)))
    assert not _only_in(hits, {"soul/paths.py"}), f"write through soul.paths.atomic_path: {hits}"
    fsync = _where(lambda n: _attr(n, "os", ("fsync",)))
    # the journal appends lines; every whole-file write is fsynced by soul.paths.publish
    assert not _only_in(fsync, {"soul/paths.py", "backends/comfyui/journal.py"}), fsync


def test_one_http_client_factory_and_retry_policy():
    clients = _where(lambda n: isinstance(n, ast.Call) and _attr(n.func, "httpx", (
        "Client", "AsyncClient", "get", "post", "put", "delete", "request", "stream")))
    assert not _only_in(clients, {"backends/http.py"}), f"make clients with backends.http.client: {clients}"
    retry = _where(lambda n: isinstance(n, ast.Tuple) and [getattr(e, "value", None) for e in n.elts] == [408, 429])
    assert not _only_in(retry, {"backends/http.py"}), f"use backends.http.RETRY: {retry}"
    # ``from aiohttp import web`` is ComfyUI's server (the pack's routes), not an HTTP client.
    other = _where(lambda n: isinstance(n, (ast.Import, ast.ImportFrom)) and any(
        (getattr(n, "module", None) or a.name).split(".")[0] in ("requests", "aiohttp", "urllib3")
        or (getattr(n, "module", None) or a.name) == "urllib.request" for a in n.names)
        and not (isinstance(n, ast.ImportFrom) and n.module == "aiohttp" and [a.name for a in n.names] == ["web"]))
    assert not other, other


def test_one_image_converter():
    for name in ("to_uint8", "to_float01", "to_rgb"):
        assert _defs(name) == {"soul/imageio.py"}, (name, _defs(name))
    wrappers = _where(lambda n: isinstance(n, ast.FunctionDef) and n.name in ("_as_uint8", "_uint8", "_float", "_as_rgb"))
    assert not _only_in(wrappers, {"backends/camera.py"}), wrappers  # camera's adds only its 2x2 minimum


def test_one_photo_suffix_list():
    def photo_list(n):
        if not isinstance(n, (ast.Tuple, ast.List, ast.Set)):
            return False
        vals = {getattr(e, "value", None) for e in n.elts}
        return {".jpg", ".png", ".webp"} <= vals
    hits = _where(photo_list)
    assert [h.rsplit(":", 1)[0] for h in hits] == ["soul/imageio.py"], hits


def test_one_meaning_per_name():
    for name in ("JobSpec", "cost_text", "DOP_MODELS", "_RATING_RANK"):
        assert len(_defs(name)) <= 1, (name, sorted(_defs(name)))
