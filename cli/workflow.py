"""``soulid run WORKFLOW.json``: queue a workflow on a ComfyUI server and
fetch what it made, without the browser.

::

    soulid run workflows/api/lookbook.json --server http://127.0.0.1:8188 \\
        --set "Soul ID Load.name=anna" --set 3.seed=7 --out lookbook/ --timeout 900

Steps (ComfyUI's HTTP routes:
https://docs.comfy.org/development/comfyui-server/comms_routes):

1. Read the workflow. It must be in API format (``{node_id: {"class_type",
   "inputs"}}``: the files under ``workflows/api/``, or the editor's
   *Export (API)*); a UI-format file (``"nodes"`` + ``"links"``) is refused
   with the path of its API twin when there is one. Converting a UI graph
   needs every node's widget order from ``/object_info``, which the editor
   already does on export, so the runner does not repeat it.
2. Apply ``--set NODE.INPUT=VALUE`` overrides. ``NODE`` is a node id, or a
   node's title (``_meta.title``) or class type when exactly one node has it;
   the value is read as JSON when it parses (``7``, ``0.5``, ``true``) and as
   text otherwise, and kept as text where the input already holds text.
3. ``POST /prompt`` with a fresh ``client_id``. A refused prompt (HTTP 400)
   prints ComfyUI's reason and every node error; exit status 2.
4. Follow the run by polling ``GET /history/{prompt_id}`` with backoff
   (0.2 s doubling to 2 s) and printing queue position / running from
   ``GET /queue`` as it changes. (ComfyUI also pushes progress over the
   ``/ws`` websocket; httpx has no websocket client, and polling needs no
   extra dependency.)
5. On success download every output file the history lists (images, videos,
   under the output nodes' ``images`` / ``gifs`` / ``videos`` ...) with
   ``GET /view?filename=&subfolder=&type=`` into ``--out`` (atomic writes,
   names kept, never outside ``--out``), print text outputs, exit 0.
   On a node failure print ``node ID (TYPE) failed: MESSAGE`` from the
   history's ``execution_error`` message; exit status 1. On ``--timeout``
   exit status 1 and say that the prompt is still queued on the server
   (it is not cancelled: a paid cloud job inside it may already be running).

The server is ``http://127.0.0.1:8188`` (loopback) unless ``--server`` names
another explicitly. No credentials are ever sent: cloud nodes read theirs on
the server side (environment or ``soulid login``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from ..soul.errors import SoulIDError

DEFAULT_SERVER = "http://127.0.0.1:8188"
#: Output-list keys of ComfyUI's UI results that name files (``SavedResult``).
FILE_KEYS = ("images", "gifs", "videos", "audio", "animated_images", "3d")
POLL_START_S, POLL_MAX_S = 0.2, 2.0


class WorkflowError(SoulIDError):
    """A workflow file, an override or the server's answer is unusable."""


# ------------------------------------------------------------------ workflow
def load_api_workflow(path: str | Path) -> dict:
    """The API-format prompt in ``path``: ``{node_id: {"class_type", "inputs", ...}}``.

    A ``{"prompt": {...}}`` wrapper (a saved ``/prompt`` body) is unwrapped.

    Raises:
        WorkflowError: unreadable or invalid JSON; a UI-format workflow (names
            the API twin ``<folder>/api/<name>.json`` when it exists); a node
            without ``class_type`` or ``inputs``.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise WorkflowError(f"{p}: cannot read the workflow ({e.strerror or e})") from None
    except ValueError as e:
        raise WorkflowError(f"{p}: not valid JSON ({e})") from None
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict) and "class_type" not in data["prompt"]:
        data = data["prompt"]
    if isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data:
        twin = p.parent / "api" / p.name
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


def _parse_value(text: str, current):
    if isinstance(current, str):
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


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
        inputs[name] = _parse_value(text, cur)
    return out


# -------------------------------------------------------------------- server
def _check_server(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WorkflowError(f"--server {url!r}: expected http://HOST:PORT")
    return url.rstrip("/")


def _error_text(body) -> str:
    """ComfyUI's ``/prompt`` refusal (``{"error": {...}, "node_errors": {...}}``) as lines."""
    if not isinstance(body, dict):
        return str(body)[:2000]
    err = body.get("error")
    lines = [err.get("message", "") + (f": {err['details']}" if err.get("details") else "")
             if isinstance(err, dict) else str(err)]
    for nid, ne in (body.get("node_errors") or {}).items():
        for e in ne.get("errors", []):
            lines.append(f"  node {nid} ({ne.get('class_type', '?')}): {e.get('message', '')}"
                         + (f": {e['details']}" if e.get("details") else ""))
    return "\n".join(lines)


