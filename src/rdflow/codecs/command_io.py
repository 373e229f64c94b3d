"""The picture files of ``kind: command`` (rdflow.codecs.command): what the external encoder
reads and what its decoder writes, all 8-bit.

=============  ===============================================================================
format         file
=============  ===============================================================================
``png``        8-bit RGB PNG (read back: 8-bit RGB, palette, or RGBA with an opaque alpha)
``ppm``        binary PPM (P6), maxval 255
``yuv420p``    raw planar Y'CbCr 4:2:0 (I420: Y, then Cb, then Cr), one frame
``yuv444p``    raw planar Y'CbCr 4:4:4, one frame
``y4m``        YUV4MPEG2, one frame; written 4:2:0 (``C420mpeg2``, ``XCOLORRANGE``); read back
               4:2:0 (any ``C420*`` tag) or 4:4:4 (``C444``)
=============  ===============================================================================

Y'CbCr uses the entry's ``matrix`` (bt601 default, bt709) and ``range`` (full default,
limited), with the conversions of :mod:`rdflow.metrics.yuv`: 4:2:0 chroma sited ``left``
(MPEG-2/H.264/HEVC/VVC default), made with the tent filter and upsampled bilinearly both ways.
The same siting is used to read a y4m whatever its C420 tag says (the decoder returns the planes
it was given; many tools tag C420jpeg by default). 4:4:4 uses the same matrix arithmetic,
without resampling. **Odd sizes in 4:2:0** (yuv420p, y4m): the picture is edge-padded to even
width and height (the last column/row repeated, as ``hevc_intra`` does), ``{width}``/
``{height}`` are the padded size, the decoder's output must have that size, and rdflow crops it
back; bpp and every metric count the original pixels only.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from .. import RdflowError
from ..metrics.yuv import MATRICES, RANGES, _scales, _to_u8, rgb_to_yuv420, yuv420_to_rgb

FORMATS = ("png", "ppm", "yuv420p", "yuv444p", "y4m")
YUV_FORMATS = ("yuv420p", "yuv444p", "y4m")
EXTENSIONS = {"png": ".png", "ppm": ".ppm", "yuv420p": ".yuv", "yuv444p": ".yuv", "y4m": ".y4m"}
CHROMA_LOC = "left"
MATRIX_CHOICES = ("bt601", "bt709")
EIGHT_BIT = "make the decoder write 8 bits per sample"


def subsampled(fmt: str) -> bool:
    return fmt in ("yuv420p", "y4m")


def coded_size(fmt: str, h: int, w: int) -> tuple[int, int]:
    """The size of the picture in the encoder's input file (4:2:0: padded to even)."""
    if subsampled(fmt):
        return h + h % 2, w + w % 2
    return h, w


# -- 4:4:4 (the arithmetic of rdflow.metrics.yuv, without resampling) --------------------------
def rgb_to_yuv444(rgb: np.ndarray, matrix: str, range: str) -> tuple[np.ndarray, ...]:
    kr, kb = MATRICES[matrix]
    kg = 1.0 - kr - kb
    f = rgb.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    ey = kr * r + kg * g + kb * b
    epb = (b - ey) * np.float32(0.5 / (1.0 - kb))
    epr = (r - ey) * np.float32(0.5 / (1.0 - kr))
    off, ys, cs = _scales(range)
    return (_to_u8(ey * np.float32(ys) + np.float32(off)),
            _to_u8(epb * np.float32(cs) + np.float32(128.0)),
            _to_u8(epr * np.float32(cs) + np.float32(128.0)))


def yuv444_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray, matrix: str, range: str) -> np.ndarray:
    kr, kb = MATRICES[matrix]
    kg = 1.0 - kr - kb
    off, ys, cs = _scales(range)
    ey = (y.astype(np.float32) - np.float32(off)) * np.float32(1.0 / ys)
    epb = (u.astype(np.float32) - np.float32(128.0)) * np.float32(1.0 / cs)
    epr = (v.astype(np.float32) - np.float32(128.0)) * np.float32(1.0 / cs)
    r = ey + np.float32(2.0 * (1.0 - kr)) * epr
    b = ey + np.float32(2.0 * (1.0 - kb)) * epb
    g = (ey - np.float32(kr) * r - np.float32(kb) * b) * np.float32(1.0 / kg)
    return np.stack([_to_u8(r), _to_u8(g), _to_u8(b)], axis=-1)


def _planes(rgb: np.ndarray, fmt: str, matrix: str, range: str) -> bytes:
    if subsampled(fmt):
        planes = rgb_to_yuv420(rgb, matrix=matrix, range=range, chroma_loc=CHROMA_LOC)
    else:
        planes = rgb_to_yuv444(rgb, matrix, range)
    return b"".join(p.tobytes() for p in planes)


