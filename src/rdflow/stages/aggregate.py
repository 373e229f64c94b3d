"""Stage aggregate: the per-item JSON rows of a dataset or sequence as one tidy CSV, its summary
per (codec, quality), and the rate-distortion figures of each summary.

Every metric column comes from the registry (:data:`rdflow.metrics.METRICS`): a registered
metric that the rows carry is ordered, averaged and plotted like PSNR and MS-SSIM. Summaries
also give the PSNRs of the MSE pooled over items (``psnr_*_pooled``, :func:`pooled`) and the
spread of every metric and of bpp over items (``<column>_std``, ``<column>_ci95``,
:func:`spreads`), which the RD figures draw as error bars. Tables:
``results/image_rd_<dataset>.csv`` / ``_summary.csv`` and ``results/video_rd_<sequence>...``;
figures ``results/figures/{image,video}_rd_<name>_<metric>.{png,pdf}``. Rules:
workflow/rules/aggregate.smk.
"""

from __future__ import annotations

import math
from pathlib import Path

from .. import RdflowError, metrics as M, paths
from ..io import read_json, write_csv
from ..rows import DEFAULT_METRICS

SECTION = None
#: the keys of a row, in this order
KEYS = ("dataset", "sequence", "codec", "quality", "image", "frame")
#: the columns that follow the metrics (rate first, then time)
TIMES = ("enc_s", "dec_s")
#: metric columns that the video RD figures add to the study's metrics: the luma PSNR, the
#: quality video papers report
VIDEO_FIGURES = ("psnr_y",)
#: what is kept of each (codec, quality) besides the means: what ran
DESCRIBE = ("kind", "weights", "architecture", "device", "encoder")


def metric_columns() -> list[str]:
    """Every metric column (its own and its dB form), those in dB first (the PSNRs), each group
    in registration order: psnr_rgb, psnr_y, psnr_u, psnr_v, ms_ssim, ms_ssim_db, vmaf, ..."""
    ms = list(M.METRICS.values())
    out = []
    for m in [m for m in ms if m.unit == "dB"] + [m for m in ms if m.unit != "dB"]:
        out += [m.name] + ([m.db_name] if m.db_name else [])
    return out


def leading() -> list[str]:
    """Columns a researcher expects first, in this order; the rest follow alphabetically."""
    return list(KEYS) + ["bpp"] + metric_columns() + list(TIMES)


def mean_columns() -> list[str]:
    """Numeric columns averaged per (codec, quality)."""
    return ["bpp"] + metric_columns() + list(TIMES) + ["bytes"]


# -- the stage's config and targets ---------------------------------------------------------------
def study_metrics(config: dict) -> list[str]:
    """The ``metrics`` a coding job computes (the rows' own default when the key is absent)."""
    return list(config.get("metrics", DEFAULT_METRICS))


def check(config: dict) -> None:
    """Every name of ``metrics`` is a registered metric that a coding job computes."""
    known = M.coding_metrics()
    bad = [m for m in study_metrics(config) if m not in known]
    if bad:
        raise RdflowError(f"metrics: unknown metric(s) {', '.join(map(str, bad))}; known: "
                          f"{', '.join(known)}")


def _ordered(columns) -> list[str]:
    order = {c: i for i, c in enumerate(metric_columns())}
    return sorted(dict.fromkeys(columns), key=lambda c: order.get(c, len(order)))


def figure_metrics(config: dict) -> list[str]:
    """The metric columns of an image dataset's RD figures: the curve column (dB form) of each
    of the study's coding metrics."""
    names = set(study_metrics(config))
    return _ordered(m.curve_column for m in M.METRICS.values() if m.name in names and m.fn)


def video_figure_metrics(config: dict) -> list[str]:
    """The metric columns of a video sequence's RD figures: the image ones and the luma PSNR."""
    return _ordered(figure_metrics(config) + [M.get(c).curve_column for c in VIDEO_FIGURES])


def image_targets(config: dict) -> list[str]:
    out = []
    for dataset in sorted(config.get("datasets") or {}):
        out += [paths.IMAGE_RD.format(dataset=dataset), paths.IMAGE_RD_SUMMARY.format(dataset=dataset)]
        for y in figure_metrics(config):
            out += paths.figure_files(paths.IMAGE_RD_FIGURE, dataset=dataset, metric=y)
    return out


def video_targets(config: dict) -> list[str]:
    from ..sources.sequences import sequences

    out = []
    for seq in sorted(sequences(config)):
        out += [paths.VIDEO_RD.format(sequence=seq), paths.VIDEO_RD_SUMMARY.format(sequence=seq)]
        for y in video_figure_metrics(config):
            out += paths.figure_files(paths.VIDEO_RD_FIGURE, sequence=seq, metric=y)
    return out


