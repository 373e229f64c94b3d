"""Bjøntegaard-delta rate and quality, with the checks that keep them honest.

The integrals are computed by the ``bjontegaard`` package (log10 rate, piecewise-cubic
interpolation, ``method`` in ``METHODS``). This module adds what a comparison table needs:

* a curve that cannot give a meaningful number is refused, never silently integrated: the result
  carries ``value = NaN`` and a ``reason`` (fewer than ``MIN_POINTS`` points, a curve whose
  quality does not rise with rate, curves that do not overlap, non-finite or non-positive values);
* the range actually integrated (``overlap_low``/``overlap_high``) is reported with every value,
  because a BD number means nothing without it;
* task-accuracy curves (mAP) are made monotone first with :func:`monotone_fit`, since accuracy
  measured on a few images is noisy and often dips at a higher rate.

Conventions. BD-rate (:func:`bd_rate`) is the mean relative rate difference of *test* against
*anchor* at equal quality, in percent (negative = test needs fewer bits), integrated over the
quality interval both curves cover. BD-quality (:func:`bd_quality`, "BD-PSNR" for PSNR) is the
mean quality difference at equal log-rate, in the metric's own unit, integrated over the
rate interval both curves cover.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from .. import RdflowError

METHODS = ("pchip", "akima", "cubic")
MIN_POINTS = 4
#: metric columns looked for by :func:`bd_table` when ``metrics`` is not given
def known_metrics() -> list[str]:
    """The metric columns a BD table can compare: every registered metric's curve column."""
    from . import curve_columns

    return curve_columns()


def is_task_metric(metric: str) -> bool:
    """Metrics whose curves are made monotone before BD computation (detection accuracy)."""
    from . import is_monotone

    return is_monotone(metric.split("@", 1)[0])  # map50_95@<ground truth>: per label set


@dataclass(frozen=True)
class BDResult:
    """One Bjøntegaard delta.

    ``value``: percent for :func:`bd_rate`, quality units for :func:`bd_quality`; NaN when
    refused, and then ``reason`` says why (``reason`` is None for a valid value).
    ``overlap_low``/``overlap_high``: the interval integrated over, on ``axis`` ("quality" for
    BD-rate, "bpp" for BD-quality, in rate units, not log). ``overlap_fraction``: its length
    over the length of the union of both curves' ranges (on the log axis for rate).
    ``n_anchor``/``n_test``: points used (after :func:`monotone_fit` when it was applied).
    """

    value: float
    overlap_low: float
    overlap_high: float
    n_anchor: int
    n_test: int
    reason: str | None = None
    axis: str = "quality"
    method: str = "pchip"
    overlap_fraction: float = math.nan

    @property
    def valid(self) -> bool:
        return self.reason is None

    def as_dict(self) -> dict:
        return asdict(self)


