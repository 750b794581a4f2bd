"""Campaign throughput: jobs per minute with 1 and with 2 workers on this host, and their ratio.

    python benchmarks/bench_campaign.py [--jobs 12] [--per-worker 1]
    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/bench_campaign.py    # real workers

With ``$COMFYUI_PATH`` the workers are two real ComfyUI servers on CPU, the
first behind ``comfy-api-proxy`` (Comfy API v2), the second native, and each
job is a ``soul_id_create`` on one fixture photo (real photo analysis). The
1-worker run uses the proxied server only. Each run uses fresh Soul ID names,
so neither ComfyUI's cache nor the job journal can skip work. Without
``$COMFYUI_PATH`` the workers are two in-process v2 stand-ins whose jobs take
a fixed ``--standin-seconds`` (this measures the scheduler, not ComfyUI).
Server start-up is not counted.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
FACES = Path(os.environ.get("SOULID_FIXTURES", ROOT.parent / "shared" / "fixtures" / "faces"))


def _campaign(servers: list[str], plan: Path, out: Path, per_worker: int) -> tuple[int, float]:
    from soulid.cli import main

    t0 = time.monotonic()
    args = ["campaign", str(plan), "--out", str(out), "--per-worker", str(per_worker), "--job-timeout", "900"]
    for s in servers:
        args += ["--server", s]
    rc = main(args)
    return rc, time.monotonic() - t0


def _create_plan(tmp: Path, tag: str, jobs: int) -> Path:
    from test_campaign_host import PHOTOS

    photos = (PHOTOS * (jobs // len(PHOTOS) + 1))[:jobs]
    for i, rel in enumerate(photos):
        d = tmp / tag / "sets" / f"{tag}_{i:02d}"
        d.mkdir(parents=True)
        shutil.copy(FACES / rel, d / Path(rel).name)
    plan = tmp / tag / "plan.yaml"
    plan.write_text("kind: create\nsets: ['sets/*']\nset: ['Soul ID Create.max_photos=4']\n")
    return plan


def _generate_plan(tmp: Path, tag: str, jobs: int) -> Path:
    import json

    (tmp / tag).mkdir(parents=True)
    g = {"1": {"class_type": "SoulIDGenerate", "inputs": {"seed": 0, "prompt": tag}},
         "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "b/x"}}}
    (tmp / tag / "g.json").write_text(json.dumps(g))
    plan = tmp / tag / "plan.yaml"
    plan.write_text(f"workflow: g.json\nseeds: {list(range(jobs))}\n")
    return plan


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=12)
    ap.add_argument("--per-worker", type=int, default=1, help="jobs in flight per worker (default 1)")
    ap.add_argument("--standin-seconds", type=float, default=0.5)
    args = ap.parse_args()
    real = bool(os.environ.get("COMFYUI_PATH"))
    tmp = Path(tempfile.mkdtemp(prefix="bench_campaign_"))
    with ExitStack() as st:
        if real:
            from comfy_host import start_comfy
            from test_campaign_host import start_proxy

            a = st.enter_context(start_comfy(tmp / "comfy_a"))
            b = st.enter_context(start_comfy(tmp / "comfy_b"))
            (tmp / "proxy" / "state").mkdir(parents=True)
            proxy = st.enter_context(start_proxy(a.url, tmp / "proxy" / "state"))
            servers, make_plan, what = [proxy, b.url], _create_plan, "soul_id_create (1 photo), real ComfyUI on CPU"
        else:
            from standin_v2 import StandinV2

            s1 = st.enter_context(StandinV2(job_seconds=args.standin_seconds))
            s2 = st.enter_context(StandinV2(job_seconds=args.standin_seconds))
            servers, make_plan, what = [s1.url, s2.url], _generate_plan, f"v2 stand-in, {args.standin_seconds} s/job"
        rates = {}
        for n in (1, 2):
            plan = make_plan(tmp, f"w{n}", args.jobs)
            rc, secs = _campaign(servers[:n], plan, tmp / f"out{n}", args.per_worker)
            if rc != 0:
                print(f"campaign with {n} worker(s) failed (exit {rc})", file=sys.stderr)
                return 1
            rates[n] = args.jobs / secs * 60
            print(f"{n} worker(s): {args.jobs} jobs in {secs:.1f} s = {rates[n]:.1f} jobs/min", flush=True)
    print(f"workload: {what}; {os.cpu_count()} CPU cores; per-worker cap {args.per_worker}")
    print(f"ratio 2 workers / 1 worker: {rates[2] / rates[1]:.2f}x")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
