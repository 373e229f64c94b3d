"""A sequence pair's figure: per-frame PSNR-Y (with U and V) and VMAF against the frame index
(see :mod:`rdflow.stages.pairs`)."""

from __future__ import annotations

import numpy as np

from rdflow import metrics


def _panel(ax, df, columns, styles, title: str) -> None:
    """Each column's finite per-frame values against ``frame``; a note when nothing is finite
    (identical frames give PSNR = inf)."""
    from rdflow.plots import note_empty

    drawn, left_out = 0, []
    for col, style in zip(columns, styles):
        if col not in df:
            continue
        v = df[col].to_numpy(dtype=np.float64)
        ok = np.isfinite(v)
        if ok.any():
            ax.plot(df["frame"].to_numpy()[ok], v[ok], style, ms=3, lw=1.0,
                    label=f"{metrics.label(col)}, mean {v[ok].mean():.2f}")
            drawn += 1
        if (~ok).any():
            left_out.append(f"{col} {int((~ok).sum())}")
    if left_out:
        title += "\nnon-finite frames left out: " + ", ".join(left_out)
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.legend(fontsize=7)
    else:
        note_empty(ax, f"no finite {' / '.join(columns)} value (identical frames?)")


def plot_pair(frames_csv, name: str, path, vmaf_model: str | None = None) -> None:
    """Per-frame PSNR-Y/U/V (top) and VMAF (bottom, when scored) of one pair's CSV."""
    import pandas as pd
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from rdflow.plots import save

    df = pd.read_csv(frames_csv)
    has_vmaf = "vmaf" in df
    fig = Figure(figsize=(6.4, 6.0 if has_vmaf else 3.6), layout="constrained")
    axes = fig.subplots(2 if has_vmaf else 1, 1, sharex=True, squeeze=False)[:, 0]
    _panel(axes[0], df, ["psnr_y", "psnr_u", "psnr_v"], ["o-", "^--", "v--"],
           f"{name}: PSNR per frame ({len(df)} frames)")
    axes[0].set_ylabel("PSNR [dB]")
    if has_vmaf:
        _panel(axes[1], df, ["vmaf"], ["o-"],
               f"{name}: VMAF ({vmaf_model or 'libvmaf'}) per frame")
        axes[1].set_ylabel(metrics.label("vmaf"))
    axes[-1].set_xlabel("frame")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    save(fig, [path])
