"""rdflow.yuv: colour conversion against ffmpeg (swscale and zimg), known values, round trips."""

from __future__ import annotations

import math
import subprocess
import time

import numpy as np
import pytest

from rdflow import RdflowError
from rdflow.metrics.yuv import CHROMA_LOCS, psnr_yuv, rgb_to_yuv420, yuv420_to_rgb

from conftest import shared_path

# ffmpeg's chroma position options, in 1/256 luma sample: (horizontal, vertical)
CHR_POS = {"left": (0, 128), "center": (128, 128), "topleft": (0, 0)}


def ffmpeg():
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(data: bytes, in_fmt: str, w: int, h: int, vf: str, out_fmt: str) -> np.ndarray:
    out = subprocess.run(
        [ffmpeg(), "-v", "error", "-f", "rawvideo", "-pix_fmt", in_fmt, "-s", f"{w}x{h}", "-i", "-",
         "-vf", vf, "-f", "rawvideo", "-pix_fmt", out_fmt, "-"],
        input=data, capture_output=True, check=True,
    ).stdout
    return np.frombuffer(out, np.uint8)


def split420(a: np.ndarray, w: int, h: int):
    ys, cs = w * h, w * h // 4
    return (a[:ys].reshape(h, w), a[ys:ys + cs].reshape(h // 2, w // 2),
            a[ys + cs:ys + 2 * cs].reshape(h // 2, w // 2))


def test_image(h=96, w=128, seed=0, noise=12.0) -> np.ndarray:
    """Smooth colour gradients plus texture and sharp edges: in gamut, exercises every filter."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([40 + 170 * xx / w, 30 + 180 * yy / h, 200 - 150 * (xx + yy) / (w + h)], -1)
    img += rng.normal(0, noise, img.shape)
    img[h // 3: h // 2, w // 4: w // 2] = (220, 30, 40)  # a saturated red block with sharp edges
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


test_image.__test__ = False  # a helper, not a test


def mad(a, b) -> float:
    return float(np.mean(np.abs(a.astype(np.int32) - b.astype(np.int32))))


# ----------------------------------------------------------------------------- ffmpeg comparisons


def test_yuv_to_rgb_matches_ffmpeg_swscale_on_real_frame():
    """One frame of the shared cars clip, BT.709 limited, MPEG-2 ("left") siting on both sides.

    swscale is told the same siting (in_h_chr_pos=0, in_v_chr_pos=128), bilinear chroma
    interpolation, full chroma interpolation and accurate rounding, so both sides compute the same
    thing. Measured: MAD 0.0044, max 1 level.
    """
    path = shared_path("data", "video", "cars_320x240.i420")
    w, h = 320, 240
    fb = w * h * 3 // 2
    with open(path, "rb") as fh:
        fh.seek(5 * fb)
        frame = np.frombuffer(fh.read(fb), np.uint8)
    y, u, v = split420(frame, w, h)
    results = {}
    for loc, (hp, vp) in CHR_POS.items():
        vf = (f"scale=in_color_matrix=bt709:in_range=tv:out_range=pc:in_h_chr_pos={hp}:"
              f"in_v_chr_pos={vp}:flags=bilinear+accurate_rnd+full_chroma_int,format=rgb24")
        ref = run_ffmpeg(frame.tobytes(), "yuv420p", w, h, vf, "rgb24").reshape(h, w, 3)
        results[loc] = ref
    ours = yuv420_to_rgb(y, u, v, "bt709", "limited", "left")
    d = mad(ours, results["left"])
    assert d <= 0.1, f"MAD {d:.4f} against ffmpeg (the task allows <= 1 level)"
    assert np.abs(ours.astype(int) - results["left"]).max() <= 2
    # the comparison is sensitive to siting: a wrong siting is measurably further away
    assert mad(ours, results["center"]) > 3 * d
    assert mad(yuv420_to_rgb(y, u, v, "bt709", "limited", "center"), results["center"]) <= 0.1


@pytest.mark.parametrize("matrix,zmatrix", [("bt709", "709"), ("bt601", "470bg"), ("bt2020", "2020_ncl")])
@pytest.mark.parametrize("rng_", ["limited", "full"])
@pytest.mark.parametrize("loc", list(CHROMA_LOCS))
def test_both_directions_match_ffmpeg_zimg(matrix, zmatrix, rng_, loc):
    """zimg (ffmpeg's zscale) with bilinear chroma resampling at the same siting: RGB->4:2:0 and
    4:2:0->RGB. Measured MAD <= 0.002 in every plane (the rest is float rounding)."""
    rgb = test_image()
    h, w = rgb.shape[:2]
    y, u, v = rgb_to_yuv420(rgb, matrix, rng_, loc)
    vf = f"zscale=matrix={zmatrix}:range={rng_}:chromal={loc}:filter=bilinear:dither=none,format=yuv420p"
    zy, zu, zv = split420(run_ffmpeg(rgb.tobytes(), "rgb24", w, h, vf, "yuv420p"), w, h)
    for ours, ref in ((y, zy), (u, zu), (v, zv)):
        assert mad(ours, ref) <= 0.02
        assert np.abs(ours.astype(int) - ref).max() <= 4
    yuv = np.concatenate([y.ravel(), u.ravel(), v.ravel()]).tobytes()
    vf = (f"zscale=matrixin={zmatrix}:rangein={rng_}:chromalin={loc}:filter=bilinear:dither=none:"
          f"transferin=709:transfer=709:primariesin=709:primaries=709:range=full,format=gbrp")
    ref = run_ffmpeg(yuv, "yuv420p", w, h, vf, "rgb24").reshape(h, w, 3)
    back = yuv420_to_rgb(y, u, v, matrix, rng_, loc)
    assert mad(back, ref) <= 0.02
    assert np.abs(back.astype(int) - ref).max() <= 1


# ----------------------------------------------------------------------------- known values


@pytest.mark.parametrize(
    "rgb,rng_,expect",
    [
        ((255, 255, 255), "limited", (235, 128, 128)),
        ((0, 0, 0), "limited", (16, 128, 128)),
        ((255, 255, 255), "full", (255, 128, 128)),
        ((0, 0, 0), "full", (0, 128, 128)),
        ((255, 0, 0), "limited", (63, 102, 240)),  # BT.709 red, the textbook values
        ((0, 0, 255), "limited", (32, 240, 118)),
    ],
)
def test_known_bt709_values(rgb, rng_, expect):
    img = np.empty((4, 6, 3), np.uint8)
    img[:] = rgb
    y, u, v = rgb_to_yuv420(img, "bt709", rng_)
    assert (y == expect[0]).all() and (u == expect[1]).all() and (v == expect[2]).all()
    assert y.shape == (4, 6) and u.shape == v.shape == (2, 3)
    back = yuv420_to_rgb(y, u, v, "bt709", rng_)
    assert np.abs(back.astype(int) - img).max() <= 1  # 8-bit Y'CbCr cannot hold every RGB exactly


def test_bt601_differs_from_bt709():
    img = np.full((2, 2, 3), (200, 60, 30), np.uint8)
    y601 = rgb_to_yuv420(img, "bt601")[0][0, 0]
    y709 = rgb_to_yuv420(img, "bt709")[0][0, 0]
    assert y601 == round(16 + 219 * (0.299 * 200 + 0.587 * 60 + 0.114 * 30) / 255)
    assert y709 == round(16 + 219 * (0.2126 * 200 + 0.7152 * 60 + 0.0722 * 30) / 255)
    assert y601 != y709


def test_chroma_interpolation_weights_follow_siting():
    """One chroma sample raised on a flat frame: the upsampled Cb (seen through B - G) spreads with
    the bilinear weights of the siting: co-sited 1, 1/2; centred 3/4, 1/4."""
    y = np.full((8, 8), 126, np.uint8)
    u = np.full((4, 4), 128, np.uint8)
    v = np.full((4, 4), 128, np.uint8)
    u[1, 1] = 128 + 40
    kb, kg = 0.0722, 1 - 0.2126 - 0.0722
    gain = 40 * 2 * (1 - kb) * (1 + kb / kg)  # B - G for Pb = 40 (full range: Cb - 128 = Pb)
    for loc in CHROMA_LOCS:
        rgb = yuv420_to_rgb(y, u, v, "bt709", "full", loc).astype(np.float64)
        pb = (rgb[..., 2] - rgb[..., 1]) / gain
        h_cos, v_cos = CHROMA_LOCS[loc]
        cosited, centred = [0, 0.5, 1, 0.5, 0, 0, 0, 0], [0, 0.25, 0.75, 0.75, 0.25, 0, 0, 0]
        expect = np.outer(cosited if v_cos else centred, cosited if h_cos else centred)
        assert np.allclose(pb, expect, atol=0.01), loc


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("loc", list(CHROMA_LOCS))
@pytest.mark.parametrize("rng_", ["limited", "full"])
def test_round_trip_rgb_yuv_rgb(loc, rng_):
    rgb = test_image(seed=1, noise=0.0)
    back = yuv420_to_rgb(*rgb_to_yuv420(rgb, "bt709", rng_, loc), "bt709", rng_, loc)
    psnr = 10 * math.log10(255**2 / np.mean((rgb.astype(float) - back) ** 2))
    assert psnr > 34  # measured 35.8 dB: only the red block's sharp colour edges lose (4:2:0)
    # luma is not touched by chroma subsampling: Y of the round trip equals Y of the original (+-1)
    y0 = rgb_to_yuv420(rgb, "bt709", rng_, loc)[0]
    y1 = rgb_to_yuv420(back, "bt709", rng_, loc)[0]
    assert np.abs(y0.astype(int) - y1).max() <= 2 and mad(y0, y1) < 0.5


def test_round_trip_exact_where_chroma_is_smooth():
    """A linear ramp survives 4:2:0 exactly (bilinear resampling at consistent siting reproduces
    linear functions) away from the borders; a siting mismatch shifts it and shows."""
    h, w = 32, 64
    xx = np.arange(w, dtype=np.float32)[None, :].repeat(h, 0)
    rgb = np.stack([np.full_like(xx, 120), np.full_like(xx, 100), 40 + 2.5 * xx], -1)
    rgb = np.rint(rgb).astype(np.uint8)
    for loc in CHROMA_LOCS:
        back = yuv420_to_rgb(*rgb_to_yuv420(rgb, "bt709", "full", loc), "bt709", "full", loc)
        assert np.abs(back[2:-2, 2:-2].astype(int) - rgb[2:-2, 2:-2]).max() <= 1, loc
    wrong = yuv420_to_rgb(*rgb_to_yuv420(rgb, "bt709", "full", "left"), "bt709", "full", "center")
    assert np.abs(wrong[2:-2, 2:-2].astype(int) - rgb[2:-2, 2:-2]).max() >= 2


def test_round_trip_on_kodak():
    from PIL import Image

    rgb = np.asarray(Image.open(shared_path("data", "kodak", "kodim23.png")).convert("RGB"))
    back = yuv420_to_rgb(*rgb_to_yuv420(rgb), "bt709", "limited")
    psnr = 10 * math.log10(255**2 / np.mean((rgb.astype(float) - back) ** 2))
    assert psnr > 35


def test_full_hd_is_fast():
    rgb = np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    rgb_to_yuv420(rgb)  # warm-up
    t0 = time.perf_counter()
    y, u, v = rgb_to_yuv420(rgb)
    t1 = time.perf_counter()
    yuv420_to_rgb(y, u, v)
    t2 = time.perf_counter()
    # typically 35-50 ms each on a shared 2-core machine; a generous bound against regressions
    # (a per-pixel Python loop would take minutes)
    assert t1 - t0 < 0.5 and t2 - t1 < 0.5, (t1 - t0, t2 - t1)


# ----------------------------------------------------------------------------- PSNR and bad input


def test_psnr_yuv():
    rng = np.random.default_rng(0)
    ref = (rng.integers(0, 250, (8, 8), dtype=np.uint8), rng.integers(0, 255, (4, 4), dtype=np.uint8),
           rng.integers(0, 255, (4, 4), dtype=np.uint8))
    rec = (ref[0] + 1, ref[1].copy(), ref[2].copy())
    rec[2][0, 0] ^= 1  # one sample off by 1 in 16
    out = psnr_yuv(ref, rec)
    assert set(out) == {"psnr_y", "psnr_u", "psnr_v"}
    assert out["psnr_y"] == pytest.approx(10 * math.log10(255**2))
    assert out["psnr_u"] == math.inf
    assert out["psnr_v"] == pytest.approx(10 * math.log10(255**2 * 16))
    with pytest.raises(ValueError, match="shape"):
        psnr_yuv(ref, (ref[0][:4], ref[1], ref[2]))


def test_bad_arguments():
    img = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(RdflowError, match="bt2021"):
        rgb_to_yuv420(img, "bt2021")
    with pytest.raises(RdflowError, match="studio"):
        rgb_to_yuv420(img, "bt709", "studio")
    with pytest.raises(RdflowError, match="chroma location"):
        yuv420_to_rgb(*rgb_to_yuv420(img), chroma_loc="bottom")
    with pytest.raises(ValueError, match="even"):
        rgb_to_yuv420(np.zeros((5, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        rgb_to_yuv420(np.zeros((4, 4, 3), np.float32))
    y = np.zeros((4, 6), np.uint8)
    with pytest.raises(ValueError, match="chroma planes must be 3x2"):
        yuv420_to_rgb(y, np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8))
