"""Validity (issue 7): rdflow's own JPEG and WebP on the 24 Kodak images reproduce CompressAI's
published jpeg.json and webp.json within 0.3 dB over their common bpp range.

CompressAI's ``compressai/utils/bench/codecs.py`` (JPEG, WebP classes) saves with Pillow and
only ``quality=q``: JPEG therefore uses libjpeg's defaults (4:2:0 chroma, no optimised Huffman
tables) and WebP Pillow's default ``method=4``; its ladder is q = 5, 10, ..., 95 (the 19 points
of both files; the bpp of each point match ours). Its PSNR is the per-image PSNR-RGB averaged
over the images, as is rdflow's summary. rdflow's config below says the same through its codec
options (webp's own default method is 6).

The comparison interpolates PSNR against log(bpp) (PCHIP) for both curves on a 200-point grid
inside the overlap of their bpp ranges and takes the largest absolute difference.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import shared_path

TOLERANCE_DB = 0.3
QUALITIES = list(range(5, 100, 5))  # CompressAI's ladder for jpeg.json and webp.json
CONFIG = {
    "codecs": {
        "jpeg": {"kind": "jpeg", "qualities": QUALITIES, "subsampling": "4:2:0"},
        "webp": {"kind": "webp", "qualities": QUALITIES, "method": 4},
    },
}


def curve_deviation(bpp_a, psnr_a, bpp_b, psnr_b, n: int = 200) -> dict:
    """Max/mean |PSNR_a - PSNR_b| over the common bpp range, both curves interpolated (PCHIP)
    in log-bpp. Raises ValueError for curves that do not overlap or whose bpp is not strictly
    increasing."""
    from scipy.interpolate import PchipInterpolator

    curves = []
    for b, p in ((bpp_a, psnr_a), (bpp_b, psnr_b)):
        b, p = np.asarray(b, float), np.asarray(p, float)
        order = np.argsort(b)
        b, p = b[order], p[order]
        if np.any(np.diff(b) <= 0) or np.any(b <= 0):
            raise ValueError("bpp must be positive and distinct")
        curves.append((b, p))
    lo = max(c[0][0] for c in curves)
    hi = min(c[0][-1] for c in curves)
    if not lo < hi:
        raise ValueError(f"the curves do not overlap (common bpp range {lo:.4g}..{hi:.4g})")
    grid = np.log(np.geomspace(lo, hi, n))
    ya, yb = (PchipInterpolator(np.log(b), p)(grid) for b, p in curves)
    d = np.abs(ya - yb)
    return {"max_db": float(d.max()), "mean_db": float(d.mean()),
            "at_bpp": float(np.exp(grid[int(d.argmax())])), "overlap": (float(lo), float(hi))}


def test_curve_deviation_helper():
    b = np.array([0.2, 0.4, 0.8, 1.6])
    p = 30 + 5 * np.log2(b)
    r = curve_deviation(b, p, b * 1.0, p + 0.25)
    assert r["max_db"] == pytest.approx(0.25) and r["mean_db"] == pytest.approx(0.25)
    assert r["overlap"] == pytest.approx((0.2, 1.6))
    # same curve sampled at other points: only the (tiny) interpolation error remains
    b2 = np.array([0.25, 0.5, 1.0, 1.5])
    assert curve_deviation(b, p, b2, 30 + 5 * np.log2(b2))["max_db"] < 0.02
    assert curve_deviation(b, p, b2, 30 + 5 * np.log2(b2))["overlap"] == pytest.approx((0.25, 1.5))
    with pytest.raises(ValueError, match="do not overlap"):
        curve_deviation(b, p, b + 10, p)
    with pytest.raises(ValueError, match="distinct"):
        curve_deviation([0.1, 0.1, 0.2], [1, 2, 3], b, p)


@pytest.fixture(scope="module")
def kodak_images():
    from rdflow.sources.datasets import KODAK_SHA256, read_image
    from rdflow.download import verify

    folder = shared_path("data", "kodak")
    images = []
    for name in sorted(KODAK_SHA256):
        path = folder / f"{name}.png"
        verify(path, KODAK_SHA256[name], what=f"Kodak image {name}")
        images.append(read_image(path).rgb)
    assert len(images) == 24
    return images


def _our_curve(codec_name: str, images) -> tuple[list[float], list[float]]:
    """Mean bpp and mean PSNR-RGB over the images at each quality, through rdflow's config
    -> CodecSpec -> codec -> rdflow.stages.compress.code -> rdflow.rows path (in-process, no snakemake)."""
    from rdflow.codecs import build
    from rdflow import rows as R
    from rdflow.stages.compress import code, codec_spec
    from rdflow.stages.compress import check

    config = {**CONFIG, "datasets": {}, "device": "cpu"}
    check(config)
    bpp, psnr = [], []
    for q in config["codecs"][codec_name]["qualities"]:
        codec = build(codec_spec(config, codec_name, q))
        coded = [(code(codec, rgb), rgb) for rgb in images]
        rows = [R.build({}, R.rate(len(c.data), rgb.shape[1], rgb.shape[0]),
                        R.distortion({"metrics": ["psnr_rgb"]}, rgb, c.recon)) for c, rgb in coded]
        bpp.append(float(np.mean([r["bpp"] for r in rows])))
        psnr.append(float(np.mean([r["psnr_rgb"] for r in rows])))
    return bpp, psnr


@pytest.mark.parametrize("codec_name", ["jpeg", "webp"])
def test_matches_compressai_published_curve(codec_name, kodak_images):
    from rdflow.reference import load_reference

    ref = load_reference(shared_path("reference", "compressai", "results", "image", "kodak"),
                         [codec_name])
    assert len(ref) == len(QUALITIES)
    bpp, psnr = _our_curve(codec_name, kodak_images)
    r = curve_deviation(bpp, psnr, ref["bpp"], ref["psnr_rgb"])
    print(f"\n{codec_name}: max |dPSNR| {r['max_db']:.3f} dB at {r['at_bpp']:.3f} bpp, mean "
          f"{r['mean_db']:.3f} dB over {r['overlap'][0]:.3f}..{r['overlap'][1]:.3f} bpp")
    # the overlap is (nearly) the whole published range: the same ladder gives the same rates
    ref_lo, ref_hi = float(ref["bpp"].min()), float(ref["bpp"].max())
    assert np.log(r["overlap"][1] / r["overlap"][0]) > 0.95 * np.log(ref_hi / ref_lo)
    assert r["max_db"] < TOLERANCE_DB, r
