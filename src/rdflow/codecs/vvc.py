"""VVC (H.266) through the ffmpeg of imageio-ffmpeg: Fraunhofer's VVenC (ffmpeg ``libvvenc``)
encodes, ffmpeg's native ``vvc`` decoder decodes. Two kinds:

- ``vvc_intra`` (image codec, config ``codecs``): one intra picture, slice QP = quality.
- ``vvc`` (sequence codec, config ``video_codecs``): random access (vvenc's hierarchical-B GOP
  of 32, CRA refreshes, first frame an IDR) or low delay (no picture reordering, GOP 8, low-delay
  B pictures); intra period ``gop``; QP = quality.

**Bit depth.** The libvvenc of this ffmpeg takes only ``yuv420p10le`` (``ffmpeg -h
encoder=libvvenc``): VVenC codes the Main 10 profile (4:2:0 or 4:0:0, internal bit depth 10),
so 4:4:4 is refused. rdflow therefore codes the same 8-bit 4:2:0 picture the other codecs code,
shifted left by 2 bits (``v << 2``, exact, what VTM does with ``InputBitDepth=8`` and an internal
bit depth of 10), and brings the decoder's 10-bit output back to 8 bits by rounding
(``min((v + 2) >> 2, 255)``, VTM's ``OutputBitDepth=8``). Metrics are computed on those 8-bit
samples. Both conversions are done in numpy, not by swscale (whose full-range 8->10 bit
expansion is ``v * 1023 / 255``, not invertible by the rounding shift).

**Settings.** vvenc's perceptual QP adaptation (QPA, on by default in vvenc) is switched off, as
PSNR-oriented comparisons with VTM (which has none) do; ``params`` can switch it back on
(``PerceptQPA=1``). ``vvc_intra`` also sets ``IntraQPOffset=0`` (vvenc's default is -3 on key
pictures), so the picture QP equals the quality as VTM's ``-q`` does in all-intra. One encoder
thread (``-threads 1``) unless ``threads`` says otherwise.

**Output.** VVenC prints its configuration warnings on stdout, so the encoder writes its
stream to a file, never to a pipe (the warnings would be appended to the bitstream).

**Sizes.** ``vvc_intra`` edge-pads an odd side (4:2:0) or a side under 16 pixels and writes an
8-byte header (``RDFV``, uint16 BE width and height; counted in bpp and in ``header_bytes``)
before the Annex-B stream, like ``hevc_intra``; otherwise the file is the bare ``.266``
stream. Note: ffmpeg's libvvenc wrapper holds at most width x height bytes per coded picture,
so a picture that needs more than 8 bpp (noise, or QP near 0) fails to encode; the error says so.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import ClassVar

import numpy as np

from .. import RdflowError
from .av1 import LibSequence
from .base import register
from .sequence import Clip
from .ffmpeg import YUV_TAGS, FfmpegCodec, pad_for_encoder, split_size_header
from .ffmpeg_tools import _run, ffmpeg_version, read_ppm

VVENC_PRESETS = ("faster", "fast", "medium", "slow", "slower")
VVC_HEADER = b"RDFV"
VVENC_MIN_SIDE = 16
VVENC_PIX_FMT = "yuv420p10le"
#: vvenc options every rdflow VVC stream is coded with (user ``params`` come after them)
NO_QPA = "PerceptQPA=0"
#: the libvvenc wrapper does not pass ffmpeg's colour range on: full range is set explicitly
FULL_RANGE = "VideoFullRange=1"
MODE_PARAMS = {"random_access": "POC0IDR=1",
               "low_delay": "PicReordering=0:DecodingRefreshType=none:GOPSize=8"}
AU_LIMIT_HINT = ("note: ffmpeg's libvvenc wrapper holds at most width x height bytes per coded "
                 "picture, so a picture that needs more than 8 bpp (noise, or a QP near 0) fails "
                 "this way: use a higher QP")


def to_10bit(planes: np.ndarray) -> bytes:
    """8-bit samples as little-endian 10-bit samples, shifted left by 2 (exact)."""
    return (np.asarray(planes, dtype=np.uint16) << 2).astype("<u2").tobytes()


def from_10bit(buf: bytes) -> np.ndarray:
    """Little-endian 10-bit samples rounded to 8 bits: ``min((v + 2) >> 2, 255)``."""
    v = np.frombuffer(buf, dtype="<u2").astype(np.uint16)
    return np.minimum((v + 2) >> 2, 255).astype(np.uint8)


def with_hint(err: RdflowError) -> RdflowError:
    """The encoder's error, with the per-picture size limit named when it is the likely cause."""
    text = str(err)
    if re.search(r"Error (flushing encoder|submitting video frame)", text):
        return RdflowError(f"{text}\n{AU_LIMIT_HINT}")
    return err


def check_preset(preset, *, where: str) -> None:
    if preset not in VVENC_PRESETS:
        raise RdflowError(f"{where}.preset: {preset!r} is not a vvenc preset; allowed: "
                          f"{', '.join(VVENC_PRESETS)} (ffmpeg -h encoder=libvvenc)")


