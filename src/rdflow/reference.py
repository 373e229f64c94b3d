"""Published reference curves: CompressAI's results JSONs as a tidy table.

CompressAI publishes, per dataset, one JSON per codec (``results/image/kodak/<name>.json``)::

    {"name": "JPEG", "description": "...",
     "results": {"bpp": [...], "psnr-rgb": [...], "ms-ssim-rgb": [...],
                 "encoding_time": [...], "decoding_time": [...]}}

(some ``paper-*`` files give ``ms-ssim-db-rgb`` instead of ``ms-ssim-rgb``, and no times).
:func:`load_reference` reads them from a local folder or an http(s) base URL and returns rows
in the field's column names, so that they can be plotted beside, or used as the BD anchor of,
the study's own results.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Sequence

from . import RdflowError

CONFIG_KEY = "reference.compressai_results"
SOURCE = "compressai-published"

#: JSON result key -> column; several keys may feed one column (first present wins)
KEY_MAP: dict[str, tuple[str, ...]] = {
    "bpp": ("bpp",),
    "psnr_rgb": ("psnr-rgb", "psnr"),
    "ms_ssim": ("ms-ssim-rgb", "ms-ssim"),
    "ms_ssim_db": ("ms-ssim-db-rgb", "ms-ssim-db"),
    "enc_s": ("encoding_time",),
    "dec_s": ("decoding_time",),
}
COLUMNS = ["source", "reference", "codec", "quality", "bpp", "psnr_rgb", "ms_ssim", "ms_ssim_db",
           "enc_s", "dec_s"]


def _is_url(location: str) -> bool:
    return "://" in location


def _resolve(location: str, name: str, cache_dir: str | os.PathLike | None) -> tuple[Path, str]:
    """Local path of ``name``.json (downloaded into ``cache_dir`` when ``location`` is a URL)."""
    if not _is_url(location):
        path = Path(location) / f"{name}.json"
        if not path.is_file():
            folder = Path(location)
            have = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
            state = "has no .json files" if folder.is_dir() else "does not exist"
            hint = f"files there: {', '.join(have)}" if have else f"the folder {folder} {state}"
            raise RdflowError(
                f"reference curve {path} not found ({hint}). Fix {CONFIG_KEY} (a folder or "
                f"base URL holding <name>.json) or the reference names in config.yaml")
        return path, str(path)
    scheme = location.split("://", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise RdflowError(f"{CONFIG_KEY} is {location!r}: only local folders and http(s) URLs "
                          "are supported")
    if cache_dir is None:
        raise RdflowError(f"{CONFIG_KEY} is a URL ({location}) but no cache folder was given")
    from .download import DownloadError, fetch

    url = location.rstrip("/") + "/" + f"{name}.json"
    dest = Path(cache_dir) / f"{name}.json"
    if dest.is_file():  # downloads are atomic: a file under this name is complete
        return dest, url
    try:
        fetch(url, dest, retries=3, backoff_s=1.0, timeout_s=60.0)
    except DownloadError as exc:
        raise RdflowError(f"reference curve {url} could not be fetched; fix {CONFIG_KEY} or the "
                          f"reference names in config.yaml. {exc}") from None
    return dest, url


def _to_float(v) -> float:
    return math.nan if v is None else float(v)


def read_results(path: str | os.PathLike, *, origin: str | None = None,
                 source: str = SOURCE) -> list[dict]:
    """Rows of one CompressAI results JSON; ``origin`` (URL or path) is named in errors."""
    path = Path(path)
    where = origin or str(path)
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RdflowError(f"reference curve {where} is not valid JSON ({exc}); it should be a "
                          f"CompressAI results file. Check {CONFIG_KEY}") from None
    results = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(results, dict) or not isinstance(results.get("bpp"), list):
        raise RdflowError(f"reference curve {where} has no results.bpp list; it is not a "
                          f"CompressAI results file. Check {CONFIG_KEY}")
    n = len(results["bpp"])
    cols = {}
    for col, keys in KEY_MAP.items():
        key = next((k for k in keys if k in results), None)
        if key is None:
            continue
        values = results[key]
        if not isinstance(values, list) or len(values) != n:
            got = len(values) if isinstance(values, list) else type(values).__name__
            raise RdflowError(f"reference curve {where}: results.{key} has {got} values but "
                              f"results.bpp has {n}")
        try:
            cols[col] = [_to_float(v) for v in values]
        except (TypeError, ValueError):
            raise RdflowError(f"reference curve {where}: results.{key} holds non-numbers") from None
    if "psnr_rgb" not in cols and "ms_ssim" not in cols and "ms_ssim_db" not in cols:
        raise RdflowError(f"reference curve {where} has neither psnr-rgb nor ms-ssim results")
    from .metrics import ms_ssim_db

    if "ms_ssim" in cols and "ms_ssim_db" not in cols:
        cols["ms_ssim_db"] = [ms_ssim_db(v) for v in cols["ms_ssim"]]
    elif "ms_ssim_db" in cols and "ms_ssim" not in cols:
        cols["ms_ssim"] = [1.0 - 10.0 ** (-v / 10.0) if math.isfinite(v) else math.nan
                           for v in cols["ms_ssim_db"]]
    name = doc.get("name")
    codec = name if isinstance(name, str) and name.strip() else path.stem
    rows = []
    for i in range(n):
        row = {"source": source, "reference": path.stem, "codec": codec, "quality": i + 1}
        row.update({c: cols[c][i] if c in cols else math.nan for c in COLUMNS[4:]})
        rows.append(row)
    return rows


def load_reference(location: str | os.PathLike, names: Sequence[str],
                   cache_dir: str | os.PathLike | None = None, *, source: str = SOURCE):
    """Published curves ``names`` (file stems) from ``location`` as one tidy DataFrame.

    ``location``: a local folder or an http(s) base URL that holds ``<name>.json`` directly
    (pass the dataset sub-path, e.g. ``.../results/image/kodak``). From a URL, each file is
    downloaded once into ``cache_dir`` (delete it there to download again).

    Columns ``COLUMNS``: ``source``, ``reference`` (the file stem), ``codec`` (the JSON's
    ``name``; the file stem when the name is missing or shared by two of the files loaded, as
    the cpu/cuda runs of one model are), ``quality`` (1..n in the file's order), ``bpp``,
    ``psnr_rgb``, ``ms_ssim``, ``ms_ssim_db``, ``enc_s``, ``dec_s`` (NaN where the file lacks
    them). Raises :class:`rdflow.RdflowError` naming the path or URL for a missing or malformed
    file.
    """
    import pandas as pd

    location = os.fspath(location)
    if isinstance(names, str):
        names = [names]
    if not names:
        raise RdflowError(f"no reference curves named; list file stems under {CONFIG_KEY}")
    rows = []
    for name in names:
        path, origin = _resolve(location, name, cache_dir)
        try:
            rows.append(read_results(path, origin=origin, source=source))
        except RdflowError as exc:
            if not _is_url(location):
                raise
            path.unlink(missing_ok=True)  # do not keep a bad download in the cache
            raise RdflowError(f"{exc} (the downloaded copy {path} was removed)") from None
    seen: dict[str, int] = {}
    for r in rows:
        seen[r[0]["codec"]] = seen.get(r[0]["codec"], 0) + 1
    for r in rows:
        if seen[r[0]["codec"]] > 1:
            for row in r:
                row["codec"] = row["reference"]
    return pd.DataFrame([row for r in rows for row in r], columns=COLUMNS)
