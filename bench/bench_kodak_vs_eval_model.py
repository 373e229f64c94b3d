#!/usr/bin/env python
"""The workflow's Kodak sweep against CompressAI's own `eval_model`, side by side in one run.

Both get the same checkpoints (seeded random-init state dicts of the chosen architectures, so
nothing is downloaded), the same images (../shared/data/kodak or --images) and the same torch
thread count per coding call (1: eval_model hard-codes torch.set_num_threads(1); rdflow's coding
jobs declare threads: 1). rdflow runs as a user would (`snakemake --cores N` with the default
profile); eval_model runs one process per architecture with all its checkpoints.

Prints both wall times and their ratio, and asserts the numbers agree per image:
bpp equal (rdflow's bpp counts its 9–13 byte container header as well; the payload bits,
(bytes - header_bytes) * 8 / pixels, must equal eval_model's bpp exactly) and PSNR-RGB within
1e-4 dB.

    python bench/bench_kodak_vs_eval_model.py [--n-images 24] [--cores 2] [--archs ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RDFLOW_SHARED", REPO.parent / "shared"))
BIN = Path(sys.executable).parent


def make_checkpoints(folder: Path, archs: list[str], qualities: list[int]) -> dict:
    import torch
    from compressai.zoo.image import cfgs, model_architectures

    out = {}
    for arch in archs:
        for q in qualities:
            torch.manual_seed(1000 + q)
            net = model_architectures[arch](*cfgs[arch][q])
            net.update(force=True)
            p = folder / f"{arch}-q{q}.pth.tar"
            torch.save({"state_dict": net.state_dict()}, p)
            out[(arch, q)] = p
    return out


def run_eval_model(images: Path, ckpts: dict, archs, outdir: Path) -> float:
    t0 = time.perf_counter()
    for arch in archs:
        paths = [str(p) for (a, _), p in sorted(ckpts.items()) if a == arch]
        subprocess.run([str(BIN / "python"), "-m", "compressai.utils.eval_model", "checkpoint",
                        str(images), "-a", arch, "-p", *paths, "--per-image", "-d", str(outdir)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def run_rdflow(images: Path, ckpt_dir: Path, archs, qualities, work: Path, cores: int) -> float:
    import yaml

    work.mkdir(parents=True)
    cfg = {"device": "cpu", "metrics": ["psnr_rgb", "ms_ssim"], "vmaf": {"enabled": False},
           "datasets": {"kodak": {"kind": "local", "path": str(images)}},
           "codecs": {a: {"kind": "learned", "architecture": a, "weights": "checkpoint",
                          "checkpoint": str(ckpt_dir / f"{a}-q{{quality}}.pth.tar"),
                          "qualities": qualities} for a in archs}}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    t0 = time.perf_counter()
    subprocess.run([str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(work),
                    "--configfile", str(work / "config.yaml"),
                    "--profile", str(REPO / "profiles/default"), "--cores", str(cores), "--quiet"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - t0


def compare(eval_dir: Path, work: Path, archs, qualities) -> tuple[int, float, float]:
    import pandas as pd

    df = pd.read_csv(work / "results/image_rd_kodak.csv")
    n, max_dpsnr, max_dbpp = 0, 0.0, 0.0
    for r in df.itertuples():
        ref = json.loads((eval_dir / f"{r.image}-{r.codec}-q{r.quality}-ans.json").read_text())["results"]
        payload_bpp = (r.bytes - r.header_bytes) * 8 / (r.height * r.width)
        max_dbpp = max(max_dbpp, abs(payload_bpp - ref["bpp"]))
        max_dpsnr = max(max_dpsnr, abs(r.psnr_rgb - ref["psnr-rgb"]))
        assert payload_bpp == ref["bpp"], (r.image, r.codec, r.quality, payload_bpp, ref["bpp"])
        assert abs(r.psnr_rgb - ref["psnr-rgb"]) <= 1e-4, (r.image, r.codec, r.psnr_rgb, ref["psnr-rgb"])
        n += 1
    assert n == len(archs) * len(qualities) * df.image.nunique()
    return n, max_dbpp, max_dpsnr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, default=SHARED / "data" / "kodak")
    ap.add_argument("--n-images", type=int, default=24)
    ap.add_argument("--archs", nargs="+", default=["bmshj2018-factorized", "bmshj2018-hyperprior"])
    ap.add_argument("--qualities", nargs="+", type=int, default=[1, 4])
    ap.add_argument("--cores", nargs="+", type=int, default=[2, 1],
                    help="snakemake --cores values to time (one rdflow run each)")
    args = ap.parse_args()
    if not args.images.is_dir():
        sys.exit(f"no images at {args.images}: pass --images or put ../shared beside the checkout")

    tmp = Path(tempfile.mkdtemp(prefix="rdflow-bench-"))
    try:
        images = tmp / "images"
        images.mkdir()
        for p in sorted(args.images.glob("*.png"))[: args.n_images]:
            shutil.copy(p, images / p.name)
        n_img = len(list(images.glob("*.png")))
        ckpt_dir = tmp / "ckpt"
        ckpt_dir.mkdir()
        ckpts = make_checkpoints(ckpt_dir, args.archs, args.qualities)

        eval_dir = tmp / "eval_model"
        t_eval = run_eval_model(images, ckpts, args.archs, eval_dir)
        results = []
        for cores in args.cores:
            work = tmp / f"rdflow-c{cores}"
            t_rd = run_rdflow(images, ckpt_dir, args.archs, args.qualities, work, cores)
            n, dbpp, dpsnr = compare(eval_dir, work, args.archs, args.qualities)
            results.append((cores, t_rd, n, dbpp, dpsnr))

        print(f"images={n_img} archs={','.join(args.archs)} qualities={args.qualities} "
              f"torch threads per coding call=1")
        print(f"eval_model (1 process per arch, torch threads 1): {t_eval:8.1f} s")
        for cores, t_rd, n, dbpp, dpsnr in results:
            print(f"rdflow snakemake --cores {cores}:                   {t_rd:8.1f} s   "
                  f"ratio rdflow/eval_model = {t_rd / t_eval:.3f}   "
                  f"({n} rows agree: max |Δbpp payload|={dbpp:.1e}, max |ΔPSNR|={dpsnr:.1e} dB)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