@register
class VvcIntra(FfmpegCodec):
    """VVC intra with VVenC: one IDR picture at slice QP = quality, 4:2:0 only (libvvenc), BT.601
    full-range Y'CbCr made and inverted by ffmpeg's swscale exactly as ``hevc_intra`` with
    ``pix_fmt: yuv420p`` does (chroma sited left), 8 -> 10 -> 8 bits as the module says.
    ``preset`` (default medium, vvenc's default). Encode: two ffmpeg processes (RGB -> 8-bit
    4:2:0; libvvenc); decode: two (the vvc decoder to 10-bit; 8-bit 4:2:0 -> RGB)."""

    kind = "vvc_intra"
    encoder = "libvvenc"
    decoder = "vvc"
    muxer = "vvc"
    demuxer = "vvc"
    pix_fmts = ("yuv420p",)
    defaults = {"pix_fmt": "yuv420p", "preset": "medium"}
    quality_range = (0, 63)
    quality_meaning = "vvenc QP = slice QP (lower = higher quality)"

    @classmethod
    def check_options(cls, c: dict, *, where: str) -> None:
        if c.get("pix_fmt") == "yuv444p":
            raise RdflowError(
                f"{where}.pix_fmt: yuv444p is refused: the libvvenc of this ffmpeg codes only "
                f"4:2:0 ({VVENC_PIX_FMT}; see 'ffmpeg -h encoder=libvvenc'): VVenC codes the "
                "Main 10 profile, which is 4:2:0 (or 4:0:0) only. Use pix_fmt: yuv420p "
                "(CompressAI's published VTM curve is VTM 4:4:4, which this ffmpeg cannot run)")
        super().check_options(c, where=where)
        check_preset(c.get("preset", "medium"), where=where)

    def codec_args(self, h: int, w: int) -> list[str]:
        return ["-preset", str(self.opts["preset"]), "-qp", str(int(self.spec.quality)),
                "-vvenc-params", f"IntraPeriod=1:IntraQPOffset=0:{NO_QPA}:{FULL_RANGE}"]

    def encode_args(self, h: int, w: int) -> list[str]:
        return ["-c:v", self.encoder, "-threads", "1", *self.codec_args(h, w), "-frames:v", "1",
                "-f", self.muxer]

    def _raw_in(self, pix_fmt: str, w: int, h: int) -> list[str]:
        return ["-loglevel", "error", "-f", "rawvideo", "-pix_fmt", pix_fmt, "-s", f"{w}x{h}",
                *YUV_TAGS, "-chroma_sample_location", "left", "-i", "pipe:0"]

    def encode(self, rgb: np.ndarray) -> bytes:
        img, header, rgb_in = self.prepared(rgb)
        h, w = img.shape[:2]
        to_yuv = [*rgb_in, *self._to_yuv(), "-f", "rawvideo", "pipe:1"]
        yuv = _run(self.exe, to_yuv, img.tobytes(), what=f"{self.spec.name} RGB -> yuv420p")
        if len(yuv) != w * h * 3 // 2:
            raise RdflowError(f"{self.spec.name}: swscale returned {len(yuv)} bytes of 4:2:0, "
                              f"expected {w * h * 3 // 2}")
        # to a file, not stdout: VVenC prints its configuration warnings on stdout
        with tempfile.TemporaryDirectory(prefix="rdflow-vvc-") as td:
            path = Path(td) / "out.266"
            args = [*self._raw_in(VVENC_PIX_FMT, w, h), *self.encode_args(h, w), "-y", str(path)]
            try:
                _run(self.exe, args, to_10bit(np.frombuffer(yuv, np.uint8)),
                     what=f"{self.spec.name} ({self.encoder}) encode")
            except RdflowError as e:
                raise with_hint(e) from None
            out = path.read_bytes()
        if not out:
            raise RdflowError(f"{self.spec.name}: {self.encoder} wrote an empty bitstream")
        return header + out

    def decode(self, data: bytes) -> np.ndarray:
        size, body = self.split_header(data)
        what = f"{self.spec.name} ({self.decoder}) decode"
        y4m = _run(self.exe, ["-loglevel", "error", "-f", self.demuxer, *self.decode_args(), "-i",
                              "pipe:0", "-f", "yuv4mpegpipe", "-strict", "-1", "-pix_fmt",
                              VVENC_PIX_FMT, "pipe:1"], body, what=what)
        w, h, planes = read_y4m_10bit(y4m, what=what)
        args = [*self._raw_in("yuv420p", w, h), *self._from_yuv(), "-frames:v", "1",
                "-f", "image2pipe", "-c:v", "ppm", "pipe:1"]
        rgb = read_ppm(_run(self.exe, args, from_10bit(planes).tobytes(), what=what), what=what)
        if size is not None:
            rgb = np.ascontiguousarray(rgb[:size[1], :size[0]])
        return rgb

    def prepare(self, rgb: np.ndarray) -> tuple[np.ndarray, bytes]:
        return pad_for_encoder(rgb, VVENC_MIN_SIDE, 2, VVC_HEADER, self.spec.name)

    def split_header(self, data: bytes) -> tuple[tuple[int, int] | None, bytes]:
        return split_size_header(data, VVC_HEADER, self.spec.name)

    def describe(self) -> dict:
        d = super().describe()
        d["settings"] = (
            f"quality={self.spec.quality} ({self.quality_meaning}); RGB -> 8-bit 4:2:0: "
            f"{' '.join(self._to_yuv())}; samples << 2 into {VVENC_PIX_FMT} (libvvenc takes only "
            f"10 bits; Main 10, internal 10 bits); encode: {' '.join(self.encode_args(0, 0))}; "
            f"decode: -f {self.demuxer} {' '.join(self.decode_args())} -i - -pix_fmt "
            f"{VVENC_PIX_FMT}, rounded to 8 bits ((v+2)>>2), 4:2:0 -> RGB: "
            f"{' '.join(self._from_yuv())}")
        return d


