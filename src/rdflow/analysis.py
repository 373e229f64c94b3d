"""Study-level analysis: the BD-rate table of the whole study, and the run's environment.

BD-rate (``results/bd_rate.csv``, rule ``bd_rate``): every codec against ``bd_rate.anchor``,
per image dataset (``results/image_rd_<dataset>_summary.csv``) and per video sequence
(``results/video_rd_<sequence>_summary.csv``), for each metric of ``bd_rate.metrics`` that the
study measured: PSNR and MS-SSIM (dB) from the summaries, VMAF from ``results/vmaf.csv`` when
``vmaf.enabled``, mAP from ``results/machine_vision.csv`` when ``detection.enabled``. The
numbers come from :func:`rdflow.bdrate.bd_table` (the ``bjontegaard`` package, with refusals
and the overlap range); a cell that cannot be computed is NaN with a ``reason``.

Extra metric tables (VMAF, mAP) are joined on (dataset|sequence, codec, quality). Their rate
is the bpp of the RD summary of the same operating point (the same bitstreams); a table's own
``bpp`` column is used only for operating points the RD summaries do not have. Rows per item
(an ``image`` or ``frame`` column) are averaged per operating point for VMAF (the usual
pooling); mAP must come one row per operating point, since the mean of per-image mAPs is not
the mAP of the set. When the detection table has a ``gt`` column (pseudo ground truth from the
uncompressed frames, or real labels), each mAP is compared per ground truth: metric
``map50_95@pseudo``, ``map50_95@labels``.

Environment (``results/environment.csv``, rule ``environment``): package versions, ffmpeg's
version, the device and the machine, recorded by the run (shown on the report's front page).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from . import RdflowError

log = logging.getLogger("rdflow.analysis")

DEFAULT_METRICS = ["psnr_rgb", "ms_ssim_db", "vmaf", "map50_95"]
BD_CSV = "results/bd_rate.csv"
ENV_CSV = "results/environment.csv"
VMAF_CSV = "results/vmaf.csv"
DETECTION_CSV = "results/machine_vision.csv"
#: columns read from the extra tables, and which config section switches each table on
EXTRA_TABLES = {"vmaf": (VMAF_CSV, ("vmaf",)), "detection": (DETECTION_CSV, ("map50_95", "map50"))}
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
    if method not in ("pchip", "akima"):
        raise RdflowError(f"bd_rate.method is {method!r}; choose pchip or akima")
    from .bdrate import KNOWN_METRICS

    bad = [m for m in s.get("metrics") or [] if m not in KNOWN_METRICS]
    if bad:
        raise RdflowError(f"bd_rate.metrics: unknown metric(s) {', '.join(bad)}; known: "
                          f"{', '.join(KNOWN_METRICS)}")


def bd_rate_inputs(config: dict) -> dict[str, list[str]]:
    """Input files of rule bd_rate: summaries of every dataset and sequence, and the VMAF and
    detection tables when those stages are enabled."""
    from .sequences import sequences

    out = {
        "image": [f"results/image_rd_{d}_summary.csv" for d in sorted(config.get("datasets") or {})],
        "video": [f"results/video_rd_{s}_summary.csv" for s in sorted(sequences(config))],
    }
    targets = None
    for section, (path, _) in EXTRA_TABLES.items():
        out[section] = []
        if _section_enabled(config, section):
            if targets is None:  # the stage makes its table only when it has work
                from .study import all_targets

                targets = set(all_targets(config))
            if path in targets:
                out[section] = [path]
    return out


def bd_rate_targets(config: dict) -> list[str]:
    return [BD_CSV] if enabled(config) else []


def environment_targets(config: dict) -> list[str]:
    return [ENV_CSV]


def analysis_targets(config: dict) -> list[str]:
    """Final targets of this module (registered in rdflow.study.TARGET_FUNCTIONS)."""
    return environment_targets(config) + bd_rate_targets(config)


# ---------------------------------------------------------------- BD-rate table

def _extra_summary(path: str | os.PathLike, group_col: str, columns: tuple[str, ...]):
    """Per-(group, codec, quality) values of ``columns`` (and bpp) of one extra table, or None
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
        # one metric column per ground truth: map50_95@labels, map50_95@pseudo
        wide = df.drop(columns=cols)
        for c in cols:
            for gt in df["gt"].dropna().unique():
                wide[f"{c}@{gt}"] = df[c].where(df["gt"] == gt)
        df, cols = wide, [f"{c}@{gt}" for c in cols for gt in df["gt"].dropna().unique()]
    out = None
    for c in cols:
        part = df[keys + [c]].dropna()
        if c.startswith("map"):
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
    """The RD summaries of one kind (``dataset`` or ``sequence``), joined with the extra metric
    tables on (group, codec, quality); rate from the RD summary, else the table's own bpp."""
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
    from .bdrate import TABLE_COLUMNS, is_task_metric

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
    """:func:`rdflow.bdrate.bd_table` per group of ``combined``, with every requested metric the
    group measured; a group without the anchor gives rows whose reason says so."""
    import pandas as pd

    from .bdrate import TABLE_COLUMNS, bd_table

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


