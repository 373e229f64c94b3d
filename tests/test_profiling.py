"""rdflow.measure: timing, peak memory, MACs, and the complexity study."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from rdflow import RdflowError
from rdflow.codecs import CODECS, CodecSpec
from rdflow.codecs.pillow import Jpeg
from rdflow.measure import images, macs, meters, run, timing
from rdflow.stages.complexity import plot_complexity, write_complexity_csv

JPEG = CodecSpec("jpeg", "jpeg", 75)
FACTORIZED = CodecSpec("bmshj-f", "learned", 1,
                       {"architecture": "bmshj2018-factorized", "weights": "random", "seed": 0})


def test_import_is_cheap():
    code = ("import sys, rdflow.measure.meters, rdflow.measure.timing, rdflow.measure.macs, "
            "rdflow.measure.images, rdflow.measure.points, rdflow.measure.run; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- timing -----------------------------------------------------------------------------------
def test_time_calls_excludes_warmup():
    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.3 if len(calls) == 1 else 0.01)
        return len(calls)

    syncs = []
    t = timing.time_calls(fn, warmup=1, repeats=5, sync=lambda: syncs.append(1))
    assert len(calls) == 6 and len(t.samples) == 5 and len(t.cpu_samples) == 5
    assert t.value == 6  # the last call's value
    assert 0.009 <= t.median < 0.05, t.samples
    assert t.max < 0.2  # the 0.3 s warm-up is in no sample
    assert t.min <= t.p25 <= t.median <= t.p75 <= t.max
    assert t.iqr == pytest.approx(t.p75 - t.p25)
    assert t.cpu_time < 0.01  # sleeping costs no CPU
    assert len(syncs) == 10  # before each start and before each stop


def test_time_calls_cpu_time_counts_work():
    def spin():
        t0 = time.process_time()
        while time.process_time() - t0 < 0.02:
            pass

    t = timing.time_calls(spin, warmup=0, repeats=3)
    assert t.cpu_time >= 0.019


@pytest.mark.parametrize("kw", [{"repeats": 0}, {"warmup": -1}])
def test_time_calls_rejects_bad_counts(kw):
    with pytest.raises(ValueError):
        timing.time_calls(lambda: None, **kw)


# -- memory -----------------------------------------------------------------------------------
def _allocate_200mib(hold: float = 0.0):
    a = np.ones(200 * 2**20, dtype=np.uint8)  # np.ones writes every page: resident
    if hold:
        time.sleep(hold)
    return int(a[-1])


def test_peak_rss_sees_known_allocation():
    value, m = meters.peak_rss_mb(_allocate_200mib)
    assert value == 1
    if m.method != "hwm":
        pytest.skip("/proc/self/clear_refs is not writable here; the sampling test covers the fallback")
    # 200 MiB = 209.7 MB; the kernel's RSS counters are batched per CPU (a few hundred KiB
    # stale at most), so the delta is 200 MiB give or take that slack, and well above 200 MB.
    assert m.delta_mb * meters.MIB >= 200e6 and m.delta_mb >= 199, (m.base_mb, m.peak_mb)
    assert m.delta_mb < 260
    # per measurement: a second, empty measurement does not see the first one's peak
    _, m2 = meters.peak_rss_mb(lambda: None)
    assert m2.delta_mb < 20, (m2.base_mb, m2.peak_mb)


def test_peak_rss_sampling_fallback(monkeypatch):
    monkeypatch.setattr(meters, "_reset_hwm", lambda: False)
    _, m = meters.peak_rss_mb(_allocate_200mib, 0.15)
    assert m.method == "sampling"
    assert m.delta_mb >= 199, (m.base_mb, m.peak_mb)
    with pytest.raises(RdflowError, match="clear_refs"):
        meters.peak_rss_mb(lambda: None, method="hwm")


def test_gpu_peak_is_none_on_cpu():
    assert meters.gpu_peak(lambda: 7, device="cpu") == (7, None)


def test_gpu_peak_on_a_real_gpu_sees_a_known_allocation():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here: the real peak-memory reading needs a GPU "
                    "(test_gpu_peak_mocked_* checks the conversion without one)")
    n = 96 * 2**20  # bytes
    torch.cuda.init()
    base = torch.cuda.memory_allocated()  # tensors earlier tests may still hold

    def allocate():
        t = torch.empty(n, dtype=torch.uint8, device="cuda")
        t.fill_(1)
        return int(t[-1].item())

    value, peak = meters.gpu_peak(allocate, device="cuda")
    assert value == 1
    extra = peak.alloc_mb * 2**20 - base
    assert n <= extra < n + 2**20, (peak, base)  # the tensor, nothing else of note
    assert peak.reserved_mb >= peak.alloc_mb, peak
    # per measurement: the next, empty measurement does not see that peak
    _, empty = meters.gpu_peak(lambda: None, device="cuda")
    assert empty.alloc_mb * 2**20 - base < 2**20, (empty, base)


def test_gpu_peak_mocked_converts_bytes_to_mib_around_the_call(monkeypatch):
    """rdflow's own part only (torch.cuda mocked): synchronise and reset before the call,
    synchronise after, and report torch's byte counts in MiB."""
    import torch

    events = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda d=None: events.append(("sync", d)))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda d=None: events.append(("reset", d)))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d=None: 300 * 2**20 + 2**19)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda d=None: 3 * 2**30)
    value, peak = meters.gpu_peak(lambda: events.append(("run", None)) or 3, device="cuda:0")
    assert value == 3
    assert events == [("sync", "cuda:0"), ("reset", "cuda:0"), ("run", None), ("sync", "cuda:0")]
    assert (peak.alloc_mb, peak.reserved_mb) == (300.5, 3072.0)