def _queue_state(client, prompt_id: str) -> str:
    """``"running"``, ``"queued (N ahead)"`` or ``""`` from ``GET /queue``."""
    import httpx

    try:
        q = client.get("/queue").json()
    except (httpx.HTTPError, ValueError):  # progress only: a hiccup is not fatal
        return ""
    if any(len(e) > 1 and e[1] == prompt_id for e in q.get("queue_running", [])):
        return "running"
    pending = q.get("queue_pending", [])
    mine = [e for e in pending if len(e) > 1 and e[1] == prompt_id]
    if mine:
        ahead = sum(1 for e in pending if e[0] < mine[0][0]) + len(q.get("queue_running", []))
        return f"queued ({ahead} ahead)"
    return ""


def _safe_target(out_dir: Path, subfolder: str, filename: str) -> Path:
    parts = [x for x in PurePosixPath(subfolder.replace("\\", "/")).parts if x not in ("", ".", "..", "/")]
    name = PurePosixPath(filename.replace("\\", "/")).name
    if not name or name in (".", ".."):
        raise WorkflowError(f"server named an output file {filename!r}: not a file name")
    return out_dir.joinpath(*parts, name)


def output_files(outputs: dict) -> list[tuple[str, dict]]:
    """``(node_id, {"filename", "subfolder", "type"})`` for every file in a history entry's outputs."""
    files = []
    for nid, ui in (outputs or {}).items():
        for key in FILE_KEYS:
            for item in ui.get(key) or []:
                if isinstance(item, dict) and item.get("filename"):
                    files.append((nid, item))
    return files


def _print(msg: str, result: bool = False) -> None:
    print(msg, file=sys.stdout if result else sys.stderr, flush=True)


