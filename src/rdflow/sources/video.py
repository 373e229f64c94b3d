"""Video files: raw 8-bit 4:2:0 ``.yuv`` and ``.y4m`` probing, frame access by offset, and
frame selection.

Frames are read one at a time with ``seek`` + ``readinto`` (never the whole file), so memory stays
flat whatever the sequence length. Only 8-bit 4:2:0 planar input is read; anything else is refused
with an error that names the file, the value and a conversion command.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from .. import RdflowError

log = logging.getLogger("rdflow.video")

#: pixel formats read from raw files: name -> bytes per frame as a function of (width, height)
PIX_FMTS = {"yuv420p": lambda w, h: w * h * 3 // 2}
PIX_FMT_ALIASES = {"i420": "yuv420p", "iyuv": "yuv420p", "420": "yuv420p", "yuv420": "yuv420p"}

#: Y4M colour-space tags that are 8-bit 4:2:0 and the chroma siting each one means
#: (420jpeg is the default when the tag is absent; 420paldv is mapped to top-left, as in ffmpeg).
Y4M_CHROMA = {"420jpeg": "center", "420": "center", "420mpeg2": "left", "420paldv": "topleft"}
Y4M_MAX_HEADER = 1 << 16


@dataclass(frozen=True)
class Sequence:
    """A video sequence on disk, 8-bit 4:2:0 planar.

    ``header_bytes`` is the offset of the first frame (0 for raw files). For Y4M files
    ``frame_offsets`` holds the offset of each frame's pixel data (FRAME lines may carry
    parameters, so frames are not equally spaced in general).
    """

    name: str
    path: Path
    width: int
    height: int
    pix_fmt: str = "yuv420p"
    n_frames: int = 0
    fps: float | None = None
    matrix: str = "bt709"
    range: str = "limited"
    chroma_loc: str = "left"
    container: str = "raw"  # "raw" or "y4m"
    header_bytes: int = 0
    frame_offsets: tuple[int, ...] | None = field(default=None, repr=False)

    @property
    def frame_bytes(self) -> int:
        return PIX_FMTS[self.pix_fmt](self.width, self.height)

    def offset(self, index: int) -> int:
        if not 0 <= index < self.n_frames:
            raise RdflowError(
                f"frame {index} requested from {self.path}, which has {self.n_frames} frames "
                f"(0..{self.n_frames - 1})"
            )
        if self.frame_offsets is not None:
            return self.frame_offsets[index]
        return self.header_bytes + index * self.frame_bytes


# ---------------------------------------------------------------------------------------------
# raw files


def _check_dims(path, width, height, where: str) -> tuple[int, int]:
    if width is None or height is None:
        raise RdflowError(
            f"{path}: raw video needs its width and height; set them in {where} "
            f"(e.g. width: 1920, height: 1080)"
        )
    try:
        w, h = int(width), int(height)
    except (TypeError, ValueError):
        raise RdflowError(f"{path}: width {width!r} / height {height!r} in {where} are not integers") from None
    if w != width or h != height or w <= 0 or h <= 0:
        raise RdflowError(f"{path}: width {width!r} and height {height!r} in {where} must be positive integers")
    if w % 2 or h % 2:
        raise RdflowError(
            f"{path}: {w}x{h} has an odd width or height, which 4:2:0 cannot hold; check the "
            f"width and height in {where} (they are probably wrong) or crop the source to even size"
        )
    return w, h


def _check_pix_fmt(path, pix_fmt: str, where: str) -> str:
    p = PIX_FMT_ALIASES.get(str(pix_fmt).lower(), str(pix_fmt).lower())
    if p not in PIX_FMTS:
        raise RdflowError(
            f"{path}: pixel format {pix_fmt!r} in {where} is not supported; rdflow reads 8-bit "
            f"4:2:0 planar ({', '.join(PIX_FMTS)}). Convert first, e.g. "
            f"ffmpeg -f rawvideo -pix_fmt {pix_fmt} -s WxH -i in.yuv -pix_fmt yuv420p out.yuv"
        )
    return p


def probe_raw(
    path: str | os.PathLike,
    width: int | None,
    height: int | None,
    pix_fmt: str = "yuv420p",
    *,
    name: str | None = None,
    fps: float | None = None,
    matrix: str = "bt709",
    range: str = "limited",
    chroma_loc: str = "left",
    where: str = "the sequence's config entry",
) -> Sequence:
    """Describe a raw planar file; its size must be a whole number of frames.

    ``where`` names the config entry in error messages (e.g. ``video.sequences.cars``).
    """
    path = Path(path)
    w, h = _check_dims(path, width, height, where)
    pix_fmt = _check_pix_fmt(path, pix_fmt, where)
    if not path.is_file():
        raise RdflowError(f"raw video {path} does not exist; check its path in {where}")
    size = path.stat().st_size
    fb = PIX_FMTS[pix_fmt](w, h)
    n, extra = divmod(size, fb)
    if extra or n == 0:
        raise RdflowError(
            f"{path}: size {size} bytes is not a whole number of {w}x{h} {pix_fmt} frames "
            f"({fb} bytes each): it holds {n} frames and {extra} bytes more. The width, height or "
            f"pixel format in {where} is wrong, or the file is truncated"
        )
    return Sequence(
        name=name or path.stem, path=path, width=w, height=h, pix_fmt=pix_fmt, n_frames=n,
        fps=fps, matrix=matrix, range=range, chroma_loc=chroma_loc, container="raw",
    )


# ---------------------------------------------------------------------------------------------
# Y4M


@dataclass(frozen=True)
class Y4MHeader:
    width: int
    height: int
    fps: Fraction | None
    chroma: str  # as written (default "420jpeg" when absent)
    chroma_loc: str
    interlace: str  # "p", "t", "b", "m" or "?" (absent)
    aspect: str | None
    color_range: str | None  # from ffmpeg's XCOLORRANGE= extension, when present
    header_bytes: int  # bytes up to and including the header's newline
    params: dict = field(default_factory=dict, repr=False)


def _read_line(fh, path: Path, what: str, limit: int = Y4M_MAX_HEADER) -> bytes:
    line = fh.readline(limit)
    if not line.endswith(b"\n"):
        raise RdflowError(
            f"{path}: {what} is not terminated by a newline within {limit} bytes; "
            f"the file is truncated or not YUV4MPEG2"
        )
    return line


def parse_y4m_header(path: str | os.PathLike) -> Y4MHeader:
    """Parse the stream header of a YUV4MPEG2 file (only 8-bit 4:2:0 is accepted).

    Accepted colour spaces: C420jpeg (the default), C420, C420mpeg2, C420paldv. Other chroma
    formats (422, 444, mono, ...) and more than 8 bits (C420p10, ...) raise RdflowError naming the
    file and the value.
    """
    path = Path(path)
    if not path.is_file():
        raise RdflowError(f"Y4M file {path} does not exist; check its path in config.yaml")
    with open(path, "rb") as fh:
        magic = fh.read(10)
        if magic != b"YUV4MPEG2 ":
            raise RdflowError(f"{path} is not a YUV4MPEG2 (.y4m) file: it does not start with 'YUV4MPEG2 '")
        line = _read_line(fh, path, "the Y4M header")
    params, xparams = _y4m_params(line)
    try:
        width, height = int(params["W"]), int(params["H"])
    except (KeyError, ValueError):
        raise RdflowError(f"{path}: Y4M header lacks a valid W (width) or H (height): {line!r}") from None
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise RdflowError(
            f"{path}: Y4M frame size {width}x{height} is not even; 4:2:0 needs even width and height"
        )
    chroma = params.get("C", "420jpeg")
    interlace = params.get("I", "?")
    if interlace not in ("p", "?"):
        log.warning("%s: Y4M interlacing I%s; frames are treated as progressive pictures", path, interlace)
    color_range = {"LIMITED": "limited", "MPEG": "limited", "FULL": "full", "JPEG": "full"}.get(
        xparams.get("COLORRANGE", "").upper()
    )
    return Y4MHeader(
        width=width, height=height, fps=_y4m_fps(path, params), chroma=chroma,
        chroma_loc=_y4m_chroma_loc(path, chroma), interlace=interlace, aspect=params.get("A"),
        color_range=color_range, header_bytes=10 + len(line),
        params={**params, **{"X" + k: v for k, v in xparams.items()}},
    )


def _y4m_params(line: bytes) -> tuple[dict[str, str], dict[str, str]]:
    """The header's parameters (``W1920`` -> W: 1920) and its X extensions (upper-case keys)."""
    params: dict[str, str] = {}
    xparams: dict[str, str] = {}
    for tok in line.decode("ascii", "replace").split():
        key, val = tok[0], tok[1:]
        if key == "X":
            k, _, v = val.partition("=")
            xparams[k.upper()] = v
        else:
            params[key] = val
    return params, xparams


