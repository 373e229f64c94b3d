"""Sequence codecs: the base of the codecs that code a whole sequence as ONE bitstream with
inter-frame prediction (config ``video_codecs``; ``medium = "sequence"``), what they are given
(:class:`Clip`) and what they return (:class:`Encoded`), and the ffmpeg helpers x264/x265 share.

A sequence codec has ``encode(frames, clip) -> Encoded`` (``Encoded.data`` is the whole bitstream
file), ``decode(data, clip) -> iterator of frames`` (display order) and ``describe() -> dict``
(versions and settings for the CSV). Frames are in the codec's ``domain``: ``"yuv420"`` (a
(Y, U, V) tuple of uint8 planes, what x264/x265 code) or ``"rgb"`` (HxWx3 uint8, what ssf2020
codes).

Rates. ``bpp`` of a frame row = (the frame's own bytes + an equal share of the file's bytes
that belong to no frame) x 8 / (W x H), so the mean of ``bpp`` over a sequence's rows is exactly
the bitstream file's size x 8 / (W x H x frames). ``frame_bytes`` is the frame's own bytes:
x264/x265: the size of its access unit in the Annex-B stream (packet sizes and display order
from ffmpeg's ``framemd5`` muxer, written by the same ffmpeg run through the ``tee`` muxer;
their sum is checked to equal the file size); ssf2020: the frame's record in rdflow's container.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from fractions import Fraction
from typing import Any, ClassVar, Iterable, Iterator

import numpy as np

from .. import RdflowError
from .base import CODECS, Codec, CodecSpec

#: YCbCr matrix -> ffmpeg's -colorspace tag (VUI only: ffmpeg converts nothing)
FFMPEG_COLORSPACE = {"bt601": "smpte170m", "bt709": "bt709", "bt2020": "bt2020nc"}
FFMPEG_RANGE = {"limited": "tv", "full": "pc"}
FFMPEG_CHROMA_LOC = {"left": "left", "center": "center", "topleft": "topleft"}


@dataclass(frozen=True)
class Clip:
    """What a codec needs to know about the frames it codes (8-bit 4:2:0 source)."""

    width: int
    height: int
    fps: float = 30.0
    matrix: str = "bt709"
    range: str = "limited"
    chroma_loc: str = "left"
    #: the sequence's name, its frame count on disk and the coded frames' indices (codecs that
    #: read results made elsewhere need them: rdflow.codecs.decoded)
    name: str = ""
    source_frames: int = 0
    frames: tuple = ()


@dataclass
class Encoded:
    """A coded sequence. ``frame_bytes``/``frame_types`` are in display order; the file's
    bytes that belong to no frame are ``len(data) - sum(frame_bytes)`` (``header_bytes``)."""

    data: bytes
    frame_bytes: list[int]
    frame_types: list[str]
    enc_s: float
    frame_enc_s: list[float] | None = None  # per-frame times when the codec measures them
    recon_md5: list[str] | None = None  # encoder-side reconstructions (ssf2020), for a check
    info: dict = field(default_factory=dict)

    @property
    def header_bytes(self) -> int:
        return len(self.data) - sum(self.frame_bytes)


class SequenceCodec(Codec):
    """Base class of sequence codecs; subclasses set ``kind``, ``domain``, ``quality_range``."""

    medium: ClassVar[str] = "sequence"
    domain: ClassVar[str] = "yuv420"
    quality_range: ClassVar[tuple[int, int]] = (0, 51)
    #: the quality value, in words (config errors)
    quality_meaning: ClassVar[str] = "quality index"
    #: True when a higher quality value gives more bits
    rate_rises_with_quality: ClassVar[bool] = False

    def __init__(self, spec: CodecSpec):
        super().__init__(spec)
        lo, hi = self.quality_range
        if not lo <= spec.quality <= hi:
            raise RdflowError(f"video_codecs.{spec.name}.qualities: {spec.quality} is out of range "
                              f"for {self.kind}; allowed {lo}–{hi}")

    # -- config -----------------------------------------------------------------------------
    @classmethod
    def check_entry(cls, config: dict, name: str, entry: dict, *, where: str) -> tuple[int, int] | None:
        """Refuse a ``video_codecs.<name>`` entry this kind cannot run (RdflowError naming the
        key)."""
        cls.check_options(entry, where=where)
        return None

    @classmethod
    def check_options(cls, c: dict, *, where: str) -> None:
        """The kind's own option checks; here: no key that only other sequence kinds take."""
        for key, owners in cls.other_keys().items():
            if key in c:
                raise RdflowError(f"{where}.{key} only applies to {cls.owners_text(owners)} "
                                  f"(this codec is {cls.kind})")

    @classmethod
    def other_keys(cls) -> dict[str, list[str]]:
        """Config keys other sequence kinds take and this one does not -> the kinds taking it."""
        owners: dict[str, list[str]] = {}
        for other in sorted(CODECS.values(), key=lambda c: c.kind):
            if other.medium == cls.medium:
                for key in sorted(set(other.entry_keys) - set(cls.entry_keys)):
                    owners.setdefault(key, []).append(other.kind)
        return owners

    @staticmethod
    def owners_text(owners: list[str]) -> str:
        return "kind: " + ", ".join(owners)

    @property
    def gop(self) -> int | None:
        g = self.spec.options.get("gop")
        return int(g) if g else None

    def encode(self, frames: Iterable, clip: Clip) -> Encoded:
        raise NotImplementedError

    def decode(self, data: bytes, clip: Clip) -> Iterator:
        raise NotImplementedError

    def decode_seconds(self, data: bytes, clip: Clip) -> float | None:
        """Seconds of a whole decode timed on its own, or None: the caller then times the
        codec's work inside :meth:`decode` frame by frame."""
        return None

    def describe(self) -> dict[str, Any]:
        return {}

    def warmup(self) -> None:
        """Sequence codecs are built once per job; nothing to warm up."""


