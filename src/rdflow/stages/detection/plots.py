"""The stage's figures, two per unit: mAP versus bpp, and detections per frame versus bpp."""

from __future__ import annotations

import math

from ... import RdflowError

METRICS = ("map50", "map50_95")


def _unit_rows(df, source: str, name: str):
    key = "sequence" if source == "video" else "dataset"
    return df[(df["source"] == source) & (df[key] == name)]


def _uncompressed_line(ax, sub, col: str) -> None:
    """The uncompressed frames' value, as the dashed grey line."""
    ref = sub[col].dropna() if col in sub else sub.iloc[:0]
    if len(ref):
        ax.axhline(float(ref.iloc[0]), color="0.4", ls="--", lw=1.0, label="uncompressed")


def _map_figure(df, name: str, backend: str, colours: dict, out: list[str]) -> None:
    from matplotlib.figure import Figure

    from ...plots import axis_label, save

    truths = [g for g in ("labels", "pseudo") if (df["gt"] == g).any()]
    fig = Figure(figsize=(5.2 * len(METRICS), 3.9 * len(truths)), layout="constrained")
    axes = fig.subplots(len(truths), len(METRICS), squeeze=False)
    for i, gt in enumerate(truths):
        sub = df[df["gt"] == gt]
        for j, m in enumerate(METRICS):
            ax = axes[i][j]
            what = "labels" if gt == "labels" else "pseudo ground truth"
            ax.set_title(f"{axis_label(m)} vs {what}", fontsize=9)
            ax.set_xlabel(axis_label("bpp"))
            ax.set_ylabel(axis_label(m))
            ax.set_ylim(-0.02, 1.02)  # mAP is a fraction: panels and figures compare at a glance
            ax.grid(True, alpha=0.3)
            _uncompressed_line(ax, sub, f"uncompressed_{m}")
            _curves(ax, sub, m, colours, y_limits=False)
    fig.suptitle(f"{name}: detection accuracy vs rate ({backend})")
    save(fig, out)


def _proxy_figure(df, name: str, backend: str, colours: dict, out: list[str]) -> None:
    from matplotlib.figure import Figure

    from ...plots import axis_label, save

    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.subplots()
    sub = df[df["gt"] == "pseudo"]
    conf = sub["conf"].iloc[0] if "conf" in sub and len(sub) else math.nan
    ax.set_title(f"{name}: detections per frame (score >= {conf:g}) vs rate ({backend})",
                 fontsize=9)
    ax.set_xlabel(axis_label("bpp"))
    ax.set_ylabel("Detections per frame")
    ax.grid(True, alpha=0.3)
    _uncompressed_line(ax, sub, "uncompressed_detections_per_frame")
    _curves(ax, sub, "detections_per_frame", colours)
    save(fig, out)


def plot_unit(csv_path: str, source: str, name: str, map_paths: list[str],
              proxy_paths: list[str], codecs=None) -> None:
    """Two figures of one sequence/dataset: mAP versus bpp (one panel per metric and ground
    truth, all codecs), and detections per frame versus bpp; the uncompressed frames' value is
    the dashed grey line. Codec colours: :func:`rdflow.plots.codec_colours` of ``codecs`` (the
    run's codec names; default those of the table). Non-finite points are left out; a panel
    without any finite value (e.g. every mAP NaN) says why."""
    import pandas as pd

    from ...plots import codec_colours

    df = _unit_rows(pd.read_csv(csv_path), source, name)
    if df.empty:
        raise RdflowError(f"{csv_path} has no rows for {source} {name}")
    colours = codec_colours(list(codecs or []) + [str(c) for c in df["codec"].unique()])
    backend = str(df["backend"].iloc[0])
    _map_figure(df, name, backend, colours, map_paths)
    _proxy_figure(df, name, backend, colours, proxy_paths)


def _curves(ax, df, y: str, colours: dict, *, y_limits: bool = True) -> None:
    """One line per codec of its finite (bpp, y) points, then robust limits and the legend, or
    the empty-panel note when no codec has a finite value."""
    from ...plots import finite_rows, missing_reason, note_empty, robust_limits

    drawn = 0
    for codec, g in df.groupby("codec", sort=True):
        g = finite_rows(g, ["bpp", y], f"{ax.get_title()}: {codec}") if y in g else g.iloc[:0]
        g = g.sort_values("bpp")
        if g.empty:
            continue
        ax.plot(g["bpp"], g[y], marker="o", ms=3.5, lw=1.4, label=str(codec),
                color=colours.get(str(codec)))
        drawn += 1
    if drawn:
        robust_limits(ax, y=y_limits)
        ax.legend(fontsize=7)
    else:
        note_empty(ax, f"no finite {y} values: {missing_reason(df, y)}")