def _y4m_fps(path: Path, params: dict) -> Fraction | None:
    if "F" not in params:
        return None
    num, _, den = params["F"].partition(":")
    try:
        return Fraction(int(num), int(den or 1))
    except (ValueError, ZeroDivisionError):
        raise RdflowError(f"{path}: Y4M frame rate F{params['F']} is not of the form N:D") from None


def _y4m_chroma_loc(path: Path, chroma: str) -> str:
    """The chroma siting of an 8-bit 4:2:0 colour space tag; other tags are refused."""
    c = chroma.lower()
    depth = re.search(r"p(\d+)$", c)
    if depth and int(depth.group(1)) != 8:
        raise RdflowError(
            f"{path}: Y4M colour space C{chroma} has {depth.group(1)}-bit samples; rdflow reads 8-bit "
            f"4:2:0 only. Convert first: ffmpeg -i {path.name} -pix_fmt yuv420p out.y4m (this rounds "
            f"to 8 bits)"
        )
    if c not in Y4M_CHROMA:
        raise RdflowError(
            f"{path}: Y4M colour space C{chroma} is not supported; rdflow reads 8-bit 4:2:0 "
            f"({', '.join('C' + k for k in Y4M_CHROMA)}). Convert first: "
            f"ffmpeg -i {path.name} -pix_fmt yuv420p out.y4m"
        )
    return Y4M_CHROMA[c]


