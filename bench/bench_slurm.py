#!/usr/bin/env python
"""The same study run locally and through profiles/slurm on the one-node test SLURM, with the
same cores, side by side (issue 14's SLURM target: SLURM / local <= 1.5 and start-up per item
(SLURM wall - local wall) / items <= 0.3 s).

The study: the cars clip, 30 frames x 3 architectures (bmshj2018-hyperprior, mbt2018-mean,
cheng2020-anchor; random weights) x 4 qualities = 360 items, `snakemake compress` (every
per-item bitstream and row), batch_size 30 (12 coding jobs). Locally `--cores N`; on SLURM at
most N jobs at once (`--jobs N`), each one CPU, on a cluster of N CPUs (tests/slurm/cluster.py,
as root after `sh .ci/slurm_setup.sh`).

    python bench/bench_slurm.py [--cores 2] [--frames 30] [--batch-size 30]
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from _clip_study import CLIP  # noqa: E402

ARCHS = ("bmshj2018-hyperprior", "mbt2018-mean", "cheng2020-anchor")


def cluster_module():
    spec = importlib.util.spec_from_file_location("rdflow_bench_cluster", REPO / "tests/slurm/cluster.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def write_study(work: Path, frames: int, batch: int) -> None:
    work.mkdir(parents=True)
    cfg = {"device": "cpu", "batch_size": batch, "datasets": {}, "vmaf": {"enabled": False},
           "codecs": {a: {"kind": "learned", "architecture": a, "weights": "random",
                          "qualities": [1, 2, 3, 4]} for a in ARCHS},
           "video": {"frames": {"count": frames},
                     "sequences": {"clip": {"source": "file", "path": str(CLIP), "width": 320,
                                            "height": 240}}}}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))


def local_run(work: Path, cores: int) -> float:
    t0 = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("snakemake")), "compress", "-s",
                    str(REPO / "Snakefile"), "-d", str(work), "--configfile", str(work / "config.yaml"),
                    "--cores", str(cores), "--quiet", "all"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def slurm_run(cluster, work: Path, cores: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    proc = cluster.snakemake(work, "compress", "--configfile", str(work / "config.yaml"),
                             "--jobs", str(cores), "--slurm-init-seconds-before-status-checks", "2",
                             snakefile=REPO / "Snakefile", profile=REPO / "profiles/slurm",
                             timeout=3600)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"SLURM run failed:\n{proc.stdout[-4000:]}")
    return wall, len(cluster.submitted(proc.stdout))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=30)
    args = ap.parse_args()
    mod = cluster_module()
    reason = mod.unavailable_reason()
    if reason:
        sys.exit(f"no test SLURM: {reason} (run as root after sh .ci/slurm_setup.sh)")
    tmp = Path(tempfile.mkdtemp(prefix="rdflow-bench-slurm-"))
    items = args.frames * len(ARCHS) * 4
    try:
        write_study(tmp / "local", args.frames, args.batch_size)
        write_study(tmp / "slurm", args.frames, args.batch_size)
        t_local = local_run(tmp / "local", args.cores)
        with mod.SlurmCluster(tmp / "cluster", cpus=args.cores, mem_mb=64000, gpus=0) as cluster:
            t_slurm, jobs = slurm_run(cluster, tmp / "slurm", args.cores)
        same = all((tmp / "local" / p.relative_to(tmp / "slurm")).read_bytes() == p.read_bytes()
                   for p in (tmp / "slurm/results/video").rglob("*.bin"))
        print(f"{items} items ({args.frames} frames x {len(ARCHS)} architectures x 4 qualities), "
              f"batch_size {args.batch_size}, {args.cores} cores")
        print(f"  local (--cores {args.cores}):           {t_local:7.1f} s")
        print(f"  SLURM (--jobs {args.cores}, {jobs} SLURM jobs): {t_slurm:7.1f} s")
        print(f"  SLURM / local = {t_slurm / t_local:.2f} (target <= 1.5); start-up per item = "
              f"{(t_slurm - t_local) / items:.3f} s (target <= 0.3); bitstreams identical: {same}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