# -- MACs -------------------------------------------------------------------------------------
def test_count_macs_conv_closed_form():
    import torch

    conv = torch.nn.Conv2d(3, 16, 5, stride=2, padding=2)
    x = torch.randn(1, 3, 40, 30)
    h_out, w_out = 20, 15
    assert macs.count_macs(conv, x) == 16 * 3 * 5 * 5 * h_out * w_out
    deconv = torch.nn.ConvTranspose2d(16, 3, 5, stride=2, padding=2, output_padding=1)
    y = torch.randn(1, 16, 8, 8)  # transposed: every input position meets Cout*k*k weights
    assert macs.count_macs(deconv, y) == 16 * 3 * 5 * 5 * 8 * 8
    a, b = torch.randn(4, 5), torch.randn(5, 6)
    assert macs.count_macs(torch.matmul, (a, b)) == 4 * 5 * 6


def test_model_size():
    import torch

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Linear(2, 2))
    params, nbytes = macs.model_size(net)
    assert params == 4 * 3 * 9 + 4 + 2 * 2 + 2
    assert nbytes > params * 4  # float32 weights plus pickle framing


# -- inputs -----------------------------------------------------------------------------------
@pytest.mark.parametrize("value,expected", [("1920x1080", (1920, 1080)), ("768 X 512", (768, 512)),
                                            ([640, 360], (640, 360)), (256, (256, 256))])
def test_parse_resolution(value, expected):
    assert images.parse_resolution(value) == expected


@pytest.mark.parametrize("value", ["abc", "0x10", "-5x5", "12x", "1.5x2", [1], [0, 4], True, 0, None])
def test_parse_resolution_rejects(value):
    with pytest.raises(RdflowError, match="complexity.resolutions"):
        images.parse_resolution(value)


def test_fit_image_crops_and_pads():
    img = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    assert np.array_equal(images.fit_image(img, 4, 2), img[2:4, 2:6])
    big = images.fit_image(img, 20, 9)
    assert big.shape == (9, 20, 3)
    assert np.array_equal(big[1:7, 6:14], img)  # centred, mirrored around
    with pytest.raises(RdflowError, match="HxWx3 uint8"):
        images.fit_image(img.astype(np.float32), 4, 4)
    with pytest.raises(RdflowError, match="does not exist"):
        images.load_image("/nonexistent/kodim99.png")


# -- the study --------------------------------------------------------------------------------
#: the columns of results/complexity.csv, in order (written out here, not read from
#: rdflow.measure: a renamed, dropped or moved column fails the tests)
COMPLEXITY_COLUMNS = [
    "codec", "kind", "quality", "width", "height", "device", "threads", "repeats",
    "enc_s_median", "enc_s_p25", "enc_s_p75", "enc_s_min", "enc_s_max", "enc_s_std",
    "dec_s_median", "dec_s_p25", "dec_s_p75", "dec_s_min", "dec_s_max", "dec_s_std",
    "enc_network_s", "enc_entropy_s", "dec_network_s", "dec_entropy_s",
    "enc_cpu_s", "dec_cpu_s", "cpu_time_s",
    "max_rss_mb", "process_max_rss_mb", "child_max_rss_mb", "enc_child_cpu_s", "dec_child_cpu_s",
    "rss_base_mb", "rss_method", "max_vram_alloc_mb", "max_vram_reserved_mb",
    "params", "model_bytes", "enc_kmac_per_px", "dec_kmac_per_px",
    "bpp", "source", "status", "error",
]


