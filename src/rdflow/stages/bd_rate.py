"""Stage bd_rate: the BD-rate table of the whole study, and its readable page.

BD-rate (``results/bd_rate.csv``, rule ``bd_rate``): every codec against ``bd_rate.anchor``,
per image dataset (``results/image_rd_<dataset>_summary.csv``) and per video sequence
(``results/video_rd_<sequence>_summary.csv``), for each metric of ``bd_rate.metrics`` (default:
every registered metric's curve column) that the study measured: PSNR and MS-SSIM (dB) from the
summaries, and the metrics of the stages that write tables of their own (:data:`STAGE_TABLES`:
VMAF from ``results/vmaf.csv`` when ``vmaf.enabled``, mAP from ``results/machine_vision.csv``
when ``detection.enabled``). The numbers come from :func:`rdflow.metrics.bdrate.bd_table` (the
``bjontegaard`` package, with refusals and the overlap range); a cell that cannot be computed is
NaN with a ``reason``. The interpolation is ``bd_rate.method``: ``pchip`` (the default),
``akima`` or ``cubic`` (the classic Bjøntegaard cubic fit), :data:`METHODS`.

Stage tables are joined on (dataset|sequence, codec, quality). Their rate is the bpp of the RD
summary of the same operating point (the same bitstreams); a table's own ``bpp`` column is used
only for operating points the RD summaries do not have. Rows per item (an ``image`` or
``frame`` column) are averaged per operating point (the usual pooling), except for task metrics
(domain ``task``: mAP), which must come one row per operating point, since the mean of per-image
mAPs is not the mAP of the set. When the detection table has a ``gt`` column (pseudo ground
truth from the uncompressed frames, or real labels), each mAP is compared per ground truth:
metric ``map50_95@pseudo``, ``map50_95@labels``.
"""

from __future__ import annotations

import logging
import math
import os
import re

from .. import RdflowError, metrics as M, paths
from ..metrics.bdrate import METHODS, TABLE_COLUMNS, bd_table, is_task_metric, known_metrics

log = logging.getLogger("rdflow.bd_rate")

SECTION = "bd_rate"
#: the tables of the stages (config section = stage) whose metrics the RD summaries lack; the
#: metrics of a table are those the registry says that stage computes
STAGE_TABLES = {"vmaf": paths.VMAF_TABLE, "detection": paths.DETECTION_CSV}
#: leading columns of results/bd_rate.csv
LEAD = ["study", "dataset", "sequence"]


# ---------------------------------------------------------------- config

def settings(config: dict) -> dict:
    return config.get("bd_rate") or {}


def enabled(config: dict) -> bool:
    """bd_rate.enabled; null (the default) means: enabled when an anchor is named."""
    s = settings(config)
    flag = s.get("enabled")
    return bool(s.get("anchor")) if flag is None else bool(flag)


def _section_enabled(config: dict, section: str) -> bool:
    return bool((config.get(section) or {}).get("enabled"))


def stage_metrics(stage: str) -> tuple[str, ...]:
    """The metric columns of a stage's table: the curve columns of its registered metrics."""
    return tuple(m.curve_column for m in M.METRICS.values() if m.stage == stage)


def check(config: dict) -> None:
    """Parse-time checks of the ``bd_rate`` section (errors name the key and the fix)."""
    if not enabled(config):
        return
    s = settings(config)
    # image codecs, and the sequence-level video codecs when the study has them
    codecs = sorted(set(config.get("codecs") or {}) | set(config.get("video_codecs") or {}))
    anchor = s.get("anchor")
    if not anchor:
        raise RdflowError("bd_rate.anchor: BD-rate is enabled but no anchor codec is named; set "
                          f"bd_rate.anchor to one of the study's codecs ({', '.join(codecs)}) or "
                          "bd_rate.enabled: false")
    if anchor not in codecs:
        raise RdflowError(f"bd_rate.anchor is {anchor!r}, which is not a codec of this study; "
                          f"codecs: {', '.join(codecs)}")
    video_anchor = s.get("video_anchor")
    if video_anchor and video_anchor not in codecs:
        raise RdflowError(f"bd_rate.video_anchor is {video_anchor!r}, which is not a codec of this "
                          f"study; codecs: {', '.join(codecs)}")
    method = s.get("method", "pchip")
    if method not in METHODS:
        raise RdflowError(f"bd_rate.method is {method!r}; choose one of {', '.join(METHODS)}")
    known = known_metrics()
    bad = [m for m in s.get("metrics") or [] if m not in known]
    if bad:
        raise RdflowError(f"bd_rate.metrics: unknown metric(s) {', '.join(bad)}; known: "
                          f"{', '.join(known)}")