def _index_y4m(path: Path, header_bytes: int, frame_bytes: int) -> tuple[int, ...]:
    """Offsets of each frame's pixel data: read each FRAME line, seek over the pixels."""
    offsets = []
    size = path.stat().st_size
    with open(path, "rb") as fh:
        pos = header_bytes
        while pos < size:
            fh.seek(pos)
            line = fh.readline(Y4M_MAX_HEADER)
            if not line.startswith(b"FRAME") or not line.endswith(b"\n") or line[5:6] not in (b" ", b"\n"):
                raise RdflowError(
                    f"{path}: expected a FRAME marker at byte {pos} (frame {len(offsets)}), found "
                    f"{line[:16]!r}; the file is corrupt or its header does not match its content"
                )
            data = pos + len(line)
            if data + frame_bytes > size:
                raise RdflowError(
                    f"{path}: frame {len(offsets)} is truncated (needs {frame_bytes} bytes from byte "
                    f"{data}, the file ends at {size}); the file is incomplete: fetch or write it again"
                )
            offsets.append(data)
            pos = data + frame_bytes
    if not offsets:
        raise RdflowError(f"{path}: the Y4M file holds no frames")
    return tuple(offsets)


def probe_y4m(
    path: str | os.PathLike,
    *,
    name: str | None = None,
    matrix: str = "bt709",
    range: str | None = None,
) -> Sequence:
    """Describe a Y4M file: header parsed, frames indexed. ``range`` defaults to the header's
    XCOLORRANGE when present, else limited; Y4M does not record the matrix, so it comes from config."""
    path = Path(path)
    hd = parse_y4m_header(path)
    fb = PIX_FMTS["yuv420p"](hd.width, hd.height)
    offsets = _index_y4m(path, hd.header_bytes, fb)
    return Sequence(
        name=name or path.stem, path=path, width=hd.width, height=hd.height, pix_fmt="yuv420p",
        n_frames=len(offsets), fps=float(hd.fps) if hd.fps else None, matrix=matrix,
        range=range or hd.color_range or "limited", chroma_loc=hd.chroma_loc, container="y4m",
        header_bytes=hd.header_bytes, frame_offsets=offsets,
    )


