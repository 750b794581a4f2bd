"""``soulid campaign PLAN.yaml --server URL [--server URL ...] --out DIR``.

Crosses a plan (Soul IDs x presets x prompts x seeds, or one Soul ID per
photo folder) into one workflow's inputs, runs the jobs on every worker
given (native ComfyUI or Comfy API v2, mixed), and writes
``DIR/manifest.json`` / ``DIR/manifest.csv`` as jobs finish. Running the same
command again submits only what was never submitted (kill -9 included).
See :mod:`soulid.backends.comfyui.campaign`.

Exit codes: 0 every row done; 1 some row failed or could not run; 2 a bad
plan or no worker reachable.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..soul.errors import SoulIDError
from .common import shown
from .workflow import DEFAULT_SERVER, add_server_args, positive_seconds


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("campaign", help="run a plan of many jobs over one or more ComfyUI workers",
                       description="Cross a plan's Soul IDs x presets x prompts x seeds (or photo folders, "
                                   "kind: create) into one workflow, spread the jobs over the --server workers "
                                   "(least loaded first, up to --per-worker each) and write DIR/manifest.json "
                                   "and manifest.csv as they finish. A rerun submits only what is missing.")
    p.add_argument("plan", help="plan file (YAML)")
    add_server_args(p)
    p.add_argument("--out", required=True, metavar="DIR", help="results, manifest and journal folder")
    p.add_argument("--per-worker", type=int, default=None, metavar="N",
                   help="jobs in flight per worker (default: the plan's per_worker, 2)")
    p.add_argument("--job-timeout", type=positive_seconds, default=3600.0, metavar="S",
                   help="seconds one job may take, downloads included (default 3600)")
    p.add_argument("--worker-timeout", type=positive_seconds, default=30.0, metavar="S",
                   help="seconds one request may take before its worker is drained (default 30)")
    p.add_argument("--retry-failed", action="store_true",
                   help="submit rows that failed before again, as new jobs")
    p.add_argument("--local", type=int, default=0, metavar="N",
                   help="kind create only: build the Soul IDs on this machine, N processes at once")
    p.set_defaults(func=cmd_campaign)


def cmd_campaign(args) -> int:
    from ..backends.comfyui.base import Deadline
    from ..backends.comfyui.campaign import (JOURNAL_NAME, Scheduler, build_rows, create_locally, load_plan)
    from ..backends.comfyui.dispatch import connect
    from ..backends.comfyui.jobs import GraphJob
    from ..backends.comfyui.journal import Journal
    from ..backends.comfyui.transfer import MAX_OUTPUT_BYTES

    def log(msg: str) -> None:
        print(shown(msg), file=sys.stderr, flush=True)

    plan_path = Path(args.plan)
    plan = load_plan(plan_path)
    out = Path(args.out)
    rows = build_rows(plan, plan_path)
    if args.retry_failed:
        journal = Journal(out / JOURNAL_NAME)
        for row in rows:
            n = 0
            while journal.get(row.spec.key).get("event") == "failed":
                n += 1
                row.spec = GraphJob(row.spec.graph, row.spec.uploads, row.spec.label, salt=f"retry-{n}")
    if args.local:
        if plan.kind != "create":
            raise SoulIDError("--local: only a create plan runs on this machine; generate plans need --server")
        out.mkdir(parents=True, exist_ok=True)
        c = create_locally(rows, out, args.local, getattr(args, "library", None), log=log)
        log(f"campaign: {c.line()}; manifest {out / 'manifest.csv'}")
        return 0 if c.failed == 0 else 1
    workers = []
    for entry in args.servers or [DEFAULT_SERVER]:
        try:
            workers.append(connect(entry, Deadline(args.worker_timeout), request_timeout=args.worker_timeout))
        except SoulIDError as e:
            log(f"worker {entry} left out: {e}")
    if not workers:
        raise SoulIDError("no worker could be reached")
    sched = Scheduler(workers, out, kind=plan.kind, per_worker=args.per_worker or plan.per_worker,
                      job_timeout=args.job_timeout, max_bytes=args.max_bytes or MAX_OUTPUT_BYTES, log=log)
    try:
        c = sched.run(rows)
    finally:
        for w in workers:
            w.close()
    log(f"campaign: {c.line()}; jobs sent: " + ", ".join(f"{u} {n}" for u, n in sched.received.items())
        + f"; manifest {out / 'manifest.csv'}")
    return 0 if c.failed == 0 and c.queued == 0 and c.running == 0 else 1
