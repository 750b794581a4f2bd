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
3. ``--upload NODE.INPUT=PATH`` sends a local file (or a folder of photos)
   to the server, once per content hash, and points the input at it.
4. Submit the graph to the first ``--server`` that answers: a native ComfyUI
   (``POST /prompt``) or a Comfy API v2 endpoint (``POST /api/v2/jobs``),
   probed or forced with ``native+``/``v2+`` (:mod:`soulid.backends.comfyui`).
   The job's key (graph after overrides + input hashes) is its v2
   ``Idempotency-Key`` / native ``prompt_id``, and ``--out`` keeps a journal
   (``.soulid-jobs.jsonl``): running the same command again submits nothing
   that exists; it follows the job, or reprints what it already downloaded.
   A refused graph prints the server's reason and every node error; exit 2.
5. Follow the job by polling with backoff (0.2 s doubling to 2 s), printing
   queue position / running as it changes.
6. On success stream every output file to ``--out`` (a size cap, the
   ``--timeout`` deadline; names made safe locally, subfolders kept, never
   outside ``--out``, never over an earlier file), print text outputs, exit
   0. On a node failure print ``node ID (TYPE) failed: MESSAGE``; exit 1.
   On ``--timeout`` exit 1 and say that the job is still on the server
   (it is not cancelled: a paid cloud job inside it may already be running).

The server is ``http://127.0.0.1:8188`` (loopback) unless ``--server`` names
another explicitly. The only credential ever sent is a v2 server's
``COMFY_API_KEY`` from the environment; cloud nodes read theirs on the
server side (environment or ``soulid login``).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from ..backends.comfyui.base import Deadline, DeadlineExceeded, JobRefused, Upload, WorkerDown, check_seconds
from ..soul.errors import SoulIDError

DEFAULT_SERVER = "http://127.0.0.1:8188"
#: Name of the job journal kept in the output folder.
JOURNAL_NAME = ".soulid-jobs.jsonl"
#: Photo types uploaded from a folder given to ``--upload``.
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


#: Largest workflow file read, bytes.
MAX_WORKFLOW_BYTES = 16 << 20


class WorkflowError(SoulIDError):
    """A workflow file, an override or the server's answer is unusable."""


def read_text_file(path: Path, max_bytes: int, what: str, error: type[SoulIDError]) -> str:
    """A regular file's text (UTF-8), read only when it is a regular file of
    at most ``max_bytes`` (a FIFO or ``/dev/zero`` is refused at once).

    Raises:
        ``error``: unreadable, not a regular file, too large, or not UTF-8
            (the message names the file, the ``what`` and the reason).
    """
    from ..soul.paths import NotRegularFile, open_regular_file

    try:
        f, _size = open_regular_file(path, max_bytes)
        with f:
            data = f.read(max_bytes + 1)
    except NotRegularFile as e:
        raise error(f"{path}: cannot read the {what}: {e.reason}") from None
    except OSError as e:
        raise error(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    if len(data) > max_bytes:
        raise error(f"{path}: the {what} is over the {max_bytes >> 20} MiB limit")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{path}: the {what} is not UTF-8 text (byte {e.start}: {data[e.start:e.start + 1]!r})") from None


# ------------------------------------------------------------------ workflow
def load_api_workflow(path: str | Path) -> dict:
    """The API-format prompt in ``path``: ``{node_id: {"class_type", "inputs", ...}}``.

    A ``{"prompt": {...}}`` wrapper (a saved ``/prompt`` body) is unwrapped.

    Raises:
        WorkflowError: unreadable or invalid JSON; a UI-format workflow (names
            the API twin ``<folder>/api/<name>.json`` when it exists); a node
            without ``class_type`` or ``inputs``.
    """
    from ..backends.comfyui.base import MAX_JSON_DEPTH, json_too_deep

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


def _parse_value(text: str, current, item: str = ""):
    from ..backends.comfyui.base import json_too_deep

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


# -------------------------------------------------------------------- uploads
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
            files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in PHOTO_SUFFIXES)
            if not files:
                raise WorkflowError(f"--upload {item!r}: no photos ({', '.join(PHOTO_SUFFIXES)}) in {p}")
            ups.append(Upload(nid, name, files, folder=True))
        elif p.is_file():
            ups.append(Upload(nid, name, [p]))
        else:
            raise WorkflowError(f"--upload {item!r}: {p} is not a file or folder")
    return ups


def shown(text: object) -> str:
    """``text`` safe to print on a terminal: each line's control characters
    (ANSI escapes, bidi overrides...) become ``\\x1b``-style escapes
    (:func:`soulid.soul.imageio.safe_label`); line breaks are kept. For
    anything a server, a file or its metadata chose."""
    from ..soul.imageio import safe_label

    return "\n".join(safe_label(line) for line in str(text).split("\n"))


def _print(msg: str, result: bool = False) -> None:
    print(shown(msg), file=sys.stdout if result else sys.stderr, flush=True)


