"""The pairs stage: given (reference, distorted) images or sequences scored without coding.

Config ``pairs: {<name>: {reference: <file>, distorted: <file>, ...}}`` (keys in the schema):
two images (PNG, JPEG, ...) or two sequences (``.y4m``, or raw 8-bit 4:2:0 ``.yuv`` with
``width``/``height``). Both files are probed when the workflow starts (:func:`check`): they
exist, are of one kind, one size and (sequences) one frame count, and the frame selection fits.

Jobs (rules in ``workflow/rules/pairs.smk``; the scoring is :mod:`.score`):

* ``pair_score``, one per pair: :data:`rdflow.paths.PAIR_CSV`, one row per scored frame
  (``pair, frame, width, height``, ``psnr_y/u/v``, ``psnr_yuv`` (6:1:1), ``mse_y/u/v``,
  ``ms_ssim_y``, ``vmaf`` for sequences; ``psnr_rgb``, ``mse_rgb``, ``ms_ssim``,
  ``ms_ssim_db`` and the same YUV columns for images);
* ``pairs_table``: :data:`rdflow.paths.PAIRS_TABLE`, one pooled row per pair (:func:`.score.pool`:
  means over frames, PSNR from pooled MSE, VMAF mean, harmonic mean and minimum);
* ``plot_pair``, one per sequence pair: :data:`rdflow.paths.PAIR_FIGURE`.

``snakemake --cores 2 pairs`` makes only these; ``rdflow-score REF DIST`` (:mod:`.cli`) scores
one pair from the command line with the same functions.
"""

from __future__ import annotations

from rdflow import paths
from rdflow.io import write_csv
from rdflow.lazy import lazy_exports

from .spec import DEFAULTS, Pair, resolve

#: what the jobs run, imported when a job first asks (parsing the rules plans only)
__getattr__, __dir__ = lazy_exports(__name__, globals(), {
    ".figures": ("plot_pair",),
    ".score": ("POOLED_ORDER", "pool", "score"),
})

SECTION = "pairs"

__all__ = ["DEFAULTS", "Pair", "SECTION", "check", "entry", "pair", "pair_csvs", "pairs",
           "plot_job", "plot_pair", "pool", "score", "score_job", "table_job", "targets",
           "vmaf_model"]


def pairs(config: dict) -> dict:
    return config.get(SECTION) or {}


def entry(config: dict, name: str) -> dict:
    """A pair's entry with the defaults of its keys filled."""
    return {**DEFAULTS, **pairs(config)[name]}


def vmaf_model(config: dict) -> str:
    """The libvmaf model of the study (``vmaf.model``), which pairs use too."""
    from rdflow.metrics.vmaf import DEFAULT_MODEL

    return (config.get("vmaf") or {}).get("model") or DEFAULT_MODEL


def pair(config: dict, name: str) -> Pair:
    """The checked :class:`.spec.Pair` of ``pairs.<name>``."""
    return resolve(name, entry(config, name), vmaf_model=vmaf_model(config))


def check(config: dict) -> None:
    """Every pair's files probed and compared (:func:`.spec.resolve`), before any job."""
    for name in sorted(pairs(config)):
        pair(config, name)


def pair_csvs(config: dict) -> list[str]:
    return [paths.PAIR_CSV.format(pair=n) for n in sorted(pairs(config))]


def figures(config: dict) -> list[str]:
    """The figures: one per sequence pair (an image pair has one frame)."""
    from .spec import medium

    return [paths.PAIR_FIGURE.format(pair=n) for n, e in sorted(pairs(config).items())
            if medium(e["reference"]) != "image"]


def targets(config: dict) -> list[str]:
    """The pooled table, every pair's per-frame CSV and the figures ([] without pairs)."""
    if not pairs(config):
        return []
    return [paths.PAIRS_TABLE] + pair_csvs(config) + figures(config)


# -- job entry points (workflow/rules/pairs.smk) -----------------------------------------------
def score_job(config: dict, name: str, out_csv: str, threads: int = 1) -> None:
    """Rule pair_score: the per-frame CSV of one pair."""
    import logging

    from .score import pool, score

    p = pair(config, name)
    df = score(p, threads)
    write_csv(out_csv, df)
    logging.getLogger("rdflow.pairs").info("pair %s: %d frame(s) scored: %s", name, len(df),
                                           pool(df))


def pooled_row(p: Pair, frames) -> dict:
    """The pooled row of a pair: its name, kind, files, size, VMAF model and :func:`pool`."""
    from .score import pool

    return {"pair": p.name, "kind": p.kind, "reference": str(p.reference),
            "distorted": str(p.distorted), "width": p.width, "height": p.height,
            "vmaf_model": p.vmaf_model or "", **pool(frames)}


def table_job(config: dict, csvs: list[str], out_csv: str) -> None:
    """Rule pairs_table: one pooled row per pair, from the per-frame CSVs."""
    import pandas as pd

    from .score import POOLED_ORDER

    rows = []
    for csv in csvs:
        frames = pd.read_csv(csv, dtype={"pair": str})
        rows.append(pooled_row(pair(config, frames["pair"].iloc[0]), frames))
    table = pd.DataFrame(rows)
    first = [c for c in list(rows[0])[:7] + list(POOLED_ORDER) if c in table] if rows else []
    write_csv(out_csv, table[first + [c for c in table if c not in first]])


def plot_job(config: dict, name: str, frames_csv: str, out_png: str) -> None:
    """Rule plot_pair."""
    from .figures import plot_pair

    p = pair(config, name)
    plot_pair(frames_csv, name, out_png, vmaf_model=p.vmaf_model)
