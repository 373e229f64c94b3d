"""Metrics: one registered :class:`Metric` per column a codec researcher reads.

A metric owns everything the rest of rdflow asks about it: its function (for the metrics a
coding job computes), the axis label and unit, whether higher is better, the domain it is
computed in, its dB form, the stage that computes it and whether BD-rate curves are made
monotone first. Summaries, BD-rate, plots, the ablation and the report iterate :data:`METRICS`;
adding a metric is one :func:`register` call (and, for a coding-job metric, naming it in the
study's ``metrics`` list).

Library modules below this package: :mod:`.quality` (PSNR, MS-SSIM), :mod:`.yuv` (colour
conversion, PSNR-Y/U/V), :mod:`.bdrate` (Bjøntegaard deltas) and :mod:`.vmaf` (libvmaf).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .quality import MS_SSIM_MIN_SIDE, ms_ssim, ms_ssim_db, mse, psnr_from_mse, psnr_rgb  # noqa: F401
from .quality import pooled_mse, pooled_psnr  # noqa: F401


@dataclass(frozen=True)
class Metric:
    """One metric column.

    ``fn(ref, rec) -> float`` on 8-bit RGB arrays for metrics a coding job computes (None for
    those another stage computes: ``stage`` names it). ``db``: a function of the value giving
    its dB form, stored in the column ``db_name`` (MS-SSIM → ``ms_ssim_db``). ``domain``:
    ``rgb``, ``yuv`` (from the 4:2:0 planes of a video frame) or ``task`` (machine vision).
    ``monotone``: BD-rate fits a monotone curve first (detection accuracy is not monotone in
    rate point by point). ``device``: where ``fn`` runs.
    """

    name: str
    label: str
    unit: str = ""
    higher_is_better: bool = True
    domain: str = "rgb"
    fn: Callable[[np.ndarray, np.ndarray], float] | None = None
    db: Callable[[float], float] | None = None
    db_name: str | None = None
    db_label: str | None = None
    stage: str | None = None
    monotone: bool = False
    device: str = "cpu"

    @property
    def curve_column(self) -> str:
        """The column RD curves and BD-rates use: the dB form when there is one."""
        return self.db_name or self.name

    @property
    def curve_label(self) -> str:
        return self.db_label if self.db_name else self.label


METRICS: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    """Add (or replace) a metric; returns it."""
    METRICS[metric.name] = metric
    return metric


def get(name: str) -> Metric:
    """The metric of column ``name`` (its own or its dB form's)."""
    if name in METRICS:
        return METRICS[name]
    for m in METRICS.values():
        if m.db_name == name:
            return m
    raise KeyError(f"unknown metric {name!r}; known: {', '.join(sorted(known_columns()))}")


def coding_metrics() -> list[str]:
    """Metrics a coding job can compute from the RGB reconstruction (the ``metrics`` list)."""
    return [n for n, m in METRICS.items() if m.fn is not None]


def known_columns() -> list[str]:
    """Every column a metric fills: its own and its dB form, in registration order."""
    out = []
    for m in METRICS.values():
        out.append(m.name)
        if m.db_name:
            out.append(m.db_name)
    return out


def curve_columns() -> list[str]:
    """The columns RD curves and BD-rates can use (dB forms replace their raw values)."""
    return [m.curve_column for m in METRICS.values()]


def label(column: str) -> str:
    """Axis label of a metric column (the column itself when it is not a metric's)."""
    try:
        m = get(column)
    except KeyError:
        return column
    return m.db_label if column == m.db_name and m.db_label else m.label


def unit(column: str) -> str:
    try:
        m = get(column)
    except KeyError:
        return ""
    return "dB" if column == m.db_name else m.unit


def is_monotone(column: str) -> bool:
    """Whether BD-rate fits a monotone curve to ``column`` first (task metrics)."""
    try:
        return get(column).monotone
    except KeyError:
        return False


def compute(ref: np.ndarray, rec: np.ndarray, names: list[str]) -> dict[str, float]:
    """The coding-job metrics ``names`` of a reconstruction, and their dB forms."""
    out = {}
    for name in names:
        m = METRICS.get(name)
        if m is None or m.fn is None:
            raise KeyError(f"unknown metric {name!r}; known: {', '.join(coding_metrics())}")
        out[name] = m.fn(ref, rec)
        if m.db_name:
            out[m.db_name] = m.db(out[name]) if not (isinstance(out[name], float) and math.isnan(out[name])) else math.nan
    return out


register(Metric("psnr_rgb", "PSNR-RGB [dB]", "dB", fn=psnr_rgb))
register(Metric("ms_ssim", "MS-SSIM-RGB", "", fn=ms_ssim, db=ms_ssim_db, db_name="ms_ssim_db",
                db_label="MS-SSIM-RGB [dB]"))
register(Metric("psnr_y", "PSNR-Y [dB]", "dB", domain="yuv"))
register(Metric("psnr_u", "PSNR-U [dB]", "dB", domain="yuv"))
register(Metric("psnr_v", "PSNR-V [dB]", "dB", domain="yuv"))
register(Metric("vmaf", "VMAF", "", stage="vmaf"))
register(Metric("map50", "mAP@0.5", "", domain="task", stage="detection", monotone=True))
register(Metric("map50_95", "mAP@0.5:0.95", "", domain="task", stage="detection", monotone=True))
# PSNR-YUV of a frame (6:1:1 of its plane PSNRs, computed by the coding jobs beside psnr_y/u/v),
# and the PSNRs that summaries pool from the rows' MSEs (stage aggregate: one value per codec and
# quality, no per-item value; see rdflow.stages.aggregate.pooled)
register(Metric("psnr_yuv", "PSNR-YUV 6:1:1 [dB]", "dB", domain="yuv"))
register(Metric("psnr_rgb_pooled", "PSNR-RGB, pooled MSE [dB]", "dB", stage="aggregate"))
register(Metric("psnr_y_pooled", "PSNR-Y, pooled MSE [dB]", "dB", domain="yuv", stage="aggregate"))
register(Metric("psnr_u_pooled", "PSNR-U, pooled MSE [dB]", "dB", domain="yuv", stage="aggregate"))
register(Metric("psnr_v_pooled", "PSNR-V, pooled MSE [dB]", "dB", domain="yuv", stage="aggregate"))
register(Metric("psnr_yuv_pooled", "PSNR-YUV 6:1:1, pooled MSE [dB]", "dB", domain="yuv",
                stage="aggregate"))
register(Metric("psnr_yuv_mse_pooled", "PSNR-YUV, MSE pooled over all samples [dB]", "dB",
                domain="yuv", stage="aggregate"))
