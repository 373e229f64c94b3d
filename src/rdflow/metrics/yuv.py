"""8-bit Y'CbCr 4:2:0 <-> RGB conversion and per-plane PSNR, vectorised numpy.

Conventions (what a codec researcher needs to know to compare numbers):

* **Matrices** (``MATRICES``): ``bt601``, ``bt709``, ``bt2020`` (non-constant luminance), given by
  their luma weights Kr and Kb. UVG is BT.709.
* **Ranges** (``RANGES``): ``limited`` ("tv": Y' in 16..235, Cb/Cr in 16..240, i.e. 219 and 224
  levels) and ``full`` ("pc"/JPEG: Y' in 0..255, Cb/Cr = 128 + 255 * Pb). UVG is limited range.
* **Chroma siting** (``CHROMA_LOCS``, ``chroma_loc`` argument), in luma sample units, chroma sample
  (i, j) lies at
    - ``left`` (default; MPEG-2/H.264/HEVC default, Y4M ``C420mpeg2``): x = 2i, y = 2j + 0.5
      (co-sited horizontally with even luma columns, centred vertically between two rows);
    - ``center`` (JPEG/MPEG-1, Y4M ``C420jpeg`` and ``C420``): x = 2i + 0.5, y = 2j + 0.5;
    - ``topleft`` (Y4M ``C420paldv`` is mapped here, as ffmpeg does): x = 2i, y = 2j.
* **Upsampling** (4:2:0 -> 4:4:4) is bilinear interpolation at those positions, separable per axis:
  a co-sited axis gives even output samples the chroma sample itself and odd ones the mean of the two
  neighbours; a centred axis gives each output sample 3/4 of the nearest chroma sample and 1/4 of the
  next nearest. Borders replicate the edge sample.
* **Downsampling** (4:4:4 -> 4:2:0) is the matching 2:1 bilinear (tent) filter: [1, 2, 1] / 4 centred
  on the even sample of a co-sited axis, [1, 3, 3, 1] / 8 on a centred axis; borders replicate. This
  is what ffmpeg's swscale does with ``flags=bilinear`` and the same ``*_chr_pos``; the tests compare
  against the bundled ffmpeg.
* Arithmetic is float32 with rounding to nearest and clipping to 0..255 at the end only.

Frame dimensions must be even (4:2:0 with odd sizes is ambiguous and UVG/Y4M inputs are even).
"""

from __future__ import annotations

import numpy as np

from .. import RdflowError
from .quality import mse, psnr_from_mse

# Kr, Kb of each matrix (Kg = 1 - Kr - Kb).
MATRICES: dict[str, tuple[float, float]] = {
    "bt601": (0.299, 0.114),
    "bt709": (0.2126, 0.0722),
    "bt2020": (0.2627, 0.0593),
}
RANGES = ("limited", "full")
# chroma_loc -> (horizontal axis co-sited?, vertical axis co-sited?)
CHROMA_LOCS: dict[str, tuple[bool, bool]] = {
    "left": (True, False),
    "center": (False, False),
    "topleft": (True, True),
}


def _check_params(matrix: str, range: str, chroma_loc: str) -> tuple[float, float]:
    if matrix not in MATRICES:
        raise RdflowError(f"unknown colour matrix {matrix!r}; use one of {', '.join(MATRICES)}")
    if range not in RANGES:
        raise RdflowError(f"unknown colour range {range!r}; use one of {', '.join(RANGES)}")
    if chroma_loc not in CHROMA_LOCS:
        raise RdflowError(
            f"unknown chroma location {chroma_loc!r}; use one of {', '.join(CHROMA_LOCS)}"
        )
    return MATRICES[matrix]


def _scales(range: str) -> tuple[float, float, float]:
    """(luma offset, luma scale, chroma scale) mapping [0, 255]-scaled E'Y / E'Pb to code values."""
    if range == "limited":
        return 16.0, 219.0 / 255.0, 224.0 / 255.0
    return 0.0, 1.0, 1.0


def _edge_padded(a: np.ndarray, axis: int, before: int, after: int) -> np.ndarray:
    pad = [(0, 0)] * a.ndim
    pad[axis] = (before, after)
    return np.pad(a, pad, mode="edge")


def _sl(a: np.ndarray, axis: int, start: int, stop: int | None, step: int = 1) -> np.ndarray:
    idx = [slice(None)] * a.ndim
    idx[axis] = slice(start, stop, step)
    return a[tuple(idx)]


