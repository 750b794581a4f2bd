"""Benchmark: Soul ID creation time and peak memory for 20 and 80 photos.

Photos are the real fixture photos (one-person folders), repeated and resized
to reach the count. For each analyzer available here and each set size, the
median wall time of several runs is printed with photos/s and the peak
resident memory of the process tree (parent + analysis workers).

    python benchmarks/bench_create.py [--runs 3] [--sizes 20 80] [--analyzers dlib]

Target (foundation issue): >= 8 photos/s, 80 photos in <= 10 s with dlib on
2 CPU cores, peak memory <= 1.5 GB.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FIXTURES = REPO.parent / "shared" / "fixtures" / "faces"


def make_set(root: Path, n: int, out: Path) -> list[str]:
    """``n`` photos: the one-person fixture photos, cycled; repeats are resized
    (95%, 90%, ...) so that no two files are identical."""
    src = sorted(p for d in root.iterdir() if d.is_dir() and d.name not in ("group", "hard") for p in d.iterdir())
    paths = []
    for i in range(n):
        p = src[i % len(src)]
        k = i // len(src)
        dst = out / f"{i:03d}_{p.stem}.jpg"
        im = Image.open(p).convert("RGB")
        if k:
            s = 1.0 - 0.05 * k
            im = im.resize((round(im.width * s), round(im.height * s)), Image.LANCZOS)
        im.save(dst, quality=92)
        paths.append(str(dst))
    return paths


def peak_rss_mb() -> float:
    """Peak RSS of this process plus the largest finished child, MB (Linux: ru_maxrss in KiB)."""
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (me + kids) / 1024.0


def run_once(paths: list[str], analyzer: str, workers: int | None) -> float:
    from soulid.soul.create import create_soul_id

    t = time.perf_counter()
    res = create_soul_id(paths, "bench", analyzer=analyzer, workers=workers)
    dt = time.perf_counter() - t
    assert res.soul is not None
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixtures", default=os.environ.get("SOULID_FIXTURES", str(DEFAULT_FIXTURES)))
    ap.add_argument("--sizes", type=int, nargs="+", default=[20, 80])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--analyzers", nargs="+", default=None)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()

    from soulid.soul.analysis import available_analyzers

    analyzers = args.analyzers or available_analyzers()
    print(f"cpus={os.cpu_count()} analyzers={analyzers} runs={args.runs} python={sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        sets = {n: make_set(Path(args.fixtures), n, Path(tmp) / str(n)) for n in args.sizes if (Path(tmp) / str(n)).mkdir() is None}
        for a in analyzers:
            for n, paths in sets.items():
                times = [run_once(paths, a, args.workers) for _ in range(args.runs)]
                med = statistics.median(times)
                print(
                    f"analyzer={a:12s} photos={n:3d} median={med:6.2f} s  "
                    f"({n / med:5.2f} photos/s; runs: {', '.join(f'{t:.2f}' for t in times)})  "
                    f"peak_rss(parent+largest worker)={peak_rss_mb():.0f} MB"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