def targets(config: dict) -> list[str]:
    return image_targets(config) + video_targets(config)


# -- tables ---------------------------------------------------------------------------------------
def order_columns(df):
    lead = [c for c in leading() if c in df.columns]
    return df[lead + sorted(c for c in df.columns if c not in lead)]


def gather(paths_: list[str | Path]):
    """One row per JSON file (a file holding a JSON list gives one row per element: the
    per-frame rows of a sequence codec); sorted by codec, quality, item."""
    import pandas as pd

    from .compress import missing_item

    missing = [p for p in paths_ if not Path(p).is_file()]
    if missing:
        raise missing_item(missing[0])
    rows = [r for p in paths_ for r in (lambda x: x if isinstance(x, list) else [x])(read_json(p))]
    if not rows:
        raise ValueError("no result rows to gather")
    df = pd.DataFrame(rows)
    keys = [c for c in KEYS if c in df]
    return order_columns(df.sort_values(keys, kind="stable").reset_index(drop=True))


def _db_of_mean(m, v) -> float:
    """A metric's dB form of its mean value (NaN where it is not finite)."""
    if v != v:
        return math.nan
    db = m.db(v)
    return db if math.isfinite(db) else math.nan


def summarise(df, group=("dataset", "codec", "quality")):
    """Per (dataset|sequence, codec, quality): means of the metrics, item count, and for a metric
    with a dB form the dB of the mean (MS-SSIM: mean of ms_ssim first, then dB, as CompressAI
    does); the PSNRs of the MSE pooled over the items (:func:`pooled`); the spread of every
    metric and of bpp over the items (:func:`spreads`: ``<column>_std``, ``<column>_ci95``);
    ``n_lossy_sources`` when the rows say whether their source file was lossy-coded.

    PSNR is averaged per item (the convention of CompressAI's eval_model and of most papers).
    """
    group = [g for g in group if g in df.columns]
    cols = [c for c in mean_columns() if c in df.columns]
    agg = df.groupby(group, sort=True)[cols].mean(numeric_only=True)
    agg["n_items"] = df.groupby(group, sort=True).size()
    if "source_lossy" in df.columns:
        agg["n_lossy_sources"] = df["source_lossy"].eq(True).groupby(
            [df[g] for g in group], sort=True).sum().astype(int)
    for m in M.METRICS.values():
        if m.db_name and m.name in agg:
            agg[m.db_name] = [_db_of_mean(m, v) for v in agg[m.name]]
    agg = agg.join(pooled(df, group)).join(spreads(df, group))
    keep = [c for c in DESCRIBE if c in df.columns]
    if keep:
        first = df.groupby(group, sort=True)[keep].first()
        agg = agg.join(first)
    lead = [c for c in ["bpp"] + metric_columns() + list(TIMES) + ["bytes", "n_items",
                                                                   "n_lossy_sources"] if c in agg]
    return agg[lead + [c for c in agg.columns if c not in lead]].reset_index()


# -- spreads and pooled PSNRs ---------------------------------------------------------------------
#: the PSNRs a summary computes from the MSE pooled over its items: (column, MSE column)
POOLED = (("psnr_rgb_pooled", "mse_rgb"), ("psnr_y_pooled", "mse_y"), ("psnr_u_pooled", "mse_u"),
          ("psnr_v_pooled", "mse_v"))
#: samples of each 4:2:0 plane per luma sample (what psnr_yuv_mse_pooled weighs the MSEs by)
PLANE_SAMPLES = {"mse_y": 1.0, "mse_u": 0.25, "mse_v": 0.25}


def spread_columns() -> list[str]:
    """The columns whose spread over items a summary gives: bpp and every metric column."""
    return ["bpp"] + metric_columns()


def ci95(std: float, n: int) -> float:
    """Half-width of the 95 % confidence interval of the mean of ``n`` values of sample standard
    deviation ``std`` (Student t, n - 1 degrees of freedom): ``t.ppf(0.975, n - 1) std / √n``;
    NaN for fewer than two values or a non-finite ``std``."""
    if n < 2 or not math.isfinite(std):
        return math.nan
    from ..runtime import torch_settled

    with torch_settled():
        from scipy.stats import t

        return float(t.ppf(0.975, n - 1) * std / math.sqrt(n))


