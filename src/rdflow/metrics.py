"""Full-reference quality metrics on 8-bit images, in the names codec researchers use.

Registry: ``METRICS`` maps a metric name to a function ``(ref, rec) -> float`` on HxWx3 uint8
arrays. Adding a metric is one function and one entry; config.yaml's ``metrics`` list picks them.
"""

from __future__ import annotations

import math
from typing import Callable

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


def ms_ssim(ref: np.ndarray, rec: np.ndarray) -> float:
    """MS-SSIM on RGB with pytorch-msssim (data range 255, default 5 scales and weights).

    Undefined for images whose smaller side is below 161 pixels: NaN is returned then.
    """
    if min(ref.shape[:2]) < MS_SSIM_MIN_SIDE:
        return math.nan
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].to(torch.float32)

    with torch.no_grad():
        return float(_ms_ssim(t(ref), t(rec), data_range=255.0, size_average=True).item())


def ms_ssim_db(value: float) -> float:
    """MS-SSIM in dB, -10 log10(1 - MS-SSIM), the scale CompressAI's plots use."""
    if value is None or math.isnan(value):
        return math.nan
    if value >= 1.0:
        return math.inf
    return -10.0 * math.log10(1.0 - value)


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "psnr_rgb": psnr_rgb,
    "ms_ssim": ms_ssim,
}


def compute(ref: np.ndarray, rec: np.ndarray, names: list[str]) -> dict[str, float]:
    out = {}
    for name in names:
        try:
            fn = METRICS[name]
        except KeyError:
            raise KeyError(f"unknown metric {name!r}; known: {', '.join(sorted(METRICS))}") from None
        out[name] = fn(ref, rec)
    if "ms_ssim" in out:
        out["ms_ssim_db"] = ms_ssim_db(out["ms_ssim"])
    return out
