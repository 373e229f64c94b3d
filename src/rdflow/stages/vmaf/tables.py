"""The VMAF stage's ``vmaf_table`` job: the VMAF table (:data:`rdflow.paths.VMAF_TABLE`, VMAF
rows joined with the RD rows) and the correlation table (:data:`rdflow.paths.VMAF_CORRELATION`:
how PSNR and MS-SSIM track VMAF); see :mod:`rdflow.stages.vmaf`."""

from __future__ import annotations

import logging
import math

from rdflow import RdflowError, metrics, paths

log = logging.getLogger("rdflow.stages.vmaf")

POOLED = "(pooled)"
#: PSNR on the x axis of the correlation per domain (video frames: luma; images: RGB).
PSNR_OF = {"video": "psnr_y", "image": "psnr_rgb"}
#: Largest |psnr| difference (dB) tolerated between ffmpeg's psnr filter and the RD rows.
PSNR_TOLERANCE_DB = 0.01
_MS_SSIM = metrics.get("ms_ssim")
_TABLE_COLS = ["domain", "dataset", "sequence", "codec", "quality", "image", "frame", "bpp",
               "vmaf", "psnr_y", "psnr_u", "psnr_v", "psnr_rgb", "ms_ssim", _MS_SSIM.db_name,
               "vmaf_model", "kind", "weights"]
_RD_COLS = ["bpp", "psnr_rgb", "ms_ssim", "kind", "weights"]
_PLANES = ("psnr_y", "psnr_u", "psnr_v")


def _join(vm, rd, keys, what):
    """Left-join RD rows onto VMAF rows on ``keys``; every VMAF row must find its RD row."""
    cols = [c for c in _RD_COLS + list(_PLANES) if c in rd.columns]
    rd = rd[keys + cols].rename(columns={c: f"rd_{c}" for c in _PLANES})
    out = vm.merge(rd, on=keys, how="left", validate="one_to_one", indicator=True)
    missing = out[out["_merge"] != "both"]
    if len(missing):
        first = missing.iloc[0]
        raise RdflowError(f"{len(missing)} VMAF rows have no row in the {what} RD table, e.g. "
                          + ", ".join(f"{k}={first[k]}" for k in keys)
                          + "; rerun the workflow so both come from the same coding run")
    return out.drop(columns="_merge").reset_index(drop=True)


def _check_psnr(t) -> None:
    """ffmpeg's psnr_y/u/v of the pair VMAF saw must equal the video RD rows' own."""
    import numpy as np

    for c in _PLANES:
        if f"rd_{c}" not in t:
            continue
        a, b = t[c].to_numpy(float), t[f"rd_{c}"].to_numpy(float)
        same = (a == b) | (np.abs(a - b) <= PSNR_TOLERANCE_DB)
        if not same.all():
            r = t[~same].iloc[0]
            raise RdflowError(
                f"{c} of ffmpeg's psnr filter ({r[c]:.4f} dB) differs from the video RD "
                f"row's ({r[f'rd_{c}']:.4f} dB) for {r.sequence} {r.codec} q{r.quality} "
                f"frame {r.frame} ({int((~same).sum())} rows differ by > "
                f"{PSNR_TOLERANCE_DB} dB): VMAF did not see the reconstruction the other "
                f"metrics saw. Delete {paths.VMAF_VIDEO_DIR.format(sequence=r.sequence)} "
                f"and rerun")


def _domain(vmaf_csvs, rd_csvs, keys, domain: str):
    import pandas as pd

    vm = pd.concat([pd.read_csv(p) for p in vmaf_csvs], ignore_index=True)
    rd = pd.concat([pd.read_csv(p) for p in rd_csvs], ignore_index=True)
    t = _join(vm, rd, keys, domain)
    if domain == "video":
        _check_psnr(t)
    t["domain"] = domain
    return t


