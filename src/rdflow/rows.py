"""The one row builder: a coded image, frame or sequence frame becomes one tidy row.

Every coding path (image jobs, per-frame video jobs, sequence codecs) builds its rows here, so
the columns mean the same everywhere: the item's keys first (dataset/image or sequence/frame,
codec, quality), then rate (bytes, header_bytes, bpp), distortion (the study's ``metrics`` on
RGB and, for video, psnr_y/u/v on the 4:2:0 planes), timing (enc_s, dec_s) and what ran (the
codec's ``describe()``).
"""

from __future__ import annotations

import logging
import math

import numpy as np

log = logging.getLogger("rdflow.rows")

DEFAULT_METRICS = ["psnr_rgb", "ms_ssim"]


def rate(n_bytes: float, width: int, height: int, header_bytes: float = 0) -> dict:
    """Rate columns of ``n_bytes`` for one picture of ``width`` x ``height``."""
    return {"height": int(height), "width": int(width), "bytes": n_bytes,
            "header_bytes": header_bytes, "bpp": n_bytes * 8.0 / (width * height)}


def distortion(config: dict, ref_rgb: np.ndarray, rec_rgb: np.ndarray, planes=None,
               rec_planes=None) -> dict:
    """The study's metrics on RGB (with ``psnr_rgb``, its ``mse_rgb``); with ``planes`` (source
    4:2:0 planes) and ``rec_planes`` (the reconstruction's), psnr_y/u/v, the 6:1:1 psnr_yuv and
    the planes' mse_y/u/v too. The MSEs are what summaries pool over items
    (:func:`rdflow.stages.aggregate.pooled`)."""
    from . import metrics as M

    out = {}
    for name in config.get("metrics", DEFAULT_METRICS):
        m = M.METRICS.get(name)
        if name == "psnr_rgb" and m is not None and m.fn is M.psnr_rgb:  # the built-in: one MSE
            e = M.mse(ref_rgb, rec_rgb)
            out.update({"psnr_rgb": M.psnr_from_mse(e), "mse_rgb": e})
        else:
            out.update(M.compute(ref_rgb, rec_rgb, [name]))
    if planes is not None:
        from .metrics.yuv import yuv_distortion

        out.update(yuv_distortion(planes, rec_planes))
    return out


def source(image) -> dict:
    """Columns of the file an image row was coded from (a :class:`rdflow.sources.datasets.Image`):
    ``source_mode`` (its Pillow mode before conversion to RGB), ``source_format`` (Pillow's
    format name: PNG, JPEG, ...) and ``source_lossy`` (true for a lossy-coded file such as a
    JPEG: its coding artefacts are part of the reference every codec is measured against)."""
    return {"source_mode": image.source_mode, "source_format": image.format,
            "source_lossy": bool(image.lossy)}


def build(keys: dict, *parts: dict, describe: dict | None = None) -> dict:
    """``keys`` then each part in order, then the codec's ``describe()`` columns."""
    row = dict(keys)
    for part in parts:
        row.update(part)
    row.setdefault("device", "cpu")
    if describe:
        row.update(describe)
    return row


def warn_infinite(row: dict, item: str) -> None:
    """Log a lossless reconstruction (an infinite PSNR) once per row."""
    for k, v in row.items():
        if isinstance(v, float) and math.isinf(v):
            log.warning("%s is infinite for %s (lossless reconstruction)", k, item)
            return