def inputs(config: dict, made) -> dict[str, list[str]]:
    """Input files of rule bd_rate: summaries of every dataset and sequence, and the table of
    each enabled stage of :data:`STAGE_TABLES` that the study makes (``made``: the study's
    targets, rdflow.study.all_targets; a stage makes its table only when it has work)."""
    from ..sources.sequences import sequences

    out = {
        "image": [paths.IMAGE_RD_SUMMARY.format(dataset=d) for d in sorted(config.get("datasets") or {})],
        "video": [paths.VIDEO_RD_SUMMARY.format(sequence=s) for s in sorted(sequences(config))],
    }
    made = set(made)
    for stage, path in STAGE_TABLES.items():
        out[stage] = [path] if _section_enabled(config, stage) and path in made else []
    return out


def targets(config: dict) -> list[str]:
    return [paths.BD_CSV] if enabled(config) else []


# ---------------------------------------------------------------- BD-rate table

def _per_set(column: str) -> bool:
    """A task metric (mAP) is a value of the set of images, never a mean of per-image values."""
    return M.get(base_metric(column)).domain == "task"


def _per_ground_truth(df, cols: list[str]):
    """One metric column per ground truth: map50_95@labels, map50_95@pseudo."""
    wide = df.drop(columns=cols)
    gts = df["gt"].dropna().unique()
    for c in cols:
        for gt in gts:
            wide[f"{c}@{gt}"] = df[c].where(df["gt"] == gt)
    return wide, [f"{c}@{gt}" for c in cols for gt in gts]


def _extra_summary(path: str | os.PathLike, group_col: str, columns: tuple[str, ...]):
    """Per-(group, codec, quality) values of ``columns`` (and bpp) of one stage table, or None
    when the table has no rows for this kind of group."""
    import pandas as pd

    df = pd.read_csv(path)
    missing = [c for c in ("codec", "quality") if c not in df.columns]
    if missing:
        raise RdflowError(f"{path} has no {' or '.join(missing)} column: BD-rate joins it with the "
                          "RD summaries on (dataset|sequence, codec, quality)")
    cols = [c for c in columns if c in df.columns]
    if group_col not in df.columns or not cols:
        return None
    df = df[df[group_col].notna()]
    if df.empty:
        return None
    keys = [group_col, "codec", "quality"]
    df = df.astype({"quality": int})
    if "gt" in df.columns:
        df, cols = _per_ground_truth(df, cols)
    out = None
    for c in cols:
        part = df[keys + [c]].dropna()
        if _per_set(c):
            dup = part.duplicated(keys, keep=False)
            if dup.any():
                first = part[dup].iloc[0]
                raise RdflowError(
                    f"{path}: several {c} values for {group_col} {first[group_col]!r}, codec "
                    f"{first['codec']!r}, quality {first['quality']}; BD-rate needs one mAP per "
                    "operating point (the mAP of all its images), not per-image values")
            agg = part.set_index(keys)[c]
        else:
            agg = part.groupby(keys)[c].mean()
        out = agg.to_frame() if out is None else out.join(agg, how="outer")
    if "bpp" in df.columns:
        out = out.join(df.groupby(keys)["bpp"].mean().rename("_extra_bpp"), how="left")
    return out.reset_index()


def combined_summary(summaries: list[str | os.PathLike], group_col: str,
                     extras: list[tuple[str | os.PathLike, tuple[str, ...]]] = ()):
    """The RD summaries of one kind (``dataset`` or ``sequence``), joined with the stage tables
    on (group, codec, quality); rate from the RD summary, else the table's own bpp."""
    import pandas as pd

    keys = [group_col, "codec", "quality"]
    parts = [pd.read_csv(p) for p in summaries]
    base = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=keys + ["bpp"])
    if not base.empty:
        base = base.astype({"quality": int})
    for path, columns in extras:
        extra = _extra_summary(path, group_col, columns)
        if extra is None:
            continue
        # values measured by the stage win over columns of the same name in the summaries
        base = base.drop(columns=[c for c in extra.columns if c not in keys and c in base.columns
                                  and c != "bpp"])
        base = base.merge(extra, on=keys, how="outer")
        if "_extra_bpp" in base.columns:
            base["bpp"] = base["bpp"].fillna(base["_extra_bpp"]) if "bpp" in base else base["_extra_bpp"]
            base = base.drop(columns="_extra_bpp")
    return base


