"""A run killed with SIGKILL at several points finishes with the same results.

A small study (3 shipped Kodak images, JPEG and WebP at four qualities, 4 frames of the shipped
clip coded by JPEG, VMAF on every image and frame, BD-rate) runs once uninterrupted; a twin run
is killed (SIGKILL to its whole process group) as soon as its terminal shows 25 %, 55 % and 85 %
of the jobs done -- at job boundaries read from the log, so the test does not depend on timing --
and after each kill `snakemake --unlock` then the same command are run again, as the README says.
Its CSVs must equal the uninterrupted run's (timing and memory columns aside), every bitstream
must be byte-identical, and no file under results/ may be empty or a leftover partial write."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.e2e
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
KILL_AT = (0.25, 0.55, 0.85)
VOLATILE = re.compile(r"(_s$|_s_|rss|vram|_mb$|^time|elapsed|threads|timestamp)")


def study(tmp_path: Path) -> Path:
    cfg = {
        "device": "cpu",
        "datasets": {"k": {"kind": "local", "path": str(REPO / "workflow/resources/data/kodak")}},
        "codecs": {"jpeg": {"kind": "jpeg", "qualities": [10, 20, 40, 60]},
                   "webp": {"kind": "webp", "qualities": [20, 40, 60, 80]}},
        "video": {"frames": {"count": 4}, "codecs": ["jpeg"], "sequences": {"cars": {
            "source": "file", "path": str(REPO / "workflow/resources/data/video/cars_320x240.i420"),
            "width": 320, "height": 240, "matrix": "bt601"}}},
        "vmaf": {"enabled": True},
        "bd_rate": {"anchor": "jpeg", "metrics": ["psnr_rgb", "vmaf"]},
        "complexity": {"enabled": False},
    }
    p = tmp_path / "study.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def command(work: Path, cfg: Path, *extra: str) -> list[str]:
    return [SNAKEMAKE, "--cores", "2", "-d", str(work), "--configfile", str(cfg), *extra]


def run_killed_at(work: Path, cfg: Path, fraction: float) -> bool:
    """Run until the terminal shows ``fraction`` of the jobs done, then SIGKILL the whole run.
    Returns False when the run finished before reaching that point."""
    proc = subprocess.Popen(command(work, cfg), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    for line in proc.stdout:
        m = re.match(r"\[\s*(\d+)/(\d+)\s", line)
        if m and int(m.group(1)) >= fraction * int(m.group(2)):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
    proc.wait()
    return False


def tables(work: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for p in sorted((work / "results").glob("*.csv")):
        if p.name in ("environment.csv", "benchmarks.csv"):
            continue
        t = pd.read_csv(p)
        t = t[[c for c in t.columns if not VOLATILE.search(c)]]
        out[p.name] = t.sort_values(list(t.columns[:4])).reset_index(drop=True)
    return out


def test_killed_runs_finish_with_the_same_results(tmp_path):
    cfg = study(tmp_path)
    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    done = subprocess.run(command(clean, cfg), cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    kills = 0
    for fraction in KILL_AT:
        kills += run_killed_at(crashed, cfg, fraction)
        unlock = subprocess.run(command(crashed, cfg, "--unlock"), cwd=REPO, capture_output=True, text=True)
        assert unlock.returncode == 0, unlock.stderr[-2000:]
    assert kills == len(KILL_AT)          # every kill landed before the run could finish
    final = subprocess.run(command(crashed, cfg), cwd=REPO, capture_output=True, text=True, timeout=900)
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]

    a, b = tables(clean), tables(crashed)
    assert set(a) == set(b) and {"image_rd_k.csv", "video_rd_cars.csv", "vmaf.csv", "bd_rate.csv"} <= set(a)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=False, rtol=1e-9, obj=name)
    bins = sorted(p.relative_to(clean) for p in (clean / "results").rglob("*.bin"))
    assert len(bins) == 3 * 8 + 4 * 4
    for rel in bins:
        assert (clean / rel).read_bytes() == (crashed / rel).read_bytes(), rel
    # (Snakemake's own marker in a finished folder output is empty by design)
    files = [p for p in (crashed / "results").rglob("*")
             if p.is_file() and p.name != ".snakemake_timestamp"]
    assert not [p for p in files if p.stat().st_size == 0]
    assert not [p for p in files if p.name.endswith(".part")]
    assert not list((crashed / "results").rglob("*.partial"))  # no half-written batch folder
