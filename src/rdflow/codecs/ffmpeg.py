"""Classical image anchors through the ffmpeg of imageio-ffmpeg: JPEG 2000, HEVC intra (BPG-like),
AV1 intra (AVIF-like) and JPEG XL.

Each ``encode`` is ONE ffmpeg process (raw RGB over stdin, the bitstream over stdout) and each
``decode`` is ONE ffmpeg process (the bitstream over stdin, a PPM over stdout); no file is
written. The caller (:func:`rdflow.stages.compress.code`) times them, so **enc_s/dec_s of these codecs
include ffmpeg's process start-up** (exec, library init, muxer/demuxer set-up: tens of ms; see
below). Every encoder and decoder runs single-threaded, like the Pillow codecs.

Measured start-up (a 16x16 image, so almost nothing but start-up; 2-core machine under load 12):
15–25 ms CPU per process (ffmpeg -version alone: 15 ms CPU), 55–105 ms wall. For scale, a
768x512 Kodak image costs 80–260 ms CPU to encode and 35–65 ms CPU to decode, so start-up is
roughly 10–30 % of enc_s and a third to a half of dec_s: compare these codecs' decode times with
in-process codecs (Pillow, CompressAI) with that in mind.

Bitstreams are standard files, every byte counted in bpp:

==============  =======================  ==================================  ==================
kind            encoder (ffmpeg)         quality = (ladder direction)        bitstream
==============  =======================  ==================================  ==================
``jpeg2000``    libopenjpeg, 9/7 wavelet ffmpeg ``compression_level``: ratio  JP2 file, sYCC
                (irreversible), 1 layer  2q:1 over 24-bit RGB, i.e. target    (``.jp2``)
                                         bpp = 12/q (higher q = fewer bits;
                                         CompressAI's jpeg2000.json ladder)
``hevc_intra``  libx265, one intra frame x265 ``qp`` 0–51, as ``bpgenc -q``   Annex-B HEVC
                                         (higher q = fewer bits)             (``.hevc``)
``av1_intra``   libaom-av1, ``usage      libaom ``crf`` 0–63, ``b:v 0``       AV1 low-overhead
                allintra``, still pic.   (higher q = fewer bits)             OBU stream (.obu)
``jpegxl``      libjxl                   cjxl-style quality 11–100, mapped    JXL codestream
                                         to Butteraugli distance with         (``.jxl``)
                                         libjxl's JxlEncoderDistanceFromQuality
                                         (higher q = more bits; 100 = lossless)
==============  =======================  ==================================  ==================

Colour: ``jpeg2000``, ``hevc_intra`` and ``av1_intra`` code Y'CbCr made by ffmpeg's swscale from
the RGB input with the **BT.601 matrix, full range** (sYCC; BPG's default for
``bpg_444_x265_ycbcr`` and libavif's default) and say so in the stream (HEVC/AV1: matrix bt470bg,
range pc, sRGB primaries/transfer; JP2: sYCC); the decoder converts back with the same matrix and
range. ``pix_fmt`` yuv444p (default, like BPG 4:4:4) or yuv420p (chroma sited ``left``, the
HEVC/AV1 default, both ways). ``jpegxl`` takes rgb24 (libjxl codes in XYB).

Sizes: JPEG 2000, AV1 and JPEG XL code any size. HEVC 4:2:0 cannot signal an odd width or height
(its conformance window counts chroma samples) and x265 refuses sides under 16 pixels, so for
those ``hevc_intra`` edge-pads the image and writes a BPG-like 8-byte header (``RDFH``, uint16 BE
width, uint16 BE height; counted in bpp and reported in ``header_bytes``) before the Annex-B
stream; the decoder crops. Every other case writes the bare standard stream.
"""

from __future__ import annotations

import math
import struct
from typing import Any, ClassVar

import numpy as np

from .. import RdflowError
from .base import Codec, register
from .ffmpeg_tools import (  # noqa: F401  (the tools the codecs and their tests use)
    INSTALL_FIX, _library_version, _run, available_encoders, ffmpeg_exe, ffmpeg_version, read_ppm,
    require_encoder)

#: BT.601 full-range Y'CbCr, and the stream tags that say so
MATRIX, RANGE = "bt601", "full"
YUV_TAGS = ["-colorspace", "bt470bg", "-color_range", "pc", "-color_primaries", "bt709",
            "-color_trc", "iec61966-2-1"]
