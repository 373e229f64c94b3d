"""The stage's two figures: rate vs coding time (``complexity_bpp_time``) and time and memory
vs resolution (``complexity_resolution``), each with its data sidecar."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ... import RdflowError, paths

log = logging.getLogger("rdflow.complexity")

#: the figures' stems (file names without suffix)
BPP_TIME = Path(paths.COMPLEXITY_BPP_TIME_FIGURE).name
RESOLUTION = Path(paths.COMPLEXITY_RESOLUTION_FIGURE).name
_DASHES = ("-", "--", ":", "-.")


def megapixel_label(width: int, height: int) -> str:
    """``512, 512`` -> ``"512x512\\n0.26 MP"`` (a tick label of a resolution axis: the size
    over its megapixels)."""
    mp = width * height / 1e6
    num = f"{mp:.0f}" if mp >= 10 else f"{mp:.2f}" if mp >= 0.1 else f"{mp:.2g}"
    return f"{width}x{height}\n{num} MP"


class _Saver:
    """Saves figures as ``<out_dir>/<stem><suffix>`` (with sidecars) and lists what it wrote."""

    def __init__(self, out_dir: Path, suffixes: Sequence[str]):
        self.out_dir, self.suffixes = out_dir, suffixes
        self.written: list[Path] = []

    def __call__(self, fig, stem: str) -> None:
        from ...plots import save as save_figure

        paths_ = [self.out_dir / f"{stem}{suf}" for suf in self.suffixes]
        save_figure(fig, paths_)
        self.written.extend(paths_)


def _empty_figures(raw, save: _Saver) -> None:
    """Both figures, saying that no row succeeded (and the first error)."""
    import pandas as pd
    from matplotlib.figure import Figure

    from ...plots import note_empty

    errors = sorted({str(e) for e in raw.get("error", pd.Series(dtype=object)).dropna() if str(e)})
    text = (f"no successful complexity rows: all {len(raw)} measurements failed (see the error "
            f"column of {paths.COMPLEXITY_CSV})" + (f"\ne.g. {errors[0][:120]}" if errors else ""))
    log.warning("%s", text)
    for stem, labels in ((BPP_TIME, ("Rate [bpp]", "Encode time, median [s]")),
                         (RESOLUTION, ("Resolution [megapixels]", "Encode time, median [s]"))):
        fig = Figure(figsize=(6.4, 4.2), layout="constrained")
        ax = fig.subplots()
        ax.set_xlabel(labels[0])
        ax.set_ylabel(labels[1])
        note_empty(ax, text)
        save(fig, stem)


class _Curves:
    """One curve per (codec, device): a codec measured on CPU and GPU gives two curves; one
    colour per codec, the device by line style."""

    def __init__(self, df, codecs):
        from ...plots import codec_colours

        self.devices = sorted(set(df["device"].astype(str)))
        multi = len(self.devices) > 1
        df["curve"] = df["codec"].astype(str) + (" (" + df["device"].astype(str) + ")" if multi else "")
        self.colours = codec_colours(list(codecs or []) + [str(c) for c in df["codec"].unique()])

    def style(self, g) -> dict:
        return dict(color=self.colours[str(g["codec"].iloc[0])],
                    ls=_DASHES[self.devices.index(str(g["device"].iloc[0])) % len(_DASHES)])


def _largest_common(df, sizes):
    """The rows at the largest resolution where every curve has a successful row (else the
    largest of all)."""
    curves = set(df["curve"])
    at = {wh: df[(df["width"] == wh[0]) & (df["height"] == wh[1])] for wh in sizes}
    common = [wh for wh in sizes if set(at[wh]["curve"]) == curves]
    return at[common[0] if common else sizes[0]]


def _bpp_time_panel(ax, big, col: str, label: str, curves: _Curves) -> None:
    from ...plots import finite_rows, note_empty, robust_limits

    for name, g in big.groupby("curve", sort=True):
        g = finite_rows(g, ["bpp", col], f"{BPP_TIME} {name}").sort_values("bpp")
        if g.empty:
            continue
        mid = g[col].to_numpy(float)
        lo = np.nan_to_num(mid - g[col.replace("median", "p25")].to_numpy(float))
        hi = np.nan_to_num(g[col.replace("median", "p75")].to_numpy(float) - mid)
        ax.errorbar(g["bpp"].to_numpy(float), mid, yerr=np.vstack([lo, hi]),
                    marker="o", capsize=2, label=str(name), **curves.style(g))
    ax.set_xlabel("Rate [bpp]")
    ax.set_ylabel(f"{label} time, median [s]")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_lines():
        robust_limits(ax)
    else:
        note_empty(ax, f"no finite {col} values at this size")


def _bpp_time_figure(df, sizes, curves: _Curves, save: _Saver) -> None:
    """bpp vs time at the largest resolution where every curve has a successful row (else the
    largest of all, the missing curves named in the title)."""
    from matplotlib.figure import Figure

    big = _largest_common(df, sizes)
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, col, label in ((axes[0], "enc_s_median", "Encode"), (axes[1], "dec_s_median", "Decode")):
        _bpp_time_panel(ax, big, col, label, curves)
    w, h = int(big["width"].iloc[0]), int(big["height"].iloc[0])
    dev = ", ".join(sorted(set(big["device"].astype(str))))
    missing = sorted(set(df["curve"]) - set(big["curve"]))
    note = f"; no successful row at this size: {', '.join(missing)}" if missing else ""
    fig.suptitle(f"Rate vs coding time at {w}x{h} ({dev}){note}")
    if axes[0].get_lines():
        axes[0].legend(fontsize="small")
    save(fig, BPP_TIME)


def _resolution_ticks(sizes) -> tuple[list[float], list[str]]:
    """Ticks at the measured resolutions: "WxH" and megapixels (several sizes of one pixel
    count share a tick)."""
    ticks: dict[float, list[str]] = {}
    for wh in sorted(sizes, key=lambda wh: (wh[0] * wh[1], wh)):
        ticks.setdefault(wh[0] * wh[1] / 1e6, []).append(f"{wh[0]}x{wh[1]}")
    locs = sorted(ticks)
    labels = ["/".join(ticks[m]) + "\n" + megapixel_label(*map(int, ticks[m][0].split("x"))).split("\n")[1]
              for m in locs]
    return locs, labels


def _resolution_axis(ax, i: int, col: str, ylab: str, locs, labels) -> None:
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

    from ...plots import note_empty, robust_limits

    ax.set_xlabel("Resolution [megapixels]")
    ax.set_ylabel(ylab)
    ax.set_xscale("log")
    if i < 2:
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(FixedLocator(locs))
    ax.xaxis.set_major_formatter(FixedFormatter(labels))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.tick_params(axis="x", labelsize=7)
    if len(locs) > 4:
        for t in ax.get_xticklabels():
            t.set_rotation(30)
            t.set_ha("right")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_lines():
        robust_limits(ax, x=False)  # every measured resolution stays in view
    else:
        note_empty(ax, f"no finite {col} values")


def _resolution_figure(df, sizes, curves: _Curves, save: _Saver) -> None:
    """Time and memory vs resolution, per curve at its median quality (a fourth panel with
    peak VRAM when a GPU was measured)."""
    from matplotlib.figure import Figure

    from ...plots import finite_rows

    vram = "max_vram_alloc_mb" in df and df["max_vram_alloc_mb"].astype(float).notna().any()
    panels = [("enc_s_median", "Encode time, median [s]"), ("dec_s_median", "Decode time, median [s]"),
              ("max_rss_mb", "Peak RSS, process + coder child [MiB]")]
    if vram:
        panels.append(("max_vram_alloc_mb", "Peak VRAM allocated [MiB]"))
    fig = Figure(figsize=(4.4 * len(panels), 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels))
    for name, g in df.groupby("curve", sort=True):
        qs = sorted(g["quality"].unique())
        q = qs[len(qs) // 2]
        g = g[g["quality"] == q].sort_values("mpx")
        for ax, (col, _) in zip(axes, panels):
            gc_ = finite_rows(g, ["mpx", col], f"{RESOLUTION} {name} {col}")
            if len(gc_):
                ax.plot(gc_["mpx"], gc_[col].astype(float), marker="o", label=f"{name} q{q}", **curves.style(g))
    locs, labels = _resolution_ticks(sizes)
    for i, (ax, (col, ylab)) in enumerate(zip(axes, panels)):
        _resolution_axis(ax, i, col, ylab, locs, labels)
    if axes[0].get_lines():
        axes[0].legend(fontsize="small")
    fig.suptitle(f"Coding time and memory vs resolution ({', '.join(curves.devices)})")
    save(fig, RESOLUTION)


def plot_complexity(rows_or_frame, out_dir: str | os.PathLike, *,
                    suffixes: Sequence[str] = (".png",), codecs=None) -> list[Path]:
    """Two figures from complexity rows: ``complexity_bpp_time`` (bpp vs encode and decode
    time at the largest resolution where every curve has a successful row; one curve per
    codec, or per codec and device when rows come from several devices) and
    ``complexity_resolution`` (encode/decode time, peak RSS and, from a GPU, peak VRAM vs
    megapixels, per curve at its median quality; ticks at the measured resolutions, labelled
    ``WxH`` and megapixels). Failed rows and non-finite values are left out; when no row
    succeeded, both figures say so in a centred text. Colours: one per codec
    (:func:`rdflow.plots.codec_colours` of ``codecs``, default the table's), the device by line
    style. Each figure has its data sidecar (``<stem>.json``, :func:`rdflow.plots.save`).
    Returns the written figure paths.
    """
    import pandas as pd

    raw = rows_or_frame if isinstance(rows_or_frame, pd.DataFrame) else pd.DataFrame(rows_or_frame)
    df = raw[raw["status"] == "ok"].copy() if "status" in raw else raw.iloc[:0].copy()
    save = _Saver(Path(out_dir), suffixes)
    if df.empty:
        _empty_figures(raw, save)
        return save.written
    df["mpx"] = df["width"] * df["height"] / 1e6
    curves = _Curves(df, codecs)
    sizes = sorted({(int(w), int(h)) for w, h in zip(df["width"], df["height"])},
                   key=lambda wh: (wh[0] * wh[1], wh), reverse=True)
    _bpp_time_figure(df, sizes, curves, save)
    _resolution_figure(df, sizes, curves, save)
    return save.written


def plot(table_csv: str | os.PathLike, outputs: Iterable[str | os.PathLike], codecs=None) -> list[Path]:
    """The two complexity figures (PNG and PDF) from the complexity table; ``outputs`` are
    the paths the rule declares (their folder and stems must be those of the stage's
    ``FIGURES``). ``codecs``: the run's codec names, for colours shared with the other figures
    (:func:`rdflow.plots.study_codecs`). Each figure's data sidecar (``<stem>.json``) is
    written beside it, not declared."""
    import pandas as pd

    outputs = [Path(p) for p in outputs]
    folders = {p.parent for p in outputs}
    if len(folders) != 1:
        raise RdflowError(f"complexity figures must share one folder, got {sorted(map(str, folders))}")
    df = pd.read_csv(table_csv, keep_default_na=False, na_values=["", "NaN", "nan"])
    written = plot_complexity(df, folders.pop(), suffixes=sorted({p.suffix for p in outputs}),
                              codecs=codecs)
    missing = [p for p in outputs if p not in written]
    if missing:
        raise RdflowError(f"plot_complexity did not write {missing}; it writes {written}")
    return written
