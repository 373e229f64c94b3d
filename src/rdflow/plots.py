"""Figures (PNG and PDF) drawn with matplotlib's object API (no pyplot: jobs run in threads)."""

from __future__ import annotations

import logging
from pathlib import Path

from .io import atomic_path

log = logging.getLogger("rdflow.plots")

LABELS = {
    "psnr_rgb": "PSNR-RGB [dB]",
    "psnr_y": "PSNR-Y [dB]",
    "ms_ssim_db": "MS-SSIM-RGB [dB]",
    "ms_ssim": "MS-SSIM-RGB",
    "vmaf": "VMAF",
    "map50": "mAP@0.5",
    "map50_95": "mAP@0.5:0.95",
    "bpp": "Rate [bpp]",
    "enc_s": "Encode time [s]",
    "dec_s": "Decode time [s]",
}


def new_figure(width: float = 6.4, height: float = 4.8):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def save(fig, paths: list[str | Path]) -> None:
    """Save one figure to each path (format from the suffix), atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    for p in paths:
        p = Path(p)
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format=p.suffix.lstrip("."), dpi=150)


def rd_curves(summary, y: str, paths, *, x: str = "bpp", title: str = "", reference=None,
              hue: str = "codec"):
    """One line per codec through its (x, y) points sorted by x; reference curves dashed."""
    fig, ax = new_figure()
    for name, g in summary.groupby(hue, sort=True):
        g = g.sort_values(x)
        if y not in g or g[y].isna().all():
            continue
        label = name
        if "weights" in g and str(g["weights"].iloc[0]).startswith("random"):
            label = f"{name} (random weights)"
        ax.plot(g[x], g[y], marker="o", ms=3.5, lw=1.4, label=label)
    if reference is not None and len(reference) and y in reference:
        for name, g in reference.groupby("codec", sort=True):
            g = g.sort_values(x)
            if g[y].isna().all():
                continue
            ax.plot(g[x], g[y], ls="--", lw=1.0, alpha=0.8, label=f"{name} (published)")
    ax.set_xlabel(LABELS.get(x, x))
    ax.set_ylabel(LABELS.get(y, y))
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=1 if summary[hue].nunique() < 10 else 2)
    save(fig, paths)


def plot_image_rd(config: dict, dataset: str, metric: str, summary_csv, paths) -> None:
    """RD figure of an image dataset, with CompressAI's published curves when configured."""
    import pandas as pd

    summary = pd.read_csv(summary_csv)
    reference = None
    ref = config.get("reference") or {}
    if ref.get("compressai_results") and ref.get("curves") and config["datasets"][dataset]["kind"] == "kodak":
        from .reference import load_reference

        location = ref["compressai_results"].rstrip("/") + "/image/kodak"
        reference = load_reference(location, ref["curves"], "resources/reference")
    title = f"{dataset}: {LABELS.get(metric, metric)} vs rate"
    rd_curves(summary, metric, paths, title=title, reference=reference)