def run_workflow(prompt: dict, server: str, out_dir: Path, timeout: float, log=_print) -> tuple[int, dict]:
    """Queue ``prompt`` on ``server``, wait, download the outputs into ``out_dir``.

    ``log(message, result=False)`` receives progress and errors, and with
    ``result=True`` each saved file and text output (the CLI prints those
    to stdout, the rest to stderr).

    Returns:
        ``(exit_status, history_entry)``: 0 success, 1 a node failed, the run
        was interrupted or ``timeout`` seconds passed.

    Raises:
        WorkflowError: the server is unreachable, refused the prompt (with
            its node errors) or answered something that is not ComfyUI's.
    """
    import httpx

    from ..soul.paths import atomic_write_bytes

    server = _check_server(server)
    client_id = uuid.uuid4().hex
    with httpx.Client(base_url=server, timeout=30.0, trust_env=False) as c:
        try:
            r = c.post("/prompt", json={"prompt": prompt, "client_id": client_id})
        except httpx.TransportError as e:
            raise WorkflowError(f"cannot reach ComfyUI at {server}: {e}") from None
        try:
            body = r.json()
        except ValueError:
            body = r.text
        if r.status_code != 200:
            raise WorkflowError(f"ComfyUI at {server} refused the workflow (HTTP {r.status_code}):\n{_error_text(body)}")
        if not isinstance(body, dict) or not body.get("prompt_id"):
            raise WorkflowError(f"{server}/prompt answered without a prompt_id: {str(body)[:300]}")
        pid = body["prompt_id"]
        log(f"queued prompt {pid} on {server}")
        deadline, wait, shown, entry = time.monotonic() + timeout, POLL_START_S, None, None
        while True:
            try:
                h = c.get(f"/history/{pid}")
                h.raise_for_status()
                entry = h.json().get(pid)
            except (httpx.TransportError, httpx.HTTPStatusError, ValueError) as e:
                log(f"  (history not readable yet: {type(e).__name__})")
                entry = None
            status = (entry or {}).get("status") or {}
            if entry is not None and (status.get("completed") or status.get("status_str") in ("success", "error")):
                break
            state = _queue_state(c, pid)
            if state and state != shown:
                log(f"  {state}")
                shown = state
            if time.monotonic() + wait > deadline:
                log(f"timed out after {timeout:g} s: prompt {pid} is still {shown or 'queued'} on {server} "
                    f"(not cancelled; see its history there later)")
                return 1, entry or {}
            time.sleep(wait)
            wait = min(wait * 2, POLL_MAX_S)

        for kind, data in status.get("messages") or []:
            if kind == "execution_error":
                log(f"node {data.get('node_id')} ({data.get('node_type')}) failed: "
                    f"{data.get('exception_type', 'Error')}: {data.get('exception_message', '').strip()}")
                return 1, entry
            if kind == "execution_interrupted":
                log(f"interrupted at node {data.get('node_id')} ({data.get('node_type')})")
                return 1, entry
        if status.get("status_str") == "error":
            log(f"prompt {pid} failed (no error message in its history)")
            return 1, entry

        outputs = entry.get("outputs") or {}
        for nid, item in output_files(outputs):
            params = {"filename": item["filename"], "subfolder": item.get("subfolder", ""),
                      "type": item.get("type", "output")}
            target = _safe_target(out_dir, params["subfolder"], params["filename"])
            try:
                v = c.get("/view", params=params)
            except httpx.TransportError as e:
                raise WorkflowError(f"{server}/view: {item['filename']!r} of node {nid} not downloaded ({e})") from None
            if v.status_code != 200:
                raise WorkflowError(f"{server}/view could not send {item['filename']!r} of node {nid} "
                                    f"(HTTP {v.status_code})")
            atomic_write_bytes(target, v.content)
            log(f"node {nid}: {target}", result=True)
        for nid, ui in outputs.items():
            for text in ui.get("text") or []:
                log(f"node {nid} ({prompt.get(nid, {}).get('class_type', '?')}): {text}", result=True)
        return 0, entry


# ----------------------------------------------------------------------- CLI
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="queue an API-format workflow on a ComfyUI server and download its outputs",
                       description="Queue an API-format workflow (workflows/api/*.json) on a running ComfyUI, "
                                   "follow it, download its outputs. Exit 0 on success, 1 when a node fails or "
                                   "--timeout passes, 2 for a bad workflow or override or a refused prompt.")
    p.add_argument("workflow", help="API-format workflow JSON")
    p.add_argument("--server", default=DEFAULT_SERVER,
                   help=f"ComfyUI base URL (default {DEFAULT_SERVER}; any other host must be named here)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NODE.INPUT=VALUE",
                   help="override an input; NODE is an id, or a unique title or class type (repeatable)")
    p.add_argument("--out", default="outputs", metavar="DIR", help="folder for the downloaded outputs (default ./outputs)")
    p.add_argument("--timeout", type=float, default=1800.0, metavar="S", help="seconds to wait for the run (default 1800)")
    p.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    if args.timeout <= 0:
        raise WorkflowError(f"--timeout {args.timeout:g}: must be more than 0 seconds")
    prompt = apply_overrides(load_api_workflow(args.workflow), args.sets)
    code, _ = run_workflow(prompt, args.server, Path(args.out), args.timeout)
    return code
