"""Stage aggregate: the per-item JSON rows of a dataset or sequence as one tidy CSV, its summary
per (codec, quality), and the rate-distortion figures of each summary.

Every metric column comes from the registry (:data:`rdflow.metrics.METRICS`): a registered
metric that the rows carry is ordered, averaged and plotted like PSNR and MS-SSIM. Tables:
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
    does).

    PSNR is averaged per item (the convention of CompressAI's eval_model and of most papers).
    """
    group = [g for g in group if g in df.columns]
    cols = [c for c in mean_columns() if c in df.columns]
    agg = df.groupby(group, sort=True)[cols].mean(numeric_only=True)
    agg["n_items"] = df.groupby(group, sort=True).size()
    for m in M.METRICS.values():
        if m.db_name and m.name in agg:
            agg[m.db_name] = [_db_of_mean(m, v) for v in agg[m.name]]
    keep = [c for c in DESCRIBE if c in df.columns]
    if keep:
        first = df.groupby(group, sort=True)[keep].first()
        agg = agg.join(first)
    return agg.reset_index()


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