def monotone_fit(rate: Sequence[float], quality: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The monotone (Pareto) envelope of a rate-quality curve.

    Points are sorted by rate; a point is kept only if its quality is strictly higher than that
    of every point at a lower (or equal) rate. Equivalently: take the running maximum of quality
    along increasing rate (a cumulative-max isotonic fit), then keep the lowest-rate point of
    each flat step. A dropped point is *dominated*: another operating point reaches at least its
    accuracy with no more bits, so an encoder would never choose it. Values are never averaged
    or invented; every returned pair is a measured pair.

    Returns ``(rate, quality)`` arrays sorted by rate, both strictly increasing. NaN pairs are
    dropped.
    """
    r = np.asarray(rate, dtype=float)
    q = np.asarray(quality, dtype=float)
    if r.shape != q.shape:
        raise ValueError(f"rate has {r.size} values but quality has {q.size}")
    ok = np.isfinite(r) & np.isfinite(q)
    r, q = r[ok], q[ok]
    order = np.lexsort((-q, r))  # by rate, then best quality first among equal rates
    r, q = r[order], q[order]
    keep = []
    best = -np.inf
    for i in range(r.size):
        if q[i] > best:
            keep.append(i)
            best = q[i]
    keep = np.asarray(keep, dtype=int)
    return r[keep], q[keep]


def _check_curve(rate, quality, who: str, min_points: int, monotone: bool):
    """Sorted (rate, quality) arrays, or a reason string."""
    r = np.asarray(rate, dtype=float).ravel()
    q = np.asarray(quality, dtype=float).ravel()
    if r.size != q.size:
        return f"{who}: {r.size} rate values but {q.size} quality values"
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(q))):
        return f"{who}: non-finite rate or quality values (NaN or inf); drop or fix those points"
    if np.any(r <= 0):
        return f"{who}: rate must be positive (BD integrates log rate), got {r.min():g}"
    n_raw = r.size
    if monotone:
        r, q = monotone_fit(r, q)
    if r.size < min_points:
        extra = f" after monotone fit ({n_raw} measured)" if monotone and r.size != n_raw else ""
        return (f"fewer than {min_points} rate points: {who} has {r.size}{extra}; "
                f"add quality levels to its config")
    order = np.argsort(r, kind="stable")
    r, q = r[order], q[order]
    dr, dq = np.diff(r), np.diff(q)
    bad = np.flatnonzero((dr <= 0) | (dq <= 0))
    if bad.size:
        i = int(bad[0])
        return (f"curve of {who} is not monotonic: quality {q[i]:.6g} at bpp {r[i]:.6g} then "
                f"{q[i + 1]:.6g} at bpp {r[i + 1]:.6g}; rate must increase strictly with quality")
    return r, q


def _bd(kind: str, anchor_rate, anchor_quality, test_rate, test_quality, method: str,
        anchor_name: str, test_name: str, monotone: bool, min_points: int,
        min_overlap: float) -> BDResult:
    if method not in METHODS:
        raise RdflowError(f"bd_rate.method is {method!r}; choose one of {', '.join(METHODS)}")
    axis = "quality" if kind == "rate" else "bpp"
    n_a = int(np.size(anchor_rate))
    n_t = int(np.size(test_rate))

    def refuse(reason, n_anchor=n_a, n_test=n_t, lo=math.nan, hi=math.nan, frac=math.nan):
        return BDResult(math.nan, lo, hi, n_anchor, n_test, reason, axis, method, frac)

    a = _check_curve(anchor_rate, anchor_quality, f"anchor {anchor_name!r}", min_points, monotone)
    if isinstance(a, str):
        return refuse(a)
    t = _check_curve(test_rate, test_quality, f"codec {test_name!r}", min_points, monotone)
    if isinstance(t, str):
        return refuse(t, n_anchor=a[0].size)
    (ra, qa), (rt, qt) = a, t
    n_a, n_t = ra.size, rt.size

    # The interval integrated over: quality for BD-rate, log rate for BD-quality.
    xa, xt = (qa, qt) if kind == "rate" else (np.log10(ra), np.log10(rt))
    lo, hi = max(xa.min(), xt.min()), min(xa.max(), xt.max())
    union = max(xa.max(), xt.max()) - min(xa.min(), xt.min())
    frac = max(hi - lo, 0.0) / union if union > 0 else 0.0
    unit = (lambda v: v) if kind == "rate" else (lambda v: 10.0 ** v)
    if hi <= lo:
        return refuse(
            f"curves do not overlap in {axis}: anchor {anchor_name!r} covers "
            f"[{unit(xa.min()):.6g}, {unit(xa.max()):.6g}], codec {test_name!r} covers "
            f"[{unit(xt.min()):.6g}, {unit(xt.max()):.6g}]", frac=0.0)
    if frac < min_overlap:
        return refuse(
            f"curves overlap on only {100 * frac:.1f}% of their {axis} range "
            f"(bd_rate.min_overlap is {100 * min_overlap:.0f}%)",
            lo=unit(lo), hi=unit(hi), frac=frac)

    from ..runtime import torch_settled

    with torch_settled(), warnings.catch_warnings():  # bjontegaard runs on scipy
        import bjontegaard

        fn = bjontegaard.bd_rate if kind == "rate" else bjontegaard.bd_psnr
        # overlap is checked and reported above; the package would only repeat it as a warning
        warnings.simplefilter("ignore")
        value = float(fn(ra, qa, rt, qt, method=method, require_matching_points=False,
                         min_overlap=0.0))
    if not math.isfinite(value):
        return refuse(f"the {method} integral is not finite", lo=unit(lo), hi=unit(hi), frac=frac)
    return BDResult(value, float(unit(lo)), float(unit(hi)), n_a, n_t, None, axis, method, frac)


def bd_rate(anchor_rate, anchor_quality, test_rate, test_quality, method: str = "pchip", *,
            anchor_name: str = "anchor", test_name: str = "test", monotone: bool = False,
            min_points: int = MIN_POINTS, min_overlap: float = 0.0) -> BDResult:
    """BD-rate of the test curve against the anchor, in percent (negative = fewer bits).

    Point counts may differ. ``monotone=True`` applies :func:`monotone_fit` to both curves first
    (use it for mAP). ``min_overlap`` (a fraction of the union of the quality ranges) refuses
    curves that overlap less; by default only curves that do not overlap at all are refused.
    Never raises for bad curves: returns a NaN value with a ``reason`` instead. An unknown
    ``method`` raises :class:`rdflow.RdflowError` (it is a configuration error).
    """
    return _bd("rate", anchor_rate, anchor_quality, test_rate, test_quality, method,
               anchor_name, test_name, monotone, min_points, min_overlap)


def bd_quality(anchor_rate, anchor_quality, test_rate, test_quality, method: str = "pchip", *,
               anchor_name: str = "anchor", test_name: str = "test", monotone: bool = False,
               min_points: int = MIN_POINTS, min_overlap: float = 0.0) -> BDResult:
    """BD-quality (BD-PSNR for PSNR): mean quality gain of test over anchor at equal log rate,
    in the metric's unit, integrated over the common bpp range (reported in ``overlap_*``)."""
    return _bd("quality", anchor_rate, anchor_quality, test_rate, test_quality, method,
               anchor_name, test_name, monotone, min_points, min_overlap)


TABLE_COLUMNS = ["codec", "anchor", "metric", "bd_rate_pct", "bd_quality", "overlap_low",
                 "overlap_high", "bd_quality_bpp_low", "bd_quality_bpp_high", "n_points",
                 "n_anchor", "method", "monotone_fit", "reason"]
_NUMERIC = ["bd_rate_pct", "bd_quality", "overlap_low", "overlap_high", "bd_quality_bpp_low",
            "bd_quality_bpp_high"]


def bd_table(summary_df, anchor: str, metrics: Sequence[str] | None = None,
             group_cols: Sequence[str] = ("dataset",), method: str = "pchip",
             min_overlap: float = 0.0):
    """BD-rate and BD-quality of every codec against ``anchor``, per group and metric.

    ``summary_df``: one row per (group..., codec, quality) with ``bpp`` and metric columns (the
    output of :func:`rdflow.stages.aggregate.summarise`, possibly with reference curves appended).
    ``metrics``: metric columns to compare; None takes those of ``known_metrics()`` present.
    ``group_cols``: columns that split the table (those absent from ``summary_df`` are ignored).
    mAP metrics (:func:`is_task_metric`) are made monotone with :func:`monotone_fit` first.
    Rows with a missing value for a metric are left out of that metric's curve.

    Returns one row per (group..., codec, metric) with the columns ``group_cols`` +
    ``TABLE_COLUMNS``: ``overlap_low``/``overlap_high`` are the quality interval of the
    BD-rate, ``bd_quality_bpp_low``/``_high`` the bpp interval of the BD-quality, ``n_points``
    the test codec's points used, ``reason`` why a value is NaN (None when valid).
    """
    import pandas as pd

    metrics, groups = _check_table(summary_df, anchor, metrics, group_cols, method)
    rows = []
    parts = summary_df.groupby(groups, sort=False, dropna=False) if groups else [((), summary_df)]
    for key, part in parts:
        key = key if isinstance(key, tuple) else (key,)
        head = dict(zip(groups, key))
        anchor_part = part[part["codec"] == anchor]
        for codec in dict.fromkeys(part["codec"]):
            if codec == anchor:
                continue
            test_part = part[part["codec"] == codec]
            for metric in metrics:
                row = dict(head, codec=codec, anchor=anchor, metric=metric, method=method,
                           monotone_fit=is_task_metric(metric))
                row.update(_bd_values(anchor_part[["bpp", metric]].dropna(),
                                      test_part[["bpp", metric]].dropna(), anchor, codec, metric,
                                      method, min_overlap))
                rows.append(row)
    return pd.DataFrame(rows, columns=groups + TABLE_COLUMNS)


def _check_table(summary_df, anchor: str, metrics, group_cols, method: str):
    """The metrics and group columns of a BD table, after refusing an unusable request."""
    if method not in METHODS:
        raise RdflowError(f"bd_rate.method is {method!r}; choose one of {', '.join(METHODS)}")
    for col in ("codec", "bpp"):
        if col not in summary_df.columns:
            raise RdflowError(f"the summary table has no {col!r} column; it has "
                              f"{', '.join(map(str, summary_df.columns))}")
    codecs = list(dict.fromkeys(summary_df["codec"]))
    if anchor not in codecs:
        raise RdflowError(f"bd_rate.anchor is {anchor!r}, which is not a codec of this study; "
                          f"codecs available: {', '.join(map(str, codecs)) or '(none)'}")
    present = [m for m in known_metrics() if m in summary_df.columns]
    metrics = present if metrics is None else list(metrics)
    missing = [m for m in metrics if m not in summary_df.columns]
    if missing:
        raise RdflowError(f"bd_rate.metrics names {', '.join(missing)}, not measured in this study; "
                          f"metric columns available: {', '.join(present) or '(none)'}")
    groups = [g for g in group_cols if g in summary_df.columns]
    if "quality" in summary_df.columns:
        dup = summary_df.duplicated(groups + ["codec", "quality"], keep=False)
        if dup.any():
            first = summary_df[dup].iloc[0]
            raise RdflowError(
                "the summary table has several rows for codec "
                f"{first['codec']!r} quality {first['quality']!r} within one group of "
                f"{groups or 'the whole table'}: pass a summary with one row per "
                "(group, codec, quality), or add the column that tells them apart to group_cols")
    return metrics, groups


def _bd_values(a, t, anchor: str, codec: str, metric: str, method: str, min_overlap: float) -> dict:
    """The numeric columns of one (codec, metric) row from the anchor's and the codec's points."""
    if a.empty or t.empty:
        who = [w for w, d in ((f"anchor {anchor!r}", a), (f"codec {codec!r}", t)) if d.empty]
        return dict(dict.fromkeys(_NUMERIC, math.nan), n_points=int(t.shape[0]),
                    n_anchor=int(a.shape[0]), reason=f"{' and '.join(who)}: no {metric} values in this group")
    kw = dict(method=method, anchor_name=anchor, test_name=codec, monotone=is_task_metric(metric),
              min_overlap=min_overlap)
    r = bd_rate(a["bpp"], a[metric], t["bpp"], t[metric], **kw)
    q = bd_quality(a["bpp"], a[metric], t["bpp"], t[metric], **kw)
    if r.reason == q.reason:
        reasons = [r.reason] if r.reason else []
    else:  # say which of the two was refused
        reasons = [f"{lab}: {x}" for lab, x in (("BD-rate", r.reason), ("BD-quality", q.reason)) if x]
    return dict(bd_rate_pct=r.value, bd_quality=q.value, overlap_low=r.overlap_low,
                overlap_high=r.overlap_high, bd_quality_bpp_low=q.overlap_low,
                bd_quality_bpp_high=q.overlap_high, n_points=r.n_test, n_anchor=r.n_anchor,
                reason="; ".join(reasons) or None)
