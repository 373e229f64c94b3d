"""Stage: codec complexity and resources (issue 6), and the table of every job's benchmark.

The measuring itself is :mod:`rdflow.profiling` (timing with warm-up and repeats, peak RSS and
VRAM, MACs, parameters, network vs entropy-coding time); this module wires it into the workflow:

* which codecs, qualities, resolutions and devices the ``complexity:`` section asks for, and
  the checks of that section at parse time (:func:`check`);
* one job per codec (:func:`codec_job`: all its selected qualities x resolutions x devices,
  ``results/complexity/{codec}.csv``), run alone on the machine (the rule takes every core)
  with each (codec, quality) measured in a fresh child process (``isolate``), and the gathered
  ``results/complexity.csv`` with two figures (:func:`write_table`, :func:`plot`);
* ``results/benchmarks.csv`` (:func:`gather_benchmarks`): every Snakemake ``benchmark:`` file
  under ``benchmarks/`` (wall time, peak RSS, CPU time per heavy job) with the rule and the
  wildcards parsed from the path.

``import rdflow.complexity`` stays cheap: torch, pandas and matplotlib are imported inside
the functions that need them.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Iterable

from . import RdflowError

log = logging.getLogger("rdflow.complexity")

#: the ``complexity:`` section's defaults (the schema holds the same values and their meaning)
DEFAULTS = {
    "enabled": False,
    "codecs": None,
    "qualities": "ends",
    "resolutions": ["256x256", "512x512", "768x512", "1920x1080"],
    "devices": None,
    "repeats": 3,
    "warmup": 1,
    "split_repeats": 1,
    "macs": True,
    "threads": 1,
    "isolate": True,
    "image": None,
    "memory_limit_mb": None,
}

TABLE = "results/complexity.csv"
FIGURE_STEMS = ("complexity_bpp_time", "complexity_resolution")
FIGURES = [f"results/figures/{stem}.{ext}" for stem in FIGURE_STEMS for ext in ("png", "pdf")]
BENCHMARKS_DIR = "benchmarks"
BENCHMARKS_CSV = "results/benchmarks.csv"
#: the columns of results/benchmarks.csv before the wildcards and Snakemake's own columns
BENCHMARK_KEYS = ["rule", "wildcards", "path", "in_workflow", "repeat", "written"]
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def settings(config: dict) -> dict:
    """The ``complexity:`` section with defaults filled in."""
    out = dict(DEFAULTS)
    out.update(config.get("complexity") or {})
    return out


def enabled(config: dict) -> bool:
    return bool(settings(config)["enabled"])


def codec_names(config: dict) -> list[str]:
    """The codecs measured (names under ``codecs``), sorted."""
    only = settings(config)["codecs"]
    names = sorted(config.get("codecs") or {})
    return names if only is None else [n for n in names if n in set(only)]


def qualities(config: dict, codec: str) -> list[int]:
    """The qualities of ``codec`` measured: its lowest and highest (``ends``) or all of them."""
    qs = sorted(int(q) for q in config["codecs"][codec]["qualities"])
    if settings(config)["qualities"] == "all":
        return qs
    return sorted({qs[0], qs[-1]})


def devices(config: dict, codec: str) -> list[str]:
    """The devices ``codec`` is measured on as configured (``auto`` not yet resolved).
    Classical codecs run on the CPU whatever is configured: one device, ``cpu``."""
    if config["codecs"][codec]["kind"] != "learned":
        return ["cpu"]
    devs = settings(config)["devices"]
    return list(devs) if devs else [str(config.get("device", "auto"))]


def gpus(config: dict, codec: str) -> int:
    """GPUs the codec's job asks for (resources: gpu): 1 when a learned codec may use one."""
    return int(any(d != "cpu" for d in devices(config, codec)) and
               config["codecs"][codec]["kind"] == "learned")


def codec_csv(codec: str) -> str:
    return f"results/complexity/{codec}.csv"


def image_choice(config: dict) -> tuple[str, str] | str | None:
    """The image measured: ``(dataset, image)`` (the first image of the first downloaded or
    local dataset, when ``complexity.image`` is null), a file path, or None (synthetic)."""
    img = settings(config)["image"]
    if img == "synthetic":
        return None
    if img:
        return str(img)
    from .config import dataset_images

    for name, d in sorted((config.get("datasets") or {}).items()):
        if d.get("kind") in ("kodak", "local"):
            images = sorted(dataset_images(config, name))
            if images:
                return name, images[0]
    return None