#: swscale flags used both ways: exact rounding, chroma interpolated at full resolution
SWS_FLAGS = "accurate_rnd+full_chroma_int+full_chroma_inp+bitexact"
#: chroma siting of 4:2:0 ("left": horizontally co-sited, vertically centred), swscale units 1/256
CHR_POS = {"h": 0, "v": 128}
HEVC_HEADER = b"RDFH"
X265_MIN_SIDE = 16  # x265 (through ffmpeg) refuses pictures under 16 pixels on a side
X265_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow", "placebo")
def jxl_distance(quality: float) -> float:
    """cjxl's quality (0–100) -> Butteraugli distance (libjxl's JxlEncoderDistanceFromQuality)."""
    if quality >= 100:
        return 0.0
    if quality >= 30:
        return 0.1 + (100 - quality) * 0.09
    return 53.0 / 3000.0 * quality * quality - 23.0 / 20.0 * quality + 25.0


# --------------------------------------------------------------------------- codecs
class FfmpegCodec(Codec):
    """One ffmpeg process per encode and per decode; subclasses give the encoder and options."""

    encoder: ClassVar[str] = ""
    decoder: ClassVar[str] = ""
    muxer: ClassVar[str] = ""  # -f of the encoder's output
    demuxer: ClassVar[str] = ""  # -f of the decoder's input
    pix_fmts: ClassVar[tuple[str, ...]] = ("yuv444p", "yuv420p")  # first = default
    #: config keys (besides kind, qualities, datasets) this kind accepts, with their defaults
    defaults: ClassVar[dict[str, Any]] = {}
    #: True when a higher quality value gives more bits
    rate_rises_with_quality: ClassVar[bool] = False
    #: the quality parameter, in words (for docs and errors)
    quality_meaning: ClassVar[str] = ""

    def __init__(self, spec):
        super().__init__(spec)
        self.check_options(spec.options, where=f"codecs.{spec.name}")
        self.exe = require_encoder(self.encoder, where=f"codecs.{spec.name}.kind: {self.kind}")
        self.check_quality(spec.quality, where=f"codecs.{spec.name}.qualities")
        self.opts = {k: spec.options.get(k, v) for k, v in self.defaults.items()}

    # -- config ---------------------------------------------------------------------------
    @classmethod
    def check_options(cls, c: dict, *, where: str) -> None:
        """Kind-specific option checks (the schema cannot make them per kind)."""
        own = set(cls.defaults)
        other = sorted(k for k in ("pix_fmt", "preset", "cpu_used", "effort")
                       if k in c and k not in own)
        if other:
            raise RdflowError(f"{where}.{other[0]} does not apply to kind {cls.kind} (its keys: "
                              f"{', '.join(sorted(own)) or 'none'}); remove it")
        pf = c.get("pix_fmt")
        if pf is not None and pf not in cls.pix_fmts:
            raise RdflowError(f"{where}.pix_fmt: {pf!r} is not allowed for {cls.kind}; allowed: "
                              f"{', '.join(cls.pix_fmts)}")

    @classmethod
    def check_entry(cls, config: dict, name: str, c: dict, *, where: str):
        """Options, and the encoder in the bundled ffmpeg."""
        super().check_entry(config, name, c, where=where)
        cls.check_options(c, where=where)
        require_encoder(cls.encoder, where=f"{where}.kind: {cls.kind}")

    # -- subclass hooks -------------------------------------------------------------------
    @property
    def pix_fmt(self) -> str:
        return self.opts.get("pix_fmt", self.pix_fmts[0])

    def codec_args(self, h: int, w: int) -> list[str]:
        raise NotImplementedError

    def prepare(self, rgb: np.ndarray) -> tuple[np.ndarray, bytes]:
        """The image ffmpeg encodes, and a header to prepend (b"" for standard streams)."""
        return rgb, b""

    # -- filter chains --------------------------------------------------------------------
    def _to_yuv(self) -> list[str]:
        if self.pix_fmt.startswith("rgb"):
            return ["-pix_fmt", self.pix_fmt]
        vf = f"scale=out_color_matrix={MATRIX}:out_range={RANGE}:flags={SWS_FLAGS}"
        tags = list(YUV_TAGS)
        if self.pix_fmt == "yuv420p":
            vf += f":out_h_chr_pos={CHR_POS['h']}:out_v_chr_pos={CHR_POS['v']}"
            tags += ["-chroma_sample_location", "left"]
        return ["-vf", vf, "-pix_fmt", self.pix_fmt, *tags]

    def _from_yuv(self) -> list[str]:
        if self.pix_fmt.startswith("rgb"):
            return ["-pix_fmt", "rgb24"]
        vf = f"scale=in_color_matrix={MATRIX}:in_range={RANGE}:flags={SWS_FLAGS}"
        if self.pix_fmt == "yuv420p":
            vf += f":in_h_chr_pos={CHR_POS['h']}:in_v_chr_pos={CHR_POS['v']}"
        return ["-vf", vf, "-pix_fmt", "rgb24"]

    def encode_args(self, h: int, w: int) -> list[str]:
        return [*self._to_yuv(), "-c:v", self.encoder, "-threads", "1", *self.codec_args(h, w),
                "-frames:v", "1", "-f", self.muxer]

    def decode_args(self) -> list[str]:
        return ["-threads", "1", "-c:v", self.decoder]

    # -- interface ------------------------------------------------------------------------
    def prepared(self, rgb: np.ndarray) -> tuple[np.ndarray, bytes, list[str]]:
        """(the picture the encoder gets, the size header, ffmpeg's arguments reading it)."""
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 uint8 RGB image, got {rgb.shape}")
        img, header = self.prepare(rgb)
        h, w = img.shape[:2]
        return img, header, ["-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
                             "-s", f"{w}x{h}", "-i", "pipe:0"]

    def encode(self, rgb: np.ndarray) -> bytes:
        img, header, rgb_in = self.prepared(rgb)
        h, w = img.shape[:2]
        args = [*rgb_in, *self.encode_args(h, w), "pipe:1"]
        out = _run(self.exe, args, img.tobytes(), what=f"{self.spec.name} ({self.encoder}) encode")
        if not out:
            raise RdflowError(f"{self.spec.name}: {self.encoder} wrote an empty bitstream")
        return header + out

    def decode(self, data: bytes) -> np.ndarray:
        size, body = self.split_header(data)
        args = ["-loglevel", "error", "-f", self.demuxer, *self.decode_args(), "-i", "pipe:0",
                *self._from_yuv(), "-frames:v", "1", "-f", "image2pipe", "-c:v", "ppm", "pipe:1"]
        what = f"{self.spec.name} ({self.decoder}) decode"
        rgb = read_ppm(_run(self.exe, args, body, what=what), what=what)
        if size is not None:
            w, h = size
            rgb = np.ascontiguousarray(rgb[:h, :w])
        return rgb

    def split_header(self, data: bytes) -> tuple[tuple[int, int] | None, bytes]:
        return None, data

    def header_bytes(self, data: bytes) -> int:
        return len(data) - len(self.split_header(data)[1])

    # -- provenance -----------------------------------------------------------------------
    def library_version(self) -> str:
        return _library_version(self.exe, self.encoder)

    def describe(self) -> dict:
        enc = " ".join(self.encode_args(4096, 4096))  # jpeg2000: fewer levels under 32 px
        dec = " ".join(["-f", self.demuxer, *self.decode_args(), "-i", "-", *self._from_yuv()])
        return {
            "encoder": f"{self.encoder} ({self.library_version()}) via ffmpeg "
                       f"{ffmpeg_version(self.exe)}",
            "settings": f"quality={self.spec.quality} ({self.quality_meaning}); encode: {enc}; "
                        f"decode: {dec}",
        }


