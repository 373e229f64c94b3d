"""Full-reference quality metrics on 8-bit images, in the names codec researchers use.

The functions take HxWx3 (or HxW) uint8 arrays; :mod:`rdflow.metrics` registers them.
"""

from __future__ import annotations

import math
import numpy as np

MS_SSIM_MIN_SIDE = 161  # 5 scales with an 11-tap window need (11 - 1) * 2**4 < min side


def mse(ref: np.ndarray, rec: np.ndarray) -> float:
    if ref.shape != rec.shape:
        raise ValueError(f"shape mismatch: reference {ref.shape} vs reconstruction {rec.shape}")
    d = ref.astype(np.float64) - rec.astype(np.float64)
    return float(np.mean(d * d))


def psnr_from_mse(m: float, max_val: float = 255.0) -> float:
    if m == 0:
        return math.inf
    return 10.0 * math.log10(max_val * max_val / m)


def psnr_rgb(ref: np.ndarray, rec: np.ndarray) -> float:
    """PSNR over the three RGB channels together (MSE averaged over all samples), 8-bit peak."""
    return psnr_from_mse(mse(ref, rec))


def pooled_mse(mses, samples=None) -> float:
    """The MSE pooled over items: the sum of their squared errors over the sum of their samples,
    i.e. the mean of the items' MSEs weighted by ``samples`` (each item's sample count; None:
    items of equal size, the plain mean). NaN when there is no item or one MSE is missing (NaN):
    a pool with a hole would not be the pool of the items."""
    m = np.asarray(mses, dtype=np.float64)
    if m.size == 0 or np.isnan(m).any():
        return math.nan
    if samples is None:
        return float(m.mean())
    w = np.asarray(samples, dtype=np.float64)
    if w.shape != m.shape or np.isnan(w).any() or (w <= 0).any():
        return math.nan
    return float((m * w).sum() / w.sum())


def pooled_psnr(mses, samples=None, max_val: float = 255.0) -> float:
    """PSNR of the MSE pooled over items (frames, images): ``10 log10(peak^2 / pooled_mse)``,
    what ffmpeg's psnr filter prints as the ``y:``/``u:``/``v:`` averages of a sequence (inf
    when every item is lossless, NaN when an MSE is missing)."""
    m = pooled_mse(mses, samples)
    return math.nan if math.isnan(m) else psnr_from_mse(m, max_val)


#: MS-SSIM as pytorch-msssim computes it (Wang et al. 2003): 5 scales, 11-tap Gaussian (1.5)
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MS_SSIM_WIN, MS_SSIM_SIGMA, MS_SSIM_K = 11, 1.5, (0.01, 0.03)
#: samples of one band of rows (float32 maps of ~8 MB each): bounds MS-SSIM's working memory
MS_SSIM_BAND = 1 << 21


def ms_ssim(ref: np.ndarray, rec: np.ndarray) -> float:
    """MS-SSIM on RGB, data range 255, default 5 scales and weights: pytorch-msssim's
    ``ms_ssim(size_average=True)``, computed per channel in bands of rows.

    The result equals pytorch-msssim's (to float32 rounding: the same filters, the same
    zero-padded 2x2 average pooling, the maps' means summed band by band in float64), but the
    working memory is a few bands plus one channel at half resolution, not a dozen float32
    copies of the whole image (over 9 GB for 10000x10000). Undefined for images whose smaller
    side is below 161 pixels: NaN is returned then.
    """
    if ref.shape != rec.shape:
        raise ValueError(f"shape mismatch: reference {ref.shape} vs reconstruction {rec.shape}")
    if min(ref.shape[:2]) < MS_SSIM_MIN_SIDE:
        return math.nan
    import torch

    coords = torch.arange(MS_SSIM_WIN, dtype=torch.float32) - MS_SSIM_WIN // 2
    win = torch.exp(-(coords**2) / (2 * MS_SSIM_SIGMA**2))
    win /= win.sum()
    planes = [(ref, rec)] if ref.ndim == 2 else [(ref[..., c], rec[..., c]) for c in range(ref.shape[2])]
    with torch.no_grad():
        vals = [_ms_ssim_plane(x, y, win) for x, y in planes]
    return float(np.mean(vals))