def bd_rate_study(config: dict, image_summaries, video_summaries, vmaf_csv=None,
                  detection_csv=None):
    """The whole BD-rate table of a study (the content of ``results/bd_rate.csv``)."""
    import pandas as pd

    from .bdrate import TABLE_COLUMNS

    s = settings(config)
    anchor = s["anchor"]
    metrics = list(s.get("metrics") or DEFAULT_METRICS)
    method = s.get("method", "pchip")
    min_overlap = float(s.get("min_overlap", 0.0))
    extras = []
    if vmaf_csv:
        extras.append((vmaf_csv, EXTRA_TABLES["vmaf"][1]))
    if detection_csv:
        extras.append((detection_csv, EXTRA_TABLES["detection"][1]))
    out = []
    anchors = {"image": anchor, "video": s.get("video_anchor") or anchor}
    for study, group_col, summaries in (("image", "dataset", image_summaries),
                                        ("video", "sequence", video_summaries)):
        combined = combined_summary(list(summaries), group_col, extras)
        t = bd_study_table(combined, group_col, anchors[study], metrics, method, min_overlap, config)
        if not t.empty:
            t.insert(0, "study", study)
            out.append(t)
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


_UNITS = {"psnr_rgb": "dB", "psnr_y": "dB", "psnr_u": "dB", "psnr_v": "dB", "ms_ssim_db": "dB",
          "vmaf": "VMAF points", "map50": "mAP points", "map50_95": "mAP points"}


def _fmt(v, spec: str) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


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
        metrics = list(dict.fromkeys(part["metric"]))
        head = "".join(f"<th>BD-rate {escape(m)} [%]</th><th>BD-{escape(m)} "
                       f"[{escape(_UNITS.get(base_metric(m), ''))}]</th><th>{escape(m)} range</th>"
                       for m in metrics)
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
                    notes.append(f"<li>{escape(str(codec))}, {escape(m)}: "
                                 f"{escape(r['reason'])}</li>")
            rows.append(f"<tr><th>{escape(str(codec))}</th>{''.join(cells)}</tr>")
        parts.append(f"<table><thead><tr><th>codec</th>{head}</tr></thead><tbody>"
                     f"{''.join(rows)}</tbody></table>")
        if notes:
            parts.append(f"<ul class='notes'>{''.join(notes)}</ul>")
    style = ("body{font-family:sans-serif;font-size:14px;margin:1em}table{border-collapse:"
             "collapse;margin-bottom:.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:"
             "right}thead th{background:#eee}tbody th{text-align:left}.notes{color:#555;"
             "font-size:12px}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>BD-rate</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")


def write_bd_rate(config: dict, image_summaries, video_summaries, out_csv, vmaf_csv=None,
                  detection_csv=None, html=None):
    from .io import atomic_open, write_csv

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


# ---------------------------------------------------------------- environment

#: distributions whose versions are recorded (distribution name -> label)
PACKAGES = {"rdflow": "rdflow", "torch": "torch", "compressai": "compressai",
            "snakemake": "snakemake", "numpy": "numpy", "imageio-ffmpeg": "imageio-ffmpeg",
            "pillow": "pillow", "pandas": "pandas", "bjontegaard": "bjontegaard",
            "pytorch-msssim": "pytorch-msssim"}


def package_versions() -> dict[str, str]:
    """Installed versions (importlib.metadata: nothing is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist, label in PACKAGES.items():
        try:
            out[label] = version(dist)
        except PackageNotFoundError:
            out[label] = "not installed"
    return out


def ffmpeg_version() -> str:
    """First line of ``ffmpeg -version`` of the ffmpeg bundled with imageio-ffmpeg."""
    import subprocess

    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
        first = subprocess.run([exe, "-version"], capture_output=True, text=True,
                               timeout=60).stdout.splitlines()
        return first[0].strip() if first else "unknown"
    except Exception as exc:  # recorded, not fatal: the environment table is informative
        return f"unavailable ({type(exc).__name__}: {exc})"


def _git_commit(repo: Path) -> str:
    import subprocess

    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=20)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True, timeout=20)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _cpu_model() -> str:
    import platform

    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_info(config: dict, repo: str | os.PathLike | None = None) -> dict[str, str]:
    """What ran the study: versions, ffmpeg, device, machine. Imports torch (for the device)."""
    import platform

    import psutil

    info = {"python": platform.python_version()}
    info.update(package_versions())
    info["ffmpeg"] = ffmpeg_version()
    info["rdflow_commit"] = _git_commit(Path(repo) if repo else Path(__file__).resolve().parents[2])
    info["device_config"] = str(config.get("device", "auto"))
    try:
        import torch

        cuda = torch.cuda.is_available()
        info["device"] = "cuda" if cuda and config.get("device", "auto") != "cpu" else "cpu"
        info["gpu"] = torch.cuda.get_device_name(0) if cuda else "none"
        info["torch_cuda_build"] = str(torch.version.cuda) if torch.version.cuda else "none"
        info["torch_threads"] = str(torch.get_num_threads())
    except ImportError:
        info.update(device="cpu", gpu="unknown (torch not installed)")
    info["cpu"] = _cpu_model()
    info["cpu_count"] = str(os.cpu_count())
    info["memory_gb"] = f"{psutil.virtual_memory().total / 2**30:.1f}"
    info["platform"] = platform.platform()
    return info


def write_environment(config: dict, out_csv, repo=None) -> dict[str, str]:
    import pandas as pd

    from .io import write_csv

    info = environment_info(config, repo)
    write_csv(out_csv, pd.DataFrame({"item": list(info), "value": list(info.values())}))
    return info


def read_environment(path: str | os.PathLike) -> dict[str, str]:
    """The item -> value pairs of an environment CSV (``{}`` when it does not exist yet)."""
    import csv

    path = Path(path)
    if not path.is_file():
        return {}
    with open(path, newline="") as fh:
        return {r["item"]: r["value"] for r in csv.DictReader(fh)}
