"""Scoring one checked pair (:class:`.spec.Pair`): per-frame rows, and the pooled row.

Sequences: each selected frame's Y, U and V planes are compared as they are in the files
(``mse_*`` and ``psnr_* = 10 log10(255^2 / MSE)`` in float64 numpy), ``psnr_yuv`` is the 6:1:1
weighted mean of the frame's plane PSNRs, ``ms_ssim_y`` is MS-SSIM on the Y plane; the frames
are copied as raw I420 into a private temporary folder (``TMPDIR``) for one libvmaf run over
all of them (:func:`rdflow.metrics.vmaf.vmaf_yuv420`: the motion feature needs consecutive
frames), whose per-frame ``vmaf`` joins the rows; ffmpeg's own per-plane PSNR of the same run
must agree with rdflow's (0.01 dB), so a misaligned frame cannot pass unseen.

Images: read as 8-bit RGB (:func:`rdflow.sources.datasets.read_image`): ``psnr_rgb`` (and its
``mse_rgb``), ``ms_ssim`` (RGB, NaN under 161 px) and ``ms_ssim_db``; ``psnr_y/u/v`` and VMAF
on the pair converted to Y'CbCr 4:2:0 by :func:`rdflow.metrics.yuv.rgb_to_yuv420` (the pair's
``matrix``/``range``/``chroma_loc``, default BT.601 limited: ffmpeg's own rgb24 -> yuv420p
choice); an odd side loses its last row/column there (4:2:0 needs even sizes).
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path

import numpy as np

from rdflow import RdflowError
from rdflow.metrics.quality import ms_ssim, ms_ssim_db, mse, psnr_from_mse, psnr_rgb

from .spec import Pair

log = logging.getLogger("rdflow.pairs")
PLANES = ("y", "u", "v")
#: weights of psnr_yuv: (6 PSNR-Y + PSNR-U + PSNR-V) / 8, as video coding papers report it
YUV_WEIGHTS = (6.0, 1.0, 1.0)
#: column order of the pooled row (what a pair lacks is left out)
POOLED_ORDER = ("n_frames", "psnr_rgb", "psnr_rgb_pooled", "ms_ssim", "ms_ssim_db", "psnr_y",
                "psnr_u", "psnr_v", "psnr_yuv", "psnr_y_pooled", "psnr_u_pooled",
                "psnr_v_pooled", "psnr_yuv_pooled", "ms_ssim_y", "vmaf", "vmaf_hmean",
                "vmaf_min")
#: largest gap between rdflow's and ffmpeg's PSNR of a plane before the pair is refused
PSNR_AGREEMENT_DB = 0.01


def psnr_yuv(psnr_y: float, psnr_u: float, psnr_v: float) -> float:
    """The 6:1:1 weighted mean of three plane PSNRs (inf when one is inf)."""
    return (YUV_WEIGHTS[0] * psnr_y + YUV_WEIGHTS[1] * psnr_u + YUV_WEIGHTS[2] * psnr_v) / 8.0


def plane_metrics(ref_planes, dist_planes) -> dict[str, float]:
    """``psnr_y/u/v``, ``psnr_yuv`` and ``mse_y/u/v`` of two (y, u, v) uint8 triples."""
    row: dict[str, float] = {}
    for p, a, b in zip(PLANES, ref_planes, dist_planes):
        row[f"mse_{p}"] = mse(np.asarray(a), np.asarray(b))
    for p in PLANES:
        row[f"psnr_{p}"] = psnr_from_mse(row[f"mse_{p}"])
    row["psnr_yuv"] = psnr_yuv(row["psnr_y"], row["psnr_u"], row["psnr_v"])
    return {k: row[k] for k in ("psnr_y", "psnr_u", "psnr_v", "psnr_yuv",
                                "mse_y", "mse_u", "mse_v")}


def _vmaf(pair: Pair, ref, dist, width: int, height: int, threads: int):
    from rdflow.metrics.vmaf import vmaf_yuv420

    return vmaf_yuv420(ref, dist, width, height, model=pair.vmaf_model, n_threads=threads)


def _check_agreement(pair: Pair, rows: list[dict], vm) -> None:
    """rdflow's per-plane PSNR against ffmpeg's psnr filter in the VMAF run, frame by frame."""
    for row, (_, v) in zip(rows, vm.iterrows()):
        for p in PLANES:
            a, b = row[f"psnr_{p}"], float(v[f"psnr_{p}"])
            if math.isinf(a) and math.isinf(b):
                continue
            if not abs(a - b) <= PSNR_AGREEMENT_DB:
                raise RdflowError(f"pair {pair.name}, frame {row['frame']}: PSNR-{p.upper()} is "
                                  f"{a:.4f} dB here but {b:.4f} dB in ffmpeg's run for VMAF: "
                                  f"the frames libvmaf saw are not the ones compared")


def score_sequence(pair: Pair, threads: int = 1) -> list[dict]:
    """Per-frame rows of a sequence pair (the frames of ``pair.frames``), memory flat: one
    frame of each side in memory, the raw copies for libvmaf on disk."""
    from rdflow.sources.video import iter_frames

    rows = []
    with tempfile.TemporaryDirectory(prefix="rdflow-pairs-") as tmp:
        ref_yuv, dist_yuv = Path(tmp) / "ref.yuv", Path(tmp) / "dist.yuv"
        with open(ref_yuv, "wb") as fr, open(dist_yuv, "wb") as fd:
            for (i, rp), (_, dp) in zip(iter_frames(pair.ref, pair.frames),
                                        iter_frames(pair.dist, pair.frames)):
                row = {"frame": i, **plane_metrics(rp, dp)}
                if pair.ms_ssim:
                    row["ms_ssim_y"] = ms_ssim(rp[0], dp[0])
                rows.append(row)
                if pair.vmaf_model:
                    fr.write(b"".join(p.tobytes() for p in rp))
                    fd.write(b"".join(p.tobytes() for p in dp))
        if pair.vmaf_model:
            vm = _vmaf(pair, ref_yuv, dist_yuv, pair.width, pair.height, threads)
            _check_agreement(pair, rows, vm)
            for row, v in zip(rows, vm["vmaf"]):
                row["vmaf"] = float(v)
    return rows


def score_image(pair: Pair, threads: int = 1) -> list[dict]:
    """The one row (frame 0) of an image pair."""
    from rdflow.metrics.vmaf import MIN_SIDE
    from rdflow.metrics.yuv import rgb_to_yuv420
    from rdflow.sources.datasets import read_image

    ref, dist = read_image(pair.reference).rgb, read_image(pair.distorted).rgb
    if ref.shape != dist.shape:  # the headers agreed at check time: the files changed since
        raise RdflowError(f"pair {pair.name}: reference {pair.reference} is {ref.shape} but "
                          f"distorted {pair.distorted} is {dist.shape} (HxWx3)")
    row = {"frame": 0, "psnr_rgb": psnr_rgb(ref, dist), "mse_rgb": mse(ref, dist)}
    if pair.ms_ssim:
        row["ms_ssim"] = ms_ssim(ref, dist)
        row["ms_ssim_db"] = ms_ssim_db(row["ms_ssim"])
    h, w = ref.shape[0] // 2 * 2, ref.shape[1] // 2 * 2
    conv = (pair.yuv["matrix"], pair.yuv["range"], pair.yuv["chroma_loc"])
    ry, dy = rgb_to_yuv420(ref[:h, :w], *conv), rgb_to_yuv420(dist[:h, :w], *conv)
    row.update(plane_metrics(ry, dy))
    if pair.vmaf_model:
        if min(w, h) < MIN_SIDE:
            log.warning("pair %s: %dx%d is too small for libvmaf: vmaf = NaN", pair.name, w, h)
            row["vmaf"] = math.nan
        else:
            vm = _vmaf(pair, b"".join(p.tobytes() for p in ry),
                       b"".join(p.tobytes() for p in dy), w, h, threads)
            _check_agreement(pair, [row], vm)
            row["vmaf"] = float(vm["vmaf"].iloc[0])
    return [row]


def score(pair: Pair, threads: int = 1):
    """The per-frame table of a pair: ``pair``, ``frame``, ``width``, ``height`` and the
    metrics (see the module docstring), one row per scored frame (one for an image)."""
    import pandas as pd

    rows = (score_image if pair.kind == "image" else score_sequence)(pair, threads)
    df = pd.DataFrame(rows)
    df.insert(0, "pair", pair.name)
    df.insert(2, "width", pair.width)
    df.insert(3, "height", pair.height)
    return df


def _mean(values) -> float:
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()) if len(v) else math.nan


def pool(frames) -> dict:
    """The pooled row of a per-frame table (:func:`score`): ``n_frames``; the mean over frames
    of every per-frame metric (``psnr_y`` ... ``vmaf``: the mean of per-frame PSNRs, as most
    papers and tools report it); ``psnr_<plane>_pooled`` from the mean MSE of the plane over
    frames (and ``psnr_rgb_pooled`` for images), ``psnr_yuv_pooled`` their 6:1:1 weighted mean;
    ``vmaf_hmean`` (libvmaf's harmonic mean, ``1 / mean(1 / (1 + v)) - 1``) and ``vmaf_min``."""
    out: dict[str, float] = {"n_frames": int(len(frames))}
    metric_cols = [c for c in frames.columns if c not in ("pair", "frame", "width", "height")
                   and not c.startswith("mse_")]
    for c in metric_cols:
        out[c] = _mean(frames[c])
    if "mse_rgb" in frames:
        out["psnr_rgb_pooled"] = psnr_from_mse(_mean(frames["mse_rgb"]))
    for p in PLANES:
        out[f"psnr_{p}_pooled"] = psnr_from_mse(_mean(frames[f"mse_{p}"]))
    out["psnr_yuv_pooled"] = psnr_yuv(*(out[f"psnr_{p}_pooled"] for p in PLANES))
    if "vmaf" in frames:
        v = frames["vmaf"].to_numpy(dtype=np.float64)
        out["vmaf_hmean"] = float(1.0 / np.mean(1.0 / (v + 1.0)) - 1.0)
        out["vmaf_min"] = float(v.min())
    order = [c for c in POOLED_ORDER if c in out]
    return {c: out[c] for c in order + [c for c in out if c not in order]}