def weights_inputs(config: dict, codec: str) -> dict[str, str]:
    """``{"q<quality>": weights file}`` for the measured qualities of a learned codec that
    reads a file (the same files the coding jobs read); empty for random and classical."""
    from .weights import weights_file

    out = {}
    for q in qualities(config, codec):
        w = weights_file(config, codec, q)
        if w:
            out[f"q{q}"] = w
    return out


def job_params(config: dict, codec: str) -> dict:
    """What a codec's complexity job measures, as the rule's params: a change (codec options,
    qualities, resolutions, devices, repeats, ...) makes Snakemake run the job again."""
    st = settings(config)
    c = {k: v for k, v in config["codecs"][codec].items() if k != "qualities"}
    return {"codec": c, "qualities": qualities(config, codec), "devices": devices(config, codec),
            **{k: v for k, v in st.items() if k not in ("enabled", "codecs", "qualities", "devices")}}


def complexity_targets(config: dict) -> list[str]:
    """Final targets: results/benchmarks.csv always (it gathers whatever benchmark files the
    other stages wrote), the complexity table and figures when the stage is enabled."""
    out = [BENCHMARKS_CSV]
    if enabled(config) and codec_names(config):
        out += [TABLE, *FIGURES]
    return out


def benchmark_inputs(config: dict) -> list[str]:
    """Inputs of gather_benchmarks: every other final target, so that it runs last."""
    from .study import all_targets

    return [t for t in all_targets(config) if t != BENCHMARKS_CSV]


def check(config: dict) -> None:
    """Semantic checks of the ``complexity:`` section at parse time (the schema did the types)."""
    from .profiling import parse_resolution

    st = settings(config)
    known = sorted(config.get("codecs") or {})
    if st["codecs"] is not None:
        if not st["codecs"]:
            raise RdflowError("complexity.codecs is an empty list: name codecs from codecs "
                              f"({', '.join(known)}), leave it out (null) for all, or set "
                              "complexity.enabled: false")
        unknown = [c for c in st["codecs"] if c not in known]
        if unknown:
            raise RdflowError(f"complexity.codecs names {unknown}, which are not under codecs; "
                              f"known: {', '.join(known)}")
    if st["qualities"] not in ("ends", "all"):
        raise RdflowError(f"complexity.qualities: {st['qualities']!r}; use ends (lowest and highest "
                          "of each codec) or all")
    if not st["resolutions"]:
        raise RdflowError("complexity.resolutions is empty: list at least one, e.g. [\"512x512\"]")
    sizes = [parse_resolution(r, where=f"complexity.resolutions[{i}]") for i, r in enumerate(st["resolutions"])]
    if len(set(sizes)) != len(sizes):
        raise RdflowError(f"complexity.resolutions lists a resolution twice: {st['resolutions']}")
    devs = st["devices"]
    if devs is not None:
        bad = [d for d in devs if not isinstance(d, str) or not _DEVICE.match(d)]
        if bad or not devs:
            raise RdflowError(f"complexity.devices: {bad or devs} not understood; list auto, cpu, "
                              "cuda or cuda:N (or leave it out: the study's device)")
        if len(set(devs)) != len(devs):
            raise RdflowError(f"complexity.devices lists a device twice: {devs}")
    for key, lo in (("repeats", 1), ("warmup", 0), ("threads", 1), ("split_repeats", 0)):
        v = st[key]
        if v is None and key in ("threads", "split_repeats"):
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise RdflowError(f"complexity.{key} must be an integer >= {lo}, got {v!r}")
    lim = st["memory_limit_mb"]
    if lim is not None:
        if isinstance(lim, bool) or not isinstance(lim, (int, float)) or lim <= 0:
            raise RdflowError(f"complexity.memory_limit_mb must be a positive number of MiB, got {lim!r}")
        if not st["isolate"]:
            raise RdflowError("complexity.memory_limit_mb needs complexity.isolate: true (the limit "
                              "applies to the child process that measures)")
    img = st["image"]
    if enabled(config) and img not in (None, "synthetic") and not Path(img).is_file():
        raise RdflowError(f"complexity.image: {img} does not exist; give an existing image file, "
                          "null (the first image of the first dataset) or synthetic")


