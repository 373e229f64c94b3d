"""What a panel shows: finite points only, robust axis limits, and a text when it is empty."""

from __future__ import annotations

import logging
import math
from typing import Sequence

log = logging.getLogger("rdflow.plots")

#: Tukey's far-out fences: values beyond Q1 - K*IQR or Q3 + K*IQR may be left outside the axes
FENCE_K = 3.0
#: the sidecar's key for the text of an empty panel
NOTE_ATTR = "_rdflow_note"
HIDDEN_ATTR = "_rdflow_hidden"


def finite_rows(g, cols: Sequence[str], what: str = ""):
    """Rows of ``g`` whose ``cols`` are all finite numbers; the dropped ones are logged."""
    import numpy as np
    import pandas as pd

    ok = np.ones(len(g), dtype=bool)
    for c in cols:
        ok &= np.isfinite(pd.to_numeric(g[c], errors="coerce").to_numpy(float))
    if not ok.all():
        log.info("%s: %d of %d points left out, non-finite %s", what or "figure", int((~ok).sum()),
                 len(g), "/".join(cols))
    return g[ok]


def _robust_interval(values, *, log_scale: bool = False) -> tuple[float, float] | None:
    """(lo, hi) of the finite values with isolated extremes left out; None when none are finite.

    Rule (on log10 of the positive values for a log axis): with at least 4 values and a non-zero
    interquartile range, the values inside Tukey's far fences [Q1 - 3 IQR, Q3 + 3 IQR] give the
    core interval; a value beyond the fences is taken back in, walking outwards, while its gap to
    the interval's end is at most the width of the core interval. So a single far point (24 bpp
    beside curves in 0.1-2 bpp, a PSNR of 99 dB beside 25-45 dB) stays outside, while a curve
    that merely extends the others (JPEG at 3.5 bpp) is kept."""
    import numpy as np

    v = np.asarray(list(values), dtype=float)
    v = v[np.isfinite(v)]
    if log_scale:
        v = np.log10(v[v > 0])
    if v.size == 0:
        return None
    v = np.sort(v)
    lo, hi = float(v[0]), float(v[-1])
    if v.size >= 4:
        q1, q3 = np.percentile(v, [25, 75])
        iqr = q3 - q1
        if iqr > 0:
            core = v[(v >= q1 - FENCE_K * iqr) & (v <= q3 + FENCE_K * iqr)]
            lo, hi = float(core[0]), float(core[-1])
            span = hi - lo
            for x in v[v > hi]:
                if x - hi > span:
                    break
                hi = float(x)
            for x in v[v < lo][::-1]:
                if lo - x > span:
                    break
                lo = float(x)
    if log_scale:
        return 10.0 ** lo, 10.0 ** hi
    return lo, hi


def _artist_points(ax):
    """(label, x, y) of every data-coordinate line and scatter of ``ax``, and the y values of
    horizontal reference lines (axhline)."""
    import numpy as np
    from matplotlib.collections import PathCollection

    pts, extra_y = [], []
    for line in ax.get_lines():
        x = np.asarray(line.get_xdata(), dtype=float)
        y = np.asarray(line.get_ydata(), dtype=float)
        if line.get_transform() is ax.transData:
            pts.append((line.get_label(), x, y))
        elif x.size and set(x.tolist()) <= {0.0, 1.0}:  # axhline: x in axes coordinates
            extra_y.extend(y.tolist())
    for c in ax.collections:
        if isinstance(c, PathCollection):
            off = np.asarray(c.get_offsets(), dtype=float).reshape(-1, 2)
            pts.append((c.get_label(), off[:, 0], off[:, 1]))
    return pts, extra_y


