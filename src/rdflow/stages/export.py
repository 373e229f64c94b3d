"""Stage export: the study's results in CompressAI's results format.

``results/compressai/<dataset>/<codec>.json`` (one per image dataset and codec that codes it,
when ``export.compressai_json`` is on, the default; rule ``export_compressai`` writes a
dataset's files in one job, since they are all read from its one summary) is what CompressAI's
``eval_model`` writes and its published ``results/image/kodak/*.json`` hold::

    {"name": "<codec>", "description": "rdflow: ...",
     "results": {"bpp": [...], "psnr-rgb": [...], "ms-ssim-rgb": [...],
                 "encoding_time": [...], "decoding_time": [...], "quality": [...]}}

one value per quality, in ascending bpp order, so ``python -m compressai.utils.plot -f <this>
<published>.json`` draws the study's codecs beside CompressAI's curves.

The numbers are read from the dataset's RD summary (``results/image_rd_<dataset>_summary.csv``,
stage aggregate), nothing is recomputed: each is the mean over the dataset's images of the
per-image value, which is how ``eval_model`` averages too (it sums each image's ``psnr-rgb``,
``ms-ssim-rgb`` (linear, not dB), ``bpp`` and times, then divides by the number of images).
One difference is stated in every description: rdflow's bpp counts every byte of the bitstream
file (its container header too, ``header_bytes`` in the tidy CSV), eval_model's only the
entropy-coded strings. ``ms-ssim-rgb`` is left out when the study did not measure MS-SSIM.
"""

from __future__ import annotations

import math

from .. import RdflowError, paths
from ..config import codec_applies
from ..io import write_json

SECTION = "export"
#: summary column -> CompressAI results key, in the order of CompressAI's published files;
#: ``quality`` (rdflow's quality index) is an extra key the plot utility ignores
RESULTS = (("psnr_rgb", "psnr-rgb"), ("ms_ssim", "ms-ssim-rgb"), ("bpp", "bpp"),
           ("enc_s", "encoding_time"), ("dec_s", "decoding_time"))
#: what ran, from the summary's describe columns (stage aggregate's DESCRIBE), in this order
DESCRIBE = ("kind", "encoder", "architecture", "weights", "device")


def settings(config: dict) -> dict:
    return config.get("export") or {}


def enabled(config: dict) -> bool:
    return bool(settings(config).get("compressai_json", True))


def check(config: dict) -> None:
    """Nothing beyond the schema: the section has one boolean."""


def codecs_of(config: dict, dataset: str) -> list[str]:
    """The codecs that code ``dataset`` (a codec's ``datasets`` may leave it out)."""
    return [c for c in sorted(config.get("codecs") or {}) if codec_applies(config, c, dataset)]


def dataset_files(config: dict, dataset: str) -> dict[str, str]:
    """Codec -> its results JSON, for the codecs that code ``dataset``."""
    return {c: paths.COMPRESSAI_JSON.format(dataset=dataset, codec=c)
            for c in codecs_of(config, dataset)}


def jobs(config: dict) -> list[tuple[str, dict[str, str]]]:
    """(dataset, codec -> results JSON) of each export job ([] when the export is off)."""
    if not enabled(config):
        return []
    return [(d, files) for d in sorted(config.get("datasets") or {})
            if (files := dataset_files(config, d))]


def targets(config: dict) -> list[str]:
    return [f for _, files in jobs(config) for f in files.values()]


# -- the document ---------------------------------------------------------------------------------
def _number(v):
    """A JSON number (None for NaN/inf: strict JSON has no such values)."""
    v = float(v)
    return v if math.isfinite(v) else None


def _describe(rows, dataset: str) -> str:
    """What ran: the describe columns (a value that varies between qualities is listed once
    per distinct value), the images averaged, and how bpp is counted."""
    parts = []
    for col in DESCRIBE:
        if col in rows:
            values = [str(v) for v in dict.fromkeys(rows[col].dropna()) if str(v)]
            if values:
                parts.append(f"{col} {' / '.join(values)}")
    n = sorted({int(v) for v in rows["n_items"]}) if "n_items" in rows else []
    items = f"{' / '.join(map(str, n))} images of {dataset}" if n else dataset
    return (f"rdflow: {', '.join(parts)}; means over {items}; bpp counts the whole bitstream "
            "file (container header included)")


def document(summary, dataset: str, codec: str) -> dict:
    """The CompressAI results document of ``codec`` from a dataset's summary (a DataFrame,
    one row per (codec, quality)). Raises RdflowError when the summary has no row of it."""
    rows = summary[summary["codec"].astype(str) == codec]
    if rows.empty:
        have = ", ".join(sorted(map(str, summary["codec"].unique())))
        raise RdflowError(f"the summary of dataset {dataset} has no row of codec {codec} (it has "
                          f"{have or 'none'}); rerun its aggregate_image job")
    rows = rows.sort_values(["bpp", "quality"], kind="stable")
    results = {}
    for col, key in RESULTS:
        if col in rows and rows[col].notna().any():
            results[key] = [_number(v) for v in rows[col]]
    if "bpp" not in results or "psnr-rgb" not in results and "ms-ssim-rgb" not in results:
        raise RdflowError(f"the summary of dataset {dataset} lacks bpp or a quality metric "
                          f"(psnr_rgb, ms_ssim) for codec {codec}: nothing to export")
    results["quality"] = [int(q) for q in rows["quality"]]
    return {"name": codec, "description": _describe(rows, dataset), "results": results}


def write_dataset_json(summary_csv, dataset: str, outputs: dict[str, str]) -> dict[str, dict]:
    """Rule export_compressai: each codec of ``outputs`` (codec -> path) as CompressAI's results
    JSON, all read from the dataset's one summary; every file written atomically."""
    import pandas as pd

    summary = pd.read_csv(summary_csv, float_precision="round_trip")  # the exact means
    docs = {codec: document(summary, dataset, codec) for codec in outputs}
    for codec, out in outputs.items():
        write_json(out, docs[codec])
    return docs
