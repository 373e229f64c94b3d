"""Figures (PNG and PDF) drawn with matplotlib's object API (no pyplot: jobs run in threads).

Shared by every figure function of the package:

* :func:`codec_colours`: one colour per codec name, from the sorted list of the run's codec
  names (:func:`study_codecs`), so that a codec has the same colour in every figure of a run.
  Published reference curves (:func:`reference_match`) take their study codec's colour, dashed.
* :func:`finite_rows`: non-finite values (inf PSNR of a lossless point, NaN) are dropped with a
  log line before plotting.
* :func:`robust_limits`: isolated extreme points (a lossless 24 bpp point, a PSNR capped at 99)
  do not squash the other curves; the points left outside the axes are named in the panel.
* :func:`note_empty`: a panel without data says why in a centred text.
* :func:`save`: writes each image and a data sidecar ``<figure path without suffix>.json``
  (:func:`figure_data`) holding what was drawn, for tests and for readers of the results.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence

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

#: codec colours, in assignment order: tab10 without its grey, then tab20's light tones without
#: theirs, then tab20b's dark tones. Greys and black are kept for reference lines (uncompressed,
#: pooled fit, baseline). More names than colours: the list repeats.
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
    "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d",
    "#9edae5",
    "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173",
)
#: Tukey's far-out fences: values beyond Q1 - K*IQR or Q3 + K*IQR may be left outside the axes
FENCE_K = 3.0
#: the sidecar's key for the text of an empty panel
NOTE_ATTR = "_rdflow_note"
HIDDEN_ATTR = "_rdflow_hidden"


# ---------------------------------------------------------------------------------- colours
def study_codecs(config: Mapping) -> list[str]:
    """Every codec name of a run, sorted: the image codecs (``codecs``) and the sequence codecs
    (``video_codecs``). Pass it as ``codecs=`` to the figure functions so that colours agree
    across all figures of the run."""
    names = set(config.get("codecs") or {}) | set(config.get("video_codecs") or {})
    return sorted(map(str, names))


def codec_colours(names: Iterable) -> dict[str, str]:
    """Codec name -> colour (hex): the i-th of the sorted unique names gets ``PALETTE[i]``."""
    ordered = sorted({str(n) for n in names})
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(ordered)}


def extra_colours(used: Iterable[str], n: int) -> list[str]:
    """``n`` colours not in ``used`` (palette order; the palette repeats when exhausted)."""
    used = {str(c).lower() for c in used}
    free = [c for c in PALETTE if c not in used] or list(PALETTE)
    return [free[i % len(free)] for i in range(n)]


def _norm(s) -> str:
    return str(s).strip().lower()


def _reference_keys(codec: str, stem: str | None) -> tuple[set[str], str | None]:
    """Names a reference curve may correspond to, and its training metric when the stem names one.
    ``compressai-bmshj2018-hyperprior_mse_cpu`` -> {"compressai-bmshj2018-hyperprior_mse_cpu",
    "bmshj2018-hyperprior"}, "mse"; ``jpeg`` -> {"jpeg"}; ``paper-elic2022_ms-ssim`` ->
    {..., "elic2022"}, "ms-ssim"."""
    keys = {_norm(codec)}
    metric = None
    if stem:
        keys.add(_norm(stem))
        base = re.sub(r"^(compressai|paper)-", "", _norm(stem))
        parts = base.split("_")
        keys.add(parts[0])
        if len(parts) > 1 and parts[1] in ("mse", "ms-ssim"):
            metric = parts[1]
    return keys, metric


def reference_match(codec: str, stem: str | None, study: Mapping[str, Mapping]) -> str | None:
    """The study codec a published curve corresponds to, or None.

    ``study``: study codec name -> {"kind", "architecture", "metric"} (any may be missing). In
    order: a study codec of the same name (the curve's JSON name or file stem, case-insensitive);
    a learned codec whose architecture is the curve's (``compressai-<architecture>_<metric>_...``),
    one of the same training metric first; a classical codec whose kind is the curve's name
    (reference ``jpeg`` <-> a codec of kind ``jpeg``); a codec whose name, without separators,
    is the first tokens of the file stem (``bpg_444_x265_ycbcr`` <-> ``bpg444``, but
    ``jpeg2000`` is not ``jpeg``), the most tokens first. Ties: the first name in sorted order."""
    keys, metric = _reference_keys(codec, stem)
    names = sorted(map(str, study))
    for n in names:
        if _norm(n) in keys:
            return n
    arch = [n for n in names if study[n].get("architecture") is not None
            and _norm(study[n]["architecture"]) in keys]
    if arch:
        same = [n for n in arch if metric is not None and _norm(study[n].get("metric") or "") == metric]
        return (same or arch)[0]
    for n in names:
        kind = study[n].get("kind")
        if kind is not None and _norm(kind) != "learned" and _norm(kind) in keys:
            return n
    if stem:  # bpg_444_x265_ycbcr <-> bpg444: the name equals the stem's first tokens joined
        tokens = re.split(r"[_\-.]+", re.sub(r"^(compressai|paper)-", "", _norm(stem)))
        prefixes = {"".join(tokens[:k]): k for k in range(1, len(tokens) + 1)}
        best = sorted((-prefixes[re.sub(r"[_\-.]+", "", _norm(n))], n) for n in names
                      if re.sub(r"[_\-.]+", "", _norm(n)) in prefixes)
        if best:
            return best[0][1]
    return None


def study_info(config: Mapping | None = None, summary=None, hue: str = "codec") -> dict[str, dict]:
    """Study codec name -> {"kind", "architecture", "metric"}, from the config's ``codecs`` and
    ``video_codecs`` sections and/or the ``kind``/``architecture`` columns of a summary."""
    info: dict[str, dict] = {}
    if config is not None:
        for section in ("codecs", "video_codecs"):
            for n, c in (config.get(section) or {}).items():
                c = c or {}
                info[str(n)] = {"kind": c.get("kind"), "architecture": c.get("architecture"),
                                "metric": c.get("metric")}
    if summary is not None and hue in summary:
        for n, g in summary.groupby(hue, sort=True):
            d = info.setdefault(str(n), {})
            for col in ("kind", "architecture"):
                if d.get(col) is None and col in g and g[col].notna().any():
                    d[col] = str(g[col].dropna().iloc[0])
    return info


# --------------------------------------------------------------------------------- data
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
        if not use:
            continue
        log_scale = (ax.get_xscale() if axis == "x" else ax.get_yscale()) == "log"
        vals = np.concatenate([(px if axis == "x" else py) for _, px, py in pts])
        fin = vals[np.isfinite(vals)]
        if log_scale:
            fin = fin[fin > 0]
        interval = _robust_interval(fin, log_scale=log_scale)
        if interval is None:
            continue
        lo, hi = interval
        if axis == "y" and extra_y:
            lo, hi = min([lo] + extra_y), max([hi] + extra_y)
        if fin.size and fin.min() >= lo and fin.max() <= hi:
            continue  # nothing left out: matplotlib's limits
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


# ------------------------------------------------------------------------------- saving
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


def _panel(ax, index: int) -> dict:
    from matplotlib.collections import PathCollection
    from matplotlib.colors import to_hex

    series, used = [], set()
    for c in ax.containers:  # errorbar: the data line under the container's label
        lines = getattr(c, "lines", None)
        if lines and lines[0] is not None:
            line = lines[0]
            used.add(id(line))
            series.append({"label": str(c.get_label()), "color": to_hex(line.get_color()),
                           "linestyle": str(line.get_linestyle()),
                           "x": _floats(line.get_xdata()), "y": _floats(line.get_ydata())})
    for line in ax.get_lines():
        label = str(line.get_label())
        if id(line) in used or label.startswith("_") or len(line.get_xdata()) == 0:
            continue
        s = {"label": label, "color": to_hex(line.get_color()),
             "linestyle": str(line.get_linestyle()), "x": _floats(line.get_xdata()),
             "y": _floats(line.get_ydata())}
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
    return {"index": index, "title": ax.get_title(), "xlabel": ax.get_xlabel(),
            "ylabel": ax.get_ylabel(), "xscale": ax.get_xscale(), "yscale": ax.get_yscale(),
            "xlim": _floats(ax.get_xlim()), "ylim": _floats(ax.get_ylim()),
            "xticklabels": _tick_labels(ax.xaxis), "yticklabels": _tick_labels(ax.yaxis),
            "series": series, "note": getattr(ax, NOTE_ATTR, None),
            "hidden": getattr(ax, HIDDEN_ATTR, [])}


def figure_data(fig) -> dict:
    """What a figure shows, as a JSON-able dict: ``title`` (the figure's suptitle, else its
    first panel's title), ``xlabel``/``ylabel`` (of the first panel), ``series`` (every labelled
    line/scatter of every panel: label, colour, linestyle, x, y (non-finite -> null), panel
    index), ``note`` (the empty-panel text(s), or null) and ``panels`` (the same per panel, with
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

    from .io import write_json

    FigureCanvasAgg(fig)
    for p in paths:
        p = Path(p)
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format=p.suffix.lstrip("."), dpi=150)
    data = figure_data(fig)  # after drawing: tick labels and limits as rendered
    for side in dict.fromkeys(sidecar_path(p) for p in paths):
        write_json(side, data)


# ------------------------------------------------------------------------------ figures
def rd_curves(summary, y: str, paths, *, x: str = "bpp", title: str = "", reference=None,
              hue: str = "codec", codecs: Sequence[str] | None = None,
              study: Mapping[str, Mapping] | None = None):
    """One line per codec through its finite (x, y) points sorted by x, in the codec's colour
    (:func:`codec_colours` of ``codecs``, the run's codec names, default: those in ``summary``);
    published reference curves dashed, in their study codec's colour (:func:`reference_match`
    with ``study``, default: from the summary's kind/architecture columns) or in a colour no study
    codec has. Every codec with a finite point is drawn (image, per-frame and sequence codecs
    alike). Non-finite points are dropped (logged), isolated extreme points are left outside the
    axes (:func:`robust_limits`), and a figure without any finite point says why."""
    fig, ax = new_figure()
    names = sorted({str(n) for n in summary[hue]}) if hue in summary else []
    colours = codec_colours(list(codecs or []) + names)
    if study is None:
        study = study_info(None, summary, hue)
    drawn = 0
    if y in summary and x in summary:
        for name, g in summary.groupby(hue, sort=True):
            g = finite_rows(g, [x, y], f"{title or y}: {name}").sort_values(x)
            if g.empty:
                continue
            label = str(name)
            if "weights" in g and str(g["weights"].iloc[0]).startswith("random"):
                label = f"{name} (random weights)"
            ax.plot(g[x], g[y], marker="o", ms=3.5, lw=1.4, label=label, color=colours[str(name)])
            drawn += 1
    n_ref = 0
    if reference is not None and len(reference) and y in reference and x in reference:
        groups = [(str(n), g) for n, g in reference.groupby("codec", sort=True)]
        unmatched = []
        for name, g in groups:
            stem = str(g["reference"].iloc[0]) if "reference" in g else None
            m = reference_match(name, stem, study)
            unmatched += [name] if m is None else []
        spare = dict(zip(unmatched, extra_colours(colours.values(), len(unmatched))))
        for name, g in groups:
            g = finite_rows(g, [x, y], f"{title or y}: {name} (published)").sort_values(x)
            if g.empty:
                continue
            stem = str(g["reference"].iloc[0]) if "reference" in g else None
            m = reference_match(name, stem, study)
            colour = colours.get(m) if m is not None else None
            if colour is None:
                colour = spare.get(name) or extra_colours(colours.values(), 1)[0]
            ax.plot(g[x], g[y], ls="--", lw=1.0, alpha=0.8, color=colour, label=f"{name} (published)")
            n_ref += 1
    ax.set_xlabel(LABELS.get(x, x))
    ax.set_ylabel(LABELS.get(y, y))
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if drawn + n_ref:
        robust_limits(ax)
        ax.legend(fontsize=7, ncol=1 if drawn + n_ref < 10 else 2)
    else:
        note_empty(ax, f"no finite {y} values: {missing_reason(summary, y, hue)}")
    save(fig, paths)
    return fig


def plot_image_rd(config: dict, dataset: str, metric: str, summary_csv, paths) -> None:
    """RD figure of an image dataset, with CompressAI's published curves when configured."""
    import pandas as pd

    summary = pd.read_csv(summary_csv)
    reference = None
    ref = config.get("reference") or {}
    on = ref.get("datasets")  # null: the kodak datasets (the published curves are Kodak's)
    kodak = config["datasets"][dataset]["kind"] == "kodak" if on is None else dataset in on
    if ref.get("compressai_results") and ref.get("curves") and kodak:
        from .reference import load_reference

        location = ref["compressai_results"].rstrip("/") + "/image/kodak"
        reference = load_reference(location, ref["curves"], "resources/reference")
    title = f"{dataset}: {LABELS.get(metric, metric)} vs rate"
    study = study_info(config, summary)
    rd_curves(summary, metric, paths, title=title, reference=reference,
              codecs=study_codecs(config), study=study)
