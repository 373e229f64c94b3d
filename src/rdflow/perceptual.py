"""The perceptual-quality stage: VMAF on every coded video frame and image, and how PSNR and
MS-SSIM track it.

Jobs (rules in ``workflow/rules/vmaf.smk``; the VMAF computation itself is :mod:`rdflow.vmaf`):

* ``vmaf_video``, one per (sequence, codec, quality), over all the selected frames at once (the
  motion feature of VMAF needs consecutive frames). The **reference** is the source's own 8-bit
  I420 planes, read at each selected frame's offset (:func:`rdflow.video.iter_frames`): exactly
  the bytes of the file, never an RGB round trip. The **distorted** input is the 8-bit RGB
  reconstruction the other metrics saw (the ``temp()`` PNG of ``compress_frame``) converted to
  I420 by :func:`rdflow.yuv.rgb_to_yuv420` with the sequence's matrix, range and chroma siting —
  the same conversion as the video rows' ``psnr_y/u/v``. Both are written frame by frame as raw
  yuv420p into a private temporary folder (``TMPDIR``; about 2 x 1.5 bytes per pixel per frame)
  that ffmpeg reads, so memory stays flat and no PNG is written. With a frame stride the motion
  feature compares consecutive *selected* frames.
* ``vmaf_image``, one per (dataset, codec, quality): each image is a one-frame pair (its own
  ffmpeg run: motion 0), converted with ``vmaf.image_matrix/image_range/image_chroma_loc``
  (default BT.709, limited range, left siting; ffmpeg's own RGB->yuv420p default would be
  BT.601 limited). Odd sizes lose their last row/column (4:2:0 needs even sizes); images
  smaller than 17 px (libvmaf's limit) get ``vmaf = NaN`` with a warning, as MS-SSIM does
  below 161 px.
* ``vmaf_table``: ``results/vmaf.csv``, one row per (sequence, codec, quality, frame) and per
  (dataset, codec, quality, image) with bpp, psnr_rgb, ms_ssim (and ms_ssim_db) joined from the
  RD tables. ``psnr_y/u/v`` there are ffmpeg's ``psnr`` filter on the very pair VMAF saw; for
  video they are checked against the RD rows' own ``psnr_y/u/v`` (0.01 dB) so that a
  reconstruction that is not the one the other metrics saw cannot go unnoticed.
  ``results/vmaf_correlation.csv``: VMAF against PSNR (``psnr_y`` for video, ``psnr_rgb`` for
  images) and MS-SSIM (dB), per codec and pooled, over items (frames/images): Pearson r,
  Spearman rho and R^2 of the least-squares line (with its slope and intercept).

All libvmaf runs use ``n_threads`` = the job's threads.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from pathlib import Path

from . import RdflowError

log = logging.getLogger("rdflow.perceptual")

#: Defaults of the ``vmaf:`` config section (the schema fills the same ones).
DEFAULTS = {"enabled": True, "model": "vmaf_v0.6.1neg", "keep_logs": True,
            "image_matrix": "bt709", "image_range": "limited", "image_chroma_loc": "left"}
#: Models selectable in config (libvmaf built-ins).
MODELS = ("vmaf_v0.6.1neg", "vmaf_v0.6.1")
POOLED = "(pooled)"
#: PSNR on the x axis of the correlation per domain (video frames: luma; images: RGB).
PSNR_OF = {"video": "psnr_y", "image": "psnr_rgb"}
#: Largest |psnr| difference (dB) tolerated between ffmpeg's psnr filter and the RD rows.
PSNR_TOLERANCE_DB = 0.01
TABLE = "results/vmaf.csv"
CORRELATION = "results/vmaf_correlation.csv"


# ----------------------------------------------------------------------------- config
def settings(config: dict) -> dict:
    """The ``vmaf:`` section with defaults filled in."""
    out = dict(DEFAULTS)
    out.update(config.get("vmaf") or {})
    return out


def _datasets(config: dict) -> list[str]:
    return sorted(config.get("datasets") or {})


def _sequences(config: dict) -> list[str]:
    from .sequences import sequences

    return sorted(sequences(config))


def enabled(config: dict) -> bool:
    """Whether the stage runs: switched on and something (a sequence or a dataset) to score."""
    return bool(settings(config)["enabled"]) and bool(_datasets(config) or _sequences(config))


def check(config: dict) -> None:
    """Semantic checks at parse time: the model name, and an ffmpeg with libvmaf that loads it."""
    st = settings(config)
    if st["model"] not in MODELS:
        raise RdflowError(f"vmaf.model: unknown VMAF model {st['model']!r}; known models: "
                          f"{', '.join(MODELS)}")
    if not enabled(config):
        return
    from .vmaf import check_model, find_ffmpeg_with_libvmaf

    hint = " (or switch the VMAF stage off in config.yaml: vmaf: {enabled: false})"
    try:
        check_model(st["model"], find_ffmpeg_with_libvmaf())
    except RdflowError as e:
        raise RdflowError(f"{e}{hint}") from None


# ----------------------------------------------------------------------------- jobs, targets
def video_jobs(config: dict) -> list[tuple[str, str, int]]:
    """(sequence, codec, quality) of every ``vmaf_video`` job."""
    if not enabled(config):
        return []
    from .sequences import video_codecs

    return [(s, c, int(q)) for s in _sequences(config) for c in video_codecs(config)
            for q in config["codecs"][c]["qualities"]]


def image_jobs(config: dict) -> list[tuple[str, str, int]]:
    """(dataset, codec, quality) of every ``vmaf_image`` job."""
    if not enabled(config):
        return []
    from .config import codec_applies

    return [(d, c, int(q)) for d in _datasets(config) for c in sorted(config["codecs"])
            if codec_applies(config, c, d) for q in config["codecs"][c]["qualities"]]


def video_csv(sequence: str, codec: str, quality) -> str:
    return f"results/vmaf/video/{sequence}/{codec}/q{quality}.csv"


def image_csv(dataset: str, codec: str, quality) -> str:
    return f"results/vmaf/image/{dataset}/{codec}/q{quality}.csv"


def video_recons(config: dict, sequence: str, codec: str, quality) -> list[str]:
    """The ``temp()`` reconstructions a ``vmaf_video`` job reads (inputs keep them alive)."""
    from .sequences import frames

    return [f"results/video/{sequence}/{codec}/q{quality}/{f}.png" for f in frames(config, sequence)]


def image_recons(dataset: str, codec: str, quality, images) -> list[str]:
    return [f"results/image/{dataset}/{codec}/q{quality}/{i}.png" for i in images]


def figure_paths(config: dict) -> list[str]:
    out = []
    seqs = sorted({s for s, _, _ in video_jobs(config)})
    dsets = sorted({d for d, _, _ in image_jobs(config)})
    stems = [f"vmaf_bpp_video_{s}" for s in seqs] + (["vmaf_vs_psnr_video"] if seqs else [])
    stems += [f"vmaf_bpp_image_{d}" for d in dsets] + [f"vmaf_vs_psnr_image_{d}" for d in dsets]
    for stem in stems:
        out += [f"results/figures/{stem}.png", f"results/figures/{stem}.pdf"]
    return out


def vmaf_targets(config: dict) -> list[str]:
    """Final targets of the stage ([] when it is off): the tables, the figures, and every
    per-job CSV (a deleted one is redone)."""
    vj, ij = video_jobs(config), image_jobs(config)
    if not (vj or ij):
        return []
    return ([TABLE, CORRELATION] + figure_paths(config) + [video_csv(*j) for j in vj]
            + [image_csv(*j) for j in ij])


def table_inputs(config: dict) -> dict[str, list[str]]:
    """Inputs of ``vmaf_table``: the per-job VMAF CSVs and the RD tables they are joined with."""
    vj, ij = video_jobs(config), image_jobs(config)
    return {"video": [video_csv(*j) for j in vj],
            "video_rd": sorted({f"results/video_rd_{s}.csv" for s, _, _ in vj}),
            "image": [image_csv(*j) for j in ij],
            "image_rd": sorted({f"results/image_rd_{d}.csv" for d, _, _ in ij})}


# ----------------------------------------------------------------------------- scoring
def _finish(df, first_cols: dict, out_csv, model: str):
    from .io import write_csv

    for i, (k, v) in enumerate(first_cols.items()):
        df.insert(i, k, v)
    df["vmaf_model"] = model
    write_csv(out_csv, df)
    return df


def score_video(*, config: dict, sequence: str, codec: str, quality: int, seq_path,
                recons: list, out_csv, out_log=None, threads: int = 1,
                ffmpeg: str | None = None):
    """VMAF and PSNR-Y/U/V of every selected frame of one (sequence, codec, quality).

    ``recons``: the reconstruction PNGs, in the order of the selected frames. Writes
    ``out_csv`` (one row per frame, with libvmaf's features) and, if given, libvmaf's JSON log
    ``out_log``; on any error neither is written.
    """
    from .coding import read_png
    from .sequences import frames, probe_sequence
    from .video import iter_frames
    from .vmaf import vmaf_yuv420
    from .yuv import rgb_to_yuv420

    st = settings(config)
    seq = probe_sequence(config, sequence, seq_path)
    idx = frames(config, sequence)
    recons = [str(r) for r in recons]
    if len(recons) != len(idx):
        raise RdflowError(
            f"frame counts differ for {sequence} {codec} q{quality}: the reference {seq.path} "
            f"has {len(idx)} selected frames, the distorted input has {len(recons)} "
            f"reconstructions")
    conv = dict(matrix=seq.matrix, range=seq.range, chroma_loc=seq.chroma_loc)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rdflow-vmaf-") as tmp:
        ref_p, dist_p = Path(tmp) / "ref.yuv", Path(tmp) / "dist.yuv"
        with open(ref_p, "wb") as rf, open(dist_p, "wb") as dfh:
            for (i, planes), rec_path in zip(iter_frames(seq, idx), recons):
                rgb = read_png(rec_path)
                if rgb.shape != (seq.height, seq.width, 3):
                    raise RdflowError(
                        f"frame sizes differ: reference {seq.path} frame {i} is "
                        f"{seq.width}x{seq.height}, distorted {rec_path} is "
                        f"{rgb.shape[1]}x{rgb.shape[0]}")
                for p in planes:
                    rf.write(p.tobytes())
                for p in rgb_to_yuv420(rgb, **conv):
                    dfh.write(p.tobytes())
        t_io = time.perf_counter() - t0
        df = vmaf_yuv420(ref_p, dist_p, seq.width, seq.height, model=st["model"],
                         n_threads=int(threads), log_path=out_log, ffmpeg=ffmpeg)
    df["frame"] = idx
    df = _finish(df, {"sequence": sequence, "codec": codec, "quality": int(quality)}, out_csv,
                 st["model"])
    log.info("%s %s q%s: %d frames %dx%d, mean VMAF %.3f (%s, %d threads) in %.2f s "
             "(%.2f s reading and converting)", sequence, codec, quality, len(df), seq.width,
             seq.height, df["vmaf"].mean(), st["model"], threads, time.perf_counter() - t0, t_io)
    return df


def score_images(*, config: dict, dataset: str, codec: str, quality: int, images: list,
                 refs: list, recons: list, out_csv, out_log=None, threads: int = 1,
                 ffmpeg: str | None = None):
    """VMAF of each image of one (dataset, codec, quality), each a one-frame pair.

    ``images``, ``refs`` (original image files) and ``recons`` (reconstruction PNGs) are
    parallel lists. Writes ``out_csv`` (one row per image) and, if given, a JSON file holding
    libvmaf's log of each image; on any error neither is written.
    """
    import json

    import numpy as np
    import pandas as pd

    from .coding import read_png
    from .datasets import read_image
    from .io import write_json
    from .vmaf import MIN_SIDE, vmaf_rgb_frames

    st = settings(config)
    if not len(images) == len(refs) == len(recons):
        raise RdflowError(f"{dataset} {codec} q{quality}: {len(images)} images, {len(refs)} "
                          f"reference files and {len(recons)} reconstructions; they must match")
    conv = dict(matrix=st["image_matrix"], range=st["image_range"],
                chroma_loc=st["image_chroma_loc"])
    rows, logs = [], {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rdflow-vmaf-img-") as tmp:
        for name, ref_path, rec_path in zip(images, refs, recons):
            ref = read_image(ref_path).rgb
            rec = read_png(rec_path)
            if ref.shape != rec.shape:
                raise RdflowError(
                    f"image sizes differ: reference {ref_path} is {ref.shape[1]}x{ref.shape[0]}, "
                    f"distorted {rec_path} is {rec.shape[1]}x{rec.shape[0]}")
            h, w = ref.shape[:2]
            h2, w2 = h - h % 2, w - w % 2
            row = {"image": name, "width": w2, "height": h2}
            if (h2, w2) != (h, w):
                log.warning("%s: %dx%d is odd; VMAF scores its top-left %dx%d (4:2:0 needs even "
                            "sizes)", ref_path, w, h, w2, h2)
            if min(h2, w2) < MIN_SIDE:
                log.warning("%s: %dx%d is too small for libvmaf (< %d px): vmaf is NaN",
                            ref_path, w2, h2, MIN_SIDE)
                rows.append({**row, "vmaf": math.nan})
                continue
            one_log = Path(tmp) / f"{len(rows)}.json" if out_log else None
            try:
                df = vmaf_rgb_frames([ref[:h2, :w2]], [rec[:h2, :w2]], **conv, model=st["model"],
                                     n_threads=int(threads), log_path=one_log, ffmpeg=ffmpeg)
            except RdflowError as e:
                raise RdflowError(f"VMAF of image {name} ({ref_path} vs {rec_path}): {e}") \
                    from None
            rows.append({**row, **df.iloc[0].drop("frame").to_dict()})
            if one_log:
                logs[name] = json.loads(one_log.read_text())
    df = pd.DataFrame(rows)
    for k, v in conv.items():
        df[k] = v
    if out_log:
        write_json(out_log, {"model": st["model"], "images": logs})
    df = _finish(df, {"dataset": dataset, "codec": codec, "quality": int(quality)}, out_csv,
                 st["model"])
    log.info("%s %s q%s: %d images, mean VMAF %.3f (%s) in %.2f s", dataset, codec, quality,
             len(df), float(np.nanmean(df["vmaf"])) if df["vmaf"].notna().any() else math.nan,
             st["model"], time.perf_counter() - t0)
    return df


# ----------------------------------------------------------------------------- tables
_TABLE_COLS = ["domain", "dataset", "sequence", "codec", "quality", "image", "frame", "bpp",
               "vmaf", "psnr_y", "psnr_u", "psnr_v", "psnr_rgb", "ms_ssim", "ms_ssim_db",
               "vmaf_model", "kind", "weights"]
_RD_COLS = ["bpp", "psnr_rgb", "ms_ssim", "kind", "weights"]


def _ms_ssim_db(v):
    import numpy as np

    v = np.asarray(v, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(v >= 1, np.inf, -10 * np.log10(1 - v))


def _join(vm, rd, keys, what):
    """Left-join RD rows onto VMAF rows on ``keys``; every VMAF row must find its RD row."""
    cols = [c for c in _RD_COLS + ["psnr_y", "psnr_u", "psnr_v"] if c in rd.columns]
    rd = rd[keys + cols].rename(columns={c: f"rd_{c}" for c in ("psnr_y", "psnr_u", "psnr_v")})
    out = vm.merge(rd, on=keys, how="left", validate="one_to_one", indicator=True)
    missing = out[out["_merge"] != "both"]
    if len(missing):
        first = missing.iloc[0]
        raise RdflowError(f"{len(missing)} VMAF rows have no row in the {what} RD table, e.g. "
                          + ", ".join(f"{k}={first[k]}" for k in keys)
                          + "; rerun the workflow so both come from the same coding run")
    return out.drop(columns="_merge").reset_index(drop=True)


def build_table(video_csvs=(), video_rd_csvs=(), image_csvs=(), image_rd_csvs=(),
                out_csv=None):
    """``results/vmaf.csv`` from the per-job VMAF CSVs and the RD tables (see module doc)."""
    import numpy as np
    import pandas as pd

    parts = []
    if video_csvs:
        vm = pd.concat([pd.read_csv(p) for p in video_csvs], ignore_index=True)
        rd = pd.concat([pd.read_csv(p) for p in video_rd_csvs], ignore_index=True)
        keys = ["sequence", "codec", "quality", "frame"]
        t = _join(vm, rd, keys, "video")
        for c in ("psnr_y", "psnr_u", "psnr_v"):
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
                    f"metrics saw. Delete results/vmaf/video/{r.sequence} and rerun")
        t["domain"] = "video"
        parts.append(t)
    if image_csvs:
        vm = pd.concat([pd.read_csv(p) for p in image_csvs], ignore_index=True)
        rd = pd.concat([pd.read_csv(p) for p in image_rd_csvs], ignore_index=True)
        t = _join(vm, rd, ["dataset", "codec", "quality", "image"], "image")
        t["domain"] = "image"
        parts.append(t)
    if not parts:
        raise RdflowError("no VMAF results to tabulate (no sequence and no dataset)")
    df = pd.concat(parts, ignore_index=True)
    if "ms_ssim" in df:
        df["ms_ssim_db"] = _ms_ssim_db(df["ms_ssim"])
    df = df[[c for c in _TABLE_COLS if c in df.columns]]
    if "frame" in df:
        df["frame"] = df["frame"].astype("Int64")
    sort = [c for c in ("domain", "dataset", "sequence", "codec", "quality", "image", "frame")
            if c in df.columns]
    df = df.sort_values(sort, kind="stable").reset_index(drop=True)
    if out_csv is not None:
        from .io import write_csv

        write_csv(out_csv, df)
    return df


def fit_stats(x, y) -> dict:
    """n, Pearson r, Spearman rho, and the least-squares line y = slope*x + intercept with its
    R^2, over the pairs where both are finite. NaN where undefined (n < 3 or a constant)."""
    import numpy as np
    from scipy import stats

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    out = {"n": int(ok.sum()), "n_dropped": int((~ok).sum()), "pearson_r": math.nan,
           "spearman_rho": math.nan, "r2": math.nan, "slope": math.nan, "intercept": math.nan}
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    fit = stats.linregress(x, y)
    resid = y - (fit.slope * x + fit.intercept)
    r2 = 1.0 - float(np.sum(resid ** 2)) / float(np.sum((y - y.mean()) ** 2))
    out.update(pearson_r=float(stats.pearsonr(x, y).statistic),
               spearman_rho=float(stats.spearmanr(x, y).statistic), r2=r2,
               slope=float(fit.slope), intercept=float(fit.intercept))
    return out


def correlation(table):
    """VMAF vs PSNR and vs MS-SSIM (dB), per domain/dataset, per codec and pooled."""
    import pandas as pd

    rows = []
    for domain in ("video", "image"):
        sub = table[table["domain"] == domain]
        if sub.empty:
            continue
        groups = [("", sub)] if domain == "video" else sorted(sub.groupby("dataset"))
        for dataset, g in groups:
            xs = [PSNR_OF[domain]] + (["ms_ssim_db"] if "ms_ssim_db" in g
                                      and g["ms_ssim_db"].notna().any() else [])
            for x in xs:
                scopes = [(c, gc) for c, gc in sorted(g.groupby("codec"))] + [(POOLED, g)]
                for codec, gc in scopes:
                    rows.append({"domain": domain, "dataset": dataset, "codec": codec, "x": x,
                                 "y": "vmaf", **fit_stats(gc[x], gc["vmaf"])})
    return pd.DataFrame(rows)


def write_tables(inputs: dict, out_table, out_corr):
    """The ``vmaf_table`` job: ``results/vmaf.csv`` and ``results/vmaf_correlation.csv``."""
    from .io import write_csv

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


# ----------------------------------------------------------------------------- figures
def plot_vmaf_bpp(table_csv, domain: str, name: str, paths, codecs=None) -> None:
    """VMAF-rate curves of one sequence (domain video) or dataset (domain image): the mean
    VMAF and bpp of each (codec, quality); every codec of the table with finite values is drawn
    (per-frame image codecs and sequence codecs such as x264/x265 alike). ``codecs``: the run's
    codec names (:func:`rdflow.plots.study_codecs`), for colours shared by all figures."""
    import pandas as pd

    from .plots import rd_curves

    t = pd.read_csv(table_csv)
    key = "sequence" if domain == "video" else "dataset"
    t = t[(t["domain"] == domain) & (t[key].astype(str) == str(name))]
    if t.empty:
        raise RdflowError(f"{table_csv} has no {domain} rows for {key} {name}")
    summary = t.groupby(["codec", "quality"], sort=True)[["bpp", "vmaf"]].mean()
    if "weights" in t:
        summary = summary.join(t.groupby(["codec", "quality"], sort=True)[["weights"]].first())
    model = t["vmaf_model"].iloc[0]
    rd_curves(summary.reset_index(), "vmaf", paths, title=f"{name}: VMAF ({model}) vs rate",
              codecs=codecs)


def plot_vmaf_vs_psnr(table_csv, corr_csv, domain: str, paths, dataset: str | None = None,
                      codecs=None):
    """Scatter of VMAF against PSNR (psnr_y for video, psnr_rgb for images), one colour per
    codec (:func:`rdflow.plots.codec_colours` of ``codecs``, default the table's), with each
    codec's least-squares line and the pooled one (black, dashed). Non-finite points are left
    out (counted in the title); without any finite point the panel says why."""
    import numpy as np
    import pandas as pd

    from .plots import LABELS, codec_colours, missing_reason, new_figure, note_empty, robust_limits, save

    t = pd.read_csv(table_csv)
    corr = pd.read_csv(corr_csv, keep_default_na=False, na_values=[""])
    x = PSNR_OF[domain]
    t = t[t["domain"] == domain]
    c = corr[(corr["domain"] == domain) & (corr["x"] == x)]
    if dataset is not None:
        t = t[t["dataset"].astype(str) == str(dataset)]
        c = c[c["dataset"].astype(str) == str(dataset)]
    if t.empty:
        raise RdflowError(f"{table_csv} has no {domain} rows"
                          + (f" for dataset {dataset}" if dataset else ""))
    fig, ax = new_figure()
    fits = c.set_index("codec")
    colours = codec_colours(list(codecs or []) + [str(k) for k in t["codec"].unique()])
    xv = pd.to_numeric(t[x], errors="coerce") if x in t else pd.Series(np.nan, index=t.index)
    finite = t[np.isfinite(xv) & np.isfinite(pd.to_numeric(t["vmaf"], errors="coerce"))]
    lo, hi = (finite[x].min(), finite[x].max()) if len(finite) else (0.0, 1.0)
    xx = np.linspace(lo, hi, 50)
    for codec, g in sorted(finite.groupby("codec")):
        colour = colours[str(codec)]
        f = fits.loc[codec] if codec in fits.index else None
        label = codec + (" (random weights)" if "weights" in g
                         and str(g["weights"].iloc[0]).startswith("random") else "")
        if f is not None and np.isfinite(f["slope"]):  # drawn over the codec's own x range
            xc = np.linspace(g[x].min(), g[x].max(), 20)
            ax.plot(xc, f["slope"] * xc + f["intercept"], color=colour, lw=1.0)
            label = f"{label}: r={f['pearson_r']:.3f}, ρ={f['spearman_rho']:.3f}, R²={f['r2']:.3f}"
        ax.scatter(g[x], g["vmaf"], s=9, alpha=0.6, color=colour, label=label)
    if len(finite) and POOLED in fits.index and np.isfinite(fits.loc[POOLED, "slope"]):
        f = fits.loc[POOLED]
        ax.plot(xx, f["slope"] * xx + f["intercept"], color="black", ls="--", lw=1.2,
                label=f"pooled: r={f['pearson_r']:.3f}, ρ={f['spearman_rho']:.3f}, "
                      f"R²={f['r2']:.3f}, n={int(f['n'])}")
    n_inf = len(t) - len(finite)
    where = "all sequences" if domain == "video" else f"dataset {dataset}"
    ax.set_title(f"VMAF ({t['vmaf_model'].iloc[0]}) vs {LABELS.get(x, x)}, {where}"
                 + (f" ({n_inf} non-finite points left out)" if n_inf else ""), fontsize=9)
    ax.set_xlabel(LABELS.get(x, x))
    ax.set_ylabel("VMAF")
    ax.grid(True, alpha=0.3)
    if len(finite):
        robust_limits(ax)
        ax.legend(fontsize=6.5)
    else:
        why = missing_reason(t, "vmaf") if not np.isfinite(pd.to_numeric(t["vmaf"], errors="coerce")).any() \
            else missing_reason(t, x)
        note_empty(ax, f"no finite (VMAF, {x}) pairs: {why}")
    save(fig, paths)

