"""Cloud job client against the stand-in: requests per job, and latency from
the provider reporting completion to decoded output, per resolution.

    python benchmarks/bench_cloud.py [--jobs 5] [--json]

Starts the stand-in (tests/standin/server.py) on 127.0.0.1 in this process,
runs ``--jobs`` Soul generations per size (and DoP clips), and prints, per
case: the result resolution, HTTP requests the client made per job (estimate,
submit, status polls, downloads) and the completion -> decoded latency
(download + magic-byte check + decode to ``[B, H, W, 3]`` float32), median
and max. Poll interval is 0.05 s here (real default: 2 s growing to 10 s), so
the poll count reflects the stand-in's 0.2 s queue + 0.3 s run, not a real
provider's minutes.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="soulid-bench-")
    os.environ.update(SOULID_DATA_DIR=f"{tmp}/data", SOULID_CACHE_DIR=f"{tmp}/cache", SOULID_CONFIG_DIR=f"{tmp}/cfg")

    import numpy as np

    from soulid.backends import media
    from soulid.backends.engine import JobSpec
    from soulid.backends.higgsfield import HiggsfieldBackend
    from standin.server import KEY_ID, KEY_SECRET, StandIn

    cases = [("soul 720p 1:1", "1536x1536", "720p", 1), ("soul 1080p 1:1", "1536x1536", "1080p", 1),
             ("soul 1080p 3:4", "1536x2048", "1080p", 1), ("soul 1080p 3:4 x4", "1536x2048", "1080p", 4)]
    rows = []
    with StandIn() as s:
        be = HiggsfieldBackend(base_url=s.url, platform_url=s.url, key=f"{KEY_ID}:{KEY_SECRET}",
                               poll_initial=0.05, poll_max=0.2)
        for label, size, q, batch in cases:
            reqs, lat, shape = [], [], None
            for i in range(a.jobs):
                body = {"prompt": f"bench {label} {i}", "width_and_height": size, "quality": q, "batch_size": batch,
                        "seed": i}
                out = be.run_job(be.api, JobSpec("higgsfield-ai/soul/standard", body), {})
                imgs = media.decode_images(out.files)
                lat.append(time.monotonic() - out.completed_at)
                reqs.append(out.requests)
                shape = imgs.shape
            rows.append({"case": label, "resolution": f"{shape[2]}x{shape[1]}", "batch": shape[0],
                         "requests_per_job": statistics.mean(reqs),
                         "completion_to_decoded_ms_median": 1000 * statistics.median(lat),
                         "completion_to_decoded_ms_max": 1000 * max(lat)})
        src = (np.random.default_rng(0).random((768, 1024, 3))).astype(np.float32)
        reqs, lat = [], []
        for i in range(a.jobs):
            body = {"model": "dop-turbo", "prompt": f"bench {i}", "motions": [], "seed": i,
                    "input_images": [{"type": "image_url", "image_url": {"$upload": "start"}}]}
            out = be.run_job(be.v1, JobSpec("/v1/image2video/dop", body, {"start": media.to_upload_bytes(src)},
                                            "video"), {})
            fps, frames, w, h = media.probe_video(out.files[0])
            lat.append(time.monotonic() - out.completed_at)
            reqs.append(out.requests)
        rows.append({"case": "DoP clip (5 s, 24 fps)", "resolution": f"{w}x{h}", "batch": frames,
                     "requests_per_job": statistics.mean(reqs),
                     "completion_to_decoded_ms_median": 1000 * statistics.median(lat),
                     "completion_to_decoded_ms_max": 1000 * max(lat)})
    if a.json:
        print(json.dumps(rows, indent=1))
    else:
        print(f"{'case':<24} {'resolution':>10} {'B/frames':>8} {'req/job':>8} {'median ms':>10} {'max ms':>8}")
        for r in rows:
            print(f"{r['case']:<24} {r['resolution']:>10} {r['batch']:>8} {r['requests_per_job']:>8.1f} "
                  f"{r['completion_to_decoded_ms_median']:>10.0f} {r['completion_to_decoded_ms_max']:>8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