def _upsample2(c: np.ndarray, axis: int, cosited: bool) -> np.ndarray:
    """Double ``c`` (float32) along ``axis`` by bilinear interpolation at the given siting."""
    n = c.shape[axis]
    p = _edge_padded(c, axis, 1, 1)  # p[k + 1] == c[k]
    prev, cur, nxt = _sl(p, axis, 0, n), _sl(p, axis, 1, n + 1), _sl(p, axis, 2, n + 2)
    if cosited:
        even, odd = cur, 0.5 * (cur + nxt)
    else:
        even, odd = 0.75 * cur + 0.25 * prev, 0.75 * cur + 0.25 * nxt
    shape = list(c.shape)
    shape[axis] = 2 * n
    out = np.empty(shape, dtype=np.float32)
    idx_even = [slice(None)] * c.ndim
    idx_odd = [slice(None)] * c.ndim
    idx_even[axis] = slice(0, None, 2)
    idx_odd[axis] = slice(1, None, 2)
    out[tuple(idx_even)] = even
    out[tuple(idx_odd)] = odd
    return out


def _downsample2(x: np.ndarray, axis: int, cosited: bool) -> np.ndarray:
    """Halve ``x`` (float32, even length along ``axis``) with the 2:1 tent filter of the siting."""
    n = x.shape[axis] // 2
    if cosited:  # [1, 2, 1] / 4 centred on x[2i]
        p = _edge_padded(x, axis, 1, 0)  # p[k + 1] == x[k]
        a, b, c = _sl(p, axis, 0, 2 * n, 2), _sl(p, axis, 1, 2 * n + 1, 2), _sl(p, axis, 2, None, 2)
        return 0.25 * (a + c) + 0.5 * b
    # [1, 3, 3, 1] / 8 centred between x[2i] and x[2i + 1]
    p = _edge_padded(x, axis, 1, 1)
    a = _sl(p, axis, 0, 2 * n, 2)
    b = _sl(p, axis, 1, 2 * n + 1, 2)
    c = _sl(p, axis, 2, 2 * n + 2, 2)
    d = _sl(p, axis, 3, None, 2)
    return 0.125 * (a + d) + 0.375 * (b + c)


