"""The first run: `snakemake --cores N` on the shipped quickstart, offline, and study files that
replace the quickstart instead of being merged into it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.e2e
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def snakemake(workdir: Path, *args: str, offline: bool = False, timeout: int = 900):
    """The command a user types, run from the repository root (so config.yaml is the default),
    with its outputs in ``workdir``; ``offline``: in a network namespace with no interface."""
    cmd = [SNAKEMAKE, "-d", str(workdir), *args]
    if offline:
        cmd = ["unshare", "-n", *cmd]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def job_counts(text: str) -> dict[str, int]:
    """Snakemake's "Job stats" table of a dry run: rule -> count. The coding rules, one per
    (dataset | sequence, codec, quality, batch) (``compress_image__kodak3_jpeg_q5_b0``), count
    together under ``compress_image`` / ``compress_frame`` (jobs, i.e. batches)."""
    counts, inside = {}, False
    for line in text.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            inside = True
            continue
        if inside and len(parts) == 2 and parts[1].isdigit():
            if parts[0] == "total":
                break
            rule = parts[0].split("__", 1)[0]
            counts[rule] = counts.get(rule, 0) + int(parts[1])
    return counts


def can_unshare() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-n", "true"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    """One real run of the quickstart with no network at all, then its report."""
    if not can_unshare():
        if os.environ.get("CI") == "true":
            pytest.fail("unshare -n is not available, but CI must run the quickstart offline")
        pytest.skip("unshare -n (a network namespace) is not available: needs root or user namespaces")
    work = tmp_path_factory.mktemp("quickstart")
    t0 = time.perf_counter()
    proc = snakemake(work, "--cores", "2", offline=True)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    report = snakemake(work, "--report", str(work / "report.html"), offline=True)
    assert report.returncode == 0, report.stderr[-3000:]
    return {"work": work, "results": work / "results", "wall": wall, "out": proc.stdout + proc.stderr}


def test_quickstart_image_rd_is_real(quickstart):
    s = pd.read_csv(quickstart["results"] / "image_rd_kodak3_summary.csv")
    learned = s[s.codec == "quickstart"].sort_values("quality")
    assert list(learned.quality) == [1, 2, 3, 4]
    assert learned.bpp.is_monotonic_increasing and learned.psnr_rgb.is_monotonic_increasing
    assert learned.psnr_rgb.iloc[-1] > 25.0          # real trained weights, not random ones
    rows = pd.read_csv(quickstart["results"] / "image_rd_kodak3.csv")
    assert set(rows[rows.codec == "quickstart"].weights) == {"trained(quickstart)"}
    assert set(rows.image) == {"kodim03", "kodim12", "kodim20"}
    for codec in ("jpeg", "webp", "bpg444"):
        assert (s[s.codec == codec].psnr_rgb > 24).all(), codec


def test_quickstart_model_beats_jpeg(quickstart):
    bd = pd.read_csv(quickstart["results"] / "bd_rate.csv")
    cell = bd[(bd.study == "image") & (bd.dataset == "kodak3") & (bd.codec == "quickstart")
              & (bd.anchor == "jpeg") & (bd.metric == "psnr_rgb")]
    assert len(cell) == 1 and cell.bd_rate_pct.iloc[0] <= 0.0, cell.to_dict("records")


def test_quickstart_video_vmaf_detection(quickstart):
    r = quickstart["results"]
    v = pd.read_csv(r / "video_rd_cars.csv")
    assert {"quickstart", "jpeg", "x264", "x265"} <= set(v.codec)
    assert v[v.codec.isin(["x264", "x265"])].groupby(["codec", "quality"]).size().eq(8).all()
    vm = pd.read_csv(r / "vmaf.csv")
    assert vm.vmaf.between(0, 100).all()
    # per-frame and sequence codecs get VMAF per frame
    assert (vm[(vm.domain == "video") & (vm.codec == "jpeg")].vmaf > 20).all()
    assert len(vm[(vm.domain == "video") & (vm.codec == "jpeg")]) == 6 * 8
    seq = vm[(vm.domain == "video") & vm.codec.isin(["x264", "x265"])]
    assert seq.groupby(["codec", "quality"]).size().eq(8).all() and len(seq) == 2 * 4 * 8
    assert (seq.vmaf > 20).all()
    # FastestDet finds the cars of every original frame (the clip has 5-6 per frame)
    original = json.loads((r / "detection/video/cars/original.json").read_text())
    assert original["detector"]["backend"] == "fastestdet"
    names = original["names"]
    cars = [sum(names[str(c)] == "car" for c in f["classes"]) for f in original["frames"].values()]
    assert len(cars) == 8 and min(cars) >= 3, cars
    mv = pd.read_csv(r / "machine_vision.csv")
    jpeg = mv[(mv["codec"] == "jpeg") & (mv["gt"] == "pseudo")].sort_values("bpp")
    assert jpeg.map50.iloc[0] < jpeg.map50.iloc[-1]     # the lowest rate loses detections


def test_quickstart_every_stage_made_its_outputs(quickstart):
    r = quickstart["results"]
    for name in ("image_rd_kodak3.csv", "image_rd_kodak3-r192.csv", "ablation_kodak3.csv",
                 "video_rd_cars.csv", "vmaf.csv", "vmaf_correlation.csv", "machine_vision.csv",
                 "complexity.csv", "bd_rate.csv", "environment.csv"):
        assert (r / name).stat().st_size > 100, name
    c = pd.read_csv(r / "complexity.csv")
    assert {"quickstart", "jpeg"} <= set(c.codec)
    assert (quickstart["work"] / "report.html").stat().st_size > 100_000


def test_quickstart_is_quick(quickstart):
    # the brief's target is 5 minutes on 2 cores; the test allows for a loaded CI machine
    assert quickstart["wall"] < 600, quickstart["wall"]


def test_a_study_file_replaces_the_quickstart(tmp_path):
    study = tmp_path / "my.yaml"
    study.write_text(yaml.safe_dump({
        "datasets": {"mine": {"kind": "local", "path": str(REPO / "workflow/resources/data/kodak")}},
        "codecs": {"jpeg": {"kind": "jpeg", "qualities": [20, 50]}},
        "complexity": {"enabled": False},
    }))
    proc = snakemake(tmp_path / "work", "-n", "--cores", "1", "--configfile", str(study))
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts["compress_image"] == 2                # 2 qualities x one batch of 3 images
    assert counts["vmaf_image"] == 2                    # VMAF is on by default (schema)
    for rule in ("compress_frame", "compress_sequence", "detect_original", "complexity_codec",
                 "preprocess_image", "training_table"):
        assert rule not in counts, rule


def test_the_quickstart_plans_every_stage(tmp_path):
    proc = snakemake(tmp_path / "work", "-n", "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout + proc.stderr)
    # (quickstart 4 + jpeg 6 + webp 4 + bpg444 4) x (kodak3 and its r192 variant), one batch
    # each (3 images); the clip's 8 frames x (quickstart 4 + jpeg 6), one batch each
    assert counts["compress_image"] == 18 * 2
    assert counts["compress_frame"] == 4 + 6
    assert counts["compress_sequence"] == 8
    for rule in ("vmaf_video", "vmaf_image", "detect_original", "bd_rate", "complexity_codec",
                 "ablation_table", "plot_image_rd"):
        assert counts.get(rule, 0) > 0, rule
    assert "download_kodak_image" not in counts and "download_zoo_weights" not in counts


@pytest.mark.parametrize("study", sorted(p.name for p in (REPO / "studies").glob("*.yaml")))
def test_every_named_study_plans(study, tmp_path):
    proc = snakemake(tmp_path / "work", "-n", "--cores", "8", "--configfile", str(REPO / "studies" / study),
                     timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts.get("compress_image", 0) > 30


def test_seed_study_is_what_the_issue_lists(tmp_path):
    cfg = yaml.safe_load((REPO / "studies/seed.yaml").read_text())
    learned = {c["architecture"] for c in cfg["codecs"].values() if c["kind"] == "learned"}
    assert learned == {"bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean", "mbt2018",
                       "cheng2020-anchor", "cheng2020-attn"}
    assert all(c["qualities"] == [1, 2, 3, 4, 5, 6] for c in cfg["codecs"].values() if c["kind"] == "learned")
    assert set(cfg["video"]["sequences"]) == {"Bosphorus", "HoneyBee"}
    assert cfg["video"]["frames"]["count"] == 100
    assert set(cfg["video"]["codecs"]) == {"bmshj2018-factorized", "cheng2020-attn"}
    assert set(cfg["video_codecs"]) == {"x264", "x265"}
    assert cfg["detection"]["backend"] == "yolo" and cfg["detection"]["weights"] == "yolov8n.pt"
    assert cfg["ablation"]["variants"]["r192"] == {"resize": [192, 192]}


def test_quickstart_figures_by_content(quickstart):
    fig = quickstart["results"] / "figures"
    rd = json.loads((fig / "image_rd_kodak3_psnr_rgb.json").read_text())
    series = {s["label"]: s for p in rd.get("panels", [rd]) for s in p.get("series", [])}
    assert {"quickstart", "jpeg", "webp", "bpg444"} <= set(series)
    assert len(series["quickstart"]["x"]) == 4 and len(series["jpeg"]["x"]) == 6
    published = {label.lower(): label for label in series if label.endswith("(published)")}
    assert {"jpeg (published)", "webp (published)", "bmshj2018-hyperprior (published)"} <= set(published)
    jpeg_ref = series[published["jpeg (published)"]]   # CompressAI's jpeg.json, in JPEG's colour
    assert jpeg_ref["color"] == series["jpeg"]["color"] and jpeg_ref["linestyle"] in ("--", "dashed")
    assert len(jpeg_ref["x"]) >= 5 and min(jpeg_ref["y"]) < 30 < max(jpeg_ref["y"])
    video = json.loads((fig / "video_rd_cars_psnr_y.json").read_text())
    labels = {s["label"] for p in video.get("panels", [video]) for s in p.get("series", [])}
    assert {"x264", "x265", "quickstart", "jpeg"} <= labels
    train = json.loads((fig / "train_quickstart.json").read_text())
    curves = [s for p in train.get("panels", [train]) for s in p.get("series", [])]
    assert len(curves) == 3 * 4                       # loss, bpp, psnr for each of 4 qualities


def test_quickstart_report_renders_in_a_browser(quickstart, tmp_path):
    from browser import CHROMIUM, render_report

    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is absent, but CI installs Chromium")
        pytest.skip(f"{CHROMIUM} is absent: apt-get install chromium")
    shot = quickstart["results"] / "report_screenshot.png"   # kept beside the run's results
    seen = render_report(quickstart["work"] / "report.html", shot, front_text="rdflow study")
    assert seen["front_page"], seen.get("front_text", "")[:300]
    assert seen["figure_loaded"] and seen["table_rendered"]
    assert seen["console_errors"] == [], seen["console_errors"][:5]
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_quickstart_plans_the_shipped_recipe(tmp_path):
    proc = snakemake(tmp_path / "work", "-n", "--cores", "2", "train_quickstart")
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts == {"download_training_image": 21, "train_model": 4, "train_quickstart": 1}
    recipe = yaml.safe_load((REPO / "workflow/resources/models/quickstart/recipe.yaml").read_text())
    assert not {"kodim03", "kodim12", "kodim20"} & set(recipe["kodak"])  # disjoint from the evaluated
    shipped = sorted(p.name for p in (REPO / "workflow/resources/models/quickstart").glob("q*.pth.tar"))
    assert shipped == [f"q{q}.pth.tar" for q in recipe["qualities"]]
    for q in recipe["qualities"]:
        info = json.loads((REPO / f"workflow/resources/models/quickstart/q{q}.json").read_text())
        assert info["lambda"] == recipe["lambdas"][recipe["qualities"].index(q)]
        assert info["steps"] == (recipe["steps"] if q == recipe["init_from"] else recipe["finetune_steps"])
        assert sorted(info["train_images"]) == sorted(f"{i}.png" for i in recipe["kodak"])


def test_shipped_files_stay_small():
    total = sum(p.stat().st_size for p in (REPO / "workflow/resources").rglob("*") if p.is_file())
    assert total <= 10 * 2**20, total
    for folder in ("data/kodak", "data/video", "reference/compressai", "detectors/fastestdet"):
        assert list((REPO / "workflow/resources" / folder).glob("LICENSE*")), folder
