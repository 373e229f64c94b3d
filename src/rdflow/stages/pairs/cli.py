"""``rdflow-score REF DIST``: score one (reference, distorted) pair from the command line.

The same checks and scoring as the ``pairs`` stage (:func:`rdflow.stages.pairs.spec.resolve`,
:func:`rdflow.stages.pairs.score.score` and :func:`~rdflow.stages.pairs.score.pool`): prints
the pooled row (``--json`` for JSON) and, with ``-o``, writes the per-frame CSV. Exit status 2
with a one-line ``rdflow-score: ...`` message on bad input.

    rdflow-score ref.y4m dist.y4m -o frames.csv
    rdflow-score ref.yuv dist.yuv --width 1920 --height 1080 --count 100
    rdflow-score kodim01.png kodim01.jpg --no-vmaf
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from rdflow import RdflowError


def parser() -> argparse.ArgumentParser:
    from rdflow.metrics.vmaf import CANDIDATE_MODELS, DEFAULT_MODEL

    ap = argparse.ArgumentParser(
        prog="rdflow-score", description="Score a (reference, distorted) image or sequence pair "
        "without coding: per-frame PSNR-Y/U/V, PSNR-YUV (6:1:1), MS-SSIM and VMAF (sequences: "
        ".y4m or raw 8-bit 4:2:0 .yuv), or PSNR-RGB, MS-SSIM, PSNR-Y/U/V and VMAF (images).")
    ap.add_argument("reference", metavar="REF", help="reference image, .y4m or raw .yuv")
    ap.add_argument("distorted", metavar="DIST", help="distorted file of the same kind and size")
    ap.add_argument("--width", type=int, help="frame width of raw .yuv")
    ap.add_argument("--height", type=int, help="frame height of raw .yuv")
    ap.add_argument("--pix-fmt", default=None, choices=["yuv420p", "i420"],
                    help="pixel format of raw .yuv (8-bit 4:2:0 only; default yuv420p)")
    ap.add_argument("--first", type=int, default=None, help="first frame scored (0-based)")
    ap.add_argument("--count", type=int, default=None,
                    help="frames scored (default: all; needed when the frame counts differ)")
    ap.add_argument("--stride", type=int, default=None, help="score every stride-th frame")
    ap.add_argument("--vmaf-model", default=DEFAULT_MODEL, choices=CANDIDATE_MODELS,
                    metavar="MODEL", help=f"libvmaf built-in model: {', '.join(CANDIDATE_MODELS)}"
                    f" (default {DEFAULT_MODEL})")
    ap.add_argument("--no-vmaf", action="store_true", help="skip VMAF")
    ap.add_argument("--no-ms-ssim", action="store_true", help="skip MS-SSIM")
    for k, choices in (("matrix", ["bt601", "bt709", "bt2020"]), ("range", ["limited", "full"]),
                       ("chroma-loc", ["left", "center", "topleft"])):
        ap.add_argument(f"--{k}", choices=choices, default=None,
                        help=f"images: {k} of the RGB -> YUV 4:2:0 conversion for PSNR-Y/U/V "
                             f"and VMAF (default bt601 limited left, ffmpeg's)")
    ap.add_argument("--threads", type=int, default=1, help="libvmaf threads (default 1)")
    ap.add_argument("--name", help="the pair column (default: the distorted file's stem)")
    ap.add_argument("-o", "--output", help="write the per-frame CSV here")
    ap.add_argument("--json", action="store_true", help="print the pooled row as JSON")
    return ap


def entry_of(args) -> dict:
    """The pair entry (the keys of ``pairs.<name>``) that the arguments describe."""
    e = {"reference": args.reference, "distorted": args.distorted, "vmaf": not args.no_vmaf,
         "ms_ssim": not args.no_ms_ssim, "width": args.width, "height": args.height,
         "pix_fmt": args.pix_fmt, "matrix": args.matrix, "range": args.range,
         "chroma_loc": args.chroma_loc}
    frames = {k: getattr(args, k) for k in ("first", "count", "stride")
              if getattr(args, k) is not None}
    if frames:
        e["frames"] = frames
    return e


def _print_row(row: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps({k: (v if not (isinstance(v, float) and not math.isfinite(v))
                              else str(v)) for k, v in row.items()}, indent=1))
        return
    width = max(map(len, row))
    for k, v in row.items():
        print(f"{k:<{width}}  {v:.6f}" if isinstance(v, float) else f"{k:<{width}}  {v}")


def run(argv=None) -> dict:
    """Parse ``argv``, score the pair, write ``-o``, print and return the pooled row."""
    from pathlib import Path

    from rdflow.io import write_csv

    from . import pooled_row
    from .score import score
    from .spec import CLI, resolve

    args = parser().parse_args(argv)
    if args.threads < 1:
        raise RdflowError(f"--threads must be >= 1, got {args.threads}")
    name = args.name or Path(args.distorted).stem
    p = resolve(name, entry_of(args), vmaf_model=args.vmaf_model, where=CLI)
    frames = score(p, args.threads)
    if args.output:
        write_csv(args.output, frames)
    row = pooled_row(p, frames)
    _print_row(row, args.json)
    return row


def main(argv=None) -> int:
    try:
        run(argv)
    except RdflowError as e:
        print(f"rdflow-score: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
