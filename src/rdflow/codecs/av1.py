"""AV1 as a sequence codec (``av1``: libsvtav1, or libaom-av1 with ``library``), and
:class:`LibSequence`, the base of the sequence codecs that run one ffmpeg encoder library
(``av1`` here, ``vvc`` in :mod:`rdflow.codecs.vvc`).

How a LibSequence codes (as x264/x265 in :mod:`rdflow.codecs.x26x`): the frames' raw 4:2:0
planes go to ONE ffmpeg process over a pipe; it writes the elementary stream (AV1: the
low-overhead OBU stream ``.obu``, one temporal unit per shown frame; VVC: Annex-B ``.266``) and,
through the ``tee`` muxer in the same run, the ``framemd5`` listing of the encoder's packets
(one per frame: size and display timestamp), from which each frame's bytes come; their sum is
checked to equal the file's size. The file is decoded by a separate ffmpeg (AV1: libdav1d; VVC:
ffmpeg's vvc decoder) to raw planes; the picture types come from its ``showinfo`` filter (dav1d
reports key and intra-only frames as I and every inter frame as P). The encoder's own log gives
its version and effective configuration (``settings``). Timing as x264/x265: ``seq_enc_s`` is
the encoding process's wall time, ``seq_dec_s`` that of a decode to ``-f null``.

AV1 settings. libsvtav1: ``preset`` 0 (slowest) – 13 (fastest), default 8 (SVT-AV1's default;
SVT may clamp the fastest values: the effective preset is in ``settings``); ``rate_control``
crf (SVT's CRF) or qp (constant QP, adaptive quantisation off); ``mode`` random_access
(``pred-struct=2``, SVT's hierarchical mini-GOP with hidden alt-ref frames) or low_delay
(``pred-struct=1``; SVT then runs CQP); ``gop`` = keyint (ffmpeg ``-g``; null: SVT's default);
``threads`` = SVT's level of parallelism (``lp``). libaom-av1 (``library: libaom-av1``):
``preset`` = ``cpu-used`` 0–8 (default 6), crf only (``-crf`` with ``-b:v 0``), low_delay =
``lag-in-frames 0`` (no look-ahead, no alt-ref), ``threads`` = ``-threads`` (row-mt off).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import ClassVar, Iterable, Iterator

import numpy as np

from .. import RdflowError
from .base import CodecSpec, register
from .ffmpeg_tools import _library_version, ffmpeg_version, require_encoder
from .sequence import (
    FFMPEG_CHROMA_LOC, FFMPEG_COLORSPACE, FFMPEG_RANGE, Clip, Encoded, FfmpegSequence, fps_arg,
    parse_framemd5, parse_showinfo_types, run_ffmpeg,
)
from .x26x import X26x

MODES = ("random_access", "low_delay")
#: log lines that say the encoder ignored a setting it could not parse (ffmpeg still exits 0)
REFUSED = re.compile(r"^.*(?:Error parsing option|Unrecognized option|Invalid option).*$", re.M)
#: log lines that are progress, not errors (left out of an error's stderr tail)
NOISE = re.compile(r"^(vvenc \[notice\]|Svt\[info\]|POC |\[(graph|auto_scale|format|AVIO)).*\n?",
                   re.M)


#: lines of an encoder's log that say what went wrong
KEY_LINES = re.compile(r"error|unknown|invalid|not supported|must|cannot|failed", re.I)


def stderr_tail(text: str, n: int = 2000) -> str:
    """The lines of ffmpeg's log that name a problem, then its last lines (progress left out)."""
    text = NOISE.sub("", text)
    key = "\n".join(dict.fromkeys(ln for ln in text.splitlines() if KEY_LINES.search(ln)))[-1200:]
    tail = text.strip()[-max(400, n - len(key)):]
    return f"{key}\n…\n{tail}" if key else tail


