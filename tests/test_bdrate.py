"""BD-rate / BD-quality: validity against CompressAI's published Kodak curves, exact synthetic
cases, every refusal, the monotone fit for mAP, and the comparison table."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from rdflow import RdflowError
from rdflow.metrics.bdrate import (BDResult, METHODS, TABLE_COLUMNS, bd_quality, bd_rate, bd_table,
                           is_task_metric, monotone_fit)

KODAK = ("reference", "compressai", "results", "image", "kodak")


def _curve(shared, name):
    doc = json.loads(shared(*KODAK, f"{name}.json").read_text())
    return doc["results"]["bpp"], doc["results"]["psnr-rgb"]


def _log_linear(rates, slope=6.0, offset=35.0):
    """PSNR linear in log10 rate: every interpolator reproduces it exactly."""
    r = np.asarray(rates, dtype=float)
    return r, slope * np.log10(r) + offset


# --- validity on published curves ------------------------------------------------------------

@pytest.mark.parametrize("test_name, target", [
    ("compressai-cheng2020-anchor_mse_cuda", -18.8),
    ("compressai-cheng2020-anchor_mse_cpu", -18.8),
    ("compressai-bmshj2018-hyperprior_mse_cuda", 3.7),
    ("compressai-bmshj2018-hyperprior_mse_cpu", 3.7),
])
def test_compressai_kodak_bd_rate_vs_bpg444(shared, test_name, target):
    ar, aq = _curve(shared, "bpg_444_x265_ycbcr")
    tr, tq = _curve(shared, test_name)
    res = bd_rate(ar, aq, tr, tq)  # pchip, the default
    assert res.valid, res.reason
    assert res.value == pytest.approx(target, abs=0.3)
    # full overlap: BPG spans a wider PSNR range, so the test curve's whole range is integrated
    assert res.overlap_low == pytest.approx(min(tq))
    assert res.overlap_high == pytest.approx(max(tq))
    assert (res.n_anchor, res.n_test) == (len(ar), len(tr))
    # the classic Bjøntegaard cubic fit lands on the published figures to 0.05
    assert bd_rate(ar, aq, tr, tq, method="cubic").value == pytest.approx(target, abs=0.05)


# --- exact synthetic cases -------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_identical_curves_give_zero(method):
    r, q = [0.1, 0.25, 0.5, 1.0, 2.0], [28.0, 31.0, 34.0, 37.5, 41.0]
    assert bd_rate(r, q, r, q, method).value == pytest.approx(0.0, abs=1e-9)
    assert bd_quality(r, q, r, q, method).value == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_rate_scaled_by_0_9_gives_minus_10_percent(method):
    r, q = [0.1, 0.25, 0.5, 1.0, 2.0], [28.0, 31.0, 34.0, 37.5, 41.0]
    res = bd_rate(r, q, [0.9 * x for x in r], q, method)
    assert res.value == pytest.approx(-10.0, abs=1e-9)
    assert (res.overlap_low, res.overlap_high) == (28.0, 41.0)
    assert res.overlap_fraction == pytest.approx(1.0)


def test_different_point_counts():
    ar, aq = _log_linear([0.1, 0.2, 0.4, 0.8, 1.6])
    tr = np.array([0.12, 0.2, 0.3, 0.45, 0.7, 1.0, 1.4])
    _, tq = _log_linear(tr / 0.9)  # test reaches anchor quality with 10% fewer bits
    res = bd_rate(ar, aq, tr, tq)
    assert res.valid and (res.n_anchor, res.n_test) == (5, 7)
    assert res.value == pytest.approx(-10.0, abs=1e-9)
    # equal log-rate shift of log10(1/0.9) at slope 6 dB/decade
    assert bd_quality(ar, aq, tr, tq).value == pytest.approx(6 * math.log10(1 / 0.9), abs=1e-9)


def test_partial_overlap_reports_the_integrated_range():
    ar, aq = _log_linear([0.1, 0.2, 0.4, 0.8, 1.6])
    tr, tq = _log_linear([0.4, 0.8, 1.6, 3.2, 6.4], offset=34.0)
    res = bd_rate(ar, aq, tr, tq)
    assert res.valid
    assert res.overlap_low == pytest.approx(tq.min())
    assert res.overlap_high == pytest.approx(aq.max())
    assert 0 < res.overlap_fraction < 1
    assert res.value > 0  # 1 dB lower at every rate: more bits needed
    q = bd_quality(ar, aq, tr, tq)
    assert q.axis == "bpp" and (q.overlap_low, q.overlap_high) == pytest.approx((0.4, 1.6))
    assert q.value == pytest.approx(-1.0, abs=1e-9)
    refused = bd_rate(ar, aq, tr, tq, min_overlap=0.9)
    assert math.isnan(refused.value) and "overlap on only" in refused.reason
    assert refused.overlap_low == pytest.approx(res.overlap_low)


def test_unordered_points_are_sorted():
    r, q = [0.1, 0.25, 0.5, 1.0, 2.0], [28.0, 31.0, 34.0, 37.5, 41.0]
    perm = [3, 0, 4, 2, 1]
    res = bd_rate(r, q, [0.9 * r[i] for i in perm], [q[i] for i in perm])
    assert res.value == pytest.approx(-10.0, abs=1e-9)


# --- refusals: NaN with a reason, never an exception -----------------------------------------

def _assert_refused(res: BDResult, *fragments):
    assert isinstance(res, BDResult)
    assert math.isnan(res.value) and not res.valid
    for f in fragments:
        assert f in res.reason, res.reason


def test_fewer_than_four_points():
    r, q = [0.1, 0.25, 0.5, 1.0, 2.0], [28.0, 31.0, 34.0, 37.5, 41.0]
    _assert_refused(bd_rate(r, q, r[:3], q[:3], test_name="tiny"), "fewer than 4 rate points",
                    "'tiny'")
    _assert_refused(bd_quality(r[:3], q[:3], r, q, anchor_name="a3"), "fewer than 4 rate points",
                    "'a3'")


def test_curves_that_do_not_overlap():
    ar, aq = _log_linear([0.1, 0.2, 0.4, 0.8])
    tr, tq = _log_linear([0.1, 0.2, 0.4, 0.8], offset=60.0)  # far above in quality
    res = bd_rate(ar, aq, tr, tq, anchor_name="jpeg", test_name="mine")
    _assert_refused(res, "do not overlap in quality", "'jpeg'", "'mine'")
    assert res.overlap_fraction == 0.0
    # in rate: test only at much higher bpp
    tr2, tq2 = _log_linear([10, 20, 40, 80])
    _assert_refused(bd_quality(ar, aq, tr2, tq2), "do not overlap in bpp")


def test_non_monotonic_curve_names_the_codec():
    r, q = [0.1, 0.25, 0.5, 1.0, 2.0], [28.0, 31.0, 34.0, 37.5, 41.0]
    bad_q = [28.0, 31.0, 30.5, 37.5, 41.0]  # quality drops at 0.5 bpp
    res = bd_rate(r, q, r, bad_q, anchor_name="bpg", test_name="weird-codec")
    _assert_refused(res, "not monotonic", "'weird-codec'", "rate must increase")
    _assert_refused(bd_quality(r, bad_q, r, q, anchor_name="bpg"), "not monotonic", "'bpg'")
    # two points at one rate are not a function either
    _assert_refused(bd_rate(r, q, [0.1, 0.25, 0.25, 1.0, 2.0], q), "not monotonic")


def test_bad_values_are_refused():
    r, q = [0.1, 0.25, 0.5, 1.0, 2.0], [28.0, 31.0, 34.0, 37.5, 41.0]
    _assert_refused(bd_rate(r, q, r, [28.0, math.nan, 34.0, 37.5, 41.0]), "non-finite")
    _assert_refused(bd_rate(r, q, [0.0, 0.25, 0.5, 1.0, 2.0], q), "rate must be positive")
    _assert_refused(bd_rate(r, q, r[:4], q), "4 rate values but 5 quality values")


def test_unknown_method_is_a_config_error():
    r, q = [0.1, 0.25, 0.5, 1.0], [28.0, 31.0, 34.0, 37.5]
    with pytest.raises(RdflowError, match=r"bd_rate.method.*pchip"):
        bd_rate(r, q, r, q, method="linear")


# --- monotone fit for mAP --------------------------------------------------------------------

def test_monotone_fit_keeps_the_measured_pareto_envelope():
    rate = [0.8, 0.1, 0.2, 0.4, 0.6, 1.6, 0.4, math.nan]
    m = [0.50, 0.20, 0.31, 0.45, 0.43, 0.52, 0.40, 0.9]
    r, q = monotone_fit(rate, m)
    assert r.tolist() == [0.1, 0.2, 0.4, 0.8, 1.6]
    assert q.tolist() == [0.20, 0.31, 0.45, 0.50, 0.52]
    assert np.all(np.diff(r) > 0) and np.all(np.diff(q) > 0)
    pairs = set(zip(rate, m))
    assert all((a, b) in pairs for a, b in zip(r, q))  # nothing invented or averaged
    # already monotone: unchanged
    r2, q2 = monotone_fit([0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4])
    assert r2.tolist() == [0.1, 0.2, 0.3, 0.4] and q2.tolist() == [0.1, 0.2, 0.3, 0.4]
    # a plateau keeps its cheapest point
    r3, q3 = monotone_fit([0.1, 0.2, 0.3, 0.4], [0.1, 0.3, 0.3, 0.4])
    assert r3.tolist() == [0.1, 0.2, 0.4]


def test_map_curve_with_a_dip():
    anchor_r, anchor_m = [0.1, 0.2, 0.4, 0.8, 1.6], [0.20, 0.30, 0.40, 0.45, 0.48]
    test_r = [0.09, 0.18, 0.27, 0.36, 0.72, 1.44]
    test_m = [0.20, 0.30, 0.33, 0.32, 0.45, 0.48]  # noisy dip at 0.36 bpp
    _assert_refused(bd_rate(anchor_r, anchor_m, test_r, test_m), "not monotonic")
    res = bd_rate(anchor_r, anchor_m, test_r, test_m, monotone=True)
    assert res.valid and res.n_test == 5 and res.value < 0
    # a dip that leaves too few points is refused, and says so
    few = bd_rate(anchor_r, anchor_m, [0.1, 0.2, 0.3, 0.4], [0.3, 0.2, 0.25, 0.5], monotone=True)
    _assert_refused(few, "fewer than 4 rate points", "after monotone fit (4 measured)")
    assert is_task_metric("map50_95") and is_task_metric("map50") and not is_task_metric("vmaf")


# --- table ---------------------------------------------------------------------------------

def _summary():
    rows = []
    base_r = [0.1, 0.2, 0.4, 0.8, 1.6]
    for ds in ("kodak", "clic"):
        for codec, scale in (("jpeg", 1.0), ("better", 0.9), ("tiny", 1.0)):
            n = 3 if codec == "tiny" else 5
            for i, r in enumerate(base_r[:n]):
                psnr = 6 * math.log10(r) + 35
                mp = [0.2, 0.3, 0.4, 0.38, 0.5][i]  # non-monotone mAP
                rows.append(dict(dataset=ds, codec=codec, quality=i + 1, bpp=scale * r,
                                 psnr_rgb=psnr, map50_95=mp, ms_ssim_db=2 * psnr / 3))
    return pd.DataFrame(rows)


def test_bd_table():
    t = bd_table(_summary(), "jpeg", ["psnr_rgb", "map50_95"])
    assert list(t.columns) == ["dataset"] + TABLE_COLUMNS
    assert len(t) == 2 * 2 * 2  # datasets x non-anchor codecs x metrics
    good = t[(t.codec == "better") & (t.metric == "psnr_rgb")]
    assert good.bd_rate_pct.tolist() == pytest.approx([-10.0, -10.0], abs=1e-9)
    assert good.reason.isna().all() and (good.n_points == 5).all()
    assert (good.overlap_low.round(6) == round(6 * math.log10(0.1) + 35, 6)).all()
    mp = t[(t.codec == "better") & (t.metric == "map50_95")]
    assert mp.monotone_fit.all() and mp.reason.isna().all()
    assert (mp.n_points == 4).all() and mp.bd_rate_pct.tolist() == pytest.approx([-10.0] * 2)
    tiny = t[t.codec == "tiny"]
    assert tiny.bd_rate_pct.isna().all() and tiny.bd_quality.isna().all()
    assert tiny.reason.str.contains("fewer than 4 rate points").all()
    # metrics=None picks the known metric columns present
    assert set(bd_table(_summary(), "jpeg").metric) == {"psnr_rgb", "ms_ssim_db", "map50_95"}


def test_bd_table_anchor_missing_in_one_group():
    df = _summary()
    df = df[~((df.dataset == "clic") & (df.codec == "jpeg"))]
    t = bd_table(df, "jpeg", ["psnr_rgb"])
    clic = t[t.dataset == "clic"]
    assert clic.bd_rate_pct.isna().all()
    assert clic.reason.str.contains("anchor 'jpeg': no psnr_rgb values").all()
    assert t[(t.dataset == "kodak") & (t.codec == "better")].bd_rate_pct.notna().all()


def test_bd_table_errors():
    df = _summary()
    with pytest.raises(RdflowError, match=r"bd_rate\.anchor.*'bpg'.*jpeg, better, tiny"):
        bd_table(df, "bpg", ["psnr_rgb"])
    with pytest.raises(RdflowError, match=r"bd_rate\.metrics names vmaf"):
        bd_table(df, "jpeg", ["vmaf"])
    with pytest.raises(RdflowError, match="several rows for codec"):
        bd_table(df, "jpeg", ["psnr_rgb"], group_cols=())  # two datasets mixed
    with pytest.raises(RdflowError, match="bd_rate.method"):
        bd_table(df, "jpeg", ["psnr_rgb"], method="spline")
    with pytest.raises(RdflowError, match="no 'bpp' column"):
        bd_table(df.drop(columns="bpp"), "jpeg", ["psnr_rgb"])