def _check_cuda(devs: list[str], configured: bool) -> None:
    if not any(d.startswith("cuda") for d in devs):
        return
    import torch

    if not torch.cuda.is_available():
        key = "complexity.devices lists" if configured else "config key device is"
        raise RdflowError(f"{key} {[d for d in devs if d.startswith('cuda')][0]!r} but torch sees no "
                          "CUDA device on this machine: use auto (the GPU when there is one, else "
                          "the CPU) or cpu")


def resolved_devices(config: dict, codec: str) -> list[str]:
    """:func:`devices` with ``auto`` resolved here (cuda when torch sees a GPU, else cpu),
    duplicates dropped; RdflowError when CUDA is asked for but absent."""
    devs = devices(config, codec)
    if config["codecs"][codec]["kind"] != "learned":
        return devs
    _check_cuda(devs, configured=settings(config)["devices"] is not None)
    from .codecs.learned import resolve_device

    out: list[str] = []
    for d in devs:
        r = resolve_device(d)
        if r not in out:
            out.append(r)
    return out


def codec_job(*, config: dict, codec: str, out_csv: str | os.PathLike,
              weights: dict | None = None, image_path: str | os.PathLike | None = None,
              threads: int = 1, worker_init=None) -> list[dict]:
    """Measure one codec: its selected qualities x resolutions x devices; write ``out_csv``.

    weights: ``{"q<quality>" or quality: file}`` (the rule's weights inputs). image_path: the
    image measured (None: synthetic). threads: the job's cores, the torch threads when
    ``complexity.threads`` is null. A resolution that fails gives a failed row; configuration
    errors (CUDA absent, missing weights) raise.
    """
    from .coding import codec_spec
    from .profiling import complexity_study, write_complexity_csv

    if codec not in (config.get("codecs") or {}):
        raise RdflowError(f"complexity: {codec!r} is not under codecs")
    st = settings(config)
    files = {int(str(k).lstrip("q")): str(v) for k, v in (weights or {}).items()}
    specs = [codec_spec(config, codec, q, files.get(q)) for q in qualities(config, codec)]
    learned = specs[0].kind == "learned"
    devs = resolved_devices(config, codec)
    n_threads = st["threads"] if st["threads"] is not None else max(1, int(threads))
    log.info("complexity of %s: qualities %s, resolutions %s, devices %s, %d torch thread(s), "
             "repeats %d, image %s", codec, [s.quality for s in specs], st["resolutions"], devs,
             n_threads, st["repeats"], image_path or "synthetic")
    rows: list[dict] = []
    for dev in devs:
        rows += complexity_study(
            specs, st["resolutions"], device=dev if learned else None, repeats=st["repeats"],
            warmup=st["warmup"], image=image_path, threads=n_threads,
            split_repeats=st["split_repeats"], macs=st["macs"], isolate=st["isolate"],
            memory_limit_mb=st["memory_limit_mb"], worker_init=worker_init)
    for r in rows:
        if r["status"] != "ok":
            log.warning("%s q%s at %sx%s on %s failed: %s", r["codec"], r["quality"], r["width"],
                        r["height"], r["device"], r["error"])
        else:
            log.info("%s q%s %sx%s %s: enc %.4g s, dec %.4g s, peak RSS %.0f MiB, bpp %.3f",
                     r["codec"], r["quality"], r["width"], r["height"], r["device"],
                     r["enc_s_median"], r["dec_s_median"], r["max_rss_mb"], r["bpp"])
    write_complexity_csv(rows, out_csv)
    return rows


def write_table(csvs: Iterable[str | os.PathLike], out_csv: str | os.PathLike):
    """Gather the per-codec CSVs into results/complexity.csv (same columns)."""
    import pandas as pd

    from .profiling import COLUMNS, write_complexity_csv

    frames = []
    for p in csvs:
        df = pd.read_csv(p, keep_default_na=False, na_values=["", "NaN", "nan"])
        missing = [c for c in COLUMNS if c not in df.columns]
        if missing:
            raise RdflowError(f"{p} lacks complexity columns {missing}: delete it so that its "
                              "codec is measured again")
        frames.append(df[COLUMNS])
    if not frames:
        raise RdflowError("no per-codec complexity tables to gather (complexity.codecs selects none)")
    table = pd.concat(frames, ignore_index=True)
    table["error"] = table["error"].fillna("")
    table["rss_method"] = table["rss_method"].fillna("")
    write_complexity_csv(table.to_dict("records"), out_csv)
    return table