def y4m_header(h: int, w: int, range: str) -> bytes:
    return (f"YUV4MPEG2 W{w} H{h} F25:1 Ip A1:1 C420mpeg2 XYSCSS=420MPEG2 "
            f"XCOLORRANGE={range.upper()}\n").encode("ascii")


# -- the encoder's input ------------------------------------------------------------------
def write_input(path: Path, rgb: np.ndarray, fmt: str, matrix: str, range: str) -> tuple[int, int]:
    """Write ``rgb`` as ``fmt`` (4:2:0 formats: edge-padded to even); the size in the file."""
    h, w = coded_size(fmt, *rgb.shape[:2])
    if (h, w) != rgb.shape[:2]:
        rgb = np.pad(rgb, ((0, h - rgb.shape[0]), (0, w - rgb.shape[1]), (0, 0)), mode="edge")
    if fmt == "png":
        from PIL import Image

        Image.fromarray(rgb, "RGB").save(path, format="PNG", compress_level=1)
    elif fmt == "ppm":
        Path(path).write_bytes(b"P6\n%d %d\n255\n" % (w, h) + rgb.tobytes())
    elif fmt == "y4m":
        Path(path).write_bytes(y4m_header(h, w, range) + b"FRAME\n" + _planes(rgb, fmt, matrix, range))
    elif fmt in YUV_FORMATS:
        Path(path).write_bytes(_planes(rgb, fmt, matrix, range))
    else:
        raise RdflowError(f"unknown picture format {fmt!r}; known: {', '.join(FORMATS)}")
    return h, w


# -- the decoder's output -----------------------------------------------------------------
def read_recon(path: Path, fmt: str, h: int, w: int, matrix: str, range: str) -> np.ndarray:
    """The decoder's output file as HxWx3 uint8 RGB; RdflowError when it is not an 8-bit
    picture of ``fmt`` and size ``w``x``h``."""
    data = Path(path).read_bytes()
    if fmt == "png":
        rgb = _read_png(data, path)
    elif fmt == "ppm":
        rgb = _read_ppm(data)
    elif fmt == "y4m":
        rgb = _read_y4m(data, h, w, matrix, range)
    elif fmt in YUV_FORMATS:
        rgb = _read_raw(data, fmt, h, w, matrix, range)
    else:
        raise RdflowError(f"unknown picture format {fmt!r}; known: {', '.join(FORMATS)}")
    if rgb.shape[:2] != (h, w):
        raise RdflowError(f"the decoder's {fmt} output is {rgb.shape[1]}x{rgb.shape[0]}, "
                          f"expected {w}x{h} (the size given to the encoder)")
    return rgb


def png_header(data: bytes) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR" or len(data) < 26:
        raise RdflowError("the decoder's output is not a PNG file")
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return w, h, data[24], data[25]


def _read_png(data: bytes, path: Path) -> np.ndarray:
    import io

    from PIL import Image

    w, h, depth, ctype = png_header(data)
    if depth != 8:
        raise RdflowError(f"the decoder wrote a {depth}-bit PNG ({w}x{h}); rdflow reads 8-bit "
                          f"RGB: {EIGHT_BIT} (e.g. an 8-bit output option)")
    if ctype in (0, 4):
        raise RdflowError(f"the decoder wrote a grayscale PNG ({w}x{h}); rdflow needs RGB")
    try:
        im = Image.open(io.BytesIO(data))
        im.load()
    except (OSError, SyntaxError, ValueError, zlib.error) as exc:
        raise RdflowError(f"the decoder's PNG {path} cannot be read: {exc}") from None
    arr = np.asarray(im.convert("RGBA") if ctype == 6 else im.convert("RGB"))
    if ctype == 6:
        if (arr[..., 3] != 255).any():
            raise RdflowError("the decoder wrote an RGBA PNG with transparent pixels; rdflow "
                              "needs opaque RGB")
        arr = arr[..., :3]
    return np.ascontiguousarray(arr, dtype=np.uint8)


def _ppm_tokens(data: bytes, n: int) -> tuple[list[bytes], int]:
    """The first ``n`` header tokens of a PNM file (comments skipped) and where data starts."""
    tokens, i = [], 0
    while len(tokens) < n:
        while i < len(data) and data[i:i + 1].isspace():
            i += 1
        if data[i:i + 1] == b"#":
            i = data.find(b"\n", i) + 1 or len(data)
            continue
        j = i
        while j < len(data) and not data[j:j + 1].isspace() and data[j:j + 1] != b"#":
            j += 1
        if j == i:
            raise RdflowError("the decoder's PPM output has a truncated header")
        tokens.append(data[i:j])
        i = j
    return tokens, i + 1  # one whitespace byte ends the header


