"""The VMAF stage's scoring jobs ``vmaf_video`` and ``vmaf_image`` (see
:mod:`rdflow.stages.vmaf`); the libvmaf runs themselves are :mod:`rdflow.metrics.vmaf`."""

from __future__ import annotations

import logging
import math
import tempfile
import time
from pathlib import Path

from rdflow import RdflowError

from .plan import settings

log = logging.getLogger("rdflow.stages.vmaf")


def _finish(df, first_cols: dict, out_csv, model: str):
    from rdflow.io import write_csv

    for i, (k, v) in enumerate(first_cols.items()):
        df.insert(i, k, v)
    df["vmaf_model"] = model
    write_csv(out_csv, df)
    return df


def _png_planes(seq, idx, recons):
    """The RGB reconstruction PNGs of an image codec's frames, converted like the video rows'
    psnr_y/u/v (the sequence's matrix, range and siting)."""
    from rdflow.io import read_pngs
    from rdflow.metrics.yuv import rgb_to_yuv420

    conv = dict(matrix=seq.matrix, range=seq.range, chroma_loc=seq.chroma_loc)
    for i, rec_path, rgb in zip(idx, recons, read_pngs(recons)):  # each archive opened once
        if rgb.shape != (seq.height, seq.width, 3):
            raise RdflowError(
                f"frame sizes differ: reference {seq.path} frame {i} is "
                f"{seq.width}x{seq.height}, distorted {rec_path} is "
                f"{rgb.shape[1]}x{rgb.shape[0]}")
        yield rgb_to_yuv420(rgb, **conv)


def _distorted(config: dict, sequence: str, codec: str, seq, idx, recons):
    """4:2:0 planes of each selected frame's reconstruction: an image codec's PNGs converted,
    or a sequence codec's decoded frames as its compress_sequence job measured them."""
    from rdflow.stages.video_codecs import is_sequence_codec, recon_frames

    if is_sequence_codec(config, codec):
        if len(recons) != 1:
            raise RdflowError(f"{sequence} {codec}: a sequence codec's VMAF job reads one file of "
                              f"decoded frames, got {len(recons)}")
        return (planes for _, planes in recon_frames(config, sequence, codec, recons[0],
                                                     as_="planes", seq_path=seq.path))
    if len(recons) != len(idx):
        raise RdflowError(
            f"frame counts differ for {sequence} {codec}: the reference {seq.path} has "
            f"{len(idx)} selected frames, the distorted input has {len(recons)} reconstructions")
    return _png_planes(seq, idx, recons)


def _write_video_yuv(seq, idx, dist_planes, ref_p, dist_p) -> None:
    """The selected frames' source I420 planes to ``ref_p``, the reconstructions' to
    ``dist_p``, frame by frame."""
    from rdflow.sources.video import iter_frames

    n = 0
    with open(ref_p, "wb") as rf, open(dist_p, "wb") as dfh:
        for (i, planes), rec in zip(iter_frames(seq, idx), dist_planes):
            for p in planes:
                rf.write(p.tobytes())
            for p in rec:
                dfh.write(p.tobytes())
            n += 1
    if n != len(idx):
        raise RdflowError(f"frame counts differ: {len(idx)} selected frames of {seq.path}, "
                          f"{n} reconstructions")


def score_video(*, config: dict, sequence: str, codec: str, quality: int, seq_path,
                recons: list, out_csv, out_log=None, threads: int = 1,
                ffmpeg: str | None = None):
    """VMAF and PSNR-Y/U/V of every selected frame of one (sequence, codec, quality).

    ``recons``: the reconstruction PNGs of an image codec, in the order of the selected frames,
    or the one file of decoded frames of a sequence codec (:func:`rdflow.stages.video_codecs.
    recon_frames`: its 4:2:0 planes as they are, no RGB round trip). Writes ``out_csv`` (one
    row per frame, with libvmaf's features) and, if given, libvmaf's JSON log ``out_log``; on
    any error neither is written.
    """
    from rdflow.metrics.vmaf import vmaf_yuv420
    from rdflow.sources.sequences import frames, probe_sequence

    st = settings(config)
    seq = probe_sequence(config, sequence, seq_path)
    idx = frames(config, sequence)
    recons = [str(r) for r in recons]
    dist = _distorted(config, sequence, codec, seq, idx, recons)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rdflow-vmaf-") as tmp:
        ref_p, dist_p = Path(tmp) / "ref.yuv", Path(tmp) / "dist.yuv"
        _write_video_yuv(seq, idx, dist, ref_p, dist_p)
        t_io = time.perf_counter() - t0
        df = vmaf_yuv420(ref_p, dist_p, seq.width, seq.height, model=st["model"],
                         n_threads=int(threads), log_path=out_log, ffmpeg=ffmpeg)
    df["frame"] = idx
    df = _finish(df, {"sequence": sequence, "codec": codec, "quality": int(quality)}, out_csv,
                 st["model"])
    log.info("%s %s q%s: %d frames %dx%d, mean VMAF %.3f (%s, %d threads) in %.2f s "
             "(%.2f s reading and converting)", sequence, codec, quality, len(df), seq.width,
             seq.height, df["vmaf"].mean(), st["model"], threads, time.perf_counter() - t0, t_io)
    return df


