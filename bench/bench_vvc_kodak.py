#!/usr/bin/env python
"""rdflow's ``vvc_intra`` (VVenC through the bundled ffmpeg) on the 24 Kodak images against
CompressAI's published VTM curve (``../shared/reference/compressai/results/image/kodak/vtm.json``).

Each (image, QP) is coded by rdflow's codec exactly as a study job codes it (encode, decode of
the bytes, bpp from the whole file, PSNR-RGB on the 8-bit RGB reconstruction); the curve is the
mean over images per QP, as CompressAI's bench averages. Prints both curves, the BD-rate of
rdflow's curve against VTM's (rdflow.metrics.bdrate, pchip and cubic; negative = rdflow needs
fewer bits), the BD-PSNR, and the PSNR-RGB ceiling of the 4:2:0 conversion alone (RGB ->
BT.601 full-range yuv420p -> RGB, no coding), which caps what a 4:2:0 codec can reach.

What differs from CompressAI's VTM run: VTM (the reference encoder, far slower than any vvenc
preset) coded 4:4:4 with InputBitDepth 8 and its all-intra configuration. rdflow codes 4:2:0
(libvvenc has no 4:4:4), BT.601 full range by swscale with rounding, with a vvenc preset
(``--preset``, default fast). The colour path of compressai 1.2.8's VTM runner
(``compressai.utils.bench.codecs.VTM``: BT.709 in float, truncated to 8 bits by ``astype(uint8)``
both ways) is measured too, without coding: its PSNR-RGB ceiling is below the published curve's
top points, so the published vtm.json was not made through that exact path.
``--chroma-check`` measures what 4:2:0 instead of 4:4:4 costs on its own, with rdflow's
hevc_intra (x265) at the same QPs and conversion.

    python bench/bench_vvc_kodak.py [--preset fast] [--qps 12 17 22 27 32 37 42 47]
                                    [--images 24] [--jobs 2] [--chroma-check] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RDFLOW_SHARED", REPO.parent / "shared"))
VTM_JSON = SHARED / "reference/compressai/results/image/kodak/vtm.json"


def code_one(task: tuple[str, int, str, dict]) -> dict:
    """Code one Kodak image at one QP with an rdflow codec (vvc_intra); bpp, PSNR-RGB, times."""
    from PIL import Image

    from rdflow import metrics as M
    from rdflow.codecs import CodecSpec, build

    path, qp, kind, opts = task
    img = np.asarray(Image.open(path).convert("RGB"))
    codec = build(CodecSpec(kind, kind, qp, opts))
    t0 = time.perf_counter()
    data = codec.encode(img)
    t1 = time.perf_counter()
    rec = codec.decode(data)
    t2 = time.perf_counter()
    h, w = img.shape[:2]
    return {"image": Path(path).stem, "qp": qp, "kind": kind, "pix_fmt": opts.get("pix_fmt"),
            "bytes": len(data), "bpp": len(data) * 8 / (h * w),
            "psnr_rgb": M.psnr_rgb(img, rec), "enc_s": t1 - t0, "dec_s": t2 - t1}


def ceiling_one(path: str) -> float:
    """PSNR-RGB of the 4:2:0 conversion alone (vvc_intra's swscale both ways, no coding)."""
    from PIL import Image

    from rdflow import metrics as M
    from rdflow.codecs import CodecSpec, build
    from rdflow.codecs.ffmpeg_tools import _run

    img = np.asarray(Image.open(path).convert("RGB"))
    h, w = img.shape[:2]
    c = build(CodecSpec("vvc", "vvc_intra", 32, {}))
    yuv = _run(c.exe, ["-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s",
                       f"{w}x{h}", "-i", "pipe:0", *c._to_yuv(), "-f", "rawvideo", "pipe:1"],
               img.tobytes(), what="rgb -> yuv420p")
    rgb = _run(c.exe, [*c._raw_in("yuv420p", w, h), *c._from_yuv(), "-f", "rawvideo", "pipe:1"],
               yuv, what="yuv420p -> rgb")
    return M.psnr_rgb(img, np.frombuffer(rgb, np.uint8).reshape(img.shape))


def compressai_vtm_conversion(path: str) -> float:
    """PSNR-RGB of CompressAI's VTM-runner colour path alone, no coding: RGB -> BT.709 YCbCr in
    float, truncated to 8 bits (astype(uint8)), back to RGB in float, truncated again."""
    import torch
    from compressai.transforms.functional import rgb2ycbcr, ycbcr2rgb
    from PIL import Image

    from rdflow import metrics as M

    img = np.asarray(Image.open(path).convert("RGB"))
    rgb = torch.from_numpy(img.transpose(2, 0, 1).copy()).float() / 255
    yuv = (np.clip(rgb2ycbcr(rgb).numpy(), 0, 1) * 255).astype(np.uint8)
    back = ycbcr2rgb(torch.from_numpy(yuv.astype(np.float32) / 255)).numpy()
    rec = (back.clip(0, 1).transpose(1, 2, 0) * 255.0).astype(np.uint8)
    return M.psnr_rgb(img, rec)


def curve(rows: list[dict], qps: list[int], **match) -> tuple[np.ndarray, np.ndarray]:
    """Mean bpp and PSNR-RGB per QP over the rows that match, sorted by rate."""
    sel = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    b = np.array([np.mean([r["bpp"] for r in sel if r["qp"] == q]) for q in qps])
    p = np.array([np.mean([r["psnr_rgb"] for r in sel if r["qp"] == q]) for q in qps])
    order = np.argsort(b)
    return b[order], p[order]


def bd_lines(vtm_b, vtm_p, our_b, our_p) -> list[str]:
    from rdflow.metrics.bdrate import bd_quality, bd_rate

    out = []
    for label, sel_v, sel_o in (("all points", slice(None), slice(None)),
                                ("bpp <= 0.6 only", vtm_b <= 0.6, our_b <= 0.6)):
        for method in ("pchip", "cubic"):
            r = bd_rate(vtm_b[sel_v], vtm_p[sel_v], our_b[sel_o], our_p[sel_o], method,
                        anchor_name="VTM", test_name="rdflow vvc_intra")
            q = bd_quality(vtm_b[sel_v], vtm_p[sel_v], our_b[sel_o], our_p[sel_o], method)
            why = f" ({r.reason})" if not r.valid else ""
            out.append(f"  {label:16s} {method:6s} BD-rate {r.value:+7.2f} %  over PSNR "
                       f"{r.overlap_low:.2f}–{r.overlap_high:.2f} dB;  BD-PSNR {q.value:+.3f} dB "
                       f"(n = {r.n_anchor}/{r.n_test}){why}")
    return out


def print_table(args, rows, vtm) -> tuple[np.ndarray, np.ndarray]:
    """Both curves side by side by rising rate; returns rdflow's (bpp, PSNR-RGB)."""
    vvc = [r for r in rows if r["kind"] == "vvc_intra"]
    b, p = curve(vvc, args.qps)
    qps = sorted(args.qps, key=lambda q: np.mean([r["bpp"] for r in vvc if r["qp"] == q]))
    print("\nboth curves by rising rate (VTM's QPs are not in its file; its times are VTM's):")
    print(f"{'QP':>4} {'bpp':>8} {'PSNR-RGB':>9} {'enc_s':>7} {'dec_s':>6}   |   VTM {'bpp':>8} "
          f"{'PSNR-RGB':>9} {'enc_s':>7}")
    for rank in range(max(len(qps), len(vtm["bpp"]))):
        ours = " " * 43
        if rank < len(qps):
            sel = [r for r in vvc if r["qp"] == qps[rank]]
            ours = (f"{qps[rank]:4d} {b[rank]:8.4f} {p[rank]:9.3f} "
                    f"{np.mean([r['enc_s'] for r in sel]):7.2f} {np.mean([r['dec_s'] for r in sel]):6.2f}")
        ref = (f"{vtm['bpp'][rank]:8.4f} {vtm['psnr-rgb'][rank]:9.3f} "
               f"{vtm['encoding_time'][rank]:7.1f}" if rank < len(vtm["bpp"]) else "")
        print(f"{ours}   |       {ref}")
    return b, p


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="fast", choices=["faster", "fast", "medium", "slow", "slower"])
    ap.add_argument("--qps", type=int, nargs="+", default=[12, 17, 22, 27, 32, 37, 42, 47])
    ap.add_argument("--images", type=int, default=24, help="the first N Kodak images")
    ap.add_argument("--jobs", type=int, default=2, help="parallel coding processes")
    ap.add_argument("--chroma-check", action="store_true",
                    help="also code hevc_intra (x265) in 4:2:0 and 4:4:4 at the same QPs: the "
                         "BD-rate that the chroma format alone costs, measured on HEVC")
    ap.add_argument("--json", help="write the per-image results here")
    args = ap.parse_args(argv)
    images = sorted((SHARED / "data/kodak").glob("kodim*.png"))[:args.images]
    if not images or not VTM_JSON.is_file():
        print(f"needs {SHARED}/data/kodak and {VTM_JSON}", file=sys.stderr)
        return 2
    setups = [("vvc_intra", {"preset": args.preset, "pix_fmt": "yuv420p"})]
    if args.chroma_check:
        setups += [("hevc_intra", {"preset": "medium", "pix_fmt": f}) for f in ("yuv420p", "yuv444p")]
    tasks = [(str(p), qp, kind, opts) for kind, opts in setups for qp in args.qps for p in images]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(code_one, tasks))
        ceiling = list(pool.map(ceiling_one, [str(p) for p in images]))
    wall = time.perf_counter() - t0
    cai = [compressai_vtm_conversion(str(p)) for p in images]
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows,
                                               "ceiling_420": ceiling, "ceiling_compressai": cai}))
    vtm = json.loads(VTM_JSON.read_text())["results"]
    print(f"rdflow vvc_intra (VVenC preset {args.preset}, 4:2:0, {len(images)} Kodak images) vs "
          f"CompressAI's published VTM (4:4:4); {len(rows)} encodes in {wall:.0f} s wall, "
          f"{args.jobs} processes")
    b, p = print_table(args, rows, vtm)
    print(f"\ncolour conversion alone (no coding), PSNR-RGB mean (min–max) over the images:\n"
          f"  rdflow, BT.601 full-range 4:2:0 by swscale (rounded): {np.mean(ceiling):.2f} dB "
          f"({np.min(ceiling):.2f}–{np.max(ceiling):.2f})\n"
          f"  CompressAI's VTM runner, BT.709 4:4:4, truncated both ways: {np.mean(cai):.2f} dB "
          f"({np.min(cai):.2f}–{np.max(cai):.2f})")
    print("\nBD of rdflow vvc_intra against VTM (negative = fewer bits than VTM):")
    print("\n".join(bd_lines(np.array(vtm["bpp"]), np.array(vtm["psnr-rgb"]), b, p)))
    if args.chroma_check:
        from rdflow.metrics.bdrate import bd_rate

        h444 = curve(rows, args.qps, kind="hevc_intra", pix_fmt="yuv444p")
        h420 = curve(rows, args.qps, kind="hevc_intra", pix_fmt="yuv420p")
        print("\nchroma format alone, on HEVC (rdflow hevc_intra, x265 medium, same conversion "
              "and QPs): BD-rate of 4:2:0 against 4:4:4")
        for method in ("pchip", "cubic"):
            r = bd_rate(*h444, *h420, method)
            print(f"  {method:6s} {r.value:+7.2f} %  over PSNR {r.overlap_low:.2f}–{r.overlap_high:.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
