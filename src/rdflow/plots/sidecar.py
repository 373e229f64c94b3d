"""Saving a figure: each image atomically, and its data sidecar (what was drawn, as JSON)."""

from __future__ import annotations

import math
from pathlib import Path

from ..io import atomic_path
from .limits import HIDDEN_ATTR, NOTE_ATTR

#: attribute of a line holding its error bars ({"xerr", "yerr": half-widths or None, "level"})
ERRORS_ATTR = "_rdflow_errors"


def new_figure(width: float = 6.4, height: float = 4.8):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def _floats(values) -> list:
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            out.append(None)
            continue
        out.append(f if math.isfinite(f) else None)
    return out


def _tick_labels(axis) -> list[str]:
    lo, hi = sorted(axis.get_view_interval())
    locs = [t for t in axis.get_majorticklocs() if lo <= t <= hi]
    try:
        return [str(s) for s in axis.get_major_formatter().format_ticks(locs)]
    except Exception:  # a formatter that needs a drawn figure
        return []


def _line_series(line, label: str) -> dict:
    from matplotlib.colors import to_hex

    out = {"label": label, "color": to_hex(line.get_color()),
           "linestyle": str(line.get_linestyle()), "x": _floats(line.get_xdata()),
           "y": _floats(line.get_ydata())}
    errors = getattr(line, ERRORS_ATTR, None)
    if errors:  # error bars drawn for this line: half-widths per point (null: no bar)
        out.update({k: None if errors[k] is None else _floats(errors[k]) for k in ("xerr", "yerr")})
        out["error_level"] = errors["level"]
    return out


def _series(ax) -> list[dict]:
    """Every labelled errorbar, line and scatter of a panel."""
    from matplotlib.collections import PathCollection
    from matplotlib.colors import to_hex

    series, used = [], set()
    for c in ax.containers:  # errorbar: the data line under the container's label
        lines = getattr(c, "lines", None)
        if lines and lines[0] is not None:
            used.add(id(lines[0]))
            series.append(_line_series(lines[0], str(c.get_label())))
    for line in ax.get_lines():
        label = str(line.get_label())
        if id(line) in used or label.startswith("_") or len(line.get_xdata()) == 0:
            continue
        s = _line_series(line, label)
        if line.get_transform() is not ax.transData:
            s["kind"] = "hline"  # x in axes fraction
        series.append(s)
    for c in ax.collections:
        label = str(c.get_label())
        if not isinstance(c, PathCollection) or label.startswith("_"):
            continue
        off = c.get_offsets()
        fc = c.get_facecolor()
        series.append({"label": label, "color": to_hex(fc[0]) if len(fc) else None,
                       "linestyle": "none", "x": _floats(off[:, 0]), "y": _floats(off[:, 1])})
    return series


def _panel(ax, index: int) -> dict:
    return {"index": index, "title": ax.get_title(), "xlabel": ax.get_xlabel(),
            "ylabel": ax.get_ylabel(), "xscale": ax.get_xscale(), "yscale": ax.get_yscale(),
            "xlim": _floats(ax.get_xlim()), "ylim": _floats(ax.get_ylim()),
            "xticklabels": _tick_labels(ax.xaxis), "yticklabels": _tick_labels(ax.yaxis),
            "series": _series(ax), "note": getattr(ax, NOTE_ATTR, None),
            "hidden": getattr(ax, HIDDEN_ATTR, [])}


def figure_data(fig) -> dict:
    """What a figure shows, as a JSON-able dict: ``title`` (the figure's suptitle, else its
    first panel's title), ``xlabel``/``ylabel`` (of the first panel), ``series`` (every labelled
    line/scatter of every panel: label, colour, linestyle, x, y (non-finite -> null), panel
    index; a line drawn with error bars adds ``xerr``/``yerr``, the half-widths per point, and
    ``error_level``, 0.95), ``note`` (the empty-panel text(s), or null) and ``panels`` (the same per panel, with
    limits, scales, tick labels and the points left outside the axes)."""
    panels = [_panel(ax, i) for i, ax in enumerate(a for a in fig.axes if a.get_visible())]
    sup = fig.get_suptitle() if hasattr(fig, "get_suptitle") else ""
    first = panels[0] if panels else {"title": "", "xlabel": "", "ylabel": ""}
    notes = [p["note"] for p in panels if p["note"]]
    return {"title": sup or first["title"], "xlabel": first["xlabel"], "ylabel": first["ylabel"],
            "series": [dict(s, panel=p["index"]) for p in panels for s in p["series"]],
            "note": "; ".join(dict.fromkeys(notes)) if notes else None,
            "panels": panels}


def sidecar_path(path: str | Path) -> Path:
    """``results/figures/x.png`` -> ``results/figures/x.json``."""
    return Path(path).with_suffix(".json")


def save(fig, paths: list[str | Path]) -> None:
    """Save one figure to each path (format from the suffix), atomically, and its data sidecar
    (:func:`figure_data`) beside it (``<path without suffix>.json``, one per distinct stem)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from ..io import write_json

    FigureCanvasAgg(fig)
    for p in paths:
        p = Path(p)
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format=p.suffix.lstrip("."), dpi=150)
    data = figure_data(fig)  # after drawing: tick labels and limits as rendered
    for side in dict.fromkeys(sidecar_path(p) for p in paths):
        write_json(side, data)