def probe(
    path: str | os.PathLike,
    *,
    width: int | None = None,
    height: int | None = None,
    pix_fmt: str = "yuv420p",
    name: str | None = None,
    fps: float | None = None,
    matrix: str = "bt709",
    range: str | None = None,
    chroma_loc: str = "left",
    where: str = "the sequence's config entry",
) -> Sequence:
    """A :class:`Sequence` for ``path``: ``.y4m`` by its header, anything else as raw planar."""
    if Path(path).suffix.lower() == ".y4m":
        seq = probe_y4m(path, name=name, matrix=matrix, range=range)
        return replace(seq, fps=fps) if fps is not None else seq
    return probe_raw(
        path, width, height, pix_fmt, name=name, fps=fps, matrix=matrix,
        range=range or "limited", chroma_loc=chroma_loc, where=where,
    )


# ---------------------------------------------------------------------------------------------
# frame access


def _read_at(fh, seq: Sequence, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    fb = seq.frame_bytes
    off = seq.offset(index)
    buf = bytearray(fb)
    fh.seek(off)
    got = fh.readinto(buf)
    if got != fb:
        raise RdflowError(
            f"{seq.path}: frame {index} is truncated ({got} of {fb} bytes at byte {off}); the file "
            f"changed or is incomplete since it was probed"
        )
    a = np.frombuffer(buf, dtype=np.uint8)
    w, h = seq.width, seq.height
    ys, cs = w * h, (w // 2) * (h // 2)
    y = a[:ys].reshape(h, w)
    u = a[ys : ys + cs].reshape(h // 2, w // 2)
    v = a[ys + cs : ys + 2 * cs].reshape(h // 2, w // 2)
    return y, u, v


def read_frame(seq: Sequence, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (y, u, v) uint8 planes of frame ``index`` (0-based), read at its offset."""
    with open(seq.path, "rb") as fh:
        return _read_at(fh, seq, index)


def iter_frames(seq: Sequence, indices) -> Iterator[tuple[int, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Yield ``(index, (y, u, v))`` for each index, keeping the file open; one frame in memory."""
    with open(seq.path, "rb") as fh:
        for i in indices:
            yield i, _read_at(fh, seq, i)


def select_frames(
    n_available: int,
    first: int | None = None,
    count: int | None = None,
    stride: int = 1,
    *,
    source: str | os.PathLike | None = None,
) -> list[int]:
    """Frame indices ``first, first + stride, ...``: ``count`` of them (default: all that fit).

    ``first`` is the 0-based index of the first frame (default 0). Asking for more frames than
    the source has is an error (never silently fewer frames than configured).
    """
    src = f"{source}" if source is not None else "the sequence"
    first = 0 if first is None else first
    for key, val, low in (("first", first, 0), ("stride", stride, 1)):
        if not isinstance(val, (int, np.integer)) or isinstance(val, bool) or val < low:
            raise RdflowError(f"frame selection: {key} must be an integer >= {low}, got {val!r}")
    if count is not None and (not isinstance(count, (int, np.integer)) or isinstance(count, bool) or count < 1):
        raise RdflowError(f"frame selection: count must be an integer >= 1, got {count!r}")
    if first >= n_available:
        raise RdflowError(
            f"frame selection starts at frame {first} but {src} has only {n_available} frames "
            f"(0..{n_available - 1}); lower 'first'"
        )
    if count is None:
        count = (n_available - 1 - first) // stride + 1
    last = first + (count - 1) * stride
    if last >= n_available:
        fit = (n_available - 1 - first) // stride + 1
        raise RdflowError(
            f"{count} frames were asked from {src} (first {first}, stride {stride}, so up to frame "
            f"{last}) but it has only {n_available} frames; at most {fit} fit. Lower the frame "
            f"count or stride in config.yaml"
        )
    return list(range(first, last + 1, stride))
