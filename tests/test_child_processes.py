"""Complexity counts child processes (issue 16): rdflow.proc.run reaps each encoder/decoder
child with os.wait4, and the complexity columns add its CPU time and peak RSS to the codec's."""

from __future__ import annotations

import resource
import subprocess
import sys

import numpy as np
import pytest

from rdflow.codecs import CodecSpec
from rdflow.measure import points
from rdflow.proc import ChildMeter, run

BURN = "import time\nt=time.process_time()\nwhile time.process_time()-t<{s}: pass\n"
HOLD = "b=bytearray({mib}*2**20)\nfor i in range(0,len(b),4096): b[i]=1\n"


def test_run_returns_output_status_and_the_childs_usage():
    with ChildMeter() as m:
        p = run([sys.executable, "-c", BURN.format(s=0.3) + HOLD.format(mib=150)
                 + "import sys\nsys.stdout.write(sys.stdin.read().upper())\nsys.exit(3)"], input=b"abc")
    assert p.returncode == 3 and p.stdout == b"ABC"
    assert m.count == 1 and 0.3 <= m.cpu_s < 1.5
    assert 150 < m.max_rss_mb < 400  # the child's own high-water mark, not this process's
    big = np.ones(400 * 2**20 // 8)  # this process holds 400 MiB more: not the child's memory
    with ChildMeter() as small:
        run([sys.executable, "-c", "pass"])
    assert big.sum() > 0
    # per child, not the process's lifetime maximum, nor the image it was forked from (which
    # Linux folds into the child's ru_maxrss)
    assert small.max_rss_mb < 60


def test_run_timeout_kills_and_missing_binary_raises():
    with pytest.raises(subprocess.TimeoutExpired):
        run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
    with pytest.raises(OSError):
        run(["/no/such/binary"])


def test_complexity_of_an_ffmpeg_codec_counts_its_child_processes():
    """jpeg2000 runs ffmpeg once per encode and per decode: the child CPU time equals the
    kernel's own children accounting over the same calls, and the peak RSS is ffmpeg's."""
    from rdflow.codecs import build

    codec = build(CodecSpec("j2k", "jpeg2000", 20))
    rgb = np.random.default_rng(0).integers(0, 256, (256, 384, 3), dtype=np.uint8)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    row = points.measure_point(codec, rgb, repeats=3, warmup=1, split_repeats=0, macs=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    kernel = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    assert row["enc_child_cpu_s"] > 0.005 and row["dec_child_cpu_s"] > 0.005
    # 4 encodes and 4 decodes ran (1 warm-up + 3 timed each); the medians times 4 ~ the total
    assert 4 * (row["enc_child_cpu_s"] + row["dec_child_cpu_s"]) == pytest.approx(kernel, rel=0.5)
    assert row["enc_cpu_s"] >= row["enc_child_cpu_s"] and row["dec_cpu_s"] >= row["dec_child_cpu_s"]
    assert 10 < row["child_max_rss_mb"] < 2000
    assert row["max_rss_mb"] == pytest.approx(row["process_max_rss_mb"] + row["child_max_rss_mb"], abs=
                                              row["process_max_rss_mb"] * 0.2)


def test_in_process_codecs_have_no_child_columns():
    from rdflow.codecs import build

    codec = build(CodecSpec("jpeg", "jpeg", 75))
    rgb = np.zeros((64, 64, 3), np.uint8)
    row = points.measure_point(codec, rgb, repeats=2, warmup=1, split_repeats=0, macs=False)
    assert row["enc_child_cpu_s"] == 0 and row["dec_child_cpu_s"] == 0
    assert row["child_max_rss_mb"] != row["child_max_rss_mb"]  # NaN
    assert row["max_rss_mb"] == row["process_max_rss_mb"]
