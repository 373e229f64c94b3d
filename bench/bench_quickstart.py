#!/usr/bin/env python
"""The first run, as a new user makes it: the quickstart (`snakemake --cores N` in the
repository, config.yaml, shipped files only), measured.

Prints, for each of ``--repeats`` fresh runs (a new empty working directory each time, so
nothing is reused): wall time, jobs run, peak RSS of the largest process (the Snakemake process,
whose threads run the coding jobs, or a worker), and whether it ran with no network at all
(``unshare -n`` when available). Then, from the last run: the shipped model's BD-rate against
JPEG (PSNR-RGB and MS-SSIM) on the quickstart's images, its curve, and the dry-run time of
studies/seed.yaml (``snakemake -n``, median of 3).

    python bench/bench_quickstart.py [--cores 2] [--repeats 1]
"""

from __future__ import annotations

import argparse
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def offline_prefix() -> list[str]:
    ok = shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0
    return ["unshare", "-n"] if ok else []


def run_quickstart(cores: int, prefix: list[str]) -> dict:
    work = Path(tempfile.mkdtemp(prefix="rdflow-quickstart-"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run([*prefix, SNAKEMAKE, "--cores", str(cores), "-d", str(work)], cwd=REPO,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        sys.exit(f"quickstart failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    text = proc.stdout + proc.stderr
    total = re.findall(r"\[\s*(\d+)/(\d+)\s+100%", text)
    jobs = int(total[-1][1]) if total else -1
    return {"work": work, "wall": wall, "jobs": jobs, "peak_rss_mb": max(peak, before) / 1024}


def dry_run_seed() -> float:
    times = []
    for _ in range(3):
        work = Path(tempfile.mkdtemp(prefix="rdflow-seed-dry-"))
        t0 = time.perf_counter()
        proc = subprocess.run([SNAKEMAKE, "-n", "--configfile", "studies/seed.yaml", "-d", str(work)],
                              cwd=REPO, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            sys.exit(f"seed dry run failed:\n{proc.stderr[-3000:]}")
        shutil.rmtree(work, ignore_errors=True)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    import pandas as pd

    prefix = offline_prefix()
    runs = [run_quickstart(args.cores, prefix) for _ in range(args.repeats)]
    print(f"quickstart, --cores {args.cores}, {'no network (unshare -n)' if prefix else 'network present'}")
    for i, r in enumerate(runs, 1):
        print(f"  run {i}: {r['wall']:.1f} s wall, {r['jobs']} jobs, peak RSS {r['peak_rss_mb']:.0f} MB")
    res = runs[-1]["work"] / "results"
    bd = pd.read_csv(res / "bd_rate.csv")
    cell = bd[(bd.study == "image") & (bd.codec == "quickstart") & (bd.anchor == "jpeg")]
    for _, row in cell.iterrows():
        print(f"  shipped model vs JPEG on {row.dataset}, {row.metric}: BD-rate {row.bd_rate_pct:+.2f} %"
              + (f" ({row.reason})" if isinstance(row.reason, str) else ""))
    s = pd.read_csv(res / "image_rd_kodak3_summary.csv")
    for codec in ("quickstart", "jpeg"):
        pts = ", ".join(f"{b:.3f}/{p:.2f}" for b, p in s[s.codec == codec].sort_values("bpp")[["bpp", "psnr_rgb"]].values)
        print(f"  {codec:>10} bpp/PSNR-RGB: {pts}")
    print(f"  snakemake -n --configfile studies/seed.yaml: {dry_run_seed():.1f} s (median of 3)")
    for r in runs:
        shutil.rmtree(r["work"], ignore_errors=True)


if __name__ == "__main__":
    main()