@register
class Jpeg2000(FfmpegCodec):
    """JPEG 2000 (OpenJPEG) in a JP2 file: 9/7 irreversible wavelet, one quality layer,
    rate-targeted.

    quality q = ffmpeg's ``compression_level``: OpenJPEG's rate ``2q`` (compression ratio
    2q:1 over 24-bit RGB), so the target is 12/q bpp (q 5, 10, 15 -> 2.4, 1.2, 0.8 bpp, the
    ladder of CompressAI's jpeg2000.json, which also coded ffmpeg's yuv444p into a .jp2).
    ffmpeg's libopenjpeg never enables JPEG 2000's own colour transform (MCT), so RGB is
    converted by ffmpeg to BT.601 full-range Y'CbCr, which is sYCC, the colour space the JP2
    header declares; any JP2 reader converts back. Resolution levels are 6, fewer for images
    under 32 pixels on a side (OpenJPEG needs 2^(levels-1) <= the smaller side of every
    component)."""

    kind = "jpeg2000"
    encoder = "libopenjpeg"
    decoder = "jpeg2000"
    muxer = "image2pipe"
    demuxer = "image2pipe"
    defaults = {"pix_fmt": "yuv444p"}
    quality_range = (1, 1000)
    quality_meaning = "ffmpeg compression_level: compression ratio 2q:1, target 12/q bpp"

    def codec_args(self, h: int, w: int) -> list[str]:
        side = min(h, w)
        if self.pix_fmt == "yuv420p":
            side = (side + 1) // 2
        levels = max(1, min(6, int(math.floor(math.log2(max(side, 1)))) + 1))
        return ["-format", "jp2", "-irreversible", "1", "-numresolution", str(levels),
                "-compression_level", str(int(self.spec.quality))]