def _to_u8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def rgb_to_yuv420(
    rgb: np.ndarray, matrix: str = "bt709", range: str = "limited", chroma_loc: str = "left"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convert an HxWx3 uint8 RGB image to 8-bit Y'CbCr 4:2:0 planes (H x W, H/2 x W/2 twice).

    Chroma is computed at full resolution and then downsampled with the tent filter that matches
    ``chroma_loc`` (see the module docstring), before rounding.
    """
    kr, kb = _check_params(matrix, range, chroma_loc)
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    h, w = rgb.shape[:2]
    if h % 2 or w % 2 or h == 0 or w == 0:
        raise ValueError(f"4:2:0 needs even, non-zero width and height; got {w}x{h}")
    kg = 1.0 - kr - kb
    f = rgb.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    ey = kr * r + kg * g + kb * b  # E'Y scaled to 0..255
    epb = (b - ey) * np.float32(0.5 / (1.0 - kb))  # E'Pb scaled to -127.5..127.5
    epr = (r - ey) * np.float32(0.5 / (1.0 - kr))
    h_cos, v_cos = CHROMA_LOCS[chroma_loc]
    epb = _downsample2(_downsample2(epb, 1, h_cos), 0, v_cos)
    epr = _downsample2(_downsample2(epr, 1, h_cos), 0, v_cos)
    off, ys, cs = _scales(range)
    y = _to_u8(ey * np.float32(ys) + np.float32(off))
    u = _to_u8(epb * np.float32(cs) + np.float32(128.0))
    v = _to_u8(epr * np.float32(cs) + np.float32(128.0))
    return y, u, v


def _check_planes(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> None:
    for name, p in (("Y", y), ("U", u), ("V", v)):
        if p.ndim != 2 or p.dtype != np.uint8:
            raise ValueError(f"{name} plane must be a 2-D uint8 array, got {p.shape} {p.dtype}")
    h, w = y.shape
    if h % 2 or w % 2:
        raise ValueError(f"4:2:0 needs an even luma size; got {w}x{h}")
    if u.shape != (h // 2, w // 2) or v.shape != (h // 2, w // 2):
        raise ValueError(
            f"chroma planes must be {w // 2}x{h // 2} for a {w}x{h} luma plane; "
            f"got U {u.shape[1]}x{u.shape[0]}, V {v.shape[1]}x{v.shape[0]}"
        )


def yuv420_to_rgb(
    y: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    matrix: str = "bt709",
    range: str = "limited",
    chroma_loc: str = "left",
) -> np.ndarray:
    """Convert 8-bit Y'CbCr 4:2:0 planes to an HxWx3 uint8 RGB image.

    Chroma is upsampled bilinearly at the sample positions of ``chroma_loc``; out-of-gamut values are
    clipped to 0..255 after rounding.
    """
    kr, kb = _check_params(matrix, range, chroma_loc)
    y, u, v = np.asarray(y), np.asarray(u), np.asarray(v)
    _check_planes(y, u, v)
    kg = 1.0 - kr - kb
    off, ys, cs = _scales(range)
    h_cos, v_cos = CHROMA_LOCS[chroma_loc]

    def up(c: np.ndarray) -> np.ndarray:
        cf = (c.astype(np.float32) - np.float32(128.0)) * np.float32(1.0 / cs)  # E'Pb, 0..255 scale
        return _upsample2(_upsample2(cf, 1, h_cos), 0, v_cos)

    ey = (y.astype(np.float32) - np.float32(off)) * np.float32(1.0 / ys)
    epb, epr = up(u), up(v)
    r = ey + np.float32(2.0 * (1.0 - kr)) * epr
    b = ey + np.float32(2.0 * (1.0 - kb)) * epb
    g = (ey - np.float32(kr) * r - np.float32(kb) * b) * np.float32(1.0 / kg)
    out = np.empty(y.shape + (3,), dtype=np.uint8)
    out[..., 0], out[..., 1], out[..., 2] = _to_u8(r), _to_u8(g), _to_u8(b)
    return out


def psnr_yuv(
    ref_planes: tuple[np.ndarray, np.ndarray, np.ndarray],
    rec_planes: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> dict[str, float]:
    """PSNR of each 8-bit plane (peak 255): ``{"psnr_y", "psnr_u", "psnr_v"}``; inf when identical.

    Shapes must match plane by plane (compare a reconstruction in the same format as the reference:
    convert RGB reconstructions with :func:`rgb_to_yuv420` using the sequence's matrix, range and
    chroma location).
    """
    if len(ref_planes) != 3 or len(rec_planes) != 3:
        raise ValueError("psnr_yuv expects (y, u, v) triples")
    out = {}
    for key, a, b in zip(("psnr_y", "psnr_u", "psnr_v"), ref_planes, rec_planes):
        out[key] = psnr_from_mse(mse(np.asarray(a), np.asarray(b)))
    return out


#: weights of PSNR-YUV: (6 PSNR-Y + PSNR-U + PSNR-V) / 8, as video coding papers report it
#: (JVET common test conditions, DCVC, ...)
YUV_WEIGHTS = (6.0, 1.0, 1.0)


def weighted_psnr_yuv(psnr_y: float, psnr_u: float, psnr_v: float) -> float:
    """The 6:1:1 weighted mean of three plane PSNRs (inf when one is inf)."""
    wy, wu, wv = YUV_WEIGHTS
    return (wy * psnr_y + wu * psnr_u + wv * psnr_v) / (wy + wu + wv)


def yuv_distortion(
    ref_planes: tuple[np.ndarray, np.ndarray, np.ndarray],
    rec_planes: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> dict[str, float]:
    """Per-plane MSE and PSNR of a 4:2:0 frame, and its 6:1:1 PSNR-YUV: ``psnr_y/u/v`` (the
    numbers :func:`psnr_yuv` gives), ``psnr_yuv`` (:func:`weighted_psnr_yuv`) and
    ``mse_y/u/v`` (mean squared error per sample of the plane, float64): what pooling over
    frames needs (:func:`rdflow.metrics.quality.pooled_psnr`)."""
    if len(ref_planes) != 3 or len(rec_planes) != 3:
        raise ValueError("yuv_distortion expects (y, u, v) triples")
    m = {f"mse_{p}": mse(np.asarray(a), np.asarray(b))
         for p, a, b in zip("yuv", ref_planes, rec_planes)}
    out = {f"psnr_{p}": psnr_from_mse(m[f"mse_{p}"]) for p in "yuv"}
    out["psnr_yuv"] = weighted_psnr_yuv(out["psnr_y"], out["psnr_u"], out["psnr_v"])
    out.update(m)
    return out
