#!/usr/bin/env python
"""Orchestration overhead of the video study, measured side by side in one run.

1. The workflow (`snakemake --cores N`, default profile) on a small clip — by default
   ../shared/data/video/cars_320x240.i420, 30 frames x 2 architectures x 2 qualities, random
   weights — against an in-process loop that does the same per-frame work (it calls the very
   job function, rdflow.coding.frame_job, for every (codec, quality, frame) on a pool of N
   threads, one torch thread each). Both are timed from process start (a fresh Python that
   imports torch/CompressAI), so the ratio is what the user pays for Snakemake.
   Prints both wall times, the ratio (target <= 1.15) and the overhead per job in ms.
2. A >= 3000-job DAG (JPEG, qualities 1..100 on the clip's frames): a real run, then the time of
   a no-op rerun (target <= 10 s) and of a dry run.
3. Memory over a 100-frame run: the process RSS (and CUDA memory when a GPU is used) that each
   coding job records in its row (process_rss_mb / process_vram_mb: the jobs run in the
   Snakemake process, so this is its footprint), first 10 frames against last 10.

    python bench/bench_video_overhead.py [--cores 2] [--skip-dag] [--skip-memory]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RDFLOW_SHARED", REPO.parent / "shared"))
BIN = Path(sys.executable).parent
CLIP = SHARED / "data" / "video" / "cars_320x240.i420"

LOOP = r'''
import sys, time, yaml
from concurrent.futures import ThreadPoolExecutor
t0 = time.perf_counter()
import rdflow.config, rdflow.sequences as S
from rdflow.coding import frame_job
work, cores = sys.argv[1], int(sys.argv[2])
cfg = yaml.safe_load(open(f"{work}/config.yaml"))
rdflow.config.validate(cfg)
items = [(seq, c, q, f) for seq in S.sequences(cfg) for c in S.video_codecs(cfg)
         for q in cfg["codecs"][c]["qualities"] for f in S.frames(cfg, seq)]
def one(it):
    seq, c, q, f = it
    base = f"{work}/loop/{seq}/{c}/q{q}/{f}"
    frame_job(config=cfg, sequence=seq, frame=f, codec=c, quality=q, seq_path=S.sequence_path(cfg, seq),
              bitstream=base + ".bin", out_json=base + ".json", recon=base + ".png", threads=1)
with ThreadPoolExecutor(cores) as ex:
    list(ex.map(one, items))
print(len(items))
'''


def snakemake(work: Path, cores: int, *extra: str) -> float:
    """Wall time of one snakemake invocation, from process start."""
    t0 = time.perf_counter()
    subprocess.run([str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(work),
                    "--configfile", str(work / "config.yaml"), "--profile", str(REPO / "profiles/default"),
                    "--cores", str(cores), "--quiet", *extra],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - t0


def study(work: Path, clip: Path, codecs: dict, frames: int, names=None) -> None:
    work.mkdir(parents=True, exist_ok=True)
    cfg = {"device": "cpu", "codecs": codecs, "vmaf": {"enabled": False},
           "video": {"frames": {"count": frames}, "codecs": names,
                     "sequences": {"clip": {"source": "file", "path": str(clip), "width": 320,
                                            "height": 240}}}}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))


def part_overhead(tmp: Path, clip: Path, cores: int, archs, qualities, frames) -> None:
    codecs = {a: {"kind": "learned", "architecture": a, "weights": "random", "qualities": qualities}
              for a in archs}
    wf, lp = tmp / "wf", tmp / "loop"
    study(wf, clip, codecs, frames)
    study(lp, clip, codecs, frames)
    n_jobs = len(archs) * len(qualities) * frames
    t_wf = snakemake(wf, cores, "--until", "compress_frame")  # the coding jobs (+ probe)
    t_rest = snakemake(wf, cores)  # then tables and figures, for the record
    t0 = time.perf_counter()
    out = subprocess.run([str(BIN / "python"), "-c", LOOP, str(lp), str(cores)], check=True,
                         capture_output=True, text=True)
    t_loop = time.perf_counter() - t0
    assert int(out.stdout.split()[-1]) == n_jobs
    # same numbers either way (bitstreams are deterministic)
    for a in archs:
        for q in qualities:
            for f in (0, frames - 1):
                x = (wf / f"results/video/clip/{a}/q{q}/{f}.bin").read_bytes()
                y = (lp / f"loop/clip/{a}/q{q}/{f}.bin").read_bytes()
                assert x == y, (a, q, f)
    print(f"[1] {frames} frames x {len(archs)} archs x {len(qualities)} qualities = {n_jobs} coding jobs, "
          f"--cores {cores}, 1 torch thread per job")
    print(f"    workflow (snakemake --until compress_frame): {t_wf:7.1f} s "
          f"(tables and figures afterwards: {t_rest:.1f} s)")
    print(f"    in-process loop (same calls):                {t_loop:7.1f} s")
    print(f"    ratio workflow/loop = {t_wf / t_loop:.3f} (target <= 1.15); "
          f"overhead per job = {(t_wf - t_loop) / n_jobs * 1000:.0f} ms")


def part_dag(tmp: Path, clip: Path, cores: int) -> None:
    work = tmp / "dag"
    study(work, clip, {"jpeg": {"kind": "jpeg", "qualities": list(range(1, 101))}}, 30)
    t_run = snakemake(work, cores)
    n = len(list((work / "results/video/clip/jpeg").rglob("*.json")))
    t_noop = snakemake(work, cores)
    t_dry = snakemake(work, cores, "-n")
    print(f"[2] DAG of {n} coding jobs (+ probe, aggregation, figures): full run {t_run:.1f} s")
    print(f"    no-op rerun: {t_noop:.1f} s (target <= 10 s);  dry run: {t_dry:.1f} s")


def part_memory(tmp: Path, clip: Path, cores: int) -> None:
    long_clip = tmp / "clip100.yuv"
    data = clip.read_bytes()
    fb = 320 * 240 * 3 // 2
    n_src = len(data) // fb
    with open(long_clip, "wb") as fh:  # 100 frames: the clip forwards and backwards, repeated
        order = (list(range(n_src)) + list(range(n_src - 1, -1, -1))) * 4
        for i in order[:100]:
            fh.write(data[i * fb:(i + 1) * fb])
    work = tmp / "mem"
    study(work, long_clip, {"hp": {"kind": "learned", "architecture": "bmshj2018-hyperprior",
                                   "weights": "random", "qualities": [3]}}, 100)
    snakemake(work, cores)
    import pandas as pd

    df = pd.read_csv(work / "results/video_rd_clip.csv").sort_values("frame")
    first = statistics.median(df.process_rss_mb.iloc[:10])
    last = statistics.median(df.process_rss_mb.iloc[-10:])
    vram = (f"VRAM first {df.process_vram_mb.iloc[:10].median():.0f} MB, last {df.process_vram_mb.iloc[-10:].median():.0f} MB"
            if "process_vram_mb" in df else "VRAM: no GPU used (device cpu)")
    print(f"[3] 100-frame run: process RSS after frames 0-9 {first:.0f} MB, after frames 90-99 {last:.0f} MB "
          f"(growth {last - first:+.0f} MB); {vram}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", type=Path, default=CLIP)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--archs", nargs="+", default=["bmshj2018-hyperprior", "mbt2018-mean"])
    ap.add_argument("--qualities", nargs="+", type=int, default=[1, 4])
    ap.add_argument("--skip-dag", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    args = ap.parse_args()
    if not args.clip.is_file():
        sys.exit(f"no clip at {args.clip}: pass --clip or put ../shared beside the checkout")
    tmp = Path(tempfile.mkdtemp(prefix="rdflow-bench-video-"))
    try:
        part_overhead(tmp, args.clip, args.cores, args.archs, args.qualities, args.frames)
        if not args.skip_dag:
            part_dag(tmp, args.clip, args.cores)
        if not args.skip_memory:
            part_memory(tmp, args.clip, args.cores)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