def test_study_classical_rows_and_csv(tmp_path):
    rows = run.complexity_study([JPEG], ["64x48", 32], device=None, repeats=2)
    assert [(r["width"], r["height"]) for r in rows] == [(64, 48), (32, 32)]
    for r in rows:
        assert list(r) == COMPLEXITY_COLUMNS
        assert r["status"] == "ok" and r["error"] == ""
        assert r["device"] == "cpu" and r["repeats"] == 2 and r["source"] == "synthetic"
        assert 0 < r["enc_s_median"] < 1 and 0 < r["dec_s_median"] < 1
        assert r["enc_s_p25"] <= r["enc_s_median"] <= r["enc_s_p75"]
        assert r["bpp"] > 0 and r["max_rss_mb"] > 10
        for k in ("params", "model_bytes", "enc_kmac_per_px", "dec_kmac_per_px", "enc_network_s",
                  "max_vram_alloc_mb"):
            assert math.isnan(r[k]), k  # classical codecs have no torch model; no GPU here
    out = tmp_path / "results" / "complexity.csv"
    write_complexity_csv(rows, out)
    import pandas as pd

    df = pd.read_csv(out)
    assert list(df.columns) == COMPLEXITY_COLUMNS and len(df) == 2
    paths = plot_complexity(df, tmp_path / "fig")
    assert [p.name for p in paths] == ["complexity_bpp_time.png", "complexity_resolution.png"]
    import json

    bpp = json.loads((tmp_path / "fig/complexity_bpp_time.json").read_text())
    res = json.loads((tmp_path / "fig/complexity_resolution.json").read_text())
    # one jpeg curve per panel; rate vs time at the largest size: its one quality
    assert [(s["label"], s["panel"], len(s["x"])) for s in bpp["series"]] == [("jpeg", 0, 1), ("jpeg", 1, 1)]
    assert [(s["label"], len(s["x"])) for s in res["series"]] == [("jpeg q75", 2)] * 3
    assert res["panels"][0]["xticklabels"] == ["32x32\n0.001 MP", "64x48\n0.0031 MP"]


