#!/usr/bin/env python
"""What the machine-vision stage (YOLO detection + mAP) costs the video study, side by side.

The video study (`snakemake --cores N`, default profile, every target) on a small clip — by
default ../shared/data/video/cars_320x240.i420, 30 frames x 2 architectures x 2 qualities,
random weights, device cpu, VMAF off — once with `detection` off and once on, each in a fresh
folder from process start; `--repeats R` alternates the order R times and keeps the median of
each. Detection uses a YOLOv8n-sized model: a random yolov8n whose class head is biased so that
it reports boxes everywhere (as many as a real model keeps at map_conf 0.001: max_det per
frame), written to resources/weights/yolov8n.pt of each folder, at the default imgsz (null: the clip's own size).

Prints both wall times and the share (target: the stage adds <= 25 % to the study's wall time,
i.e. (on - off) / off <= 0.25; (on - off) / on is printed too), and, as a cross-check that does
not depend on the machine's noise, the detection jobs' own time from their benchmark files
(process start to exit) and logs (model load, detection per frame).

    python bench/bench_detection_share.py [--cores 2] [--repeats 1] [--frames 30] [--imgsz 640]
"""

from __future__ import annotations

import csv
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _clip_study import clip_study_parser  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RDFLOW_SHARED", REPO.parent / "shared"))
BIN = Path(sys.executable).parent
CLIP = SHARED / "data" / "video" / "cars_320x240.i420"
DETECT_LOG = re.compile(r"(\d+) frames, (\d+) detections .* load ([\d.]+) s, detect ([\d.]+) s")
DONE = re.compile(r"done in ([\d.]+) s")


def write_study(work: Path, clip: Path, archs, qualities, frames: int, detection: bool,
                imgsz: int, weights: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    codecs = {a: {"kind": "learned", "architecture": a, "weights": "random",
                  "qualities": list(qualities)} for a in archs}
    cfg = {"device": "cpu", "codecs": codecs, "vmaf": {"enabled": False},
           "video": {"frames": {"count": frames},
                     "sequences": {"clip": {"source": "file", "path": str(clip), "width": 320,
                                            "height": 240}}},
           "detection": {"enabled": detection, "backend": "yolo", "imgsz": imgsz}}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    if detection:
        (work / "resources/weights").mkdir(parents=True, exist_ok=True)
        shutil.copy(weights, work / "resources/weights/yolov8n.pt")


def snakemake(work: Path, cores: int) -> tuple[float, float]:
    """Wall time and CPU time (user + system, of snakemake and every process it waited for:
    the detection workers too) of one snakemake invocation, from process start."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run([str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(work),
                        "--configfile", str(work / "config.yaml"),
                        "--profile", str(REPO / "profiles/default"), "--cores", str(cores),
                        "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode:
        sys.exit(f"snakemake failed in {work}:\n{p.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def detection_job_times(work: Path) -> dict:
    """The stage's own time from its job logs: detection jobs (model load, detection), the
    detection worker processes started, and the evaluation jobs (in-process)."""
    out = {"jobs": 0, "workers": 0, "load_s": 0.0, "detect_s": 0.0, "frames": 0,
           "detect_job_s": 0.0, "evaluate_s": 0.0}
    for rule in ("detect_original", "detect_decoded"):
        for log in sorted((work / "logs" / rule).rglob("*.log")):
            text = log.read_text()
            m = DETECT_LOG.search(text)
            done = DONE.search(text)
            if not m or not done:
                sys.exit(f"no timing line in {log}")
            out["jobs"] += 1
            out["workers"] += text.count("started detection worker process")
            out["frames"] += int(m.group(1))
            out["load_s"] += float(m.group(3))
            out["detect_s"] += float(m.group(4))
            out["detect_job_s"] += float(done.group(1))
    for log in sorted((work / "logs" / "evaluate_detection").rglob("*.log")):
        done = DONE.search(log.read_text())
        out["evaluate_s"] += float(done.group(1)) if done else 0.0
    return out


def main() -> None:
    ap = clip_study_parser(__doc__)
    ap.add_argument("--imgsz", type=int, default=None, help="default: the config default (null: the clip's own size, at most 640)")
    args = ap.parse_args()
    if not args.clip.is_file():
        sys.exit(f"no clip at {args.clip}: pass --clip or put ../shared beside the checkout")
    tmp = Path(tempfile.mkdtemp(prefix="rdflow-bench-detection-"))
    weights = tmp / "yolov8n_random.pt"
    subprocess.run([sys.executable, "-c",
                    "import sys; from rdflow.detectors import random_yolo_weights as r; "
                    "r(sys.argv[1], config_dir=sys.argv[2], sparse=True)", str(weights), str(tmp / "ucfg")],
                   check=True, capture_output=True)
    walls = {False: [], True: []}
    cpus = {False: [], True: []}
    jobs = []
    try:
        for r in range(args.repeats):
            for on in ((False, True) if r % 2 == 0 else (True, False)):
                work = tmp / f"{'on' if on else 'off'}{r}"
                write_study(work, args.clip, args.archs, args.qualities, args.frames, on,
                            args.imgsz, weights)
                wall, cpu = snakemake(work, args.cores)
                walls[on].append(wall)
                cpus[on].append(cpu)
                if on:
                    jobs.append(detection_job_times(work))
                    assert (work / "results/machine_vision.csv").is_file()
                else:
                    assert not (work / "results/machine_vision.csv").exists()
                print(f"  run {r} detection {'on ' if on else 'off'}: {wall:.1f} s wall, "
                      f"{cpu:.1f} s CPU", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    off, on = statistics.median(walls[False]), statistics.median(walls[True])
    c_off, c_on = statistics.median(cpus[False]), statistics.median(cpus[True])
    med = {k: statistics.median(j[k] for j in jobs) for k in jobs[0]}
    n_points = len(args.archs) * len(args.qualities)
    print(f"video study: {args.clip.name}, {args.frames} frames x {len(args.archs)} architectures "
          f"x {len(args.qualities)} qualities (random weights, cpu), --cores {args.cores}, "
          f"{args.repeats} repeat(s), medians; detection: random yolov8n, imgsz {args.imgsz or 'auto (the clip size, at most 640)'}, "
          f"1 original + {n_points} decoded jobs")
    print(f"  wall time, detection off: {off:7.1f} s")
    print(f"  wall time, detection on:  {on:7.1f} s")
    print(f"  detection adds (on - off) / off = {(on - off) / off * 100:5.1f} % "
          f"(target <= 25 %); (on - off) / on = {(on - off) / on * 100:.1f} %")
    print(f"  CPU time (user + system, all processes), off: {c_off:.1f} s, on: {c_on:.1f} s: "
          f"detection adds {(c_on - c_off) / c_off * 100:.1f} % (less sensitive than wall time "
          "to other load on the machine)")
    print(f"  detection jobs' own time: {med['jobs']} jobs, {med['detect_job_s']:.1f} s "
          f"(start to end, in {med['workers']} worker process(es)), of which {med['load_s']:.1f} s "
          f"starting workers and loading the model and {med['detect_s']:.1f} s detecting "
          f"{med['frames']} frames ({1000 * med['detect_s'] / max(1, med['frames']):.0f} ms/frame); "
          f"evaluation jobs {med['evaluate_s']:.1f} s")


if __name__ == "__main__":
    main()