def base_metric(column: str) -> str:
    """``map50_95`` for ``map50_95@labels``: the metric a column measures."""
    return column.split("@", 1)[0]


def metric_columns(columns, metrics) -> list[str]:
    """The columns that measure each of ``metrics``, in the order of ``metrics``."""
    return [c for m in metrics for c in columns if base_metric(c) == m]


def _anchor_missing_rows(part, group_col: str, group, anchor: str, metrics, method: str,
                         config: dict | None):
    why = f"anchor {anchor!r} was not run on {group_col} {group!r}"
    if config is not None:
        only = (config.get("codecs") or {}).get(anchor, {}).get("datasets")
        if group_col == "sequence":
            vc = (config.get("video") or {}).get("codecs")
            if vc is not None and anchor not in vc:
                why += " (it is not in video.codecs)"
        if only and group not in only:
            why += f" (codecs.{anchor}.datasets is {only})"
    rows = []
    for codec in dict.fromkeys(part["codec"]):
        for m in metrics:
            row = dict.fromkeys(TABLE_COLUMNS, math.nan)
            row.update({group_col: group, "codec": codec, "anchor": anchor, "metric": m,
                        "method": method, "monotone_fit": is_task_metric(m),
                        "n_points": int(part.loc[part["codec"] == codec, m].notna().sum())
                        if m in part else 0, "n_anchor": 0, "reason": why})
            rows.append(row)
    return rows