def spreads(df, group):
    """Per group, for each column of :func:`spread_columns` the rows carry: ``<column>_std``
    (sample standard deviation over the items, n - 1) and ``<column>_ci95`` (:func:`ci95`), over
    the items where the column is not NaN; NaN when a value is infinite (a lossless item).
    For ``ms_ssim_db`` the spread is that of the items' own dB values (the summary's value is
    the dB of the mean MS-SSIM)."""
    import numpy as np
    import pandas as pd

    cols = [c for c in spread_columns() if c in df.columns]
    num = df[cols].apply(pd.to_numeric, errors="coerce")
    by = [df[g] for g in group]
    n = num.groupby(by, sort=True).count()
    inf = np.isinf(num).groupby(by, sort=True).any()
    std = num.replace([np.inf, -np.inf], np.nan).groupby(by, sort=True).std(ddof=1).mask(inf)
    out = {}
    for c in cols:
        out[f"{c}_std"] = std[c]
        out[f"{c}_ci95"] = pd.Series([ci95(v, k) for v, k in zip(std[c], n[c])], index=std.index)
    return pd.DataFrame(out, index=std.index)


def pooled(df, group):
    """Per group, the PSNRs of the MSE pooled over its items (frames of a sequence, images of a
    dataset): each item's MSE weighted by its samples (``width`` x ``height``; equal weights
    when the rows lack them), :func:`rdflow.metrics.pooled_psnr`. Columns (those whose MSEs the
    rows carry): ``psnr_rgb_pooled``, ``psnr_{y,u,v}_pooled`` (what ffmpeg's psnr filter prints
    as the ``y:``/``u:``/``v:`` averages), ``psnr_yuv_pooled`` (6:1:1 of the three) and
    ``psnr_yuv_mse_pooled`` (the MSE pooled over every Y, U and V sample: 4:1:1 for 4:2:0,
    ffmpeg's ``average:``). NaN where an item lacks the MSE."""
    import pandas as pd

    from ..metrics.yuv import weighted_psnr_yuv

    have = [(c, m) for c, m in POOLED if m in df.columns]
    out = []
    for key, g in df.groupby(group, sort=True):
        w = (pd.to_numeric(g["width"], errors="coerce") * pd.to_numeric(g["height"], errors="coerce")
             if {"width", "height"} <= set(g.columns) else None)
        row = dict(zip(group, key))
        row.update({c: M.pooled_psnr(pd.to_numeric(g[m], errors="coerce"), w) for c, m in have})
        if all(m in g for m in PLANE_SAMPLES):
            row["psnr_yuv_pooled"] = weighted_psnr_yuv(*(row[f"psnr_{p}_pooled"] for p in "yuv"))
            all_mse = sum(pd.to_numeric(g[m], errors="coerce") * k for m, k in PLANE_SAMPLES.items())
            k = sum(PLANE_SAMPLES.values())
            row["psnr_yuv_mse_pooled"] = M.pooled_psnr(all_mse / k, None if w is None else w * k)
        out.append(row)
    return pd.DataFrame(out, columns=None if out else list(group)).set_index(list(group))


def write_tables(paths_, csv_path, summary_path, group=("dataset", "codec", "quality")):
    """Rules aggregate_image / aggregate_video: the tidy CSV and its summary."""
    df = gather(paths_)
    write_csv(csv_path, df)
    write_csv(summary_path, summarise(df, group))
    return df


# -- figures --------------------------------------------------------------------------------------
def _reference(config: dict, dataset: str):
    """CompressAI's published curves for an image dataset, when configured (else None)."""
    ref = config.get("reference") or {}
    on = ref.get("datasets")  # null: the kodak datasets (the published curves are Kodak's)
    kodak = config["datasets"][dataset]["kind"] == "kodak" if on is None else dataset in on
    if not (ref.get("compressai_results") and ref.get("curves") and kodak):
        return None
    from ..reference import load_reference

    location = ref["compressai_results"].rstrip("/") + "/image/kodak"
    return load_reference(location, ref["curves"], paths.REFERENCE_CACHE)


def plot_image_rd(config: dict, dataset: str, metric: str, summary_csv, paths_) -> None:
    """Rule plot_image_rd: RD figure of an image dataset, with CompressAI's published curves
    when configured."""
    import pandas as pd

    from ..plots import axis_label, rd_curves, study_codecs, study_info

    summary = pd.read_csv(summary_csv)
    title = f"{dataset}: {axis_label(metric)} vs rate"
    rd_curves(summary, metric, paths_, title=title, reference=_reference(config, dataset),
              codecs=study_codecs(config), study=study_info(config, summary))


def plot_video_rd(config: dict, sequence: str, metric: str, summary_csv, paths_) -> None:
    """Rule plot_video_rd: RD figure of a video sequence (per-frame and sequence codecs)."""
    import pandas as pd

    from ..plots import axis_label, rd_curves, study_codecs

    summary = pd.read_csv(summary_csv)
    title = f"{sequence}: {axis_label(metric)} vs rate"
    rd_curves(summary, metric, paths_, title=title, codecs=study_codecs(config))