class FfmpegSequence(SequenceCodec):
    """A sequence codec run by ffmpeg (x264/x265, vvc, av1): the frames' planes piped into ONE
    encoder process, the file decoded by another to raw planes over a pipe. Subclasses give
    ``_decode_cmd(path, *extra)`` and ``planes_bytes``; ``decode_pix_fmt`` is what the decoder
    writes (read back by ``_read_planes``)."""

    decode_pix_fmt: ClassVar[str] = "yuv420p"

    def planes_bytes(self, planes) -> bytes:
        return b"".join(np.ascontiguousarray(p, dtype=np.uint8).tobytes() for p in planes)

    def stderr_tail(self, text: str) -> str:
        return text.strip()[-2000:]

    def pipe_frames(self, cmd: list[str], frames: Iterable, err: Path, *, what: str,
                    check=None) -> tuple[int, float]:
        """Run the encoder, writing each frame's planes to its stdin (``check(planes, n)`` first,
        if given); (frames written, wall seconds)."""
        n = 0
        t0 = time.perf_counter()
        with open(err, "wb") as errfh:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errfh)
            try:
                for planes in frames:
                    if check is not None:
                        check(planes, n)
                    proc.stdin.write(self.planes_bytes(planes))
                    n += 1
                proc.stdin.close()
            except BrokenPipeError:
                pass
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            rc = proc.wait()
        enc_s = time.perf_counter() - t0
        if rc != 0:
            raise RdflowError(f"{what}: ffmpeg exited with {rc}\ncommand: {' '.join(cmd)}\n"
                              f"{self.stderr_tail(err.read_text(errors='replace'))}")
        return n, enc_s

    def decode_seconds(self, data: bytes, clip: Clip) -> float:
        with tempfile.TemporaryDirectory(prefix=f"rdflow-{self.kind}-") as td:
            p = Path(td) / "in.bin"
            p.write_bytes(data)
            cmd = self._decode_cmd(str(p), "-loglevel", "error", "-fps_mode", "passthrough",
                                   "-f", "null", "-")
            t0 = time.perf_counter()
            run_ffmpeg(cmd, what=f"video_codecs.{self.spec.name} decode")
            return time.perf_counter() - t0

    def decode(self, data: bytes, clip: Clip) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Decode to raw planes over a pipe; yields 8-bit (Y, U, V) per frame (display order).
        The picture types the decoder reports are in ``self.decoded_types`` once it ends."""
        self.decoded_types: list[str] = []
        with tempfile.TemporaryDirectory(prefix=f"rdflow-{self.kind}-") as td:
            p, err = Path(td) / "in.bin", Path(td) / "stderr.txt"
            p.write_bytes(data)
            cmd = self._decode_cmd(str(p), "-loglevel", "info", "-vf", "showinfo", "-fps_mode",
                                   "passthrough", "-f", "rawvideo", "-pix_fmt", self.decode_pix_fmt,
                                   "pipe:1")
            with open(err, "wb") as errfh:
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errfh, stdin=subprocess.DEVNULL)
                try:
                    yield from self._read_planes(proc.stdout, clip)
                finally:
                    proc.stdout.close()
                    rc = proc.wait()
            text = err.read_text(errors="replace")
            if rc != 0:
                raise RdflowError(f"video_codecs.{self.spec.name} decode: ffmpeg exited with {rc}\n"
                                  f"command: {' '.join(cmd)}\n{self.stderr_tail(text)}")
            self.decoded_types = parse_showinfo_types(text)


# ------------------------------------------------------------------------------------------
# ffmpeg helpers of x264/x265


def ffmpeg():
    """The image anchors' ffmpeg helpers: binary, encoder check, version."""
    from . import ffmpeg as ff

    return ff


def run_ffmpeg(cmd: list[str], *, what: str, stdin=None) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, input=stdin, capture_output=True,
                       stdin=None if stdin is not None else subprocess.DEVNULL)
    if p.returncode != 0:
        err = p.stderr.decode("utf-8", "replace").strip()[-2000:]
        raise RdflowError(f"{what}: ffmpeg exited with {p.returncode}\ncommand: {' '.join(cmd)}\n{err}")
    return p


def fps_arg(fps: float) -> str:
    f = Fraction(fps).limit_denominator(1001)
    return f"{f.numerator}/{f.denominator}"


def parse_framemd5(text: str) -> list[tuple[int, int, int]]:
    """(dts, pts, size) of each packet of a ``framemd5`` listing, in file (decode) order."""
    out = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 5:
            raise RdflowError(f"unexpected framemd5 line {line!r}")
        out.append((int(parts[1]), int(parts[2]), int(parts[4])))
    return out


def parse_showinfo_types(text: str) -> list[str]:
    """Picture types (I/P/B) of the frames ffmpeg's showinfo filter printed, in output order."""
    return re.findall(r"\bn:\s*\d+\s.*?\btype:([A-Z?])", text)
