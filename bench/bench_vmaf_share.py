#!/usr/bin/env python
"""What VMAF on every frame costs the video study, measured side by side in one run.

The video study (`snakemake --cores N`, default profile, every target) on a small clip — by
default ../shared/data/video/cars_320x240.i420, 30 frames x 2 architectures x 2 qualities,
random weights, device cpu — once with the VMAF stage off and once with it on, each in a
fresh folder from process start; `--repeats R` alternates off/on R times and keeps the
median of each. Prints both wall times and the VMAF share
(on - off) / on (target <= 10 %) overall and per repeat, and, as a cross-check that does not depend on the machine's
noise, the VMAF jobs' own time summed from their logs (rdflow.stages.vmaf logs "in X s" per job)
as a share of the "on" wall time, with libvmaf's frames per second.

    python bench/bench_vmaf_share.py [--cores 2] [--repeats 1] [--frames 30]
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from rdflow import paths

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _clip_study import clip_study_parser  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RDFLOW_SHARED", REPO.parent / "shared"))
BIN = Path(sys.executable).parent
CLIP = SHARED / "data" / "video" / "cars_320x240.i420"
JOB_TIME = re.compile(r"(\d+) frames (\d+)x(\d+), mean VMAF ([\d.]+) .* in ([\d.]+) s "
                      r"\(([\d.]+) s reading")


def write_study(work: Path, clip: Path, archs, qualities, frames: int, vmaf: bool) -> None:
    work.mkdir(parents=True, exist_ok=True)
    codecs = {a: {"kind": "learned", "architecture": a, "weights": "random",
                  "qualities": list(qualities)} for a in archs}
    cfg = {"device": "cpu", "codecs": codecs, "vmaf": {"enabled": vmaf},
           "video": {"frames": {"count": frames},
                     "sequences": {"clip": {"source": "file", "path": str(clip), "width": 320,
                                            "height": 240}}}}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))


def snakemake(work: Path, cores: int) -> float:
    """Wall time of one snakemake invocation, from process start."""
    t0 = time.perf_counter()
    p = subprocess.run([str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(work),
                        "--configfile", str(work / "config.yaml"),
                        "--profile", str(REPO / "profiles/default"), "--cores", str(cores),
                        "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if p.returncode:
        sys.exit(f"snakemake failed in {work}:\n{p.stderr[-3000:]}")
    return time.perf_counter() - t0


def vmaf_job_times(work: Path) -> tuple[float, float, int]:
    """(sum of VMAF job seconds, of which reading/converting, frames scored) from the logs."""
    total = io = 0.0
    frames = 0
    for log in sorted((work / "logs/vmaf_video").rglob("*.log")):
        m = JOB_TIME.search(log.read_text())
        if not m:
            sys.exit(f"no timing line in {log}")
        frames += int(m.group(1))
        total += float(m.group(5))
        io += float(m.group(6))
    return total, io, frames


def main() -> None:
    ap = clip_study_parser(__doc__)
    args = ap.parse_args()
    if not args.clip.is_file():
        sys.exit(f"no clip at {args.clip}: pass --clip or put ../shared beside the checkout")
    tmp = Path(tempfile.mkdtemp(prefix="rdflow-bench-vmaf-"))
    walls = {False: [], True: []}
    jobs = []
    try:
        for r in range(args.repeats):
            for vmaf in ((False, True) if r % 2 == 0 else (True, False)):
                work = tmp / f"{'on' if vmaf else 'off'}{r}"
                write_study(work, args.clip, args.archs, args.qualities, args.frames, vmaf)
                walls[vmaf].append(snakemake(work, args.cores))
                if vmaf:
                    jobs.append(vmaf_job_times(work))
                    assert (work / paths.VMAF_TABLE).is_file()
                else:
                    assert not (work / paths.VMAF_TABLE).exists()
                print(f"  run {r} VMAF {'on ' if vmaf else 'off'}: {walls[vmaf][-1]:.1f} s",
                      flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    off, on = statistics.median(walls[False]), statistics.median(walls[True])
    job_s = statistics.median(j[0] for j in jobs)
    io_s = statistics.median(j[1] for j in jobs)
    n_frames = jobs[0][2]
    n_points = len(args.archs) * len(args.qualities)
    print(f"video study: {args.clip.name}, {args.frames} frames x {len(args.archs)} "
          f"architectures x {len(args.qualities)} qualities (random weights, cpu), "
          f"--cores {args.cores}, {args.repeats} repeat(s), medians")
    print(f"  wall time, VMAF off: {off:7.1f} s")
    print(f"  wall time, VMAF on:  {on:7.1f} s")
    print(f"  VMAF share (on - off) / on = {(on - off) / on * 100:5.1f} % (target <= 10 %)")
    pairs = [f"{(b - a) / b * 100:+.1f} %" for a, b in zip(walls[False], walls[True])]
    print(f"  per repeat (runs back to back, less exposed to the machine's drift): "
          f"{', '.join(pairs)}")
    print(f"  VMAF jobs' own time: {job_s:.2f} s for {n_points} jobs / {n_frames} frames "
          f"({n_frames / job_s:.0f} frames/s incl. {io_s:.2f} s reading PNGs and converting) "
          f"= {job_s / on * 100:.1f} % of the 'on' wall time")


if __name__ == "__main__":
    main()