def bd_study_table(combined, group_col: str, anchor: str, metrics, method: str = "pchip",
                   min_overlap: float = 0.0, config: dict | None = None):
    """:func:`rdflow.metrics.bdrate.bd_table` per group of ``combined``, with every requested
    metric the group measured; a group without the anchor gives rows whose reason says so."""
    import pandas as pd

    frames = []
    if combined is None or combined.empty:
        return pd.DataFrame(columns=[group_col] + TABLE_COLUMNS)
    for group, part in combined.groupby(group_col, sort=True):
        have = [c for c in metric_columns(part.columns, metrics) if part[c].notna().any()]
        skipped = [m for m in metrics if m not in {base_metric(c) for c in have}]
        if skipped:
            log.info("%s %s: no %s values, no BD rows for them", group_col, group,
                     ", ".join(skipped))
        if not have:
            continue
        if anchor not in set(part["codec"]):
            frames.append(pd.DataFrame(_anchor_missing_rows(part, group_col, group, anchor, have,
                                                            method, config)))
            continue
        frames.append(bd_table(part, anchor, metrics=have, group_cols=(group_col,),
                               method=method, min_overlap=min_overlap))
    if not frames:
        return pd.DataFrame(columns=[group_col] + TABLE_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def _sorted_table(out: list, metrics: list[str]):
    """The image and video parts as one table, ordered by study, group, metric, codec."""
    import pandas as pd

    columns = LEAD + TABLE_COLUMNS
    if not out:
        return pd.DataFrame(columns=columns)
    table = pd.concat(out, ignore_index=True)
    for c in columns:
        if c not in table.columns:
            table[c] = None
    order = {m: i for i, m in enumerate(metrics)}
    table["_m"] = table["metric"].map(lambda m: order.get(base_metric(m), len(order)))
    table = table.sort_values(["study", "dataset", "sequence", "_m", "codec"], kind="stable",
                              na_position="first").drop(columns="_m")
    return table[columns].reset_index(drop=True)


def bd_rate_study(config: dict, image_summaries, video_summaries, vmaf_csv=None,
                  detection_csv=None):
    """The whole BD-rate table of a study (the content of ``results/bd_rate.csv``);
    ``vmaf_csv``/``detection_csv``: the tables of those stages, when the study has them."""
    s = settings(config)
    anchor = s["anchor"]
    metrics = list(s.get("metrics") or known_metrics())
    method = s.get("method", "pchip")
    min_overlap = float(s.get("min_overlap", 0.0))
    extras = [(path, stage_metrics(stage))
              for stage, path in (("vmaf", vmaf_csv), ("detection", detection_csv)) if path]
    out = []
    anchors = {"image": anchor, "video": s.get("video_anchor") or anchor}
    for study, group_col, summaries in (("image", "dataset", image_summaries),
                                        ("video", "sequence", video_summaries)):
        combined = combined_summary(list(summaries), group_col, extras)
        t = bd_study_table(combined, group_col, anchors[study], metrics, method, min_overlap, config)
        if not t.empty:
            t.insert(0, "study", study)
            out.append(t)
    return _sorted_table(out, metrics)


def write_bd_rate(config: dict, image_summaries, video_summaries, out_csv, vmaf_csv=None,
                  detection_csv=None, html=None):
    """Rule bd_rate: the table, and its readable page when ``html`` is given."""
    from ..io import atomic_open, write_csv

    table = bd_rate_study(config, image_summaries, video_summaries, vmaf_csv, detection_csv)
    write_csv(out_csv, table)
    if html:
        with atomic_open(html, "w", encoding="utf-8") as fh:
            s = settings(config)
            label = s.get("anchor")
            if s.get("video_anchor") and s["video_anchor"] != label:
                label = f"{label} (video sequences: {s['video_anchor']})"
            fh.write(bd_rate_html(table, label))
    valid = table["reason"].isna().sum() if len(table) else 0
    log.info("%s: %d rows, %d with a value, anchor %s", out_csv, len(table), valid,
             settings(config).get("anchor"))
    return table


# ---------------------------------------------------------------- the readable page

def _unit(column: str) -> str:
    """The unit of a BD-quality: the metric's (dB), else points of its scale, named by its
    label without threshold or unit (VMAF points, mAP points)."""
    metric = base_metric(column)
    return M.unit(metric) or f"{re.split(r'[@[]', M.label(metric))[0].strip()} points"


def _fmt(v, spec: str) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _html_group(part) -> str:
    """One dataset's or sequence's table: a row per codec, three cells per metric; the reasons
    of refused cells listed under it."""
    from html import escape

    metrics = list(dict.fromkeys(part["metric"]))
    head = "".join(f"<th>BD-rate {escape(m)} [%]</th><th>BD-{escape(m)} "
                   f"[{escape(_unit(m))}]</th><th>{escape(m)} range</th>" for m in metrics)
    rows, notes = [], []
    for codec, g in part.groupby("codec", sort=False):
        cells = []
        for m in metrics:
            r = g[g["metric"] == m]
            if r.empty:
                cells.append("<td></td>" * 3)
                continue
            r = r.iloc[0]
            rng = (f"{_fmt(r['overlap_low'], '.4g')}–{_fmt(r['overlap_high'], '.4g')}"
                   if r["overlap_low"] == r["overlap_low"] else "–")
            cells.append(f"<td>{_fmt(r['bd_rate_pct'], '+.2f')}</td>"
                         f"<td>{_fmt(r['bd_quality'], '+.3f')}</td><td>{rng}</td>")
            if isinstance(r["reason"], str) and r["reason"]:
                notes.append(f"<li>{escape(str(codec))}, {escape(m)}: {escape(r['reason'])}</li>")
        rows.append(f"<tr><th>{escape(str(codec))}</th>{''.join(cells)}</tr>")
    out = (f"<table><thead><tr><th>codec</th>{head}</tr></thead><tbody>"
           f"{''.join(rows)}</tbody></table>")
    return out + (f"<ul class='notes'>{''.join(notes)}</ul>" if notes else "")


def bd_rate_html(table, anchor: str) -> str:
    """A readable page of the BD-rate table: per dataset/sequence, one row per codec, for each
    metric the BD-rate (%) and BD-quality, with the quality range integrated; refused cells
    show a dash and their reason is listed under the table."""
    from html import escape

    parts = [f"<h1>BD-rate against {escape(str(anchor))}</h1>",
             "<p>BD-rate: mean bit-rate difference at equal quality, in percent (negative = "
             "fewer bits than the anchor), over the quality interval both curves cover (shown). "
             "BD-quality: mean quality difference at equal rate, in the metric's unit. mAP curves "
             "are made monotone (Pareto envelope) first.</p>"]
    if table.empty:
        parts.append("<p>No rows: the study has no dataset or sequence with BD-rate metrics.</p>")
    for (study, group), part in table.groupby(
            [table["study"], table["dataset"].fillna(table["sequence"])], sort=False):
        kind = "dataset" if study == "image" else "sequence"
        parts.append(f"<h2>{escape(study)} {kind} {escape(str(group))}</h2>")
        parts.append(_html_group(part))
    style = ("body{font-family:sans-serif;font-size:14px;margin:1em}table{border-collapse:"
             "collapse;margin-bottom:.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:"
             "right}thead th{background:#eee}tbody th{text-align:left}.notes{color:#555;"
             "font-size:12px}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>BD-rate</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")
