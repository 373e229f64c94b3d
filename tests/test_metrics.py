"""Metrics against independent numpy references."""

import math

import numpy as np
import pytest

from rdflow import metrics as M


def _gauss_window(size=11, sigma=1.5):
    x = np.arange(size) - size // 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(img, g):
    # separable 'valid' convolution over H and W of an HxW array
    k = len(g)
    tmp = np.stack([np.convolve(row, g, mode="valid") for row in img])
    return np.stack([np.convolve(col, g, mode="valid") for col in tmp.T]).T


def _ssim_cs(x, y, data_range=255.0):
    g = _gauss_window()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = _filter_valid(x, g), _filter_valid(y, g)
    sxx = _filter_valid(x * x, g) - mu_x**2
    syy = _filter_valid(y * y, g) - mu_y**2
    sxy = _filter_valid(x * y, g) - mu_x * mu_y
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    ssim = ((2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)) * cs
    return ssim.mean(), cs.mean()


def _ms_ssim_numpy(ref, rec):
    """MS-SSIM of Wang et al. 2003, 5 scales, 2x2 average pooling, per channel then averaged."""
    weights = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
    vals = []
    for c in range(3):
        x, y = ref[..., c].astype(np.float64), rec[..., c].astype(np.float64)
        mcs = []
        for level in range(5):
            ssim, cs = _ssim_cs(x, y)
            if level < 4:
                mcs.append(max(cs, 0))
                h, w = x.shape
                x = x[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
                y = y[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        vals.append(np.prod(np.array(mcs) ** weights[:4]) * max(ssim, 0) ** weights[4])
    return float(np.mean(vals))


@pytest.fixture
def pair():
    rng = np.random.default_rng(1)
    ref = rng.integers(0, 256, size=(192, 200, 3), dtype=np.uint8)
    # a smooth image plus noise is closer to a real one than pure noise
    yy, xx = np.mgrid[0:192, 0:200]
    base = (127 + 100 * np.sin(xx / 13.0) * np.cos(yy / 17.0))[..., None].repeat(3, 2)
    ref = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
    rec = np.clip(ref.astype(int) + rng.integers(-6, 7, size=ref.shape), 0, 255).astype(np.uint8)
    return ref, rec


def test_psnr_rgb_matches_numpy_reference(pair):
    ref, rec = pair
    mse = np.mean((ref.astype(np.float64) - rec.astype(np.float64)) ** 2)
    assert M.psnr_rgb(ref, rec) == pytest.approx(10 * np.log10(255**2 / mse), abs=1e-12)


def test_psnr_identical_is_infinite(pair):
    ref, _ = pair
    assert math.isinf(M.psnr_rgb(ref, ref))


def test_psnr_known_value():
    ref = np.zeros((4, 4, 3), np.uint8)
    rec = np.full((4, 4, 3), 1, np.uint8)  # MSE 1 -> 20 log10(255)
    assert M.psnr_rgb(ref, rec) == pytest.approx(20 * math.log10(255), abs=1e-12)


def test_ms_ssim_matches_numpy_reference(pair):
    ref, rec = pair
    assert M.ms_ssim(ref, rec) == pytest.approx(_ms_ssim_numpy(ref, rec), abs=2e-4)


def test_ms_ssim_db_scale():
    assert M.ms_ssim_db(0.99) == pytest.approx(20.0)
    assert math.isnan(M.ms_ssim_db(math.nan))


def test_ms_ssim_undefined_below_161_pixels():
    a = np.zeros((100, 300, 3), np.uint8)
    assert math.isnan(M.ms_ssim(a, a))


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape mismatch"):
        M.psnr_rgb(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8))


def test_unknown_metric_names_known_ones(pair):
    with pytest.raises(KeyError, match="psnr_rgb"):
        M.compute(*pair, ["psnr_hvs"])


def test_pooled_psnr_is_the_psnr_of_the_sample_weighted_mean_mse():
    assert M.pooled_psnr([10.0, 40.0]) == pytest.approx(10 * math.log10(255**2 / 25.0))
    # an item of 3x the samples weighs 3x: (10 * 1 + 40 * 3) / 4 = 32.5
    assert M.pooled_mse([10.0, 40.0], [100, 300]) == pytest.approx(32.5)
    assert M.pooled_psnr([0.0, 0.0]) == math.inf
    assert math.isnan(M.pooled_psnr([10.0, math.nan])) and math.isnan(M.pooled_psnr([]))


def test_psnr_yuv_is_registered_with_the_pooled_columns():
    from rdflow.metrics.yuv import weighted_psnr_yuv

    assert weighted_psnr_yuv(40.0, 48.0, 56.0) == pytest.approx((6 * 40 + 48 + 56) / 8)
    assert M.label("psnr_yuv") == "PSNR-YUV 6:1:1 [dB]" and M.unit("psnr_y_pooled") == "dB"
    assert {"psnr_yuv", "psnr_y_pooled", "psnr_yuv_mse_pooled"} <= set(M.curve_columns())
    assert "psnr_yuv" not in M.coding_metrics()  # from the 4:2:0 planes, not a `metrics` name