def _limit_axis(ax, axis: str, pts, extra_y, hidden_mask) -> None:
    """Robust limits of one axis (``x`` or ``y``), set only when they leave a point outside;
    the points they leave out are marked in ``hidden_mask``."""
    import numpy as np

    log_scale = (ax.get_xscale() if axis == "x" else ax.get_yscale()) == "log"
    vals = np.concatenate([(px if axis == "x" else py) for _, px, py in pts])
    fin = vals[np.isfinite(vals)]
    if log_scale:
        fin = fin[fin > 0]
    interval = _robust_interval(fin, log_scale=log_scale)
    if interval is None:
        return
    lo, hi = interval
    if axis == "y" and extra_y:
        lo, hi = min([lo] + extra_y), max([hi] + extra_y)
    if fin.size and fin.min() >= lo and fin.max() <= hi:
        return  # nothing left out: matplotlib's limits
    for i, (_, px, py) in enumerate(pts):
        v = px if axis == "x" else py
        with np.errstate(invalid="ignore"):
            hidden_mask[i] |= np.isfinite(v) & ((v < lo) | (v > hi))
    if log_scale:
        pad = 10 ** (0.05 * (math.log10(hi) - math.log10(lo)) or 0.1)
        lim = (lo / pad, hi * pad)
    else:
        pad = 0.05 * (hi - lo) or max(abs(lo) * 0.05, 0.5)
        lim = (lo - pad, hi + pad)
    (ax.set_xlim if axis == "x" else ax.set_ylim)(*lim)


def robust_limits(ax, *, x: bool = True, y: bool = True) -> list[dict]:
    """Set the limits of ``ax`` from robust bounds of what is drawn on it (see
    :func:`_robust_interval`, applied to all plotted points of the panel together, per axis, on
    log10 for a log axis), only when that leaves some point outside: otherwise matplotlib's own
    limits stay. Horizontal reference lines always stay in view. Points outside the limits are
    named in a small text at the bottom of the panel and returned (also kept for the sidecar)."""
    import numpy as np

    pts, extra_y = _artist_points(ax)
    if not pts:
        return []
    hidden_mask = [np.zeros(len(px), dtype=bool) for _, px, _ in pts]
    for axis, use in (("x", x), ("y", y)):
        if use:
            _limit_axis(ax, axis, pts, extra_y, hidden_mask)
    hidden = []
    for (label, px, py), m in zip(pts, hidden_mask):
        for j in np.flatnonzero(m):
            hidden.append({"label": str(label), "x": float(px[j]), "y": float(py[j])})
    if hidden:
        shown = [h for h in hidden if not h["label"].startswith("_")] or hidden
        text = ", ".join(f"{h['label']} ({h['x']:.3g}, {h['y']:.3g})" for h in shown[:3])
        more = f" and {len(hidden) - 3} more" if len(hidden) > 3 else ""
        ax.text(0.99, 0.01, f"outside the axes: {text}{more}", transform=ax.transAxes,
                ha="right", va="bottom", fontsize=6, color="0.3")
        log.info("%s: %d point(s) outside the axes: %s%s", ax.get_title() or "figure",
                 len(hidden), text, more)
    setattr(ax, HIDDEN_ATTR, hidden)
    return hidden


def note_empty(ax, text: str) -> None:
    """Write ``text`` (why there is nothing to draw) in the middle of the panel; kept for the
    sidecar's ``note``."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=9,
            color="0.25", wrap=True)
    ax.tick_params(bottom=False, left=False, labelbottom=False, labelleft=False)  # no scale to read
    setattr(ax, NOTE_ATTR, text)
    log.info("empty panel %r: %s", ax.get_title(), text)


def missing_reason(frame, y: str, hue: str = "codec") -> str:
    """Why ``frame`` has no finite ``y`` values, per group (e.g. "x264: all inf; jpeg: NaN")."""
    import numpy as np
    import pandas as pd

    if frame is None or len(frame) == 0:
        return "no rows"
    if y not in frame:
        return f"no {y} column (the metric was not measured)"
    parts = []
    for name, g in frame.groupby(hue, sort=True):
        v = pd.to_numeric(g[y], errors="coerce").to_numpy(float)
        what = "all NaN" if np.isnan(v).all() else "all infinite" if np.isinf(v[~np.isnan(v)]).all() else "non-finite"
        parts.append(f"{name}: {what}")
    return "; ".join(parts)