def _rows(a, r0: int, r1: int):
    """Rows r0..r1-1 of a 2-D plane (uint8 numpy or float32 torch) as a 1x1xhxW float32 tensor."""
    import torch

    if isinstance(a, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(a[r0:r1])).to(torch.float32)[None, None]
    return a[r0:r1][None, None]


def _ms_ssim_plane(x, y, win) -> float:
    levels = len(MS_SSIM_WEIGHTS)
    mcs = []
    for level in range(levels):
        ssim, cs = _ssim_banded(x, y, win)
        if level < levels - 1:
            mcs.append(max(cs, 0.0))
            x, y = _avg_pool_banded(x), _avg_pool_banded(y)
    vals = mcs + [max(ssim, 0.0)]
    return float(np.prod([v**w for v, w in zip(vals, MS_SSIM_WEIGHTS)]))


def _ssim_banded(x, y, win) -> tuple[float, float]:
    """Means of the SSIM and contrast-structure maps ('valid' Gaussian filtering), band by band."""
    import torch
    import torch.nn.functional as F

    k = win.numel()
    h, w = x.shape
    c1 = (MS_SSIM_K[0] * 255.0) ** 2
    c2 = (MS_SSIM_K[1] * 255.0) ** 2
    wv, wh = win.view(1, 1, k, 1), win.view(1, 1, k)

    def blur(t):  # pytorch-msssim's order: along H, then along W (as conv1d on rows: 4x faster)
        t = F.conv2d(t, wv)
        return F.conv1d(t.reshape(-1, 1, t.shape[-1]), wh).reshape(1, 1, t.shape[-2], -1)

    out_h, out_w = h - k + 1, w - k + 1
    band = max(1, MS_SSIM_BAND // w)
    s_sum = cs_sum = 0.0
    for o0 in range(0, out_h, band):
        o1 = min(out_h, o0 + band)
        X, Y = _rows(x, o0, o1 + k - 1), _rows(y, o0, o1 + k - 1)
        mu1, mu2 = blur(X), blur(Y)
        mu1_sq, mu2_sq, mu1_mu2 = mu1.pow(2), mu2.pow(2), mu1 * mu2
        del mu1, mu2
        sigma1_sq = blur(X * X) - mu1_sq
        sigma2_sq = blur(Y * Y) - mu2_sq
        sigma12 = blur(X * Y) - mu1_mu2
        del X, Y
        cs_map = (2 * sigma12 + c2) / (sigma1_sq + sigma2_sq + c2)
        del sigma1_sq, sigma2_sq, sigma12
        ssim_map = ((2 * mu1_mu2 + c1) / (mu1_sq + mu2_sq + c1)) * cs_map
        s_sum += float(ssim_map.sum(dtype=torch.float64))
        cs_sum += float(cs_map.sum(dtype=torch.float64))
        del ssim_map, cs_map, mu1_sq, mu2_sq, mu1_mu2
    n = out_h * out_w
    return s_sum / n, cs_sum / n


def _avg_pool_banded(a):
    """pytorch-msssim's downsampling, ``avg_pool2d(kernel 2, padding = side % 2)`` (zero padding
    counted), as a float32 torch plane, computed band by band."""
    import torch
    import torch.nn.functional as F

    h, w = a.shape
    ph, pw = h % 2, w % 2
    out_h, out_w = (h + 2 * ph - 2) // 2 + 1, (w + 2 * pw - 2) // 2 + 1
    out = torch.empty((out_h, out_w), dtype=torch.float32)
    band = max(1, MS_SSIM_BAND // (2 * w))
    for k0 in range(0, out_h, band):
        k1 = min(out_h, k0 + band)
        r0, r1 = 2 * k0 - ph, 2 * k1 - ph  # rows of the unpadded plane under these outputs
        t = _rows(a, max(r0, 0), min(r1, h))
        t = F.pad(t, (pw, pw, max(0, -r0), max(0, r1 - h)))
        out[k0:k1] = F.avg_pool2d(t, kernel_size=2)[0, 0, :, : out_w]
    return out


def ms_ssim_db(value: float) -> float:
    """MS-SSIM in dB, -10 log10(1 - MS-SSIM), the scale CompressAI's plots use."""
    if value is None or math.isnan(value):
        return math.nan
    if value >= 1.0:
        return math.inf
    return -10.0 * math.log10(1.0 - value)
