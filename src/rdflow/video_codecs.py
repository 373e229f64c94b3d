"""Sequence-level video codecs: x264 and x265 (through the ffmpeg of imageio-ffmpeg) and
CompressAI's learned video codec ``ssf2020`` (scale-space flow, Agustsson et al., CVPR 2020).

The per-frame video study codes every frame on its own with image codecs. These codecs code the
selected frames of a sequence as ONE bitstream with inter-frame prediction, so their unit of
work is one (sequence, codec, quality) job (rule ``compress_sequence``) that writes
``results/video/{sequence}/{codec}/q{quality}/sequence.bin`` and a JSON list of per-frame rows,
which ``aggregate_video`` puts in the same ``results/video_rd_{sequence}.csv`` as the image
codecs' frame rows.

Registry: :data:`VIDEO_CODECS` (``kind`` -> class). A codec has ``encode(frames, clip) ->
Encoded`` (``Encoded.data`` is the whole bitstream file), ``decode(data, clip) -> iterator of
frames`` (display order) and ``describe() -> dict`` (versions and settings for the CSV). Frames
are in the codec's ``domain``: ``"yuv420"`` (a (Y, U, V) tuple of uint8 planes, what x264/x265
code) or ``"rgb"`` (HxWx3 uint8, what ssf2020 codes).

Rates. ``bpp`` of a frame row = (the frame's own bytes + an equal share of the file's bytes
that belong to no frame) x 8 / (W x H), so the mean of ``bpp`` over a sequence's rows is exactly
the bitstream file's size x 8 / (W x H x frames). ``frame_bytes`` is the frame's own bytes:
x264/x265: the size of its access unit in the Annex-B stream (packet sizes and display order
from ffmpeg's ``framemd5`` muxer, written by the same ffmpeg run through the ``tee`` muxer;
their sum is checked to equal the file size); ssf2020: the frame's record in rdflow's container.

Timing. x264/x265: ``seq_enc_s`` is the wall time of the ffmpeg encoding process (start-up and
reading the raw frames from a pipe included) and ``seq_dec_s`` that of a separate ffmpeg
decode of the file to ``-f null``; the per-frame ``enc_s``/``dec_s`` are these divided by the
number of frames. ssf2020: each frame's model and entropy-coding time, measured per frame.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator

import numpy as np

from . import RdflowError

log = logging.getLogger("rdflow.video_codecs")

#: weights of ssf2020 (pretrained) are stored here: rule download_video_zoo_weights
ZOO_VIDEO_DIR = "resources/weights/zoo-video"
X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow", "placebo")
RATE_CONTROLS = ("crf", "qp")
#: ssf2020: 4 stride-2 convolutions in the analysis transforms, 3 more in the hyper-analysis
SSF_PAD_MULTIPLE = 128
SSF_MAGIC = b"RSSF"
SSF_VERSION = 1
#: YCbCr matrix -> ffmpeg's -colorspace tag (VUI only: ffmpeg converts nothing)
FFMPEG_COLORSPACE = {"bt601": "smpte170m", "bt709": "bt709", "bt2020": "bt2020nc"}
FFMPEG_RANGE = {"limited": "tv", "full": "pc"}
FFMPEG_CHROMA_LOC = {"left": "left", "center": "center", "topleft": "topleft"}


# ------------------------------------------------------------------------------------------
# data types


@dataclass(frozen=True)
class VideoCodecSpec:
    """One operating point of a video codec: its config name, kind, quality and options."""

    name: str
    kind: str
    quality: int
    options: dict = field(default_factory=dict, hash=False, compare=False)
    device: str = "cpu"


@dataclass(frozen=True)
class Clip:
    """What a codec needs to know about the frames it codes (8-bit 4:2:0 source)."""

    width: int
    height: int
    fps: float = 30.0
    matrix: str = "bt709"
    range: str = "limited"
    chroma_loc: str = "left"


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


# ------------------------------------------------------------------------------------------
# registry


class VideoCodec:
    """Base class of sequence codecs; subclasses set ``kind``, ``domain``, ``quality_range``."""

    kind: ClassVar[str] = ""
    domain: ClassVar[str] = "yuv420"
    quality_range: ClassVar[tuple[int, int]] = (0, 51)
    #: True when a higher quality value gives more bits
    rate_rises_with_quality: ClassVar[bool] = False

    def __init__(self, spec: VideoCodecSpec):
        self.spec = spec
        lo, hi = self.quality_range
        if not lo <= spec.quality <= hi:
            raise RdflowError(f"video_codecs.{spec.name}.qualities: {spec.quality} is out of range "
                              f"for {self.kind}; allowed {lo}–{hi}")

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

    @classmethod
    def check_config(cls, c: dict, *, where: str) -> None:
        """Kind-specific checks of a config entry (called at workflow start)."""


VIDEO_CODECS: dict[str, type[VideoCodec]] = {}


def register(cls: type[VideoCodec]) -> type[VideoCodec]:
    VIDEO_CODECS[cls.kind] = cls
    return cls


def build(spec: VideoCodecSpec) -> VideoCodec:
    try:
        cls = VIDEO_CODECS[spec.kind]
    except KeyError:
        raise RdflowError(f"video_codecs.{spec.name}.kind: unknown kind {spec.kind!r}; known: "
                          f"{', '.join(sorted(VIDEO_CODECS))}") from None
    return cls(spec)


# ------------------------------------------------------------------------------------------
# x264 / x265 through ffmpeg


def _ffmpeg():
    from .codecs import ffmpeg as ff  # the image anchors' helpers: binary, encoder check, version

    return ff


def _run_ffmpeg(cmd: list[str], *, what: str, stdin=None) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, input=stdin, capture_output=True,
                       stdin=None if stdin is not None else subprocess.DEVNULL)
    if p.returncode != 0:
        err = p.stderr.decode("utf-8", "replace").strip()[-2000:]
        raise RdflowError(f"{what}: ffmpeg exited with {p.returncode}\ncommand: {' '.join(cmd)}\n{err}")
    return p


def _fps_arg(fps: float) -> str:
    from fractions import Fraction

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


class X26x(VideoCodec):
    """x264/x265 via ffmpeg: raw 4:2:0 planes over a pipe in, Annex-B elementary stream out.

    Options: preset (medium), rate_control (crf | qp; quality is the CRF or QP), gop (keyint;
    null = the encoder's default, 250), tune (null), params (extra ``-x26?-params``), threads
    (1), strip_sei (true). With strip_sei the SEI NAL units (in practice the encoder's
    version-and-options text, ~0.6 kB per stream; no picture data) are removed with ffmpeg's
    ``filter_units`` bitstream filter, so the file holds only what a decoder needs, as the
    learned codecs' containers do; the options text is recorded in the ``settings`` column.
    """

    domain = "yuv420"
    quality_range = (0, 51)
    encoder: ClassVar[str] = ""
    muxer: ClassVar[str] = ""  # raw elementary stream muxer/demuxer of ffmpeg
    params_flag: ClassVar[str] = ""
    sei_types: ClassVar[str] = ""  # NAL unit types of SEI for filter_units
    version_re: ClassVar[bytes] = b""
    defaults: ClassVar[dict] = {"preset": "medium", "rate_control": "crf", "gop": None,
                                "tune": None, "params": None, "threads": 1, "strip_sei": True}

    def __init__(self, spec: VideoCodecSpec):
        super().__init__(spec)
        self.check_config(spec.options, where=f"video_codecs.{spec.name}")
        self.opts = {k: spec.options.get(k, v) for k, v in self.defaults.items()}
        self.exe = _ffmpeg().require_encoder(self.encoder, where=f"video_codecs.{spec.name}.kind: {self.kind}")
        self._last_info: dict = {}

    @classmethod
    def check_config(cls, c: dict, *, where: str) -> None:
        preset = c.get("preset", "medium")
        if preset not in X26X_PRESETS:
            raise RdflowError(f"{where}.preset: {preset!r} is not an {cls.kind} preset; use one of "
                              f"{', '.join(X26X_PRESETS)}")
        rc = c.get("rate_control", "crf")
        if rc not in RATE_CONTROLS:
            raise RdflowError(f"{where}.rate_control: {rc!r}; use crf or qp")
        for key in ("weights", "metric", "seed"):
            if key in c:
                raise RdflowError(f"{where}.{key} only applies to kind: ssf2020 (this codec is {cls.kind})")

    # -- command lines --------------------------------------------------------------------
    def codec_args(self) -> list[str]:
        o = self.opts
        args = ["-c:v", self.encoder, "-preset", o["preset"]]
        if o["tune"]:
            args += ["-tune", o["tune"]]
        args += [f"-{o['rate_control']}", str(self.spec.quality)]
        if self.gop:
            args += ["-g", str(self.gop)]
        args += self.thread_args(int(o["threads"]))
        params = self.extra_params()
        if params:
            args += [self.params_flag, params]
        return args

    def thread_args(self, threads: int) -> list[str]:
        return ["-threads", str(threads)]

    def extra_params(self) -> str:
        return self.opts["params"] or ""

    def input_args(self, clip: Clip) -> list[str]:
        return ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{clip.width}x{clip.height}",
                "-r", _fps_arg(clip.fps), "-color_range", FFMPEG_RANGE[clip.range],
                "-colorspace", FFMPEG_COLORSPACE[clip.matrix],
                "-chroma_sample_location", FFMPEG_CHROMA_LOC[clip.chroma_loc], "-i", "pipe:0"]

    def _tee(self, full: Path, out: Path, packets: Path) -> str:
        strip = f":bsfs/v=filter_units=remove_types\\={self.sei_types}" if self.opts["strip_sei"] else ""
        return (f"[f={self.muxer}]{full}|[f={self.muxer}{strip}]{out}"
                f"|[f=framemd5{strip}]{packets}")

    # -- interface ------------------------------------------------------------------------
    def encode(self, frames: Iterable, clip: Clip) -> Encoded:
        with tempfile.TemporaryDirectory(prefix="rdflow-x26x-") as td:
            td = Path(td)
            full, out, packets, err = td / "full.bin", td / "out.bin", td / "packets.txt", td / "stderr.txt"
            cmd = [self.exe, "-hide_banner", "-nostats", "-loglevel", "error", "-y",
                   *self.input_args(clip), "-map", "0:v:0", "-an", *self.codec_args(),
                   "-pix_fmt", "yuv420p", "-fps_mode", "passthrough", "-f", "tee",
                   self._tee(full, out, packets)]
            what = f"video_codecs.{self.spec.name} ({self.encoder}) encode"
            n = 0
            t0 = time.perf_counter()
            with open(err, "wb") as errfh:
                proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errfh)
                try:
                    for y, u, v in frames:
                        for p in (y, u, v):
                            proc.stdin.write(np.ascontiguousarray(p, dtype=np.uint8).tobytes())
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
                msg = err.read_text(errors="replace").strip()[-2000:]
                raise RdflowError(f"{what}: ffmpeg exited with {rc}\ncommand: {' '.join(cmd)}\n{msg}")
            data = out.read_bytes()
            info = self.encoder_info(full.read_bytes()[:1 << 16])
            pk = parse_framemd5(packets.read_text())
        if len(pk) != n:
            raise RdflowError(f"{what}: {len(pk)} packets for {n} frames; the stream is not one "
                              "access unit per frame")
        if sum(s for _, _, s in pk) != len(data):
            raise RdflowError(f"{what}: packet sizes add up to {sum(s for _, _, s in pk)} bytes but the "
                              f"file has {len(data)}")
        display = sorted(pk, key=lambda t: t[1])  # pts: display order
        if len({p for _, p, _ in pk}) != n:
            raise RdflowError(f"{what}: packets without distinct timestamps; cannot order frames")
        self._last_info = info
        return Encoded(data=data, frame_bytes=[s for _, _, s in display], frame_types=[],
                       enc_s=enc_s, info=info)

    def _decode_cmd(self, data_path: str, *extra: str) -> list[str]:
        return [self.exe, "-hide_banner", "-nostats", "-threads", str(int(self.opts["threads"])),
                "-f", self.muxer, "-i", data_path, *extra]

    def decode_seconds(self, data: bytes, clip: Clip) -> float:
        with tempfile.TemporaryDirectory(prefix="rdflow-x26x-") as td:
            p = Path(td) / "in.bin"
            p.write_bytes(data)
            cmd = self._decode_cmd(str(p), "-loglevel", "error", "-fps_mode", "passthrough", "-f", "null", "-")
            t0 = time.perf_counter()
            _run_ffmpeg(cmd, what=f"video_codecs.{self.spec.name} decode")
            return time.perf_counter() - t0

    def decode(self, data: bytes, clip: Clip) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Decode with ffmpeg to raw yuv420p over a pipe; yields (Y, U, V) per frame. The picture
        types the decoder reports are left in ``self.decoded_types`` once the iterator ends."""
        w, h = clip.width, clip.height
        fb = w * h * 3 // 2
        self.decoded_types: list[str] = []
        with tempfile.TemporaryDirectory(prefix="rdflow-x26x-") as td:
            p = Path(td) / "in.bin"
            p.write_bytes(data)
            err = Path(td) / "stderr.txt"
            cmd = self._decode_cmd(str(p), "-loglevel", "info", "-vf", "showinfo", "-fps_mode",
                                   "passthrough", "-f", "rawvideo", "-pix_fmt", "yuv420p", "pipe:1")
            with open(err, "wb") as errfh:
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errfh, stdin=subprocess.DEVNULL)
                try:
                    while True:
                        buf = proc.stdout.read(fb)
                        if not buf:
                            break
                        if len(buf) != fb:
                            raise RdflowError(f"video_codecs.{self.spec.name}: ffmpeg returned a "
                                              f"truncated {w}x{h} frame ({len(buf)} of {fb} bytes)")
                        a = np.frombuffer(buf, np.uint8)
                        yield (a[:w * h].reshape(h, w), a[w * h:w * h + fb // 6].reshape(h // 2, w // 2),
                               a[w * h + fb // 6:].reshape(h // 2, w // 2))
                finally:
                    proc.stdout.close()
                    rc = proc.wait()
            text = err.read_text(errors="replace")
            if rc != 0:
                raise RdflowError(f"video_codecs.{self.spec.name} decode: ffmpeg exited with {rc}\n"
                                  f"command: {' '.join(cmd)}\n{text.strip()[-2000:]}")
            self.decoded_types = parse_showinfo_types(text)

    # -- provenance -----------------------------------------------------------------------
    def encoder_info(self, head: bytes) -> dict:
        """Version and option string from the encoder's own SEI text, read from the stream."""
        m = re.search(self.version_re, head)
        if not m:
            log.warning("%s: no version SEI found in the stream", self.encoder)
            return {"version": "unknown", "options": ""}
        text = m.group(0).decode("ascii", "replace")
        version, _, options = text.partition(" - options: ")
        return {"version": self.short_version(version), "options": options.strip()}

    def short_version(self, text: str) -> str:
        return text

    def describe(self) -> dict:
        ff = _ffmpeg()
        info = self._last_info
        o = self.opts
        return {
            "encoder": f"{info.get('version', self.kind)} via ffmpeg {ff.ffmpeg_version(self.exe)}",
            "settings": info.get("options", ""),
            "ffmpeg_args": " ".join(self.codec_args()),
            "rate_control": o["rate_control"],
            "preset": o["preset"],
            "gop": self.gop,
            "strip_sei": bool(o["strip_sei"]),
            "threads": int(o["threads"]),
            "bitstream_format": f"{self.muxer} Annex-B",
            "device": "cpu",
        }


@register
class X264(X26x):
    """H.264/AVC with x264 (libx264)."""

    kind = "x264"
    encoder = "libx264"
    muxer = "h264"
    params_flag = "-x264-params"
    sei_types = "6"
    version_re = rb"x264 - core [ -~]*"

    def short_version(self, text: str) -> str:
        m = re.match(r"x264 - core (\d+)(?: (r\d+ \w+))?", text)
        return f"x264 core {m.group(1)}{' ' + m.group(2) if m.group(2) else ''}" if m else text


@register
class X265(X26x):
    """H.265/HEVC with x265 (libx265). Threads: one frame thread and a pool of ``threads``
    worker threads (WPP), so the stream does not depend on the thread count."""

    kind = "x265"
    encoder = "libx265"
    muxer = "hevc"
    params_flag = "-x265-params"
    sei_types = "39-40"
    version_re = rb"x265 \(build \d+\) [ -~]*"

    def thread_args(self, threads: int) -> list[str]:
        return []

    def extra_params(self) -> str:
        own = f"log-level=error:frame-threads=1:pools={int(self.opts['threads'])}"
        return own + (":" + self.opts["params"] if self.opts["params"] else "")

    def short_version(self, text: str) -> str:
        m = re.match(r"x265 \(build (\d+)\) - ([^:\s]+)", text)
        return f"x265 {m.group(2)} (build {m.group(1)})" if m else text


# ------------------------------------------------------------------------------------------
# ssf2020 (CompressAI)


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_uvarint(data: bytes, off: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if off >= len(data):
            raise RdflowError("ssf2020 bitstream is truncated (in a length field)")
        b = data[off]
        off += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, off


def pack_ssf(width: int, height: int, gop: int | None, frames: list[tuple[str, list[bytes]]]) -> tuple[bytes, list[int]]:
    """rdflow's ssf2020 container; returns (data, bytes of each frame's record).

    Header (11 bytes): ``RSSF``, uint8 version, uint16 width, uint16 height, uint16 gop (0: one
    intra frame only); then ``uvarint n_frames``. Each frame: uint8 type (0 = I: y, z strings of
    the image hyperprior; 1 = P: motion y, z then residual y, z), a uvarint length per string,
    the strings. Latent shapes follow from the padded frame size (multiples of 128). Integers
    are big-endian.
    """
    head = SSF_MAGIC + struct.pack(">BHHH", SSF_VERSION, width, height, gop or 0) + _uvarint(len(frames))
    recs = []
    for kind, strings in frames:
        want = 2 if kind == "I" else 4
        if len(strings) != want:
            raise ValueError(f"{kind} frame needs {want} strings, got {len(strings)}")
        recs.append(bytes([0 if kind == "I" else 1]) + b"".join(_uvarint(len(s)) for s in strings)
                    + b"".join(strings))
    return head + b"".join(recs), [len(r) for r in recs]


def unpack_ssf(data: bytes) -> tuple[int, int, int | None, list[tuple[str, list[bytes]]], list[int]]:
    """Inverse of :func:`pack_ssf`: (width, height, gop, frames, bytes of each frame's record)."""
    if len(data) < 12 or data[:4] != SSF_MAGIC:
        raise RdflowError("not an rdflow ssf2020 bitstream (no RSSF header)")
    version, width, height, gop = struct.unpack_from(">BHHH", data, 4)
    if version != SSF_VERSION:
        raise RdflowError(f"ssf2020 bitstream version {version}; this rdflow reads {SSF_VERSION}")
    n, off = _read_uvarint(data, 11)
    frames, sizes = [], []
    for _ in range(n):
        start = off
        if off >= len(data):
            raise RdflowError("ssf2020 bitstream is truncated (missing frames)")
        t = data[off]
        off += 1
        if t not in (0, 1):
            raise RdflowError(f"ssf2020 bitstream: unknown frame type {t}")
        lens = []
        for _ in range(2 if t == 0 else 4):
            ln, off = _read_uvarint(data, off)
            lens.append(ln)
        strings = []
        for ln in lens:
            if off + ln > len(data):
                raise RdflowError("ssf2020 bitstream is truncated (in a string)")
            strings.append(data[off:off + ln])
            off += ln
        frames.append(("I" if t == 0 else "P", strings))
        sizes.append(off - start)
    if off != len(data):
        raise RdflowError(f"ssf2020 bitstream has {len(data) - off} trailing bytes")
    return width, height, gop or None, frames, sizes


def ssf_zoo_url(metric: str, quality: int) -> str:
    """CompressAI's URL of pretrained ssf2020 weights (read from compressai.zoo.video)."""
    from compressai.zoo.video import model_urls

    try:
        return model_urls["ssf2020"][metric][int(quality)]
    except KeyError:
        raise RdflowError(f"CompressAI publishes no pretrained ssf2020 weights for metric={metric} "
                          f"quality={quality} (only mse, 1–9): use weights: random or metric: mse") from None


def ssf_source_url(metric: str, quality: int, base_url: str | None) -> tuple[str, str | None]:
    """(URL, SHA-256 prefix of the zoo file name); the base is replaced when base_url is set."""
    from .codecs.learned import zoo_hash_prefix

    url = ssf_zoo_url(metric, quality)
    name = url.rsplit("/", 1)[1]
    if base_url:
        url = base_url.rstrip("/") + "/" + name
    return url, zoo_hash_prefix(name)


def fetch_ssf_weights(metric: str, quality: int, dest: str, base_url: str | None) -> Path:
    from .download import fetch
    from .runtime import import_stack

    import_stack()

    url, prefix = ssf_source_url(metric, quality, base_url)
    return fetch(url, dest, sha256_prefix=prefix)


def load_ssf(quality: int, weights: str, *, path: str | None = None, seed: int = 0, device: str = "cpu"):
    """ScaleSpaceFlow in eval mode: ``pretrained`` (a zoo file at ``path``, loaded as
    compressai.zoo.video does) or ``random`` (seeded init, then ``update(force=True)``)."""
    import torch
    from compressai.models.video import ScaleSpaceFlow

    if weights == "random":
        torch.manual_seed(seed)
        net = ScaleSpaceFlow()
        net.update(force=True)
    elif weights == "pretrained":
        from compressai.zoo.pretrained import load_pretrained

        if path is None or not Path(path).is_file():
            raise RdflowError(f"ssf2020 weights file {path} (quality {quality}) does not exist")
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise RdflowError(f"cannot load ssf2020 weights {path}: {exc}. Delete the file and rerun "
                              "to download it again") from None
        try:
            net = ScaleSpaceFlow.from_state_dict(load_pretrained(state))
        except Exception as exc:
            raise RdflowError(f"weights {path} do not fit ssf2020 (quality {quality}): {exc}") from None
    else:
        raise RdflowError(f"unknown ssf2020 weights source {weights!r}; use pretrained or random")
    return net.eval().to(device)


_MODELS: dict = {}
_MODELS_LOCK = threading.Lock()


def _cached_ssf(key: tuple, **kwargs):
    """One model (and one lock) per (quality, weights, path, seed, device) in this process."""
    with _MODELS_LOCK:
        if key not in _MODELS:
            if len(_MODELS) >= 3:
                _MODELS.pop(next(iter(_MODELS)))
            _MODELS[key] = (load_ssf(**kwargs), threading.Lock())
        return _MODELS[key]


@register
class Ssf2020(VideoCodec):
    """CompressAI's ScaleSpaceFlow with its own inter coding: frame ``i`` of the selection is an
    I-frame (image hyperprior codec) when ``i % gop == 0`` (gop null: only the first frame),
    else a P-frame (motion + residual hyperpriors) predicted from the previous reconstruction,
    clamped to [0, 1] as CompressAI's video eval_model does. Frames are RGB (the sequence's own
    4:2:0 -> RGB conversion), zero-padded to a multiple of 128 and cropped back.

    Options: weights (pretrained | random), metric (mse), seed (0), gop (null).
    """

    kind = "ssf2020"
    domain = "rgb"
    quality_range = (1, 9)

    def __init__(self, spec: VideoCodecSpec):
        super().__init__(spec)
        from .codecs.learned import resolve_device

        o = spec.options
        self.weights = o.get("weights", "pretrained")
        self.device = resolve_device(spec.device)
        key = (spec.quality, self.weights, o.get("weights_path"), int(o.get("seed", 0)), self.device)
        self.net, self.lock = _cached_ssf(key, quality=spec.quality, weights=self.weights,
                                          path=o.get("weights_path"), seed=int(o.get("seed", 0)),
                                          device=self.device)
        import torch

        self._torch = torch

    @classmethod
    def check_config(cls, c: dict, *, where: str) -> None:
        for key in ("preset", "rate_control", "tune", "params", "strip_sei"):
            if key in c:
                raise RdflowError(f"{where}.{key} only applies to x264/x265 (this codec is ssf2020)")
        w = c.get("weights", "pretrained")
        if w not in ("pretrained", "random"):
            raise RdflowError(f"{where}.weights: {w!r}; ssf2020 takes pretrained or random")
        if w == "pretrained" and c.get("metric", "mse") != "mse":
            raise RdflowError(f"{where}.metric: CompressAI publishes ssf2020 weights for mse only; "
                              "set metric: mse or weights: random")

    def _sync(self):
        if self.device.startswith("cuda"):
            self._torch.cuda.synchronize()

    def _to_tensor(self, rgb: np.ndarray):
        import torch.nn.functional as F
        from compressai.ops import compute_padding

        torch = self._torch
        h, w = rgb.shape[:2]
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
        x = x.to(self.device, torch.float32).div_(255.0)
        pad, unpad = compute_padding(h, w, min_div=SSF_PAD_MULTIPLE)
        return F.pad(x, pad, mode="constant", value=0), unpad

    def _to_rgb(self, x, unpad) -> np.ndarray:
        import torch.nn.functional as F

        x = F.pad(x, unpad)
        rgb = x[0].mul(255.0).clamp_(0, 255).round_().to(self._torch.uint8)
        return rgb.permute(1, 2, 0).contiguous().cpu().numpy()

    @staticmethod
    def _latent_shape(clip: Clip) -> tuple[int, int]:
        m = SSF_PAD_MULTIPLE
        return (-(-clip.height // m), -(-clip.width // m))

    def encode(self, frames: Iterable, clip: Clip) -> Encoded:
        torch = self._torch
        shape = self._latent_shape(clip)
        recs, types, times, md5s = [], [], [], []
        x_ref = None
        with self.lock, torch.no_grad():
            for i, rgb in enumerate(frames):
                if rgb.shape != (clip.height, clip.width, 3):
                    raise ValueError(f"frame {i} is {rgb.shape}, expected {(clip.height, clip.width, 3)}")
                x, unpad = self._to_tensor(rgb)
                t0 = time.perf_counter()
                if i == 0 or (self.gop and i % self.gop == 0):
                    x_ref, out = self.net.encode_keyframe(x)
                    strings = [out["strings"][0][0], out["strings"][1][0]]
                    shapes = [tuple(out["shape"])]
                    types.append("I")
                else:
                    x_ref, out = self.net.encode_inter(x, x_ref)
                    s = out["strings"]
                    strings = [s["motion"][0][0], s["motion"][1][0], s["residual"][0][0], s["residual"][1][0]]
                    shapes = [tuple(out["shape"]["motion"]), tuple(out["shape"]["residual"])]
                    types.append("P")
                x_ref = x_ref.clamp(0, 1)
                self._sync()
                times.append(time.perf_counter() - t0)
                if any(tuple(int(v) for v in s) != shape for s in shapes):
                    raise RuntimeError(f"ssf2020 latent shape {shapes} differs from {shape} for a "
                                       f"{clip.width}x{clip.height} frame padded to {SSF_PAD_MULTIPLE}")
                recs.append((types[-1], strings))
                md5s.append(hashlib.md5(self._to_rgb(x_ref, unpad).tobytes()).hexdigest())
        data, sizes = pack_ssf(clip.width, clip.height, self.gop, recs)
        return Encoded(data=data, frame_bytes=sizes, frame_types=types, enc_s=sum(times),
                       frame_enc_s=times, recon_md5=md5s)

    def decode(self, data: bytes, clip: Clip) -> Iterator[np.ndarray]:
        width, height, _, frames, _ = unpack_ssf(data)
        if (width, height) != (clip.width, clip.height):
            raise RdflowError(f"ssf2020 bitstream is {width}x{height}, the sequence {clip.width}x{clip.height}")
        shape = self._latent_shape(clip)
        from compressai.ops import compute_padding

        _, unpad = compute_padding(height, width, min_div=SSF_PAD_MULTIPLE)
        x_ref = None
        torch = self._torch
        for kind, s in frames:
            with self.lock, torch.no_grad():
                if kind == "I":
                    x_ref = self.net.decode_keyframe([[s[0]], [s[1]]], shape)
                else:
                    x_ref = self.net.decode_inter(
                        x_ref, {"motion": [[s[0]], [s[1]]], "residual": [[s[2]], [s[3]]]},
                        {"motion": shape, "residual": shape})
                x_ref = x_ref.clamp(0, 1)
                rgb = self._to_rgb(x_ref, unpad)
            yield rgb

    def describe(self) -> dict:
        import compressai

        o = self.spec.options
        label = f"random(seed={o.get('seed', 0)})" if self.weights == "random" else self.weights
        return {
            "encoder": f"compressai {compressai.__version__} ssf2020",
            "architecture": "ssf2020",
            "train_metric": o.get("metric", "mse"),
            "weights": label,
            "gop": self.gop,
            "settings": f"gop={self.gop or 'first frame only'} pad={SSF_PAD_MULTIPLE} ref=clamped float",
            "bitstream_format": "rdflow RSSF v1",
            "device": self.device,
        }


# ------------------------------------------------------------------------------------------
# config and workflow


def video_codec_configs(config: dict) -> dict:
    return config.get("video_codecs") or {}


def applies(config: dict, codec: str, sequence: str) -> bool:
    only = video_codec_configs(config)[codec].get("sequences")
    return not only or sequence in only


def weights_file(config: dict, codec: str, quality: int | str) -> str | None:
    c = video_codec_configs(config)[codec]
    if c["kind"] != "ssf2020" or c.get("weights", "pretrained") != "pretrained":
        return None
    return f"{ZOO_VIDEO_DIR}/ssf2020/{c.get('metric', 'mse')}/q{quality}.pth.tar"


def sequence_rows(config: dict, sequence: str) -> list[str]:
    """The per-(codec, quality) row files (JSON lists of frame rows) of one sequence."""
    return [f"results/video/{sequence}/{name}/q{q}/sequence_rows.json"
            for name, c in sorted(video_codec_configs(config).items()) if applies(config, name, sequence)
            for q in c["qualities"]]


def video_codec_targets(config: dict) -> list[str]:
    """Every row file (so that a deleted one is redone); tables come from video_targets."""
    from .sequences import sequences

    return [r for s in sorted(sequences(config)) for r in sequence_rows(config, s)]


def download_targets(config: dict) -> list[str]:
    out = []
    for name, c in sorted(video_codec_configs(config).items()):
        out += [w for q in c["qualities"] if (w := weights_file(config, name, q))]
    return out


def check(config: dict) -> None:
    """Parse-time checks of ``video_codecs`` (errors name the key, the value and the fix)."""
    from .sequences import sequences

    vc = video_codec_configs(config)
    image_codecs = config.get("codecs") or {}
    seqs = sequences(config)
    for name, c in vc.items():
        where = f"video_codecs.{name}"
        if name in image_codecs:
            raise RdflowError(f"{where}: the name {name!r} is also under codecs; the codec column "
                              "of the video CSV would mix them: rename one")
        kind = c.get("kind")
        if kind not in VIDEO_CODECS:
            raise RdflowError(f"{where}.kind: unknown kind {kind!r}; known: {', '.join(sorted(VIDEO_CODECS))}")
        cls = VIDEO_CODECS[kind]
        lo, hi = cls.quality_range
        bad = [q for q in c["qualities"] if not lo <= q <= hi]
        if bad:
            what = {"x264": "CRF/QP", "x265": "CRF/QP"}.get(kind, "quality index")
            raise RdflowError(f"{where}.qualities: {bad} out of range for {kind} ({what}); allowed {lo}–{hi}")
        unknown = [s for s in c.get("sequences") or [] if s not in seqs]
        if unknown:
            raise RdflowError(f"{where}.sequences names {unknown}, which are not under "
                              f"video.sequences ({', '.join(sorted(seqs)) or 'none'})")
        cls.check_config(c, where=where)
        if issubclass(cls, X26x):
            _ffmpeg().require_encoder(cls.encoder, where=f"{where}.kind: {kind}")


def clip_of(seq, stride: int = 1) -> Clip:
    return Clip(width=seq.width, height=seq.height, fps=(seq.fps or 30.0) / max(1, stride),
                matrix=seq.matrix, range=seq.range, chroma_loc=seq.chroma_loc)


def codec_spec(config: dict, codec: str, quality: int, weights_path: str | None = None) -> VideoCodecSpec:
    c = dict(video_codec_configs(config)[codec])
    options = {k: v for k, v in c.items() if k not in ("kind", "qualities", "sequences")}
    if weights_path:
        options["weights_path"] = str(weights_path)
    return VideoCodecSpec(name=codec, kind=c["kind"], quality=int(quality), options=options,
                          device=config.get("device", "auto"))


class _Timed:
    """Iterate ``it`` and record the seconds spent producing each item."""

    def __init__(self, it):
        self.it = iter(it)
        self.times: list[float] = []

    def __iter__(self):
        return self

    def __next__(self):
        t0 = time.perf_counter()
        item = next(self.it)
        self.times.append(time.perf_counter() - t0)
        return item


def sequence_job(*, config: dict, sequence: str, codec: str, quality: int, seq_path: str,
                 bitstream: str, out_json: str, weights_path: str | None = None,
                 threads: int = 1) -> list[dict]:
    """Code the selected frames of one sequence with one video codec operating point; write the
    bitstream file, decode it FROM THE FILE, and write one row per frame (a JSON list).

    Distortion: psnr_y/u/v compare 4:2:0 planes (x264/x265: the decoded planes; ssf2020: its RGB
    output converted to 4:2:0 with the sequence's matrix, range and siting, as the per-frame
    study does); psnr_rgb/ms_ssim compare RGB (the source converted with the sequence's
    conversion; x264/x265's decoded planes converted the same way).
    """
    from .runtime import import_stack

    import_stack()
    from . import metrics as M
    from .io import write_bytes, write_json
    from .sequences import frame_selection, frames as frame_list, probe_sequence
    from .video import read_frame
    from .yuv import psnr_yuv, rgb_to_yuv420, yuv420_to_rgb

    seq = probe_sequence(config, sequence, seq_path)
    conv = dict(matrix=seq.matrix, range=seq.range, chroma_loc=seq.chroma_loc)
    idx = frame_list(config, sequence)
    clip = clip_of(seq, frame_selection(config, sequence)["stride"])
    spec = codec_spec(config, codec, quality, weights_path)
    if spec.kind == "ssf2020":
        from .runtime import set_torch_threads

        threads = set_torch_threads(threads)
    c = build(spec)

    def source():
        for f in idx:
            planes = read_frame(seq, f)
            yield planes if c.domain == "yuv420" else yuv420_to_rgb(*planes, **conv)

    log.info("coding %s (%d frames, %dx%d) with %s q%s", sequence, len(idx), clip.width, clip.height,
             codec, quality)
    enc = c.encode(source(), clip)
    write_bytes(bitstream, enc.data)
    data = Path(bitstream).read_bytes()  # decode what is on disk, every byte of it
    if len(data) != len(enc.data):
        raise RdflowError(f"{bitstream}: {len(data)} bytes on disk, {len(enc.data)} written")
    dec_total = c.decode_seconds(data, clip)
    decoded = _Timed(c.decode(data, clip))
    metric_names = config.get("metrics", ["psnr_rgb", "ms_ssim"])
    n = len(idx)
    w, h = clip.width, clip.height
    header_share = enc.header_bytes / n
    rows = []
    for i, (f, rec) in enumerate(zip(idx, decoded)):
        planes = read_frame(seq, f)
        src_rgb = yuv420_to_rgb(*planes, **conv)
        if c.domain == "yuv420":
            rec_planes, rec_rgb = rec, yuv420_to_rgb(*rec, **conv)
        else:
            rec_planes, rec_rgb = rgb_to_yuv420(rec, **conv), rec
        nbytes = enc.frame_bytes[i] + header_share
        row = {"sequence": sequence, "codec": codec, "quality": int(quality), "frame": int(f),
               "kind": spec.kind, "coding": "sequence", "bpp": nbytes * 8.0 / (w * h),
               "bytes": nbytes, "frame_bytes": enc.frame_bytes[i], "header_bytes": header_share}
        row.update(M.compute(src_rgb, rec_rgb, metric_names))
        row.update(psnr_yuv(planes, rec_planes))
        if enc.recon_md5 is not None:
            row["recon_match"] = hashlib.md5(rec.tobytes()).hexdigest() == enc.recon_md5[i]
        rows.append(row)
    for _ in decoded:  # more frames than coded: consume to report it
        raise RdflowError(f"video_codecs.{codec}: the decoder returned more frames than the {n} coded")
    if len(rows) != n:
        raise RdflowError(f"video_codecs.{codec}: decoded {len(rows)} frames of the {n} coded "
                          f"({bitstream})")
    dec_times = [dec_total / n] * n if dec_total is not None else decoded.times
    types = enc.frame_types or getattr(c, "decoded_types", [])
    desc = c.describe()
    seq_bytes = len(data)
    for i, row in enumerate(rows):
        row.update({
            "frame_type": types[i] if i < len(types) else None,
            "enc_s": enc.frame_enc_s[i] if enc.frame_enc_s else enc.enc_s / n,
            "dec_s": dec_times[i],
            "seq_enc_s": enc.enc_s, "seq_dec_s": float(sum(dec_times)),
            "seq_bytes": seq_bytes, "seq_bpp": seq_bytes * 8.0 / (w * h * n), "n_frames": n,
            "height": h, "width": w, "fps": clip.fps, "matrix": seq.matrix, "range": seq.range,
            "threads": threads,
        })
        row.update(desc)
    if enc.recon_md5 is not None and not all(r["recon_match"] for r in rows):
        bad = [r["frame"] for r in rows if not r["recon_match"]]
        log.warning("%s: decoder reconstructions differ from the encoder's on frames %s (encoder/"
                    "decoder drift)", codec, bad)
    for r in rows:
        for k, v in list(r.items()):
            if isinstance(v, float) and math.isinf(v):
                log.warning("%s is infinite for frame %s (lossless)", k, r["frame"])
                break
    write_json(out_json, rows)
    log.info("seq_bpp=%.4f mean psnr_rgb=%.3f psnr_y=%.3f enc_s=%.2f dec_s=%.2f", rows[0]["seq_bpp"],
             float(np.mean([r.get("psnr_rgb", math.nan) for r in rows])),
             float(np.mean([r["psnr_y"] for r in rows])), enc.enc_s, rows[0]["seq_dec_s"])
    return rows
