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
import sys
import time
from pathlib import Path

from ..backends.comfyui.base import Deadline, DeadlineExceeded, JobRefused, Upload, WorkerDown, check_seconds
from ..backends.comfyui.graph import WorkflowError, apply_overrides, load_api_workflow, parse_uploads
from ..backends.comfyui.journal import JOURNAL_NAME
from ..soul.errors import SoulIDError
from .common import shown

DEFAULT_SERVER = "http://127.0.0.1:8188"


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
    from ..backends.comfyui.jobs import GraphJob, execute
    from ..backends.comfyui.journal import Journal
    from ..backends.comfyui.transfer import MAX_OUTPUT_BYTES

    deadline = Deadline(check_seconds(timeout, "--timeout"))
    spec = GraphJob(prompt, list(uploads or []), salt=salt)
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