@pytest.mark.parametrize("exc", [MemoryError("cannot allocate 9 GiB"),
                                 RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")])
def test_study_failed_resolution_goes_on(monkeypatch, exc, tmp_path):
    orig = Jpeg.encode

    def encode(self, rgb):
        if rgb.shape[1] == 128:
            raise exc
        return orig(self, rgb)

    monkeypatch.setattr(Jpeg, "encode", encode)
    rows = run.complexity_study([JPEG], [64, 128, "96x64"], device=None, repeats=1)
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    bad = rows[1]
    assert bad["width"] == 128 and type(exc).__name__ in bad["error"] and str(exc) in bad["error"]
    assert math.isnan(bad["enc_s_median"]) and math.isnan(bad["bpp"])
    assert rows[2]["bpp"] > 0
    # the figures leave the failed row out
    assert len(plot_complexity(rows, tmp_path)) == 2


def test_study_rejects_bad_inputs(monkeypatch):
    with pytest.raises(RdflowError, match="complexity.repeats"):
        run.complexity_study([JPEG], [64], repeats=0)
    with pytest.raises(RdflowError, match="complexity.resolutions is empty"):
        run.complexity_study([JPEG], [])
    with pytest.raises(RdflowError, match="complexity.threads"):
        run.complexity_study([JPEG], [64], threads=0)
    with pytest.raises(RdflowError, match="HxWx3 uint8"):
        run.complexity_study([JPEG], [64], image=np.zeros((8, 8), np.uint8))
    with pytest.raises(RdflowError, match="complexity.image"):
        run.complexity_study([JPEG], [64], image="/nonexistent/kodim99.png")
    with pytest.raises(RdflowError, match="unknown codec kind"):
        run.complexity_study([CodecSpec("x", "no-such-kind", 1)], [64])


def test_study_cuda_absent(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    spec = CodecSpec("f", "learned", 1, FACTORIZED.options)
    with pytest.raises(RdflowError, match="no CUDA device"):
        run.complexity_study([spec], [64], device="cuda", repeats=1)
    (row,) = run.complexity_study([spec], [64], device="auto", repeats=1, split_repeats=0,
                                        macs=False)
    assert row["status"] == "ok" and row["device"] == "cpu"
    assert math.isnan(row["enc_network_s"]) and math.isnan(row["enc_kmac_per_px"])  # skipped


# -- isolation: a killed worker is a failed row -----------------------------------------------
class _Killed(Jpeg):
    """A codec whose encoder is killed by SIGKILL at width 128 (as by the OOM killer)."""

    kind = "test-killed"

    def encode(self, rgb):
        if rgb.shape[1] == 128:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().encode(rgb)


def _register_killed():
    CODECS[_Killed.kind] = _Killed


def test_study_isolated_survives_killed_worker(monkeypatch):
    monkeypatch.setitem(CODECS, _Killed.kind, _Killed)
    spec = CodecSpec("killed", _Killed.kind, 50)
    rows = run.complexity_study([spec, JPEG], [64, 128, 32], device=None, repeats=1,
                                      isolate=True, worker_init=_register_killed, macs=False)
    assert [(r["codec"], r["width"], r["status"]) for r in rows] == [
        ("killed", 64, "ok"), ("killed", 128, "failed"), ("killed", 32, "ok"),
        ("jpeg", 64, "ok"), ("jpeg", 128, "ok"), ("jpeg", 32, "ok")]
    assert "killed by SIGKILL" in rows[1]["error"] and "out-of-memory" in rows[1]["error"]


def test_study_isolated_from_unguarded_script(tmp_path):
    # Snakemake's script: directive runs a file without an `if __name__ == "__main__"` guard;
    # the worker must not re-import it (multiprocessing spawn would).
    script = tmp_path / "study.py"
    script.write_text(
        "from rdflow.measure import run\n"
        "from rdflow.codecs import CodecSpec\n"
        "rows = run.complexity_study([CodecSpec('jpeg', 'jpeg', 75)], [32], device=None,\n"
        "                                  repeats=1, isolate=True)\n"
        "print('STATUS', rows[0]['status'], rows[0]['bpp'] > 0)\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("STATUS") == 1 and "STATUS ok True" in out.stdout


def test_study_isolated_worker_init_error_is_raised():
    with pytest.raises(ZeroDivisionError):
        run.complexity_study([JPEG], [32], device=None, repeats=1, isolate=True,
                                   worker_init=_divide_by_zero)


def _divide_by_zero():
    return 1 / 0


# -- a real learned codec ---------------------------------------------------------------------
def _factorized_macs(n: int, m: int, h: int, w: int) -> int:
    """Closed-form MACs of bmshj2018-factorized's g_a (= g_s) at h x w: four 5x5 stride-2 convs
    with a GDN (a 1x1 N->N convolution) after the first three."""
    s = [(h // 2**i) * (w // 2**i) for i in range(1, 5)]
    convs = 3 * n * 25 * s[0] + n * n * 25 * s[1] + n * n * 25 * s[2] + n * m * 25 * s[3]
    gdns = n * n * (s[0] + s[1] + s[2])
    return convs + gdns


def test_learned_codec_complexity_factorized_64():
    from compressai.zoo.image import cfgs

    n, m = cfgs["bmshj2018-factorized"][1]
    c = macs.learned_codec_complexity("bmshj2018-factorized", 1, 64, 64, "cpu", weights="random")
    closed = _factorized_macs(n, m, 64, 64) / (64 * 64) / 1e3
    assert c["enc_kmac_per_px"] == pytest.approx(closed, rel=1e-12)
    assert c["dec_kmac_per_px"] == pytest.approx(closed, rel=1e-12)  # g_s mirrors g_a
    assert c["params"] > 2 * (3 * n * 25 + 2 * n * n * 25 + n * m * 25)
    assert c["model_bytes"] > 4 * c["params"]
    assert c["enc_network_s"] > 0 and c["enc_entropy_s"] > 0
    assert c["dec_network_s"] > 0 and c["dec_entropy_s"] > 0
    assert c["bpp"] > 0 and c["device"] == "cpu"


def test_study_learned_factorized_64():
    rows = run.complexity_study([FACTORIZED], [64], device="auto", repeats=2, threads=1)
    (r,) = rows
    assert r["status"] == "ok", r["error"]
    import torch

    assert r["device"] == ("cuda" if torch.cuda.is_available() else "cpu")  # device: auto
    assert r["threads"] == 1 and r["kind"] == "learned"
    assert r["enc_kmac_per_px"] > 40 and r["dec_kmac_per_px"] > 40
    assert r["params"] > 0 and r["model_bytes"] > 0
    assert r["enc_network_s"] + r["enc_entropy_s"] <= r["enc_s_median"] * 3
    assert r["cpu_time_s"] > 0 and r["max_rss_mb"] > 100 and r["bpp"] > 0


def test_plot_complexity_every_row_failed(tmp_path):
    """No successful row: both figures are written and say why (no crash, no empty axes)."""
    import json

    rows = [{"status": "failed", "width": 1, "height": 1, "error": "MemoryError: 9 GiB"}]
    paths = plot_complexity(rows, tmp_path)
    assert [p.name for p in paths] == ["complexity_bpp_time.png", "complexity_resolution.png"]
    for p in paths:
        side = json.loads(p.with_suffix(".json").read_text())
        assert side["series"] == [] and "no successful complexity rows" in side["note"]
        assert "MemoryError: 9 GiB" in side["note"] and p.stat().st_size > 1000
