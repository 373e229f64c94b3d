"""The VMAF stage's figures: VMAF-rate curves and VMAF-vs-PSNR scatters (see
:mod:`rdflow.stages.vmaf`)."""

from __future__ import annotations

from rdflow import RdflowError, metrics

from .tables import POOLED, PSNR_OF


def plot_vmaf_bpp(table_csv, domain: str, name: str, paths, codecs=None) -> None:
    """VMAF-rate curves of one sequence (domain video) or dataset (domain image): the mean
    VMAF and bpp of each (codec, quality); every codec of the table with finite values is drawn
    (per-frame image codecs and sequence codecs such as x264/x265 alike). ``codecs``: the run's
    codec names (:func:`rdflow.plots.study_codecs`), for colours shared by all figures."""
    import pandas as pd

    from rdflow.plots import rd_curves

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


def _fit_label(f) -> str:
    return f"r={f['pearson_r']:.3f}, ρ={f['spearman_rho']:.3f}, R²={f['r2']:.3f}"


def _draw_codecs(ax, finite, fits, colours, x: str) -> None:
    """Each codec's points, and its least-squares line over its own x range."""
    import numpy as np

    for codec, g in sorted(finite.groupby("codec")):
        colour = colours[str(codec)]
        f = fits.loc[codec] if codec in fits.index else None
        label = codec + (" (random weights)" if "weights" in g
                         and str(g["weights"].iloc[0]).startswith("random") else "")
        if f is not None and np.isfinite(f["slope"]):
            xc = np.linspace(g[x].min(), g[x].max(), 20)
            ax.plot(xc, f["slope"] * xc + f["intercept"], color=colour, lw=1.0)
            label = f"{label}: {_fit_label(f)}"
        ax.scatter(g[x], g["vmaf"], s=9, alpha=0.6, color=colour, label=label)


def _select(table_csv, corr_csv, domain: str, dataset):
    """The table's rows and the correlation's fits of one domain (and dataset)."""
    import pandas as pd

    t = pd.read_csv(table_csv)
    corr = pd.read_csv(corr_csv, keep_default_na=False, na_values=[""])
    t = t[t["domain"] == domain]
    c = corr[(corr["domain"] == domain) & (corr["x"] == PSNR_OF[domain])]
    if dataset is not None:
        t = t[t["dataset"].astype(str) == str(dataset)]
        c = c[c["dataset"].astype(str) == str(dataset)]
    if t.empty:
        raise RdflowError(f"{table_csv} has no {domain} rows"
                          + (f" for dataset {dataset}" if dataset else ""))
    return t, c.set_index("codec")


def plot_vmaf_vs_psnr(table_csv, corr_csv, domain: str, paths, dataset: str | None = None,
                      codecs=None):
    """Scatter of VMAF against PSNR (psnr_y for video, psnr_rgb for images), one colour per
    codec (:func:`rdflow.plots.codec_colours` of ``codecs``, default the table's), with each
    codec's least-squares line and the pooled one (black, dashed). Non-finite points are left
    out (counted in the title); without any finite point the panel says why."""
    import numpy as np
    import pandas as pd

    from rdflow.plots import (codec_colours, missing_reason, new_figure, note_empty,
                              robust_limits, save)

    x = PSNR_OF[domain]
    t, fits = _select(table_csv, corr_csv, domain, dataset)
    fig, ax = new_figure()
    colours = codec_colours(list(codecs or []) + [str(k) for k in t["codec"].unique()])
    xv = pd.to_numeric(t[x], errors="coerce") if x in t else pd.Series(np.nan, index=t.index)
    vmaf_ok = np.isfinite(pd.to_numeric(t["vmaf"], errors="coerce"))
    finite = t[np.isfinite(xv) & vmaf_ok]
    _draw_codecs(ax, finite, fits, colours, x)
    if len(finite) and POOLED in fits.index and np.isfinite(fits.loc[POOLED, "slope"]):
        f = fits.loc[POOLED]
        xx = np.linspace(finite[x].min(), finite[x].max(), 50)
        ax.plot(xx, f["slope"] * xx + f["intercept"], color="black", ls="--", lw=1.2,
                label=f"pooled: {_fit_label(f)}, n={int(f['n'])}")
    n_inf = len(t) - len(finite)
    where = "all sequences" if domain == "video" else f"dataset {dataset}"
    ax.set_title(f"VMAF ({t['vmaf_model'].iloc[0]}) vs {metrics.label(x)}, {where}"
                 + (f" ({n_inf} non-finite points left out)" if n_inf else ""), fontsize=9)
    ax.set_xlabel(metrics.label(x))
    ax.set_ylabel(metrics.label("vmaf"))
    ax.grid(True, alpha=0.3)
    if len(finite):
        robust_limits(ax)
        ax.legend(fontsize=6.5)
    else:
        why = missing_reason(t, "vmaf") if not vmaf_ok.any() else missing_reason(t, x)
        note_empty(ax, f"no finite (VMAF, {x}) pairs: {why}")
    save(fig, paths)
