"""Video sources: raw 8-bit 4:2:0 ``.yuv`` and ``.y4m`` files, frame access by offset, frame
selection, and UVG archives (download with a pinned or recorded SHA-256, safe 7z extraction).

Frames are read one at a time with ``seek`` + ``readinto`` (never the whole file), so memory stays
flat whatever the sequence length. Only 8-bit 4:2:0 planar input is read; anything else is refused
with an error that names the file, the value and a conversion command.

UVG (https://ultravideo.fi) serves its 1080p 8-bit sequences as
``https://ultravideo.fi/video/<Name>_1920x1080_120fps_420_8bit_YUV_RAW.7z``; each archive holds
``<Name>_1920x1080_120fps_420_8bit_YUV.yuv`` (plus a licence text). They are BT.709, limited range,
MPEG-2 ("left") chroma siting.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import Iterator

import numpy as np

from . import RdflowError
from .io import read_json, write_json

log = logging.getLogger(__name__)

#: pixel formats read from raw files: name -> bytes per frame as a function of (width, height)
PIX_FMTS = {"yuv420p": lambda w, h: w * h * 3 // 2}
PIX_FMT_ALIASES = {"i420": "yuv420p", "iyuv": "yuv420p", "420": "yuv420p", "yuv420": "yuv420p"}

#: Y4M colour-space tags that are 8-bit 4:2:0 and the chroma siting each one means
#: (420jpeg is the default when the tag is absent; 420paldv is mapped to top-left, as in ffmpeg).
Y4M_CHROMA = {"420jpeg": "center", "420": "center", "420mpeg2": "left", "420paldv": "topleft"}
Y4M_MAX_HEADER = 1 << 16

UVG_URL = "https://ultravideo.fi/video/{name}_1920x1080_120fps_420_8bit_YUV_RAW.7z"
UVG_MEMBER_REGEX = r"(?:.*/)?{name}_1920x1080_120fps_420_8bit_YUV\.yuv"


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
    header_bytes = 10 + len(line)
    params: dict[str, str] = {}
    xparams: dict[str, str] = {}
    for tok in line.decode("ascii", "replace").split():
        key, val = tok[0], tok[1:]
        if key == "X":
            k, _, v = val.partition("=")
            xparams[k.upper()] = v
        else:
            params[key] = val
    try:
        width, height = int(params["W"]), int(params["H"])
    except (KeyError, ValueError):
        raise RdflowError(f"{path}: Y4M header lacks a valid W (width) or H (height): {line!r}") from None
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise RdflowError(
            f"{path}: Y4M frame size {width}x{height} is not even; 4:2:0 needs even width and height"
        )
    fps = None
    if "F" in params:
        num, _, den = params["F"].partition(":")
        try:
            fps = Fraction(int(num), int(den or 1))
        except (ValueError, ZeroDivisionError):
            raise RdflowError(f"{path}: Y4M frame rate F{params['F']} is not of the form N:D") from None
    chroma = params.get("C", "420jpeg")
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
    interlace = params.get("I", "?")
    if interlace not in ("p", "?"):
        log.warning("%s: Y4M interlacing I%s; frames are treated as progressive pictures", path, interlace)
    color_range = {"LIMITED": "limited", "MPEG": "limited", "FULL": "full", "JPEG": "full"}.get(
        xparams.get("COLORRANGE", "").upper()
    )
    return Y4MHeader(
        width=width, height=height, fps=fps, chroma=chroma, chroma_loc=Y4M_CHROMA[c],
        interlace=interlace, aspect=params.get("A"), color_range=color_range,
        header_bytes=header_bytes, params={**params, **{"X" + k: v for k, v in xparams.items()}},
    )


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


# ---------------------------------------------------------------------------------------------
# archives and downloads


def _unsafe_reason(name: str) -> str | None:
    """Why an archive member name would escape the extraction folder, or None if it is safe."""
    if not name or "\x00" in name:
        return "empty or NUL in name"
    n = name.replace("\\", "/")
    if n.startswith("/") or re.match(r"^[A-Za-z]:", n):
        return "absolute path"
    if ".." in PurePosixPath(n).parts:
        return "'..' in path"
    return None


def _checked_members(z, archive: Path, expected_member_regex: str, fix: str):
    """The listing of an open archive, with the one member matching the regex; unsafe names,
    links and zero or several matches are refused."""
    pattern = re.compile(expected_member_regex)
    infos = z.list()
    for fi in infos:
        reason = _unsafe_reason(fi.filename)
        if reason:
            raise RdflowError(
                f"archive {archive} holds member {fi.filename!r} whose path would escape the "
                f"extraction folder ({reason}); refused. The archive is not the expected one: {fix}"
            )
        if fi.is_symlink:
            raise RdflowError(
                f"archive {archive} holds a symbolic link {fi.filename!r}; links are refused "
                f"(they can point outside the extraction folder). The archive is not the "
                f"expected one: {fix}"
            )
    names = [fi.filename for fi in infos if not fi.is_directory]
    matches = [n for n in names if pattern.fullmatch(n)]
    if len(matches) != 1:
        raise RdflowError(
            f"archive {archive} holds {names!r}; expected exactly one member matching "
            f"{expected_member_regex!r}, found {len(matches)}. Check the URL and member name "
            f"in config.yaml, or {fix}"
        )
    member = next(fi for fi in infos if fi.filename == matches[0])
    return infos, member


def check_member_size(size: int, what: str, width: int, height: int, min_frames: int = 1, *,
                      fix: str) -> int:
    """The number of whole 8-bit 4:2:0 ``width`` x ``height`` frames in ``size`` bytes; refuses a
    size that is not a whole number of frames, or fewer than ``min_frames``."""
    fb = PIX_FMTS["yuv420p"](int(width), int(height))
    n, extra = divmod(int(size), fb)
    if extra or n < max(1, min_frames):
        why = (f"not a whole number of frames ({n} frames and {extra} bytes more)" if extra
               else f"only {n} frames, fewer than the {min_frames} the study selects")
        raise RdflowError(
            f"{what} is {size} bytes: {why} of {width}x{height} 8-bit 4:2:0 ({fb} bytes a "
            f"frame). Either the file is not the expected one or width/height/frames in config.yaml "
            f"are wrong: {fix}"
        )
    return n


def check_archive(archive: str | os.PathLike, expected_member_regex: str, *, width: int,
                  height: int, min_frames: int = 1, fix: str | None = None) -> tuple[str, int]:
    """Open a 7z archive (its listing only, nothing extracted), find the one member matching the
    regex and check its size against the frame geometry. Returns (member name, frames)."""
    import py7zr

    archive = Path(archive)
    fix = fix or f"delete {archive} and rerun so that it is downloaded again"
    try:
        with py7zr.SevenZipFile(archive, mode="r") as z:
            _, member = _checked_members(z, archive, expected_member_regex, fix)
    except RdflowError:
        raise
    except OSError:
        raise
    except Exception as exc:  # py7zr Bad7zFile, header decoding errors, ...
        raise RdflowError(
            f"archive {archive} is corrupt or not a 7z archive ({type(exc).__name__}: {exc}); {fix}"
        ) from exc
    if member.uncompressed is None:
        raise RdflowError(f"archive {archive}: member {member.filename} does not state its size; {fix}")
    n = check_member_size(member.uncompressed, f"member {member.filename} of archive {archive}",
                          width, height, min_frames, fix=fix)
    return member.filename, n


def extract_7z(
    archive: str | os.PathLike, dest_folder: str | os.PathLike, expected_member_regex: str,
    *, fix: str | None = None,
) -> Path:
    """Extract a 7z archive safely into ``dest_folder`` and return the path of the one member whose
    name fully matches ``expected_member_regex``.

    Before anything is written, every member name is checked: absolute paths, ``..`` components
    and symbolic links are refused, and exactly one regular file must match the regex. Extraction
    goes to a temporary folder beside ``dest_folder`` that is renamed into place only when complete
    (CRC checked), so a crash never leaves a half-extracted folder under the final name.
    ``fix`` replaces the advice of messages about a bad archive (default: delete it and rerun).
    """
    import py7zr

    archive, dest = Path(archive), Path(dest_folder)
    fix = fix or f"delete {archive} and rerun so that it is downloaded again"
    if not archive.is_file():
        raise RdflowError(f"archive {archive} does not exist")
    tmp: Path | None = None
    try:
        with py7zr.SevenZipFile(archive, mode="r") as z:
            infos, member = _checked_members(z, archive, expected_member_regex, fix)
            matches = [member.filename]
            need = sum(fi.uncompressed or 0 for fi in infos)
            dest.parent.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(dest.parent).free
            if need > free:
                raise RdflowError(
                    f"extracting {archive} needs {need / 1e9:.2f} GB but {dest.parent} has "
                    f"{free / 1e9:.2f} GB free; free some space and rerun"
                )
            tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
            z.extractall(path=tmp)
        for p in tmp.rglob("*"):  # defence in depth: nothing outside tmp, no links
            if p.is_symlink() or not p.resolve().is_relative_to(tmp.resolve()):
                raise RdflowError(f"archive {archive} produced {p}, outside the folder or a link; {fix}")
        if dest.exists():
            if dest.is_dir() and not any(dest.iterdir()):
                dest.rmdir()
            else:
                raise RdflowError(
                    f"{dest} already exists and is not empty; delete it to extract {archive} again"
                )
        tmp.chmod(0o755)
        os.rename(tmp, dest)
        tmp = None
        return dest / matches[0]
    except RdflowError:
        raise
    except OSError:
        raise  # disk full, permissions: not the archive's fault
    except Exception as exc:  # py7zr ArchiveError/CrcError, lzma/bcj/zstd decoder errors, ...
        raise RdflowError(
            f"archive {archive} is corrupt or not a 7z archive ({type(exc).__name__}: {exc}); {fix}"
        ) from exc
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def default_record_path(dest: str | os.PathLike) -> Path:
    dest = Path(dest)
    return dest.with_name(dest.name + ".sha256.json")


def restart_files(dest: Path, record: Path | None, extracted: Path | None) -> list[Path]:
    """The files to delete to download a sequence afresh: archive, checksum record, .yuv."""
    out = [dest]
    if record is not None:
        out.append(record)
    if extracted is not None and extracted.exists():
        out.append(extracted)
    return out


def restart_hint(files: list[Path], target: Path) -> str:
    names = [str(f) for f in files]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return (f"delete {listed}, then rerun the workflow (or: snakemake {target}) to download and "
            "check it again")


def fetch_sequence(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    record_path: str | os.PathLike | None = None,
    *,
    member: str | None = None,
    width: int | None = None,
    height: int | None = None,
    min_frames: int = 1,
    extracted: str | os.PathLike | None = None,
    **fetch_kwargs,
) -> Path:
    """Download ``url`` to ``dest`` (retries, atomic) and make sure it is the file we expect.

    With ``sha256`` configured, the file is verified against it (on download and on reuse). Without
    one, the digest of the first download is recorded in ``record_path`` (default
    ``<dest>.sha256.json``, with the URL, size and date) and every later call checks ``dest``
    against it, so a corrupted or silently replaced file is noticed. A record for another URL is
    ignored (the URL in config changed) and replaced.

    With ``member`` (the regex of the raw .yuv inside), ``width`` and ``height``, a new download
    is opened before anything is recorded: the member must be there and hold a whole number of
    frames, at least ``min_frames`` (:func:`check_archive`); so a junk first download (an error
    page, another archive) is refused instead of being locked in as the expected digest.
    ``extracted`` (the .yuv made from the archive) is named among the files to delete when a
    later check fails. Without ``member`` the archive cannot be checked and the digest is
    recorded as downloaded.
    """
    from .download import DownloadError, fetch, sha256_file

    dest = Path(dest)
    record = Path(record_path) if record_path is not None else default_record_path(dest)
    extracted = Path(extracted) if extracted is not None else None
    target = extracted or dest
    recorded = None
    if sha256 is None and record.is_file():
        try:
            rec = read_json(record)
            if rec.get("url") == url:
                recorded = rec["sha256"]
            else:
                log.warning("%s records %s, not %s; it will be replaced", record, rec.get("url"), url)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RdflowError(
                f"checksum record {record} is unreadable ({exc}); "
                + restart_hint(restart_files(dest, record, extracted), target)) from None
    want = (sha256 or recorded or "").lower() or None
    downloaded = False
    if dest.is_file():
        if want:
            digest = sha256_file(dest)
            if digest != want:
                src = "configured" if sha256 else f"recorded in {record} at its first download"
                files = restart_files(dest, None if sha256 else record, extracted)
                raise RdflowError(
                    f"{dest} (from {url}) has SHA-256 {digest}, but {want} was {src}: the file is "
                    f"corrupt or was replaced. To start over, " + restart_hint(files, target)
                )
            return dest
    else:
        try:
            fetch(url, dest, sha256=want, **fetch_kwargs)
        except DownloadError as exc:
            if recorded and "checksum mismatch" in str(exc):
                files = restart_files(record, None, extracted)
                raise DownloadError(
                    f"{exc}. It differs from the digest recorded in {record} at the first download: "
                    "if the server's file changed on purpose, " + restart_hint(files, target)
                ) from None
            raise
        downloaded = True
    if member is not None and (downloaded or want is None):
        files = restart_files(dest, None if sha256 or want is None else record, extracted)
        check_archive(dest, member, width=width, height=height, min_frames=min_frames,
                      fix="to start over, " + restart_hint(files, target))
    if want is None:
        digest = sha256_file(dest)
        write_json(
            record,
            {
                "url": url,
                "sha256": digest,
                "bytes": dest.stat().st_size,
                "recorded": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            },
        )
        log.info("recorded SHA-256 %s of %s in %s (pin it in config.yaml)", digest, url, record)
    return dest


__all__ = [
    "Sequence", "Y4MHeader", "probe", "probe_raw", "probe_y4m", "parse_y4m_header", "read_frame",
    "iter_frames", "select_frames", "extract_7z", "check_archive", "check_member_size",
    "fetch_sequence", "default_record_path",
    "UVG_URL", "UVG_MEMBER_REGEX", "PIX_FMTS", "Y4M_CHROMA",
]
