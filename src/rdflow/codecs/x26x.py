"""x264 and x265 as sequence codecs, through the ffmpeg of imageio-ffmpeg.

Timing: ``seq_enc_s`` is the wall time of the ffmpeg encoding process (start-up and reading the
raw frames from a pipe included) and ``seq_dec_s`` that of a separate ffmpeg decode of the file
to ``-f null``; the per-frame ``enc_s``/``dec_s`` are these divided by the number of frames.
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path
from typing import ClassVar, Iterable, Iterator

import numpy as np

from .. import RdflowError
from .base import CodecSpec, register
from .sequence import (
    FFMPEG_CHROMA_LOC, FFMPEG_COLORSPACE, FFMPEG_RANGE, Clip, Encoded, FfmpegSequence, ffmpeg,
    fps_arg, parse_framemd5, parse_showinfo_types, run_ffmpeg,
)

log = logging.getLogger("rdflow.video_codecs")

X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow", "placebo")
RATE_CONTROLS = ("crf", "qp")


class X26x(FfmpegSequence):
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
    quality_meaning = "CRF/QP"
    entry_keys = frozenset({"preset", "rate_control", "tune", "params", "strip_sei"})
    encoder: ClassVar[str] = ""
    muxer: ClassVar[str] = ""  # raw elementary stream muxer/demuxer of ffmpeg
    params_flag: ClassVar[str] = ""
    sei_types: ClassVar[str] = ""  # NAL unit types of SEI for filter_units
    version_re: ClassVar[bytes] = b""
    defaults: ClassVar[dict] = {"preset": "medium", "rate_control": "crf", "gop": None,
                                "tune": None, "params": None, "threads": 1, "strip_sei": True}

    def __init__(self, spec: CodecSpec):
        super().__init__(spec)
        self.check_options(spec.options, where=f"video_codecs.{spec.name}")
        self.opts = {k: spec.options.get(k, v) for k, v in self.defaults.items()}
        self.exe = ffmpeg().require_encoder(self.encoder, where=f"video_codecs.{spec.name}.kind: {self.kind}")
        self._last_info: dict = {}

    @classmethod
    def check_entry(cls, config: dict, name: str, entry: dict, *, where: str):
        """Options, and the encoder in the bundled ffmpeg."""
        cls.check_options(entry, where=where)
        ffmpeg().require_encoder(cls.encoder, where=f"{where}.kind: {cls.kind}")
        return None

    @classmethod
    def check_options(cls, c: dict, *, where: str) -> None:
        preset = c.get("preset", "medium")
        if preset not in X26X_PRESETS:
            raise RdflowError(f"{where}.preset: {preset!r} is not an {cls.kind} preset; use one of "
                              f"{', '.join(X26X_PRESETS)}")
        rc = c.get("rate_control", "crf")
        if rc not in RATE_CONTROLS:
            raise RdflowError(f"{where}.rate_control: {rc!r}; use crf or qp")
        super().check_options(c, where=where)

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
                "-r", fps_arg(clip.fps), "-color_range", FFMPEG_RANGE[clip.range],
                "-colorspace", FFMPEG_COLORSPACE[clip.matrix],
                "-chroma_sample_location", FFMPEG_CHROMA_LOC[clip.chroma_loc], "-i", "pipe:0"]

    def _tee(self, full: Path, out: Path, packets: Path) -> str:
        strip = f":bsfs/v=filter_units=remove_types\\={self.sei_types}" if self.opts["strip_sei"] else ""
        return (f"[f={self.muxer}]{full}|[f={self.muxer}{strip}]{out}"
                f"|[f=framemd5{strip}]{packets}")

    def _decode_cmd(self, data_path: str, *extra: str) -> list[str]:
        return [self.exe, "-hide_banner", "-nostats", "-threads", str(int(self.opts["threads"])),
                "-f", self.muxer, "-i", data_path, *extra]

    # -- interface ------------------------------------------------------------------------
    def encode(self, frames: Iterable, clip: Clip) -> Encoded:
        with tempfile.TemporaryDirectory(prefix="rdflow-x26x-") as td:
            td = Path(td)
            full, out, packets = td / "full.bin", td / "out.bin", td / "packets.txt"
            cmd = [self.exe, "-hide_banner", "-nostats", "-loglevel", "error", "-y",
                   *self.input_args(clip), "-map", "0:v:0", "-an", *self.codec_args(),
                   "-pix_fmt", "yuv420p", "-fps_mode", "passthrough", "-f", "tee",
                   self._tee(full, out, packets)]
            what = f"video_codecs.{self.spec.name} ({self.encoder}) encode"
            n, enc_s = self.pipe_frames(cmd, frames, td / "stderr.txt", what=what)
            data = out.read_bytes()
            info = self.encoder_info(full.read_bytes()[:1 << 16])
            pk = parse_framemd5(packets.read_text())
        display = self._display_packets(pk, n, len(data), what=what)
        self._last_info = info
        return Encoded(data=data, frame_bytes=[s for _, _, s in display], frame_types=[],
                       enc_s=enc_s, info=info)

    @staticmethod
    def _display_packets(pk: list, n: int, size: int, *, what: str) -> list:
        """The packets in display order, after checking they are one per frame and the file."""
        if len(pk) != n:
            raise RdflowError(f"{what}: {len(pk)} packets for {n} frames; the stream is not one "
                              "access unit per frame")
        if sum(s for _, _, s in pk) != size:
            raise RdflowError(f"{what}: packet sizes add up to {sum(s for _, _, s in pk)} bytes but the "
                              f"file has {size}")
        if len({p for _, p, _ in pk}) != n:
            raise RdflowError(f"{what}: packets without distinct timestamps; cannot order frames")
        return sorted(pk, key=lambda t: t[1])  # pts: display order

    def _read_planes(self, stream, clip: Clip) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        w, h = clip.width, clip.height
        fb = w * h * 3 // 2
        while True:
            buf = stream.read(fb)
            if not buf:
                return
            if len(buf) != fb:
                raise RdflowError(f"video_codecs.{self.spec.name}: ffmpeg returned a "
                                  f"truncated {w}x{h} frame ({len(buf)} of {fb} bytes)")
            a = np.frombuffer(buf, np.uint8)
            yield (a[:w * h].reshape(h, w), a[w * h:w * h + fb // 6].reshape(h // 2, w // 2),
                   a[w * h + fb // 6:].reshape(h // 2, w // 2))

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
        info = self._last_info
        o = self.opts
        return {
            "encoder": f"{info.get('version', self.kind)} via ffmpeg {ffmpeg().ffmpeg_version(self.exe)}",
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
