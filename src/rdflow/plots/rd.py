"""Axis labels (metric columns from :mod:`rdflow.metrics`) and the rate-distortion figure."""

from __future__ import annotations

from typing import Mapping, Sequence

from .colours import codec_colours, extra_colours, reference_match, study_info
from .limits import finite_rows, missing_reason, note_empty, robust_limits
from .sidecar import new_figure, save

#: labels of the columns that are not metrics (a metric's label is the registry's)
AXIS_LABELS = {
    "bpp": "Rate [bpp]",
    "enc_s": "Encode time [s]",
    "dec_s": "Decode time [s]",
}


def axis_label(column: str) -> str:
    """The axis label of a column: rate and time columns, else the metric's
    (:func:`rdflow.metrics.label`; the column itself when it is neither)."""
    from .. import metrics

    return AXIS_LABELS.get(column) or metrics.label(column)


#: suffix of the summary column holding a column's 95 % confidence half-width (stage aggregate)
CI_SUFFIX = "_ci95"


def _half_widths(g, column: str):
    """The finite, non-negative ``<column>_ci95`` values of ``g`` (NaN elsewhere), or None when
    the summary has none for this curve."""
    import numpy as np
    import pandas as pd

    if column + CI_SUFFIX not in g:
        return None
    e = pd.to_numeric(g[column + CI_SUFFIX], errors="coerce").to_numpy(float)
    e = np.where(np.isfinite(e) & (e >= 0), e, np.nan)
    return None if np.isnan(e).all() else e


def _draw_errors(ax, line, g, x: str, y: str, colour: str, label: str) -> bool:
    """95 % confidence error bars (x: rate, y: quality) of a curve whose summary has them; kept
    on ``line`` for the sidecar (:data:`rdflow.plots.sidecar.ERRORS_ATTR`)."""
    from .sidecar import ERRORS_ATTR

    xerr, yerr = _half_widths(g, x), _half_widths(g, y)
    if xerr is None and yerr is None:
        return False
    ax.errorbar(g[x], g[y], xerr=xerr, yerr=yerr, fmt="none", ecolor=colour, elinewidth=0.8,
                capsize=2.0, alpha=0.7, label=f"_ci95 {label}")
    setattr(line, ERRORS_ATTR, {"xerr": xerr, "yerr": yerr, "level": 0.95})
    return True


def _draw_codecs(ax, summary, x: str, y: str, hue: str, colours: dict, title: str) -> tuple[int, int]:
    """One curve per codec; returns (curves drawn, curves with error bars)."""
    drawn = with_errors = 0
    if y in summary and x in summary:
        for name, g in summary.groupby(hue, sort=True):
            g = finite_rows(g, [x, y], f"{title or y}: {name}").sort_values(x)
            if g.empty:
                continue
            label = str(name)
            if "weights" in g and str(g["weights"].iloc[0]).startswith("random"):
                label = f"{name} (random weights)"
            colour = colours[str(name)]
            (line,) = ax.plot(g[x], g[y], marker="o", ms=3.5, lw=1.4, label=label, color=colour)
            with_errors += _draw_errors(ax, line, g, x, y, colour, label)
            drawn += 1
    return drawn, with_errors


def _draw_reference(ax, reference, x: str, y: str, colours: dict, study, title: str) -> int:
    """Published curves, dashed, in their study codec's colour or in one no study codec has."""
    if reference is None or not len(reference) or y not in reference or x not in reference:
        return 0
    groups = [(str(n), g) for n, g in reference.groupby("codec", sort=True)]

    def match(name, g):
        stem = str(g["reference"].iloc[0]) if "reference" in g else None
        return reference_match(name, stem, study)

    unmatched = [name for name, g in groups if match(name, g) is None]
    spare = dict(zip(unmatched, extra_colours(colours.values(), len(unmatched))))
    n_ref = 0
    for name, g in groups:
        g = finite_rows(g, [x, y], f"{title or y}: {name} (published)").sort_values(x)
        if g.empty:
            continue
        m = match(name, g)
        colour = colours.get(m) if m is not None else None
        if colour is None:
            colour = spare.get(name) or extra_colours(colours.values(), 1)[0]
        ax.plot(g[x], g[y], ls="--", lw=1.0, alpha=0.8, color=colour, label=f"{name} (published)")
        n_ref += 1
    return n_ref


def rd_curves(summary, y: str, paths, *, x: str = "bpp", title: str = "", reference=None,
              hue: str = "codec", codecs: Sequence[str] | None = None,
              study: Mapping[str, Mapping] | None = None):
    """One line per codec through its finite (x, y) points sorted by x, in the codec's colour
    (:func:`codec_colours` of ``codecs``, the run's codec names, default: those in ``summary``);
    published reference curves dashed, in their study codec's colour (:func:`reference_match`
    with ``study``, default: from the summary's kind/architecture columns) or in a colour no study
    codec has. Every codec with a finite point is drawn (image, per-frame and sequence codecs
    alike). Where the summary has ``<y>_ci95`` / ``<x>_ci95`` (stage aggregate's 95 %
    confidence half-widths over items), each point gets error bars in its codec's colour (the
    sidecar's ``yerr``/``xerr`` of the series). Non-finite points are dropped (logged), isolated
    extreme points are left outside the axes (:func:`robust_limits`), and a figure without any
    finite point says why."""
    fig, ax = new_figure()
    names = sorted({str(n) for n in summary[hue]}) if hue in summary else []
    colours = codec_colours(list(codecs or []) + names)
    if study is None:
        study = study_info(None, summary, hue)
    drawn, with_errors = _draw_codecs(ax, summary, x, y, hue, colours, title)
    n_ref = _draw_reference(ax, reference, x, y, colours, study, title)
    ax.set_xlabel(axis_label(x))
    ax.set_ylabel(axis_label(y))
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if drawn + n_ref:
        robust_limits(ax)
        ax.legend(fontsize=7, ncol=1 if drawn + n_ref < 10 else 2,
                  title="bars: 95 % CI of the mean" if with_errors else None, title_fontsize=6)
    else:
        note_empty(ax, f"no finite {y} values: {missing_reason(summary, y, hue)}")
    save(fig, paths)
    return fig