def run_workflow(prompt: dict, servers: str | list[str], out_dir: Path, timeout: float, log=_print, *,
                 uploads: list[Upload] | None = None, max_bytes: int | None = None,
                 salt: str = "") -> tuple[int, dict]:
    """Run ``prompt`` on the first of ``servers`` that answers; download its outputs into ``out_dir``.

    ``log(message, result=False)`` receives progress and errors, and with
    ``result=True`` each saved file and text output (the CLI prints those
    to stdout, the rest to stderr).

    Returns:
        ``(exit_status, {"job_id", "worker", "files", "texts"})``: 0 success,
        1 a node failed, the run was interrupted or ``timeout`` seconds passed.

    Raises:
        WorkflowError: no server is reachable, the graph was refused (with
            its node errors) or a server answered something unusable (the
            field is named).
    """
    from ..backends.comfyui.dispatch import connect
    from ..backends.comfyui.jobs import JobSpec, execute
    from ..backends.comfyui.journal import Journal
    from ..backends.comfyui.transfer import MAX_OUTPUT_BYTES

    deadline = Deadline(check_seconds(timeout, "--timeout"))
    spec = JobSpec(prompt, list(uploads or []), salt=salt)
    journal = Journal(Path(out_dir) / JOURNAL_NAME)
    errors = []
    for entry in [servers] if isinstance(servers, str) else servers:
        try:
            worker = connect(entry, deadline)
        except SoulIDError as e:
            errors.append(str(e))
            continue
        try:
            res = execute(worker, spec, journal, Path(out_dir), deadline, max_bytes=max_bytes or MAX_OUTPUT_BYTES,
                          log=log)
        except DeadlineExceeded as e:
            log(f"timed out after {timeout:g} s: {e}")
            return 1, {}
        except JobRefused as e:
            raise WorkflowError(str(e)) from None
        except WorkerDown as e:
            errors.append(str(e))
            continue
        except SoulIDError as e:
            raise WorkflowError(str(e)) from None
        finally:
            worker.close()
        info = {"job_id": res.job_id, "worker": res.worker, "files": res.files, "texts": res.texts}
        if res.reused:
            log(f"job {res.job_id} on {res.worker} already {res.status} (journal {journal.path}); nothing submitted")
        if res.status == "failed":
            log(res.error or "the job failed")
            return 1, info
        for i, f in enumerate(res.files):
            nid = res.nodes[i] if i < len(res.nodes) else "?"
            log(f"node {nid}: {Path(out_dir) / f}", result=True)
        for nid, texts in res.texts.items():
            for text in texts:
                log(f"node {nid} ({prompt.get(nid, {}).get('class_type', '?')}): {text}", result=True)
        return 0, info
    raise WorkflowError("no server could run the job:\n  " + "\n  ".join(errors))


# ----------------------------------------------------------------------- CLI
def positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds above 0 (NaN, inf, 0, negatives refused)."""
    try:
        return check_seconds(text, "")
    except SoulIDError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number of seconds above 0") from None


def positive_mb(text: str) -> int:
    """argparse type: a size in MB, a finite number above 0, returned in bytes."""
    try:
        return int(check_seconds(text, "") * (1 << 20))
    except SoulIDError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size in MB above 0") from None


def add_server_args(p: argparse.ArgumentParser) -> None:
    """``--server`` (repeatable) and ``--max-output-mb``, shared by ``run`` and ``campaign``."""
    p.add_argument("--server", dest="servers", action="append", metavar="URL",
                   help=f"ComfyUI base URL, repeatable (default {DEFAULT_SERVER}); a native ComfyUI or a Comfy API "
                        f"v2 endpoint, probed, or forced with native+http://... / v2+https://...; a v2 key is read "
                        f"from $COMFY_API_KEY")
    p.add_argument("--max-output-mb", dest="max_bytes", type=positive_mb, default=None, metavar="MB",
                   help="largest output file accepted (default 2048)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="queue an API-format workflow on a ComfyUI server and download its outputs",
                       description="Queue an API-format workflow (workflows/api/*.json) on a running ComfyUI "
                                   "(native or Comfy API v2), follow it, download its outputs. Running it again "
                                   "with the same --out submits nothing that exists. Exit 0 on success, 1 when a "
                                   "node fails or --timeout passes, 2 for a bad workflow or override, a refused "
                                   "prompt or no reachable server.")
    p.add_argument("workflow", help="API-format workflow JSON")
    add_server_args(p)
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NODE.INPUT=VALUE",
                   help="override an input; NODE is an id, or a unique title or class type (repeatable)")
    p.add_argument("--upload", dest="uploads", action="append", default=[], metavar="NODE.INPUT=PATH",
                   help="upload a file (or a folder of photos) and point the input at it (repeatable)")
    p.add_argument("--out", default="outputs", metavar="DIR", help="folder for the downloaded outputs (default ./outputs)")
    p.add_argument("--timeout", type=positive_seconds, default=1800.0, metavar="S",
                   help="seconds for the whole run, downloads included (default 1800)")
    p.add_argument("--new-run", action="store_true",
                   help="submit a new job even when this --out already holds the same one")
    p.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    prompt = apply_overrides(load_api_workflow(args.workflow), args.sets)
    uploads = parse_uploads(prompt, args.uploads)
    code, _ = run_workflow(prompt, args.servers or [DEFAULT_SERVER], Path(args.out), args.timeout,
                           uploads=uploads, max_bytes=args.max_bytes,
                           salt=f"new-run-{time.time_ns()}" if args.new_run else "")
    return code