def plot(table_csv: str | os.PathLike, outputs: Iterable[str | os.PathLike], codecs=None) -> list[Path]:
    """The two complexity figures (PNG and PDF) from results/complexity.csv; ``outputs`` are
    the paths the rule declares (their folder and stems must be those of :data:`FIGURES`).
    ``codecs``: the run's codec names, for colours shared with the other figures
    (:func:`rdflow.plots.study_codecs`). Each figure's data sidecar (``<stem>.json``) is
    written beside it, not declared."""
    import pandas as pd

    from .profiling import plot_complexity

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


# ------------------------------------------------------------------------------------------
# results/benchmarks.csv
# ------------------------------------------------------------------------------------------
def _match(rel: str, patterns: dict[str, str]) -> tuple[str, dict[str, str], str, bool]:
    """(rule, wildcards, wildcards as text, matched) of a benchmark file path relative to the
    working directory; unmatched: the first folder and the rest of the path."""
    from snakemake.io import regex_from_filepattern

    for rule, pattern in sorted(patterns.items()):
        m = re.fullmatch(regex_from_filepattern(pattern), rel)
        if m:
            wc = {k: v for k, v in m.groupdict().items() if v is not None}
            return rule, wc, ",".join(f"{k}={v}" for k, v in wc.items()), True
    parts = Path(rel).relative_to(BENCHMARKS_DIR).with_suffix("").parts
    return parts[0], {}, "/".join(parts[1:]), False


def benchmark_table(root: str | os.PathLike = ".", patterns: dict[str, str] | None = None):
    """One row per line of every ``benchmarks/**/*.tsv`` under ``root``.

    patterns: rule name -> its ``benchmark:`` file pattern (``{wildcard}`` or
    ``{wildcard,regex}``), used to name the rule and parse the wildcards; a file no pattern
    matches (a rule or wildcard value no longer in the workflow) gets the rule from its first
    folder, ``in_workflow`` False and the rest of its path as ``wildcards``.
    """
    import datetime

    import pandas as pd

    root = Path(root)
    rows: list[dict] = []
    wc_names: list[str] = []
    sm_cols: list[str] = []
    for f in sorted((root / BENCHMARKS_DIR).rglob("*.tsv")):
        rel = f.relative_to(root).as_posix()
        try:
            df = pd.read_csv(f, sep="\t", na_values=["NA", "-"])  # Snakemake: NA no data, - none
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise RdflowError(f"{f} is not a Snakemake benchmark file ({exc}); delete it (or rerun "
                              "the job that writes it)") from None
        if "s" not in df.columns or "max_rss" not in df.columns:
            raise RdflowError(f"{f} is not a Snakemake benchmark file (no s / max_rss columns); "
                              "delete it (or rerun the job that writes it)")
        rule, wc, wc_text, matched = _match(rel, patterns or {})
        wc = {k: v for k, v in wc.items() if k not in BENCHMARK_KEYS}  # kept in wc_text
        written = datetime.datetime.fromtimestamp(f.stat().st_mtime).isoformat(timespec="seconds")
        for k in wc:
            if k not in wc_names:
                wc_names.append(k)
        for c in df.columns:
            if c not in sm_cols and c not in BENCHMARK_KEYS:
                sm_cols.append(c)
        for i, rec in enumerate(df.to_dict("records")):
            row = {"rule": rule, "wildcards": wc_text,
                   "path": rel, "in_workflow": matched, "repeat": i, "written": written}
            row.update(wc)
            row.update({k: v for k, v in rec.items() if k not in BENCHMARK_KEYS})
            rows.append(row)
    columns = BENCHMARK_KEYS + [w for w in wc_names if w not in BENCHMARK_KEYS] + sm_cols
    if not sm_cols:
        columns += ["s", "h:m:s", "max_rss", "max_vms", "max_uss", "max_pss", "io_in", "io_out",
                    "mean_load", "cpu_time"]
    return pd.DataFrame(rows, columns=columns)


def gather_benchmarks(out_csv: str | os.PathLike, patterns: dict[str, str] | None = None,
                      root: str | os.PathLike = "."):
    """Write results/benchmarks.csv (:func:`benchmark_table`), atomically."""
    from .io import write_csv

    table = benchmark_table(root, patterns)
    write_csv(out_csv, table)
    log.info("%d benchmark rows from %d files (%d of rules no longer in the workflow)", len(table),
             table["path"].nunique(), int((~table["in_workflow"].astype(bool)).sum()) if len(table) else 0)
    return table