def build_table(video_csvs=(), video_rd_csvs=(), image_csvs=(), image_rd_csvs=(),
                out_csv=None):
    """The VMAF table from the per-job VMAF CSVs and the RD tables (see the stage doc)."""
    import pandas as pd

    parts = []
    if video_csvs:
        parts.append(_domain(video_csvs, video_rd_csvs,
                             ["sequence", "codec", "quality", "frame"], "video"))
    if image_csvs:
        parts.append(_domain(image_csvs, image_rd_csvs,
                             ["dataset", "codec", "quality", "image"], "image"))
    if not parts:
        raise RdflowError("no VMAF results to tabulate (no sequence and no dataset)")
    df = pd.concat(parts, ignore_index=True)
    if "ms_ssim" in df:
        df[_MS_SSIM.db_name] = [_MS_SSIM.db(float(v)) for v in df["ms_ssim"]]
    df = df[[c for c in _TABLE_COLS if c in df.columns]]
    if "frame" in df:
        df["frame"] = df["frame"].astype("Int64")
    sort = [c for c in ("domain", "dataset", "sequence", "codec", "quality", "image", "frame")
            if c in df.columns]
    df = df.sort_values(sort, kind="stable").reset_index(drop=True)
    if out_csv is not None:
        from rdflow.io import write_csv

        write_csv(out_csv, df)
    return df


def fit_stats(x, y) -> dict:
    """n, Pearson r, Spearman rho, and the least-squares line y = slope*x + intercept with its
    R^2, over the pairs where both are finite. NaN where undefined (n < 3 or a constant)."""
    import numpy as np

    from rdflow.runtime import torch_settled

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    out = {"n": int(ok.sum()), "n_dropped": int((~ok).sum()), "pearson_r": math.nan,
           "spearman_rho": math.nan, "r2": math.nan, "slope": math.nan, "intercept": math.nan}
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    with torch_settled():
        from scipy import stats

        fit = stats.linregress(x, y)
        pearson, spearman = stats.pearsonr(x, y).statistic, stats.spearmanr(x, y).statistic
    resid = y - (fit.slope * x + fit.intercept)
    r2 = 1.0 - float(np.sum(resid ** 2)) / float(np.sum((y - y.mean()) ** 2))
    out.update(pearson_r=float(pearson), spearman_rho=float(spearman), r2=r2,
               slope=float(fit.slope), intercept=float(fit.intercept))
    return out


def correlation(table):
    """VMAF vs PSNR and vs MS-SSIM (dB), per domain/dataset, per codec and pooled."""
    import pandas as pd

    db = _MS_SSIM.db_name
    rows = []
    for domain in ("video", "image"):
        sub = table[table["domain"] == domain]
        if sub.empty:
            continue
        groups = [("", sub)] if domain == "video" else sorted(sub.groupby("dataset"))
        for dataset, g in groups:
            xs = [PSNR_OF[domain]] + ([db] if db in g and g[db].notna().any() else [])
            for x in xs:
                scopes = [(c, gc) for c, gc in sorted(g.groupby("codec"))] + [(POOLED, g)]
                for codec, gc in scopes:
                    rows.append({"domain": domain, "dataset": dataset, "codec": codec, "x": x,
                                 "y": "vmaf", **fit_stats(gc[x], gc["vmaf"])})
    return pd.DataFrame(rows)


def write_tables(inputs: dict, out_table, out_corr):
    """The ``vmaf_table`` job: the VMAF table and the correlation table."""
    from rdflow.io import write_csv

    table = build_table(inputs.get("video", ()), inputs.get("video_rd", ()),
                        inputs.get("image", ()), inputs.get("image_rd", ()))
    corr = correlation(table)
    write_csv(out_corr, corr)
    write_csv(out_table, table)
    pooled = corr[corr["codec"] == POOLED]
    for r in pooled.itertuples():
        log.info("VMAF vs %s (%s %s): n=%d r=%.3f rho=%.3f R2=%.3f", r.x, r.domain, r.dataset,
                 r.n, r.pearson_r, r.spearman_rho, r.r2)
    return table, corr
