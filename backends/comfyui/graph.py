"""Editing an API-format ComfyUI graph before it is queued: read it, name a
node (id, unique title or unique class type), apply ``NODE.INPUT=VALUE``
overrides, and turn ``NODE.INPUT=PATH`` items into uploads. Used by
``soulid run`` (:mod:`soulid.cli.workflow`) and by campaigns
(:mod:`.campaign`); no network I/O.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from ...soul.errors import SoulIDError
from ...soul.imageio import PHOTO_EXTENSIONS
from ...soul.paths import read_text_file
from .base import MAX_JSON_DEPTH, Upload, json_too_deep

#: Largest workflow file read, bytes.
MAX_WORKFLOW_BYTES = 16 << 20


class WorkflowError(SoulIDError):
    """A workflow file, an override or the server's answer is unusable."""


def load_api_workflow(path: str | Path) -> dict:
    """The API-format prompt in ``path``: ``{node_id: {"class_type", "inputs", ...}}``.

    A ``{"prompt": {...}}`` wrapper (a saved ``/prompt`` body) is unwrapped.

    Raises:
        WorkflowError: unreadable or invalid JSON; a UI-format workflow (names
            the API twin ``<folder>/api/<name>.json`` when it exists, ``name``
            from the template's ``extra.soulid.name``); a node
            without ``class_type`` or ``inputs``.
    """
    p = Path(path)
    text = read_text_file(p, MAX_WORKFLOW_BYTES, "workflow", WorkflowError)
    try:
        data = json.loads(text)
    except RecursionError:
        data = None
    except ValueError as e:
        raise WorkflowError(f"{p}: not valid JSON ({e})") from None
    if data is None or json_too_deep(data):
        raise WorkflowError(f"{p}: the workflow is nested more than {MAX_JSON_DEPTH} levels deep")
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict) and "class_type" not in data["prompt"]:
        data = data["prompt"]
    if isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data:
        extra = data.get("extra") if isinstance(data.get("extra"), dict) else {}
        meta = extra.get("soulid") if isinstance(extra.get("soulid"), dict) else {}
        name = meta.get("name")  # a shipped template's API twin: workflows/api/<name>.json
        twin = p.parent / "api" / (f"{name}.json" if isinstance(name, str) and name.isidentifier() else p.name)
        hint = (f"run its API twin {twin}" if twin.is_file()
                else "export it from ComfyUI with Workflow > Export (API) and run that file")
        raise WorkflowError(f"{p}: this is a UI-format workflow (what the ComfyUI editor saves); {hint}")
    if not isinstance(data, dict) or not data:
        raise WorkflowError(f"{p}: expected an API-format workflow, a JSON object of node id -> node")
    for nid, node in data.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str) \
                or not isinstance(node.get("inputs"), dict):
            raise WorkflowError(f"{p}: node {nid!r} has no class_type/inputs: not an API-format workflow")
    return data


def find_node(prompt: dict, ref: str) -> str:
    """The id of the node ``ref`` names: an id, else a unique title, else a unique class type.

    Raises:
        WorkflowError: no node matches, or several do (their ids are listed).
    """
    if ref in prompt:
        return ref
    for what, key in (("title", lambda n: (n.get("_meta") or {}).get("title")), ("type", lambda n: n["class_type"])):
        hits = [nid for nid, n in prompt.items() if key(n) == ref]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise WorkflowError(f"--set: {len(hits)} nodes have the {what} {ref!r} (ids {', '.join(hits)}); "
                                f"name one by its id")
    known = ", ".join(f"{nid} ({(n.get('_meta') or {}).get('title') or n['class_type']})" for nid, n in prompt.items())
    raise WorkflowError(f"--set: no node {ref!r}; nodes are: {known}")


def _parse_value(text: str, current, item: str = ""):
    if isinstance(current, str):
        return text
    try:
        value = json.loads(text)
    except RecursionError:
        raise WorkflowError(f"--set {item[:80]!r}: the value is nested too deep") from None
    except ValueError:
        return text
    if json_too_deep(value) or not _finite(value):
        raise WorkflowError(f"--set {item[:80]!r}: {text[:40]!r} is not a usable value "
                            f"(a number out of range, NaN or infinity, or nested too deep)")
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _finite(value) -> bool:
    """No NaN/infinite float anywhere in ``value`` (JSON cannot carry them to a server)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            return False
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return True


def apply_overrides(prompt: dict, sets: list[str]) -> dict:
    """``prompt`` with each ``NODE.INPUT=VALUE`` applied (a new dict; the input is not changed).

    Raises:
        WorkflowError: malformed override, unknown or ambiguous node, or an
            input that is a link from another node (a link is not a value).
    """
    out = json.loads(json.dumps(prompt))
    for item in sets:
        target, eq, text = item.partition("=")
        ref, dot, name = target.rpartition(".")
        if not eq or not dot or not ref or not name:
            raise WorkflowError(f"--set {item!r}: expected NODE.INPUT=VALUE (e.g. 3.seed=7 or \"Soul ID Load.name=anna\")")
        nid = find_node(out, ref)
        inputs = out[nid]["inputs"]
        cur = inputs.get(name)
        if isinstance(cur, list) and len(cur) == 2 and isinstance(cur[0], str) and isinstance(cur[1], int):
            raise WorkflowError(f"--set {item!r}: input {name!r} of node {nid} ({out[nid]['class_type']}) is "
                                f"connected to node {cur[0]}; it takes no value")
        inputs[name] = _parse_value(text, cur, item)
    return out


def parse_uploads(prompt: dict, items: list[str]) -> list[Upload]:
    """``--upload NODE.INPUT=PATH`` items as :class:`Upload` s (a folder: its photos, sorted).

    Raises:
        WorkflowError: malformed item, unknown node, missing path, empty folder.
    """
    ups = []
    for item in items:
        target, eq, path = item.partition("=")
        ref, dot, name = target.rpartition(".")
        if not eq or not dot or not ref or not name or not path:
            raise WorkflowError(f"--upload {item!r}: expected NODE.INPUT=PATH")
        nid = find_node(prompt, ref)
        p = Path(path)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in PHOTO_EXTENSIONS)
            if not files:
                raise WorkflowError(f"--upload {item!r}: no photos ({', '.join(sorted(PHOTO_EXTENSIONS))}) in {p}")
            ups.append(Upload(nid, name, files, folder=True))
        elif p.is_file():
            ups.append(Upload(nid, name, [p]))
        else:
            raise WorkflowError(f"--upload {item!r}: {p} is not a file or folder")
    return ups
