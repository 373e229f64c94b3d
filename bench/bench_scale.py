#!/usr/bin/env python
"""What the workflow costs over the work itself, at 120 and 3,000 items, measured side by side.

For each study, the workflow (`snakemake --cores N compress`: every per-item bitstream and row,
in batch jobs of `batch_size` items that each write one batch folder) runs against an
in-process loop that validates the same study, loads each model once (rdflow's model cache)
and makes the same codec and metric calls (rdflow.stages.compress.frame_job for every item) on
a pool of N threads. Neither writes reconstructions: no later stage of these studies reads
them. Both are timed from process start (a fresh Python), so the ratio is what Snakemake costs
the user. Targets (issue 14): ratio <= 1.10 at both sizes.

1. 120 items: the cars clip, 30 frames x 2 architectures (random weights) x 2 qualities.
2. 3,000 items: JPEG qualities 1..100 x 30 frames (tiny frames: the per-item work is ~10 ms,
   so orchestration shows); then a no-op rerun (target <= 5 s) and a dry run.
3. `snakemake -n` on studies/seed.yaml (target <= 5 s; parse, validation and DAG only).
4. RSS over 1,020 items in one long-lived process (the Snakemake process, which runs the
   jobs in threads): one learned model and JPEG at two qualities on a 340-frame clip; the
   process_rss_mb the rows record, median of items 50-99 against the last 50 (target: within
   5 %).

    python bench/bench_scale.py [--cores 2] [--repeats 3] [--skip 1,2,3,4]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from _clip_study import CLIP  # noqa: E402

BIN = Path(sys.executable).parent

LOOP = r'''
import sys, time, yaml
from concurrent.futures import ThreadPoolExecutor
import rdflow.study
from rdflow.sources import sequences as S
from rdflow.stages.compress import frame_job
work, cores = sys.argv[1], int(sys.argv[2])
cfg = yaml.safe_load(open(f"{work}/config.yaml"))
rdflow.study.validate(cfg)
items = [(seq, c, q, f) for seq in S.sequences(cfg) for c in S.video_codecs(cfg)
         for q in cfg["codecs"][c]["qualities"] for f in S.frames(cfg, seq)]
def one(it):
    seq, c, q, f = it
    base = f"{work}/loop/{seq}/{c}/q{q}/{f}"
    frame_job(config=cfg, sequence=seq, frame=f, codec=c, quality=q, seq_path=S.sequence_path(cfg, seq),
              bitstream=base + ".bin", out_json=base + ".json", recon=None, threads=1)
with ThreadPoolExecutor(cores) as ex:
    list(ex.map(one, items))
print(len(items))
'''


def snakemake(work: Path, cores: int, *extra: str, configfile: Path | None = None,
              env: dict | None = None, bin_dir: Path = BIN) -> float:
    """Wall time of one snakemake invocation, from process start."""
    t0 = time.perf_counter()
    subprocess.run([str(bin_dir / "snakemake"), *extra, "-s", str(REPO / "Snakefile"), "-d", str(work),
                    "--configfile", str(configfile or work / "config.yaml"),
                    "--profile", str(REPO / "profiles/default"), "--cores", str(cores), "--quiet", "all"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    return time.perf_counter() - t0


def child_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def loop(work: Path, cores: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    out = subprocess.run([str(BIN / "python"), "-c", LOOP, str(work), str(cores)], check=True,
                         capture_output=True, text=True)
    return time.perf_counter() - t0, int(out.stdout.split()[-1])


def write_study(work: Path, codecs: dict, frames: int, clip: Path = CLIP) -> None:
    work.mkdir(parents=True, exist_ok=True)
    cfg = {"device": "cpu", "codecs": codecs, "datasets": {}, "vmaf": {"enabled": False},
           "video": {"frames": {"count": frames},
                     "sequences": {"clip": {"source": "file", "path": str(clip), "width": 320,
                                            "height": 240}}}}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))


def side_by_side(tmp: Path, name: str, codecs: dict, frames: int, cores: int, repeats: int) -> list[float]:
    ratios = []
    # the first process to import torch/CompressAI reads them from disk: warm the page cache
    # once, untimed, and alternate which side runs first
    subprocess.run([str(BIN / "python"), "-c", "import torch, compressai, rdflow.study"], check=True)
    for r in range(repeats):
        wf, lp = tmp / f"{name}-wf{r}", tmp / f"{name}-loop{r}"
        write_study(wf, codecs, frames)
        write_study(lp, codecs, frames)
        if r % 2:
            t_loop, n = loop(lp, cores)
            t_wf = snakemake(wf, cores, "compress")
        else:
            t_wf = snakemake(wf, cores, "compress")
            t_loop, n = loop(lp, cores)
        n_wf = len(list((wf / "results/video/clip").rglob("[0-9]*.json")))
        assert n_wf == n, (n_wf, n)
        ratios.append(t_wf / t_loop)
        print(f"    run {r + 1}: {n} items, workflow {t_wf:6.1f} s, loop {t_loop:6.1f} s, "
              f"ratio {t_wf / t_loop:.3f}, overhead {(t_wf - t_loop) / n * 1000:+.1f} ms/item", flush=True)
        if r < repeats - 1:
            shutil.rmtree(wf, ignore_errors=True)
        shutil.rmtree(lp, ignore_errors=True)
    print(f"    ratio median {statistics.median(ratios):.3f}, spread {min(ratios):.3f}-{max(ratios):.3f} "
          "(target <= 1.10)")
    return ratios


def part_120(tmp: Path, cores: int, repeats: int) -> None:
    print("[1] 120 items: cars clip, 30 frames x 2 architectures x 2 qualities, random weights")
    codecs = {a: {"kind": "learned", "architecture": a, "weights": "random", "qualities": [1, 4]}
              for a in ("bmshj2018-hyperprior", "mbt2018-mean")}
    side_by_side(tmp, "s120", codecs, 30, cores, repeats)


def part_3000(tmp: Path, cores: int, repeats: int) -> None:
    print("[2] 3,000 items: JPEG q1..100 x 30 frames")
    codecs = {"jpeg": {"kind": "jpeg", "qualities": list(range(1, 101))}}
    side_by_side(tmp, "s3000", codecs, 30, cores, repeats)
    work = tmp / f"s3000-wf{repeats - 1}"
    noop = [snakemake(work, cores, "compress") for _ in range(repeats)]
    dry = [snakemake(work, cores, "compress", "-n", "--forcerun", "compress") for _ in range(repeats)]
    print(f"    no-op rerun: median {statistics.median(noop):.2f} s ({min(noop):.2f}-{max(noop):.2f}; "
          f"target <= 5 s); dry run of all 3,000 items: median {statistics.median(dry):.2f} s")


def part_seed(tmp: Path, cores: int, repeats: int, other: Path | None = None) -> None:
    """The seed study's dry run, as this environment runs it; and, where the environment sets
    PYTHONDONTWRITEBYTECODE (this machine does: an editable install's modules, rdflow's, are
    then compiled at every start), also with Python's bytecode cache as a user's machine has it
    (kept under a PYTHONPYCACHEPREFIX in the bench's folder, not in the checkout). The two
    alternate, so that the machine's noise falls on both. ``other``: the bin folder of a second
    install (e.g. a venv of ``pip install -e .`` without the ``slurm`` extra), timed in turn too.
    """
    work = tmp / "seed"
    work.mkdir()
    seed = REPO / "studies/seed.yaml"
    cached_env = None
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        cached_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached_env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        snakemake(work, cores, "-n", configfile=seed, env=cached_env)  # writes the cache, untimed
    times, cached, cpu, others = [], [], [], []
    for _ in range(repeats):
        c0 = child_cpu()
        times.append(snakemake(work, cores, "-n", configfile=seed))
        cpu.append(child_cpu() - c0)
        if cached_env:
            cached.append(snakemake(work, cores, "-n", configfile=seed, env=cached_env))
        if other:
            others.append(snakemake(work, cores, "-n", configfile=seed, bin_dir=other))
    out = subprocess.run([str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(work),
                          "--configfile", str(seed), "-n", "--quiet", "rules"],
                         capture_output=True, text=True, check=True).stdout
    total = [ln.split()[1] for ln in out.splitlines() if ln.startswith("total")]
    print(f"[3] snakemake -n on studies/seed.yaml ({total[0] if total else '?'} jobs): median "
          f"{statistics.median(times):.2f} s ({min(times):.2f}-{max(times):.2f}; target <= 5 s); "
          f"its CPU time (user + system) median {statistics.median(cpu):.2f} s "
          f"({min(cpu):.2f}-{max(cpu):.2f})")
    if cached:
        print(f"    with a bytecode cache (PYTHONDONTWRITEBYTECODE unset, as on a user's machine): "
              f"median {statistics.median(cached):.2f} s ({min(cached):.2f}-{max(cached):.2f})")
    if others:
        print(f"    with the Snakemake of {other}: median {statistics.median(others):.2f} s "
              f"({min(others):.2f}-{max(others):.2f})")


def part_rss(tmp: Path, cores: int) -> None:
    """1,020 items in one Snakemake process with a fixed set of models (one learned model, JPEG
    at two qualities), on a 340-frame clip (the cars clip forwards and backwards): RSS must
    stay flat once the models are loaded."""
    import json

    import pandas as pd

    data, fb = CLIP.read_bytes(), 320 * 240 * 3 // 2
    n_src = len(data) // fb
    order = (list(range(n_src)) + list(range(n_src - 1, -1, -1))) * (340 // (2 * n_src) + 1)
    long_clip = tmp / "clip340.yuv"
    with open(long_clip, "wb") as fh:
        for i in order[:340]:
            fh.write(data[i * fb:(i + 1) * fb])
    work = tmp / "rss"
    codecs = {"hp": {"kind": "learned", "architecture": "bmshj2018-hyperprior", "weights": "random",
                     "qualities": [3]},
              "jpeg": {"kind": "jpeg", "qualities": [30, 60]}}
    write_study(work, codecs, 340, clip=long_clip)
    snakemake(work, cores, "compress")
    files = list((work / "results/video/clip").rglob("[0-9]*.json"))
    # the order the items finished in: their row files' modification times
    df = pd.DataFrame([dict(json.loads(p.read_text()), t=p.stat().st_mtime) for p in files])
    df = df.sort_values("t")
    early = statistics.median(df.process_rss_mb.iloc[50:100])
    late = statistics.median(df.process_rss_mb.iloc[-50:])
    print(f"[4] RSS over {len(df)} items in one process: items 50-99 {early:.0f} MB, last 50 "
          f"{late:.0f} MB ({(late - early) / early * 100:+.1f} %; target within 5 %)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip", default="", help="comma-separated parts to skip (1-4)")
    ap.add_argument("--other-bin", type=Path, default=None,
                    help="part 3 also times the snakemake in this bin folder (a second install, "
                         "e.g. one without the slurm extra), alternating with this one")
    args = ap.parse_args()
    skip = set(args.skip.split(",")) - {""}
    if not CLIP.is_file():
        sys.exit(f"no clip at {CLIP}: put ../shared beside the checkout (RDFLOW_SHARED)")
    tmp = Path(tempfile.mkdtemp(prefix="rdflow-bench-scale-"))
    try:
        for part, fn in (("1", part_120), ("2", part_3000)):
            if part not in skip:
                fn(tmp, args.cores, args.repeats)
        if "3" not in skip:
            part_seed(tmp, args.cores, args.repeats, other=args.other_bin)
        if "4" not in skip:
            part_rss(tmp, args.cores)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