def _read_ppm(data: bytes) -> np.ndarray:
    (magic, *rest), start = _ppm_tokens(data, 4)
    if magic != b"P6":
        raise RdflowError(f"the decoder's output is not a binary RGB PPM (P6); it starts "
                          f"{magic[:8]!r}")
    try:
        w, h, maxval = (int(t) for t in rest)
    except ValueError:
        raise RdflowError("the decoder's PPM header is not numeric") from None
    if maxval != 255:
        bits = "16-bit" if maxval > 255 else f"maxval {maxval}"
        raise RdflowError(f"the decoder wrote a {bits} PPM ({w}x{h}); rdflow reads 8-bit RGB "
                          f"(maxval 255): {EIGHT_BIT}")
    body = data[start:start + w * h * 3]
    if len(body) != w * h * 3:
        raise RdflowError(f"the decoder's PPM ({w}x{h}) is truncated: {len(body)} of "
                          f"{w * h * 3} pixel bytes")
    return np.frombuffer(body, np.uint8).reshape(h, w, 3).copy()


def _to_rgb(buf: bytes, sub: bool, h: int, w: int, matrix: str, range: str) -> np.ndarray:
    ch, cw = (h // 2, w // 2) if sub else (h, w)
    a = np.frombuffer(buf, np.uint8)
    y = a[:h * w].reshape(h, w)
    u = a[h * w:h * w + ch * cw].reshape(ch, cw)
    v = a[h * w + ch * cw:].reshape(ch, cw)
    if sub:
        return yuv420_to_rgb(y, u, v, matrix=matrix, range=range, chroma_loc=CHROMA_LOC)
    return yuv444_to_rgb(y, u, v, matrix, range)


def frame_bytes(sub: bool, h: int, w: int) -> int:
    return h * w + 2 * ((h // 2) * (w // 2) if sub else h * w)


def _read_raw(data: bytes, fmt: str, h: int, w: int, matrix: str, range: str) -> np.ndarray:
    n = frame_bytes(subsampled(fmt), h, w)
    if len(data) != n:
        hint = (f"twice the 8-bit size: 16-bit samples (a 10-bit output?); {EIGHT_BIT}"
                if len(data) == 2 * n else "a different size, format or frame count")
        raise RdflowError(f"the decoder's {fmt} output has {len(data)} bytes; one 8-bit {w}x{h} "
                          f"{fmt} frame has {n}: {hint}")
    return _to_rgb(data, subsampled(fmt), h, w, matrix, range)


def _read_y4m(data: bytes, h: int, w: int, matrix: str, range: str) -> np.ndarray:
    end = data.find(b"\n")
    if not data.startswith(b"YUV4MPEG2 ") or end < 0:
        raise RdflowError("the decoder's output is not a YUV4MPEG2 (y4m) file")
    params = {t[:1]: t[1:] for t in data[10:end].decode("ascii", "replace").split()}
    chroma = params.get("C", "420jpeg")
    try:
        fw, fh = int(params.get("W", "")), int(params.get("H", ""))
    except ValueError:
        raise RdflowError("the decoder's y4m header has no valid W/H") from None
    if any(chroma.endswith(p) for p in ("p9", "p10", "p12", "p14", "p16")):
        raise RdflowError(f"the decoder wrote a high bit depth y4m (C{chroma}); {EIGHT_BIT}")
    if chroma not in ("420jpeg", "420paldv", "420mpeg2", "420", "444"):
        raise RdflowError(f"the decoder wrote a y4m with chroma C{chroma}; rdflow reads 8-bit "
                          "4:2:0 (C420*) or 4:4:4 (C444)")
    if (fw, fh) != (w, h):
        raise RdflowError(f"the decoder's y4m is {fw}x{fh}, expected {w}x{h} (the size given "
                          "to the encoder)")
    frame = data.find(b"\n", end + 1)
    if data[end + 1:end + 6] != b"FRAME" or frame < 0:
        raise RdflowError("the decoder's y4m has no FRAME")
    sub = chroma != "444"
    n = frame_bytes(sub, h, w)
    body = data[frame + 1:frame + 1 + n]
    if len(body) != n:
        raise RdflowError(f"the decoder's y4m frame is truncated: {len(body)} of {n} bytes")
    return _to_rgb(body, sub, h, w, matrix, range)


def check_colour(matrix: str, range: str, *, where: str) -> None:
    if matrix not in MATRIX_CHOICES:
        raise RdflowError(f"{where}.matrix: {matrix!r} is not allowed; use {' or '.join(MATRIX_CHOICES)}")
    if range not in RANGES:
        raise RdflowError(f"{where}.range: {range!r} is not allowed; use {' or '.join(RANGES)}")
