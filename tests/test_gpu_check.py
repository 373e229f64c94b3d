"""bench/gpu_check.py (the GPU check: CPU/CUDA agreement, cross-device decoding, fps with N jobs,
peak memory) runs on CPU at tiny sizes, so the script does not rot between GPU runs."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from conftest import REPO

SCRIPT = REPO / "bench" / "gpu_check.py"
ARCHS = ["bmshj2018-hyperprior", "mbt2018-mean"]  # cheng2020-anchor is too slow for CI on CPU
CUDA = torch.cuda.is_available()
CUDA_COLUMNS = ("cpu_vs_cuda_dbpp", "cpu_vs_cuda_dpsnr", "cross_device_fail_share")


def run(tmp_path, *extra, timeout=240):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--size", "128x96", "--frames", "2",
                           "--json", str(out), *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def table(stdout: str) -> list[list[str]]:
    """The table's rows (cells split on runs of 2+ spaces), header first."""
    lines = stdout.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("arch "))
    rows = []
    for line in lines[start:]:
        if not line.strip() or line.startswith("goal:"):
            break
        rows.append([c for c in line.split("  ") if c.strip()])
    return [[c.strip() for c in r] for r in rows]


def test_cpu_run_measures_every_arch_and_jobs_count(tmp_path):
    stdout, data = run(tmp_path, "--jobs", "1,2", "--device", "cpu", "--archs", ",".join(ARCHS))

    head, *rows = table(stdout)
    assert head[:12] == ["arch", "device", "jobs", "frames", "fps_aggregate", "bpp_mean",
                         "psnr_mean", *CUDA_COLUMNS, "peak_vram_mb", "peak_rss_mb"]
    assert [(r[0], r[1], r[2]) for r in rows] == [(a, "cpu", j) for a in ARCHS for j in "12"]
    assert all(r[3] == "2/2" and r[-1] == "ok" for r in rows), rows
    assert "goal: hyperprior family" in stdout and "n/a on CPU" in stdout
    assert "input: Kodak" in stdout or "input: synthetic" in stdout

    assert [(r["arch"], r["jobs"]) for r in data["rows"]] == [(a, j) for a in ARCHS for j in (1, 2)]
    for r in data["rows"]:
        assert r["device"] == "cpu" and r["frames"] == 2 and r["status"] == "ok"
        assert math.isfinite(r["bpp_mean"]) and r["bpp_mean"] > 0
        assert 5 < r["psnr_mean"] < 60  # random weights: low but a picture, not noise or NaN
        assert math.isfinite(r["fps_aggregate"]) and r["fps_aggregate"] > 0
        assert r["peak_rss_mb"] > 50 and r["peak_vram_mb"] is None
        assert len(r["per_job"]) == r["jobs"]
        assert all(j["peak_rss_mb"] > 50 for j in r["per_job"])
    # the frames are the same whatever the jobs count: bpp and PSNR must agree across rows
    for a in ARCHS:
        bpps = {round(r["bpp_mean"], 9) for r in data["rows"] if r["arch"] == a}
        assert len(bpps) == 1, (a, bpps)
    assert data["goal"]["verdict"] == "n/a on CPU"
    assert data["meta"]["cuda_available"] is CUDA
    if not CUDA:
        assert all(r[7:11] == ["n/a (no CUDA)"] * 4 for r in rows), rows  # + peak_vram_mb
        assert data["checks"] == {}


def test_check_code_path_detects_a_garbled_cross_device_decode(tmp_path):
    """--check-on-cpu runs the agreement/cross-device code with the CPU standing in for CUDA;
    the hidden --fault corrupt garbles the second frame's strings before the cross decode."""
    stdout, data = run(tmp_path, "--jobs", "1", "--device", "cpu", "--archs", ARCHS[0],
                       "--check-on-cpu", "--fault", "corrupt")
    c = data["checks"][ARCHS[0]]
    assert c["stand_in"] and c["frames"] == 2 and c["status"] == "ok"
    assert c["max_abs_dbpp"] == 0 and c["max_abs_dpsnr_db"] == 0  # same device: bit-exact
    assert c["strings_identical"] == 2
    assert c["cross_fail"] == 1 and c["cross_fail_share"] == 0.5, c["per_frame"]
    first, second = sorted(c["per_frame"], key=lambda f: f["index"])
    assert not first["cross_fail"] and first["cross_identical"]
    assert second["cross_fail"] and second["cross_reason"]
    _, row = table(stdout)
    assert row[7:10] == ["0.00000*", "0.0000*", "1/2 (50%)*"], row
    assert "the CPU stood in for CUDA" in stdout


def test_time_limit_skips_and_says_so(tmp_path):
    stdout, data = run(tmp_path, "--jobs", "1,2", "--device", "cpu", "--archs", ",".join(ARCHS),
                       "--time-limit", "0.5", timeout=120)
    assert [r["status"] for r in data["rows"]] == ["skipped (time limit)"] * 4
    _, *rows = table(stdout)
    assert len(rows) == 4 and all(r[-1] == "skipped (time limit)" for r in rows)
    assert "4 configuration(s) skipped" in stdout


def test_device_cuda_without_cuda_is_refused(tmp_path):
    if CUDA:
        pytest.skip("CUDA is available here")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cuda", "--frames", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "torch.cuda.is_available() is False" in proc.stderr


@pytest.mark.skipif(not CUDA, reason="needs CUDA: CPU vs CUDA agreement, cross-device decoding "
                                     "and peak VRAM are measured only with a GPU")
def test_cuda_columns_are_measured(tmp_path):
    stdout, data = run(tmp_path, "--size", "256x192", "--jobs", "1,2", "--device", "cuda",
                       "--archs", ARCHS[0])
    c = data["checks"][ARCHS[0]]
    assert not c["stand_in"] and c["frames"] == 2 and c["status"] == "ok"
    assert c["max_abs_dbpp"] is not None and c["max_abs_dpsnr_db"] is not None
    assert 0 <= c["cross_fail_share"] <= 1
    assert all(r["device"] == "cuda" and r["peak_vram_mb"] > 0 for r in data["rows"])
    assert "n/a (no CUDA)" not in stdout
