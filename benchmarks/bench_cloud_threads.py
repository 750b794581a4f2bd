"""Cloud jobs side by side: wall time of 1 job vs N jobs run from threads on
ONE backend (as ComfyUI's async nodes do with ``asyncio.to_thread``), and the
provider's peak of jobs in flight, against the stand-in.

    python benchmarks/bench_cloud_threads.py [--jobs 3 6] [--queue-s 1] [--run-s 1] [--json]

With the engine's cap of 4 jobs per provider, up to 4 jobs should take about
one job's wall time; 6 take about two.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, nargs="+", default=[3, 4, 6])
    ap.add_argument("--queue-s", type=float, default=1.0)
    ap.add_argument("--run-s", type=float, default=1.0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="soulid-bench-")
    os.environ.update(SOULID_DATA_DIR=f"{tmp}/data", SOULID_CACHE_DIR=f"{tmp}/cache", SOULID_CONFIG_DIR=f"{tmp}/cfg")

    import httpx

    from soulid.backends.base import GenerateRequest
    from soulid.backends.higgsfield import HiggsfieldBackend
    from standin.server import KEY_ID, KEY_SECRET, StandIn

    def req(seed):
        return GenerateRequest(prompt="bench", seed=seed, quality="720p", aspect="1:1")

    rows = []
    with StandIn(queue_s=a.queue_s, run_s=a.run_s) as s, \
            HiggsfieldBackend(base_url=s.url, platform_url=s.url, key=f"{KEY_ID}:{KEY_SECRET}",
                              poll_initial=0.05, poll_max=0.2) as be:
        t0 = time.monotonic()
        be.generate(req(0))
        one = time.monotonic() - t0
        rows.append({"jobs": 1, "wall_s": round(one, 3), "ratio_to_one": 1.0, "peak_in_flight": 1})
        seed = 1
        for n in a.jobs:
            httpx.post(s.url + "/_standin/reset")

            async def many(seeds):
                return await asyncio.gather(*(asyncio.to_thread(be.generate, req(x)) for x in seeds))

            t0 = time.monotonic()
            asyncio.run(many(range(seed, seed + n)))
            wall = time.monotonic() - t0
            seed += n
            peak = httpx.get(s.url + "/_standin/stats").json()["peak_in_flight"].get("higgsfield", 0)
            rows.append({"jobs": n, "wall_s": round(wall, 3), "ratio_to_one": round(wall / one, 2),
                         "peak_in_flight": peak})
    if a.json:
        print(json.dumps(rows, indent=1))
    else:
        for r in rows:
            print(f"{r['jobs']} job(s): {r['wall_s']:.2f} s ({r['ratio_to_one']:.2f}x one job), "
                  f"peak in flight {r['peak_in_flight']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
