"""What a complexity point is measured on: resolutions, and the image fitted to each."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import RdflowError


def parse_resolution(value, *, where: str = "complexity.resolutions") -> tuple[int, int]:
    """``"1920x1080"``, ``[1920, 1080]`` or ``512`` (square) -> (width, height)."""
    w = h = None
    if isinstance(value, bool):
        pass
    elif isinstance(value, int):
        w = h = value
    elif isinstance(value, str):
        parts = value.lower().replace("×", "x").split("x")
        if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
            w, h = (int(p) for p in parts)
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        w, h = value
    if w is None or h is None or w < 1 or h < 1:
        raise RdflowError(f"{where}: {value!r} is not a resolution; write WIDTHxHEIGHT "
                          "(e.g. \"1920x1080\"), [WIDTH, HEIGHT] or one positive integer for a square")
    return int(w), int(h)


def synthetic_image(height: int, width: int) -> np.ndarray:
    """A deterministic smooth image with edges and mild noise (used when no image is given)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 128 + 90 * np.sin(xx / 23.0) * np.cos(yy / 31.0)
    g = 128 + 90 * np.sin((xx + yy) / 41.0)
    b = np.where((xx // 64 + yy // 64) % 2 == 0, 200.0, 60.0)
    noise = np.random.default_rng(0).normal(0, 6, size=(height, width, 3))
    img = np.stack([r, g, b], axis=-1) + noise
    return np.clip(img, 0, 255).astype(np.uint8)


def fit_image(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Centre-crop ``rgb`` to width x height; mirror-pad where it is smaller."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise RdflowError(f"complexity image must be HxWx3 uint8, got shape {rgb.shape} {rgb.dtype}")
    out = rgb
    h, w = out.shape[:2]
    if h < height or w < width:
        ph, pw = max(0, height - h), max(0, width - w)
        out = np.pad(out, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode="symmetric")
    h, w = out.shape[:2]
    top, left = (h - height) // 2, (w - width) // 2
    return np.ascontiguousarray(out[top:top + height, left:left + width])


def load_image(path: str | os.PathLike) -> np.ndarray:
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise RdflowError(f"complexity image {path} does not exist: set complexity.image to an "
                          "existing PNG (e.g. a Kodak image) or leave it empty for a synthetic image")
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def study_image(image, sizes: list[tuple[int, int]]) -> tuple[np.ndarray, str]:
    """(the measured image, its ``source`` column): ``image`` is None (a synthetic image as
    large as the largest size), an image path, or an HxWx3 uint8 array."""
    if image is None:
        w_max = max(w for w, _ in sizes)
        h_max = max(h for _, h in sizes)
        rgb, source = synthetic_image(h_max, w_max), "synthetic"
    elif isinstance(image, (str, os.PathLike)):
        rgb, source = load_image(image), Path(image).name
    else:
        rgb, source = np.asarray(image), "array"
    fit_image(rgb, 1, 1)  # RdflowError now for an image that is not HxWx3 uint8
    return rgb, source