def _score_image(name, ref_path, rec_path, conv: dict, model: str, threads: int, one_log,
                 ffmpeg) -> dict:
    """One image's row: VMAF of its even-sized top-left part, NaN below libvmaf's limit."""
    from rdflow.io import read_png
    from rdflow.sources.datasets import read_image
    from rdflow.metrics.vmaf import MIN_SIDE, vmaf_rgb_frames

    ref = read_image(ref_path).rgb
    rec = read_png(rec_path)
    if ref.shape != rec.shape:
        raise RdflowError(
            f"image sizes differ: reference {ref_path} is {ref.shape[1]}x{ref.shape[0]}, "
            f"distorted {rec_path} is {rec.shape[1]}x{rec.shape[0]}")
    h, w = ref.shape[:2]
    h2, w2 = h - h % 2, w - w % 2
    row = {"image": name, "width": w2, "height": h2}
    if (h2, w2) != (h, w):
        log.warning("%s: %dx%d is odd; VMAF scores its top-left %dx%d (4:2:0 needs even "
                    "sizes)", ref_path, w, h, w2, h2)
    if min(h2, w2) < MIN_SIDE:
        log.warning("%s: %dx%d is too small for libvmaf (< %d px): vmaf is NaN",
                    ref_path, w2, h2, MIN_SIDE)
        return {**row, "vmaf": math.nan}
    try:
        df = vmaf_rgb_frames([ref[:h2, :w2]], [rec[:h2, :w2]], **conv, model=model,
                             n_threads=int(threads), log_path=one_log, ffmpeg=ffmpeg)
    except RdflowError as e:
        raise RdflowError(f"VMAF of image {name} ({ref_path} vs {rec_path}): {e}") from None
    return {**row, **df.iloc[0].drop("frame").to_dict()}


def score_images(*, config: dict, dataset: str, codec: str, quality: int, images: list,
                 refs: list, recons: list, out_csv, out_log=None, threads: int = 1,
                 ffmpeg: str | None = None):
    """VMAF of each image of one (dataset, codec, quality), each a one-frame pair.

    ``images``, ``refs`` (original image files) and ``recons`` (reconstruction PNGs) are
    parallel lists. Writes ``out_csv`` (one row per image) and, if given, a JSON file holding
    libvmaf's log of each image; on any error neither is written.
    """
    import json

    import numpy as np
    import pandas as pd

    from rdflow.io import write_json

    st = settings(config)
    if not len(images) == len(refs) == len(recons):
        raise RdflowError(f"{dataset} {codec} q{quality}: {len(images)} images, {len(refs)} "
                          f"reference files and {len(recons)} reconstructions; they must match")
    conv = dict(matrix=st["image_matrix"], range=st["image_range"],
                chroma_loc=st["image_chroma_loc"])
    rows, logs = [], {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rdflow-vmaf-img-") as tmp:
        for name, ref_path, rec_path in zip(images, refs, recons):
            one_log = Path(tmp) / f"{len(rows)}.json" if out_log else None
            rows.append(_score_image(name, ref_path, rec_path, conv, st["model"], threads,
                                     one_log, ffmpeg))
            if one_log and one_log.exists():
                logs[name] = json.loads(one_log.read_text())
    df = pd.DataFrame(rows)
    for k, v in conv.items():
        df[k] = v
    if out_log:
        write_json(out_log, {"model": st["model"], "images": logs})
    df = _finish(df, {"dataset": dataset, "codec": codec, "quality": int(quality)}, out_csv,
                 st["model"])
    log.info("%s %s q%s: %d images, mean VMAF %.3f (%s) in %.2f s", dataset, codec, quality,
             len(df), float(np.nanmean(df["vmaf"])) if df["vmaf"].notna().any() else math.nan,
             st["model"], time.perf_counter() - t0)
    return df