@register
class HevcIntra(FfmpegCodec):
    """HEVC intra with x265, the BPG-like anchor: one I-frame, constant QP = quality.

    BT.601 full-range Y'CbCr (``pix_fmt`` yuv444p like ``bpg_444_x265_ycbcr``, or yuv420p),
    x265 ``preset`` (default medium), no x265 info SEI (BPG does not write it either); single
    thread (``pools=none``, ``frame-threads=1``)."""

    kind = "hevc_intra"
    encoder = "libx265"
    decoder = "hevc"
    muxer = "hevc"
    demuxer = "hevc"
    defaults = {"pix_fmt": "yuv444p", "preset": "medium"}
    quality_range = (0, 51)
    quality_meaning = "x265 QP (lower = higher quality)"

    @classmethod
    def check_options(cls, c: dict, *, where: str) -> None:
        super().check_options(c, where=where)
        preset = c.get("preset")
        if preset is not None and preset not in X265_PRESETS:
            raise RdflowError(f"{where}.preset: {preset!r} is not an x265 preset; allowed: "
                              f"{', '.join(X265_PRESETS)}")

    def codec_args(self, h: int, w: int) -> list[str]:
        params = (f"qp={int(self.spec.quality)}:keyint=1:info=0:pools=none:frame-threads=1:"
                  "log-level=error")
        return ["-preset", str(self.opts["preset"]), "-x265-params", params]

    def prepare(self, rgb: np.ndarray) -> tuple[np.ndarray, bytes]:
        return pad_for_encoder(rgb, X265_MIN_SIDE, 2 if self.pix_fmt == "yuv420p" else 1,
                               HEVC_HEADER, self.spec.name)

    def split_header(self, data: bytes) -> tuple[tuple[int, int] | None, bytes]:
        return split_size_header(data, HEVC_HEADER, self.spec.name)


def pad_for_encoder(rgb: np.ndarray, min_side: int, step: int, magic: bytes,
                    name: str) -> tuple[np.ndarray, bytes]:
    """``rgb`` edge-padded to a size the encoder takes (at least ``min_side``, a multiple of
    ``step``), and the size header that lets the decoder crop back (``magic`` + uint16 w, h;
    empty when no padding was needed). The header's bytes count in bpp."""
    h, w = rgb.shape[:2]

    def target(n: int) -> int:
        return max(min_side, n + (-n) % step)

    th, tw = target(h), target(w)
    if (th, tw) == (h, w):
        return rgb, b""
    if max(h, w) > 0xFFFF:
        raise RdflowError(f"{name}: {w}x{h} is too large for the size header")
    padded = np.pad(rgb, ((0, th - h), (0, tw - w), (0, 0)), mode="edge")
    return padded, magic + struct.pack(">HH", w, h)


def split_size_header(data: bytes, magic: bytes, name: str) -> tuple[tuple[int, int] | None, bytes]:
    """(original (w, h) or None, the encoder's stream) of a file :func:`pad_for_encoder` made."""
    if data[:4] == magic:
        if len(data) < 8:
            raise RdflowError(f"{name}: truncated bitstream ({len(data)} bytes)")
        w, h = struct.unpack(">HH", data[4:8])
        return (w, h), data[8:]
    return None, data


@register
class Av1Intra(FfmpegCodec):
    """AV1 intra with libaom (AVIF-like): ``usage allintra``, still picture, constant quality
    ``crf`` = quality (``b:v 0``), ``cpu_used`` (default 6, libavif's default speed); BT.601
    full-range Y'CbCr like libavif's default; decoded with dav1d."""

    kind = "av1_intra"
    encoder = "libaom-av1"
    decoder = "libdav1d"
    muxer = "obu"
    demuxer = "obu"
    defaults = {"pix_fmt": "yuv444p", "cpu_used": 6}
    quality_range = (0, 63)
    quality_meaning = "libaom crf (lower = higher quality)"

    def codec_args(self, h: int, w: int) -> list[str]:
        return ["-usage", "allintra", "-still-picture", "1",
                "-cpu-used", str(int(self.opts["cpu_used"])), "-row-mt", "0",
                "-crf", str(int(self.spec.quality)), "-b:v", "0"]


@register
class JpegXl(FfmpegCodec):
    """JPEG XL (libjxl, VarDCT in XYB): quality is cjxl's 0–100 scale mapped to the Butteraugli
    ``distance`` exactly as libjxl maps it (q 90 -> d 1.0, q 100 -> lossless); ``effort`` 1–9
    (default 7, cjxl's default). ffmpeg caps the distance at 15, hence quality >= 11."""

    kind = "jpegxl"
    encoder = "libjxl"
    decoder = "libjxl"
    muxer = "image2pipe"
    demuxer = "jpegxl_pipe"
    pix_fmts = ("rgb24",)
    defaults = {"effort": 7}
    quality_range = (11, 100)
    rate_rises_with_quality = True
    quality_meaning = "cjxl quality, distance = JxlEncoderDistanceFromQuality(q)"

    def codec_args(self, h: int, w: int) -> list[str]:
        d = jxl_distance(self.spec.quality)
        return ["-effort", str(int(self.opts["effort"])), "-distance", f"{d:.4f}"]


FFMPEG_CODECS = (Jpeg2000, HevcIntra, Av1Intra, JpegXl)
