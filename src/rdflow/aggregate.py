"""Gather per-item JSON rows into tidy CSVs, and summarise per (codec, quality)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .io import read_json, write_csv

#: columns a researcher expects first, in this order; the rest follow alphabetically
LEADING = ["dataset", "sequence", "codec", "quality", "image", "frame", "bpp", "psnr_rgb",
           "psnr_y", "psnr_u", "psnr_v", "ms_ssim", "ms_ssim_db", "vmaf", "enc_s", "dec_s"]
#: numeric columns averaged per (codec, quality)
MEAN_COLS = ["bpp", "psnr_rgb", "psnr_y", "psnr_u", "psnr_v", "ms_ssim", "ms_ssim_db", "vmaf",
             "enc_s", "dec_s", "bytes"]


def order_columns(df):
    lead = [c for c in LEADING if c in df.columns]
    return df[lead + sorted(c for c in df.columns if c not in lead)]


def gather(paths: list[str | Path]):
    """One row per JSON file (a file holding a JSON list gives one row per element: the
    per-frame rows of a sequence codec); sorted by codec, quality, item."""
    import pandas as pd

    rows = [r for p in paths for r in (lambda x: x if isinstance(x, list) else [x])(read_json(p))]
    if not rows:
        raise ValueError("no result rows to gather")
    df = pd.DataFrame(rows)
    keys = [c for c in ("dataset", "sequence", "codec", "quality", "image", "frame") if c in df]
    return order_columns(df.sort_values(keys, kind="stable").reset_index(drop=True))


def summarise(df, group=("dataset", "codec", "quality")):
    """Per (dataset|sequence, codec, quality): means of the metrics, item count, and the
    MS-SSIM of the mean expressed in dB (mean of ms_ssim first, then dB, as CompressAI does).

    PSNR is averaged per item (the convention of CompressAI's eval_model and of most papers).
    """
    group = [g for g in group if g in df.columns]
    cols = [c for c in MEAN_COLS if c in df.columns]
    agg = df.groupby(group, sort=True)[cols].mean(numeric_only=True)
    agg["n_items"] = df.groupby(group, sort=True).size()
    if "ms_ssim" in agg:
        agg["ms_ssim_db"] = [(-10 * math.log10(1 - v)) if (v == v and v < 1) else np.nan
                             for v in agg["ms_ssim"]]
    keep = [c for c in ("kind", "weights", "architecture", "device", "encoder") if c in df.columns]
    if keep:
        first = df.groupby(group, sort=True)[keep].first()
        agg = agg.join(first)
    return agg.reset_index()


def write_tables(paths, csv_path, summary_path, group=("dataset", "codec", "quality")):
    df = gather(paths)
    write_csv(csv_path, df)
    write_csv(summary_path, summarise(df, group))
    return df