def read_y4m_10bit(data: bytes, *, what: str) -> tuple[int, int, bytes]:
    """(width, height, the one frame's planes) of a one-frame 10-bit 4:2:0 y4m stream."""
    m = re.match(rb"YUV4MPEG2 ([^\n]*)\n", data)
    if not m:
        raise RdflowError(f"{what}: ffmpeg did not return a y4m stream")
    fields = {f[:1]: f[1:] for f in m.group(1).split()}
    w, h = int(fields[b"W"]), int(fields[b"H"])
    if not fields.get(b"C", b"").startswith(b"420p10"):
        raise RdflowError(f"{what}: the decoder returned {fields.get(b'C')!r}, not 10-bit 4:2:0")
    n = 2 * (w * h + 2 * ((w + 1) // 2) * ((h + 1) // 2))
    pos = m.end()
    nl = data.find(b"\n", pos)
    if data[pos:pos + 5] != b"FRAME" or nl < 0 or len(data) != nl + 1 + n:
        frames = (len(data) - pos) / (n + 6)
        raise RdflowError(f"{what}: expected one {w}x{h} picture, got {frames:.2f} pictures' bytes")
    return w, h, data[nl + 1:]


# ------------------------------------------------------------------------------------------
@register
class Vvc(LibSequence):
    """VVC with VVenC as a sequence codec: QP = quality, ``mode`` random_access (vvenc's
    hierarchical GOP of 32, first frame an IDR, CRA every ``gop`` frames; VTM's RA is the same
    structure) or low_delay (``PicReordering=0``, GOP 8, low-delay B; only IDRs refresh),
    ``preset`` (vvenc: faster … slower; default medium), ``gop`` = vvenc ``IntraPeriod`` (null:
    vvenc's default, about one second rounded to the GOP size; the effective value is in the
    settings column), ``params`` (extra ``-vvenc-params``, after rdflow's own). Frame types:
    what ffmpeg's vvc decoder reports (I for IDR/CRA pictures, B/P)."""

    kind = "vvc"
    library = "libvvenc"
    muxer = "vvc"
    decoder = "vvc"
    pix_fmt = VVENC_PIX_FMT
    quality_range = (0, 63)
    quality_meaning = "vvenc QP"
    entry_keys = frozenset({"preset", "mode", "params"})
    defaults: ClassVar[dict] = {"preset": "medium", "mode": "random_access", "gop": None,
                                "params": None, "threads": 1}
    bitstream_format = "vvc Annex-B (.266)"

    @classmethod
    def check_options(cls, c: dict, *, where: str) -> None:
        super().check_options(c, where=where)
        check_preset(c.get("preset", "medium"), where=where)

    def codec_args(self, clip: Clip | None = None) -> list[str]:
        o = self.opts
        params = [NO_QPA, MODE_PARAMS[o["mode"]]]
        if clip is not None and clip.range == "full":
            params.append(FULL_RANGE)
        if self.gop:
            params.append(f"IntraPeriod={self.gop}")
        if o["params"]:
            params.append(str(o["params"]))
        return ["-c:v", self.library, "-preset", str(o["preset"]), "-qp", str(self.spec.quality),
                "-threads", str(int(o["threads"])), "-vvenc-params", ":".join(params)]

    def planes_bytes(self, planes) -> bytes:
        return b"".join(to_10bit(p) for p in planes)

    def samples(self, buf: bytes) -> np.ndarray:
        return from_10bit(buf)

    def encoder_error(self, err: RdflowError) -> RdflowError:
        return with_hint(err)

    def encoder_info(self, log: str) -> dict:
        m = re.search(r"libvvenc version: (\S+)", log)
        notices = re.findall(r"^(?:\[libvvenc[^\]]*\] )?(?:vvenc \[notice\]: )?([A-Z][\w ()/-]*?)"
                             r"\s{2,}: (.+?)\s*$", log, flags=re.M)
        return {"version": f"VVenC {m.group(1)}" if m else "VVenC (version not reported)",
                "options": "; ".join(f"{k.strip()}={v}" for k, v in notices
                                     if "output" not in k and k != "Frame index")}

    def version_text(self) -> str:
        return f"{self._last_info.get('version', 'VVenC')} via ffmpeg {ffmpeg_version(self.exe)}"
