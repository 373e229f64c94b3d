"""The table of every job's benchmark: each Snakemake ``benchmark:`` file under
``benchmarks/`` (wall time, peak RSS, CPU time per heavy job), one row per file and repeat, with
the rule and the wildcards parsed from the path (:func:`gather_benchmarks`)."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from ... import RdflowError, paths

log = logging.getLogger("rdflow.complexity")

#: the columns of the benchmark table before the wildcards and Snakemake's own columns
BENCHMARK_KEYS = ["rule", "wildcards", "path", "in_workflow", "repeat", "written"]
#: Snakemake's columns, for the header of a table with no benchmark file yet
_SNAKEMAKE_COLUMNS = ["s", "h:m:s", "max_rss", "max_vms", "max_uss", "max_pss", "io_in", "io_out",
                      "mean_load", "cpu_time"]


def _match(rel: str, patterns: dict[str, str]) -> tuple[str, dict[str, str], str, bool]:
    """(rule, wildcards, wildcards as text, matched) of a benchmark file path relative to the
    working directory; unmatched: the first folder and the rest of the path."""
    from snakemake.io import regex_from_filepattern

    for rule, pattern in sorted(patterns.items()):
        m = re.fullmatch(regex_from_filepattern(pattern), rel)
        if m:
            wc = {k: v for k, v in m.groupdict().items() if v is not None}
            return rule, wc, ",".join(f"{k}={v}" for k, v in wc.items()), True
    parts = Path(rel).relative_to(paths.BENCHMARKS_DIR).with_suffix("").parts
    return parts[0], {}, "/".join(parts[1:]), False


def _read_benchmark(f: Path):
    import pandas as pd

    try:
        df = pd.read_csv(f, sep="\t", na_values=["NA", "-"])  # Snakemake: NA no data, - none
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise RdflowError(f"{f} is not a Snakemake benchmark file ({exc}); delete it (or rerun "
                          "the job that writes it)") from None
    if "s" not in df.columns or "max_rss" not in df.columns:
        raise RdflowError(f"{f} is not a Snakemake benchmark file (no s / max_rss columns); "
                          "delete it (or rerun the job that writes it)")
    return df


def _file_rows(f: Path, rel: str, df, patterns: dict[str, str]) -> tuple[list[dict], dict]:
    """The rows of one benchmark file, and its wildcards (those not named like a key column)."""
    import datetime

    rule, wc, wc_text, matched = _match(rel, patterns)
    wc = {k: v for k, v in wc.items() if k not in BENCHMARK_KEYS}  # kept in wc_text
    written = datetime.datetime.fromtimestamp(f.stat().st_mtime).isoformat(timespec="seconds")
    rows = []
    for i, rec in enumerate(df.to_dict("records")):
        row = {"rule": rule, "wildcards": wc_text,
               "path": rel, "in_workflow": matched, "repeat": i, "written": written}
        row.update(wc)
        row.update({k: v for k, v in rec.items() if k not in BENCHMARK_KEYS})
        rows.append(row)
    return rows, wc


def benchmark_table(root: str | os.PathLike = ".", patterns: dict[str, str] | None = None):
    """One row per line of every ``benchmarks/**/*.tsv`` under ``root``.

    patterns: rule name -> its ``benchmark:`` file pattern (``{wildcard}`` or
    ``{wildcard,regex}``), used to name the rule and parse the wildcards; a file no pattern
    matches (a rule or wildcard value no longer in the workflow) gets the rule from its first
    folder, ``in_workflow`` False and the rest of its path as ``wildcards``.
    """
    import pandas as pd

    root = Path(root)
    rows: list[dict] = []
    wc_names: list[str] = []
    sm_cols: list[str] = []
    for f in sorted((root / paths.BENCHMARKS_DIR).rglob("*.tsv")):
        df = _read_benchmark(f)
        file_rows, wc = _file_rows(f, f.relative_to(root).as_posix(), df, patterns or {})
        wc_names += [k for k in wc if k not in wc_names]
        sm_cols += [c for c in df.columns if c not in sm_cols and c not in BENCHMARK_KEYS]
        rows += file_rows
    columns = BENCHMARK_KEYS + [w for w in wc_names if w not in BENCHMARK_KEYS] + sm_cols
    if not sm_cols:
        columns += _SNAKEMAKE_COLUMNS
    return pd.DataFrame(rows, columns=columns)


def gather_benchmarks(out_csv: str | os.PathLike, patterns: dict[str, str] | None = None,
                      root: str | os.PathLike = "."):
    """Write the benchmark table (:func:`benchmark_table`), atomically."""
    from ...io import write_csv

    table = benchmark_table(root, patterns)
    write_csv(out_csv, table)
    log.info("%d benchmark rows from %d files (%d of rules no longer in the workflow)", len(table),
             table["path"].nunique(), int((~table["in_workflow"].astype(bool)).sum()) if len(table) else 0)
    return table