class LibSequence(FfmpegSequence):
    """One ffmpeg encoder library as a sequence codec (see the module doc); subclasses give the
    library, the stream's muxer and decoder, the coded sample format and the options."""

    domain = "yuv420"
    library: ClassVar[str] = ""
    muxer: ClassVar[str] = ""
    decoder: ClassVar[str] = ""
    pix_fmt: ClassVar[str] = "yuv420p"  # the coded samples (what the pipe carries both ways)
    bitstream_format: ClassVar[str] = ""
    defaults: ClassVar[dict] = {}

    def __init__(self, spec: CodecSpec):
        super().__init__(spec)
        where = f"video_codecs.{spec.name}"
        self.check_options(spec.options, where=where)
        self.opts = {k: spec.options.get(k, v) for k, v in self.option_defaults(spec.options).items()}
        self.exe = require_encoder(self.encoder_of(self.opts), where=f"{where}.kind: {self.kind}")
        self._last_info: dict = {}
        self._clip: Clip | None = None  # the last encode's
        self.decoded_types: list[str] = []

    # -- config -----------------------------------------------------------------------------
    @classmethod
    def option_defaults(cls, entry: dict) -> dict:
        return dict(cls.defaults)

    @classmethod
    def encoder_of(cls, entry: dict) -> str:
        return cls.library

    @classmethod
    def check_entry(cls, config: dict, name: str, entry: dict, *, where: str):
        """Options, the encoder in the bundled ffmpeg, and a gop no longer than the frames."""
        cls.check_options(entry, where=where)
        require_encoder(cls.encoder_of(entry), where=f"{where}.kind: {cls.kind}")
        cls.check_gop(config, entry, where=where)
        return None

    @classmethod
    def check_options(cls, c: dict, *, where: str) -> None:
        super().check_options(c, where=where)
        mode = c.get("mode", "random_access")
        if mode not in MODES:
            raise RdflowError(f"{where}.mode: {mode!r}; use one of {', '.join(MODES)}")
        threads = c.get("threads", 1)
        if not isinstance(threads, int) or threads < 1:
            raise RdflowError(f"{where}.threads: {threads!r}; use an integer >= 1")

    @classmethod
    def check_gop(cls, config: dict, entry: dict, *, where: str) -> None:
        """An intra period longer than the coded frames never recurs: refuse it."""
        gop = entry.get("gop")
        if not gop:
            return
        from ..sources.sequences import frames, sequences

        for seq in entry.get("sequences") or sorted(sequences(config)):
            n = len(frames(config, seq))
            if gop > n:
                raise RdflowError(
                    f"{where}.gop: {gop} is longer than the {n} frames selected from sequence "
                    f"{seq} (video.frames, or video.sequences.{seq}.frames): the intra period "
                    f"would never recur, so the setting does nothing. Use a gop of at most {n}, "
                    "or null (the encoder's default)")

    # -- subclass hooks -----------------------------------------------------------------------
    def codec_args(self, clip: Clip | None = None) -> list[str]:
        """The encoder's ffmpeg arguments (``clip``: the coded sequence, when known)."""
        raise NotImplementedError

    def samples(self, buf: bytes) -> np.ndarray:
        return np.frombuffer(buf, np.uint8)

    def encoder_error(self, err: RdflowError) -> RdflowError:
        return err

    def encoder_info(self, log: str) -> dict:
        """Version (a probe encode) and, for want of an encoder log, the ffmpeg arguments."""
        return {"version": _library_version(self.exe, self.encoder_of(self.opts)),
                "options": " ".join(self.codec_args(self._clip))}

    def version_text(self) -> str:
        return f"{self._last_info.get('version', self.kind)} via ffmpeg {ffmpeg_version(self.exe)}"

    # -- command lines ----------------------------------------------------------------------
    def input_args(self, clip: Clip) -> list[str]:
        return ["-f", "rawvideo", "-pix_fmt", self.pix_fmt, "-s", f"{clip.width}x{clip.height}",
                "-r", fps_arg(clip.fps), "-color_range", FFMPEG_RANGE[clip.range],
                "-colorspace", FFMPEG_COLORSPACE[clip.matrix],
                "-chroma_sample_location", FFMPEG_CHROMA_LOC[clip.chroma_loc], "-i", "pipe:0"]

    def _decode_cmd(self, data_path: str, *extra: str) -> list[str]:
        return [self.exe, "-hide_banner", "-nostats", "-threads", str(int(self.opts["threads"])),
                "-f", self.muxer, "-c:v", self.decoder, "-i", data_path, *extra]

    # -- interface ----------------------------------------------------------------------------
    def encode(self, frames: Iterable, clip: Clip) -> Encoded:
        what = f"video_codecs.{self.spec.name} ({self.encoder_of(self.opts)}) encode"
        self._clip = clip
        with tempfile.TemporaryDirectory(prefix=f"rdflow-{self.kind}-") as td:
            out, packets, err = Path(td) / "out.bin", Path(td) / "packets.txt", Path(td) / "log.txt"
            cmd = [self.exe, "-hide_banner", "-nostats", "-loglevel", "verbose", "-y",
                   *self.input_args(clip), "-map", "0:v:0", "-an", *self.codec_args(clip),
                   "-pix_fmt", self.pix_fmt, "-fps_mode", "passthrough", "-f", "tee",
                   f"[f={self.muxer}]{out}|[f=framemd5]{packets}"]
            try:
                n, enc_s = self.pipe_frames(cmd, frames, err, what=what, check=self.check_planes(clip, what))
            except RdflowError as e:
                raise self.encoder_error(e) from None
            log = err.read_text(errors="replace")
            refused = REFUSED.findall(log)
            if refused:
                raise RdflowError(f"{what}: the encoder did not accept a setting:\n"
                                  + "\n".join(dict.fromkeys(refused))
                                  + f"\ncommand: {' '.join(cmd)}\nFix the params key of "
                                    f"video_codecs.{self.spec.name}")
            data = out.read_bytes()
            pk = parse_framemd5(packets.read_text())
        display = X26x._display_packets(pk, n, len(data), what=what)
        self._last_info = self.encoder_info(log)
        return Encoded(data=data, frame_bytes=[s for _, _, s in display], frame_types=[],
                       enc_s=enc_s, info=dict(self._last_info))

    def check_planes(self, clip: Clip, what: str):
        """A check of each frame's planes before it is piped: 4:2:0 of the clip's size."""
        shapes = [(clip.height, clip.width), ((clip.height + 1) // 2, (clip.width + 1) // 2)]

        def check(planes, n: int) -> None:
            if [np.shape(p) for p in planes] != [shapes[0], shapes[1], shapes[1]]:
                raise RdflowError(f"{what}: frame {n} has planes of shapes "
                                  f"{[np.shape(p) for p in planes]}, not 4:2:0 "
                                  f"{clip.width}x{clip.height}")
        return check

    @property
    def decode_pix_fmt(self) -> str:
        return self.pix_fmt

    def stderr_tail(self, text: str) -> str:
        return stderr_tail(text)

    def _read_planes(self, stream, clip: Clip) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        w, h = clip.width, clip.height
        cw, ch = (w + 1) // 2, (h + 1) // 2
        per = 2 if self.pix_fmt.endswith("le") else 1
        n = (w * h + 2 * cw * ch) * per
        while True:
            buf = stream.read(n)
            if not buf:
                return
            if len(buf) != n:
                raise RdflowError(f"video_codecs.{self.spec.name}: ffmpeg returned a truncated "
                                  f"{w}x{h} frame ({len(buf)} of {n} bytes)")
            a = self.samples(buf)
            yield (a[:w * h].reshape(h, w), a[w * h:w * h + cw * ch].reshape(ch, cw),
                   a[w * h + cw * ch:].reshape(ch, cw))

    # -- provenance ---------------------------------------------------------------------------
    def describe(self) -> dict:
        o = self.opts
        return {
            "encoder": self.version_text(),
            "settings": self._last_info.get("options", ""),
            "ffmpeg_args": " ".join(self.codec_args(self._clip)),
            "rate_control": o.get("rate_control", "qp"),
            "preset": o["preset"],
            "mode": o["mode"],
            "gop": self.gop,
            "threads": int(o["threads"]),
            "coded_pix_fmt": self.pix_fmt,
            "bitstream_format": self.bitstream_format,
            "device": "cpu",
        }


# ------------------------------------------------------------------------------------------
SVT_PRESETS = range(0, 14)
AOM_PRESETS = range(0, 9)
AV1_LIBRARIES = ("libsvtav1", "libaom-av1")


@register
class Av1(LibSequence):
    """AV1 as a sequence codec: libsvtav1 (default) or libaom-av1 (see the module doc)."""

    kind = "av1"
    library = "libsvtav1"
    muxer = "obu"
    decoder = "libdav1d"
    quality_range = (0, 63)
    quality_meaning = "CRF/QP (AV1 quantizer scale 0–63)"
    entry_keys = frozenset({"preset", "rate_control", "mode", "params", "library"})
    defaults: ClassVar[dict] = {"library": "libsvtav1", "preset": 8, "rate_control": "crf",
                                "mode": "random_access", "gop": None, "params": None, "threads": 1}
    bitstream_format = "AV1 low-overhead OBU stream (.obu)"

    @classmethod
    def option_defaults(cls, entry: dict) -> dict:
        d = dict(cls.defaults)
        if entry.get("library") == "libaom-av1":
            d.update(library="libaom-av1", preset=6)
        return d

    @classmethod
    def encoder_of(cls, entry: dict) -> str:
        return entry.get("library") or cls.library

    @classmethod
    def check_options(cls, c: dict, *, where: str) -> None:
        super().check_options(c, where=where)
        lib = c.get("library", "libsvtav1")
        if lib not in AV1_LIBRARIES:
            raise RdflowError(f"{where}.library: {lib!r}; use one of {', '.join(AV1_LIBRARIES)}")
        aom = lib == "libaom-av1"
        allowed = AOM_PRESETS if aom else SVT_PRESETS
        preset = c.get("preset", cls.option_defaults(c)["preset"])
        if isinstance(preset, bool) or not isinstance(preset, int) or preset not in allowed:
            what = "libaom cpu-used" if aom else "SVT-AV1 preset"
            raise RdflowError(f"{where}.preset: {preset!r} is not an {what}; use an integer "
                              f"{allowed.start} (slowest) – {allowed.stop - 1} (fastest)")
        rc = c.get("rate_control", "crf")
        if rc not in ("crf", "qp"):
            raise RdflowError(f"{where}.rate_control: {rc!r}; use crf or qp")
        if aom and rc == "qp":
            raise RdflowError(f"{where}.rate_control: qp is not available with libaom-av1 "
                              "through ffmpeg (it has constant quality: crf with -b:v 0); use "
                              "crf, or library: libsvtav1")

    def codec_args(self, clip: Clip | None = None) -> list[str]:
        o = self.opts
        q = str(self.spec.quality)
        gop = ["-g", str(self.gop)] if self.gop else []
        if o["library"] == "libaom-av1":
            args = ["-c:v", "libaom-av1", "-cpu-used", str(o["preset"]), "-crf", q, "-b:v", "0",
                    *gop, "-threads", str(int(o["threads"])), "-row-mt", "0"]
            if o["mode"] == "low_delay":
                args += ["-lag-in-frames", "0"]
            return args + (["-aom-params", str(o["params"])] if o["params"] else [])
        params = [f"lp={int(o['threads'])}", f"pred-struct={2 if o['mode'] == 'random_access' else 1}"]
        if o["params"]:
            params.append(str(o["params"]))
        return ["-c:v", "libsvtav1", "-preset", str(o["preset"]), f"-{o['rate_control']}", q,
                *gop, "-svtav1-params", ":".join(params)]

    def encoder_info(self, log: str) -> dict:
        if self.opts["library"] == "libaom-av1":
            return super().encoder_info(log)
        m = re.search(r"SVT-AV1 Encoder Lib v?(\S+)", log)
        config = []
        for keys, values in re.findall(r"SVT \[config\]: ([^:\n]+?)\s*:\s*([^\n]+)", log):
            ks, vs = keys.split(" / "), values.strip().split(" / ")
            config += [f"{k.strip()}={v.strip()}" for k, v in zip(ks, vs)] if len(ks) == len(vs) \
                else [f"{keys.strip()}={values.strip()}"]
        return {"version": f"SVT-AV1 {m.group(1)}" if m else "SVT-AV1 (version not reported)",
                "options": "; ".join(config)}
