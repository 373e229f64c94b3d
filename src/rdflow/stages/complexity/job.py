"""The jobs of the stage: one codec measured (:func:`codec_job`, the per-codec table) and the
per-codec tables gathered (:func:`write_table`)."""

from __future__ import annotations

import logging
import os
from typing import Iterable

from ... import RdflowError
from ...measure.points import COLUMNS
from ...measure.run import complexity_study
from .selection import codec_class, qualities, resolved_devices, settings

log = logging.getLogger("rdflow.complexity")


def write_complexity_csv(rows: list[dict], path: str | os.PathLike) -> None:
    """Write rows to ``path`` (atomic), columns in :data:`rdflow.measure.points.COLUMNS` order."""
    import pandas as pd

    from ...io import write_csv

    write_csv(path, pd.DataFrame(rows, columns=COLUMNS))


def _log_rows(rows: list[dict]) -> None:
    for r in rows:
        if r["status"] != "ok":
            log.warning("%s q%s at %sx%s on %s failed: %s", r["codec"], r["quality"], r["width"],
                        r["height"], r["device"], r["error"])
        else:
            log.info("%s q%s %sx%s %s: enc %.4g s, dec %.4g s, peak RSS %.0f MiB, bpp %.3f",
                     r["codec"], r["quality"], r["width"], r["height"], r["device"],
                     r["enc_s_median"], r["dec_s_median"], r["max_rss_mb"], r["bpp"])


def codec_job(*, config: dict, codec: str, out_csv: str | os.PathLike,
              weights: dict | None = None, image_path: str | os.PathLike | None = None,
              threads: int = 1, worker_init=None) -> list[dict]:
    """Measure one codec: its selected qualities x resolutions x devices; write ``out_csv``.

    weights: ``{"q<quality>" or quality: file}`` (the rule's weights inputs). image_path: the
    image measured (None: synthetic). threads: the job's cores, the torch threads when
    ``complexity.threads`` is null. A resolution that fails gives a failed row; configuration
    errors (CUDA absent, missing weights) raise.
    """
    import functools

    from ...codecs import codec_spec
    from ...config import load_plugins

    if worker_init is None and config.get("plugins"):  # the worker registers the plugins' codecs
        worker_init = functools.partial(load_plugins, {"plugins": list(config["plugins"])})
    if codec not in (config.get("codecs") or {}):
        raise RdflowError(f"complexity: {codec!r} is not under codecs")
    st = settings(config)
    files = {int(str(k).lstrip("q")): str(v) for k, v in (weights or {}).items()}
    specs = [codec_spec(config, codec, q, files.get(q)) for q in qualities(config, codec)]
    uses_torch = codec_class(config, codec).uses_torch
    devs = resolved_devices(config, codec)
    n_threads = st["threads"] if st["threads"] is not None else max(1, int(threads))
    log.info("complexity of %s: qualities %s, resolutions %s, devices %s, %d torch thread(s), "
             "repeats %d, image %s", codec, [s.quality for s in specs], st["resolutions"], devs,
             n_threads, st["repeats"], image_path or "synthetic")
    rows: list[dict] = []
    for dev in devs:
        rows += complexity_study(
            specs, st["resolutions"], device=dev if uses_torch else None, repeats=st["repeats"],
            warmup=st["warmup"], image=image_path, threads=n_threads,
            split_repeats=st["split_repeats"], macs=st["macs"], isolate=st["isolate"],
            memory_limit_mb=st["memory_limit_mb"], worker_init=worker_init)
    _log_rows(rows)
    write_complexity_csv(rows, out_csv)
    return rows


def write_table(csvs: Iterable[str | os.PathLike], out_csv: str | os.PathLike):
    """Gather the per-codec CSVs into the complexity table (same columns)."""
    import pandas as pd

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
