"""Stage: codec complexity and resources (issue 6), and the table of every job's benchmark.

The measuring itself is :mod:`rdflow.measure` (timing with warm-up and repeats, peak RSS and
VRAM, MACs, parameters, network vs entropy-coding time); this stage wires it into the workflow
(rule file ``workflow/rules/complexity.smk``):

* which codecs, qualities, resolutions and devices the ``complexity:`` section asks for, and
  the checks of that section at parse time (:mod:`.selection`, :func:`check`);
* one job per codec (:func:`codec_job`: all its selected qualities x resolutions x devices, its
  own table ``paths.COMPLEXITY_CODEC_CSV``), run alone on the machine (the rule takes every
  core) with each (codec, quality) measured in a fresh worker process (``isolate``), and the
  gathered table ``paths.COMPLEXITY_CSV`` (:func:`write_table`) with two figures
  (:func:`plot`, :mod:`.figures`);
* the benchmark table ``paths.BENCHMARKS_CSV`` (:func:`gather_benchmarks`, :mod:`.benchmarks`):
  every Snakemake ``benchmark:`` file under ``benchmarks/`` (wall time, peak RSS, CPU time per
  heavy job) with the rule and the wildcards parsed from the path.

Importing the stage stays cheap: torch, pandas and matplotlib are imported inside the
functions that need them.
"""

from __future__ import annotations

from typing import Iterable

from ... import paths
from ...lazy import lazy_exports
from .selection import (  # noqa: F401
    DEFAULTS, check, codec_names, devices, enabled, gpus, image_choice, job_params, qualities,
    resolved_devices, settings, weights_inputs,
)

#: what the jobs run, imported when a job first asks (parsing the rules plans only)
__getattr__, __dir__ = lazy_exports(__name__, globals(), {
    ".benchmarks": ("BENCHMARK_KEYS", "benchmark_table", "gather_benchmarks"),
    ".figures": ("megapixel_label", "plot", "plot_complexity"),
    ".job": ("codec_job", "write_complexity_csv", "write_table"),
})

SECTION = "complexity"
TABLE = paths.COMPLEXITY_CSV
FIGURES = [f"{stem}{ext}" for stem in (paths.COMPLEXITY_BPP_TIME_FIGURE, paths.COMPLEXITY_RESOLUTION_FIGURE)
           for ext in (".png", ".pdf")]
BENCHMARKS_CSV = paths.BENCHMARKS_CSV


def codec_csv(codec: str) -> str:
    """The table of one codec's job."""
    return paths.COMPLEXITY_CODEC_CSV.format(codec=codec)


def targets(config: dict) -> list[str]:
    """Final targets: the benchmark table always (it gathers whatever benchmark files the
    other stages wrote), the complexity table and figures when the stage is enabled."""
    out = [BENCHMARKS_CSV]
    if enabled(config) and codec_names(config):
        out += [TABLE, *FIGURES]
    return out


def benchmark_inputs(all_targets: Iterable[str]) -> list[str]:
    """Inputs of gather_benchmarks: every other final target of the study (``all_targets``:
    :func:`rdflow.study.all_targets`), so that it runs last."""
    return [t for t in all_targets if t != BENCHMARKS_CSV]
