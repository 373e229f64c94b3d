"""Stage video_codecs: sequence-level video codecs (x264, x265 via ffmpeg; CompressAI's ssf2020;
:mod:`rdflow.codecs.sequence`).

The per-frame video study codes every frame on its own with image codecs. These codecs code the
selected frames of a sequence as ONE bitstream with inter-frame prediction, so their unit of
work is one (sequence, codec, quality) job (rule ``compress_sequence``) that writes the
bitstream file (``paths.SEQUENCE_BITSTREAM``) and a JSON list of per-frame rows
(``paths.SEQUENCE_ROWS``), which ``aggregate_video`` puts in the sequence's video CSV beside the
image codecs' frame rows. The rows are built by :mod:`rdflow.rows`, as every other coding path's.

When a later stage reads them (VMAF of the video study, detection) or ``keep_reconstructions``
is set, the job also writes the decoded frames it measured (``paths.SEQUENCE_RECON``, temp()
otherwise): raw frames in the codec's ``domain``, in the order of the selected frames — I420
planes for a codec that codes 4:2:0 (x264, x265, ...), packed RGB24 for one that codes RGB
(ssf2020). :func:`recon_frames` reads them back as 4:2:0 planes (VMAF) or RGB (detection) with
the very conversion the rows' psnr_y/u/v and psnr_rgb used, so every per-frame stage sees the
reconstruction the rows measured.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import time
from pathlib import Path

import numpy as np

from .. import RdflowError, paths, rows
from ..codecs import CODECS, CodecSpec, build
from ..codecs.sequence import Clip
from ..sources.sequences import frame_selection, frames as frame_list, probe_sequence, sequences

log = logging.getLogger("rdflow.video_codecs")

SECTION = "video_codecs"


def video_codec_configs(config: dict) -> dict:
    return config.get("video_codecs") or {}


def codec_class(config: dict, codec: str):
    """The class of ``video_codecs.<codec>`` (checked to be a sequence codec at start)."""
    return CODECS[video_codec_configs(config)[codec]["kind"]]


def applies(config: dict, codec: str, sequence: str) -> bool:
    only = video_codec_configs(config)[codec].get("sequences")
    return not only or sequence in only


def weights_file(config: dict, codec: str, quality: int | str) -> str | None:
    """The weights file a job of (``codec``, ``quality``) reads (an input of the rule), or None."""
    c = video_codec_configs(config)[codec]
    return codec_class(config, codec).weights_file(config, codec, c, quality)


def item_inputs(config: dict, codec: str, quality: int | str, sequence: str) -> list[str]:
    """Files a (sequence, codec, quality) job reads besides the source (asked of the class)."""
    c = video_codec_configs(config)[codec]
    return codec_class(config, codec).item_inputs(config, codec, c, int(quality), {"sequence": sequence})


def job_threads(config: dict, codec: str) -> int:
    """Threads a compress_sequence job of ``codec`` declares (asked of its class)."""
    return codec_class(config, codec).job_threads(video_codec_configs(config)[codec])


def uses_gpu(config: dict, codec: str) -> bool:
    """Whether a compress_sequence job of ``codec`` asks for a GPU (``resources: gpu=1``)."""
    return codec_class(config, codec).uses_gpu(video_codec_configs(config)[codec], config["device"])


def sequence_rows(config: dict, sequence: str) -> list[str]:
    """The per-(codec, quality) row files (JSON lists of frame rows) of one sequence."""
    return [paths.SEQUENCE_ROWS.format(sequence=sequence, codec=name, quality=q)
            for name, c in sorted(video_codec_configs(config).items()) if applies(config, name, sequence)
            for q in c["qualities"]]


def points(config: dict) -> list[tuple[str, str, int]]:
    """(sequence, codec, quality) of every compress_sequence job (sequences sorted, then codecs)."""
    return [(s, name, int(q)) for s in sorted(sequences(config))
            for name, c in sorted(video_codec_configs(config).items()) if applies(config, name, s)
            for q in c["qualities"]]


def is_sequence_codec(config: dict, codec: str) -> bool:
    """Whether ``codec`` names a ``video_codecs`` entry (one bitstream per sequence)."""
    return codec in video_codec_configs(config)


def recon_path(sequence: str, codec: str, quality) -> str:
    """The decoded frames of one (sequence, codec, quality) job (``paths.SEQUENCE_RECON``)."""
    return paths.SEQUENCE_RECON.format(sequence=sequence, codec=codec, quality=quality)


def targets(config: dict) -> list[str]:
    """Every row file (so that a deleted one is redone); tables come from the aggregate stage."""
    return [r for s in sorted(sequences(config)) for r in sequence_rows(config, s)]


def downloads(config: dict) -> list[str]:
    """The weights files the sequence codecs fetch (asked of each codec class)."""
    out = []
    for name, c in sorted(video_codec_configs(config).items()):
        out += codec_class(config, name).downloads(config, name, c)
    return out


def check(config: dict) -> None:
    """Parse-time checks of ``video_codecs`` (errors name the key, the value and the fix)."""
    image_codecs = config.get("codecs") or {}
    seqs = sequences(config)
    kinds = sorted(k for k, v in CODECS.items() if v.medium == "sequence")
    for name, c in video_codec_configs(config).items():
        where = f"video_codecs.{name}"
        if name in image_codecs:
            raise RdflowError(f"{where}: the name {name!r} is also under codecs; the codec column "
                              "of the video CSV would mix them: rename one")
        kind = c.get("kind")
        if kind not in CODECS:
            raise RdflowError(f"{where}.kind: unknown kind {kind!r}; known: {', '.join(kinds)}")
        cls = CODECS[kind]
        if cls.medium != "sequence":
            raise RdflowError(f"{where}.kind: {kind} codes one picture at a time; put it under codecs "
                              f"(video.codecs then codes every frame with it), or use a sequence "
                              f"codec kind here: {', '.join(kinds)}")
        lo, hi = cls.quality_range
        bad = [q for q in c["qualities"] if not lo <= q <= hi]
        if bad:
            raise RdflowError(f"{where}.qualities: {bad} out of range for {kind} "
                              f"({cls.quality_meaning}); allowed {lo}–{hi}")
        unknown = [s for s in c.get("sequences") or [] if s not in seqs]
        if unknown:
            raise RdflowError(f"{where}.sequences names {unknown}, which are not under "
                              f"video.sequences ({', '.join(sorted(seqs)) or 'none'})")
        cls.check_entry(config, name, c, where=where)


def clip_of(seq, stride: int = 1, frames: list[int] = ()) -> Clip:
    return Clip(width=seq.width, height=seq.height, fps=(seq.fps or 30.0) / max(1, stride),
                matrix=seq.matrix, range=seq.range, chroma_loc=seq.chroma_loc, name=seq.name,
                source_frames=seq.n_frames, frames=tuple(int(f) for f in frames))


def codec_spec(config: dict, codec: str, quality: int, weights_path: str | None = None) -> CodecSpec:
    from ..codecs import codec_spec as spec_of

    return spec_of(config, codec, quality, weights_path, section="video_codecs")


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


# -- the job --------------------------------------------------------------------------------------
def sequence_job(*, config: dict, sequence: str, codec: str, quality: int, seq_path: str,
                 bitstream: str, out_json: str, weights_path: str | None = None,
                 threads: int = 1, recon: str | None = None) -> list[dict]:
    """Code the selected frames of one sequence with one video codec operating point; write the
    bitstream file, decode it FROM THE FILE, and write one row per frame (a JSON list) and, with
    ``recon``, the decoded frames (raw, in the codec's domain: :func:`recon_frames`).

    A decoder that returns more or fewer frames than were coded, or frames of another size, is
    an error: no row and no reconstruction are written.

    Distortion: psnr_y/u/v compare 4:2:0 planes (x264/x265: the decoded planes; ssf2020: its RGB
    output converted to 4:2:0 with the sequence's matrix, range and siting, as the per-frame
    study does); psnr_rgb/ms_ssim compare RGB (the source converted with the sequence's
    conversion; x264/x265's decoded planes converted the same way).
    """
    from ..io import write_json
    from ..runtime import import_stack

    import_stack()
    seq = probe_sequence(config, sequence, seq_path)
    idx = frame_list(config, sequence)
    clip = clip_of(seq, frame_selection(config, sequence)["stride"], idx)
    spec = codec_spec(config, codec, quality, weights_path)
    if CODECS[spec.kind].uses_torch:
        from ..runtime import set_torch_threads

        threads = set_torch_threads(threads)
    c = build(spec)
    log.info("coding %s (%d frames, %dx%d) with %s q%s", sequence, len(idx), clip.width, clip.height,
             codec, quality)
    enc, data = _encode_to_file(c, _source(c, seq, idx), clip, bitstream)
    dec_total = c.decode_seconds(data, clip)
    decoded = _Timed(c.decode(data, clip))
    measured = _measure(config, c, seq, idx, decoded, enc, recon, bitstream)
    dec_times = [dec_total / len(idx)] * len(idx) if dec_total is not None else decoded.times
    out = _rows(sequence, codec, spec.kind, int(quality), idx, measured, enc, len(data), dec_times,
                clip, seq, threads, c)
    if enc.recon_md5 is not None and not all(r["recon_match"] for r in out):
        bad = [r["frame"] for r in out if not r["recon_match"]]
        log.warning("%s: decoder reconstructions differ from the encoder's on frames %s (encoder/"
                    "decoder drift)", codec, bad)
    for r in out:
        rows.warn_infinite(r, f"frame {r['frame']}")
    write_json(out_json, out)
    log.info("seq_bpp=%.4f mean psnr_rgb=%.3f psnr_y=%.3f enc_s=%.2f dec_s=%.2f", out[0]["seq_bpp"],
             float(np.mean([r.get("psnr_rgb", math.nan) for r in out])),
             float(np.mean([r["psnr_y"] for r in out])), enc.enc_s, out[0]["seq_dec_s"])
    return out


def _conv(seq) -> dict:
    return dict(matrix=seq.matrix, range=seq.range, chroma_loc=seq.chroma_loc)


def _source(c, seq, idx):
    """The selected frames in the codec's domain: 4:2:0 planes, or RGB by the sequence's own
    conversion."""
    from ..metrics.yuv import yuv420_to_rgb
    from ..sources.video import read_frame

    for f in idx:
        planes = read_frame(seq, f)
        yield planes if c.domain == "yuv420" else yuv420_to_rgb(*planes, **_conv(seq))


def _encode_to_file(c, frames, clip: Clip, bitstream: str):
    """Encode, write the bitstream file and read it back: (Encoded, the bytes on disk)."""
    from ..io import write_bytes

    enc = c.encode(frames, clip)
    write_bytes(bitstream, enc.data)
    data = Path(bitstream).read_bytes()  # decode what is on disk, every byte of it
    if len(data) != len(enc.data):
        raise RdflowError(f"{bitstream}: {len(data)} bytes on disk, {len(enc.data)} written")
    return enc, data


def _measure(config: dict, c, seq, idx: list[int], decoded, enc, recon: str | None = None,
             bitstream: str = "") -> list[dict]:
    """Distortion of each decoded frame against its source (and, for a codec that reports its
    own reconstructions, whether the decoder's match them); with ``recon``, each decoded frame
    is written there as it comes (the file appears only when every frame was decoded)."""
    from ..metrics.yuv import yuv420_to_rgb
    from ..sources.video import read_frame

    conv = _conv(seq)
    out = []
    with _recon_writer(recon) as fh:
        for i, (f, rec) in enumerate(zip(idx, decoded)):
            _check_decoded(c, rec, seq, f)
            planes = read_frame(seq, f)
            src_rgb = yuv420_to_rgb(*planes, **conv)
            rec_planes, rec_rgb = as_planes(c.domain, rec, conv), as_rgb(c.domain, rec, conv)
            m = rows.distortion(config, src_rgb, rec_rgb, planes, rec_planes)
            if enc.recon_md5 is not None:
                m["recon_match"] = hashlib.md5(rec.tobytes()).hexdigest() == enc.recon_md5[i]
            out.append(m)
            if fh is not None:
                fh.write(_frame_bytes(c.domain, rec))
        for _ in decoded:  # more frames than coded: consume to report it
            raise RdflowError(f"video_codecs.{c.spec.name}: the decoder returned more frames than "
                              f"the {len(idx)} coded ({bitstream})")
        if len(out) != len(idx):
            raise RdflowError(f"video_codecs.{c.spec.name}: decoded {len(out)} frames of the "
                              f"{len(idx)} coded ({bitstream})")
    return out


# -- the decoded frames, for VMAF and detection -----------------------------------------------
def as_planes(domain: str, rec, conv: dict):
    """A decoded frame as 4:2:0 planes: a 4:2:0 codec's own, an RGB codec's output converted
    with the sequence's ``conv`` (matrix, range, chroma_loc), as the rows' psnr_y/u/v saw it."""
    from ..metrics.yuv import rgb_to_yuv420

    return tuple(rec) if domain == "yuv420" else rgb_to_yuv420(rec, **conv)


def as_rgb(domain: str, rec, conv: dict):
    """A decoded frame as 8-bit RGB, as the rows' psnr_rgb / ms_ssim saw it."""
    from ..metrics.yuv import yuv420_to_rgb

    return yuv420_to_rgb(*rec, **conv) if domain == "yuv420" else rec


def _frame_size(domain: str, width: int, height: int) -> int:
    """Bytes of one raw frame of the reconstruction file."""
    return width * height * 3 // 2 if domain == "yuv420" else width * height * 3


def _frame_bytes(domain: str, rec) -> bytes:
    if domain == "yuv420":
        return b"".join(np.ascontiguousarray(p, dtype=np.uint8).tobytes() for p in rec)
    return np.ascontiguousarray(rec, dtype=np.uint8).tobytes()


def _unpack(domain: str, buf: bytes, w: int, h: int):
    a = np.frombuffer(buf, dtype=np.uint8)
    if domain != "yuv420":
        return a.reshape(h, w, 3)
    ys, cs = w * h, (w // 2) * (h // 2)
    return (a[:ys].reshape(h, w), a[ys:ys + cs].reshape(h // 2, w // 2),
            a[ys + cs:].reshape(h // 2, w // 2))


def _check_decoded(c, rec, seq, frame: int) -> None:
    """A decoded frame must have the source's size (in the codec's domain)."""
    w, h = seq.width, seq.height
    want = ([(h, w), (h // 2, w // 2), (h // 2, w // 2)] if c.domain == "yuv420" else [(h, w, 3)])
    got = ([np.shape(p) for p in rec] if c.domain == "yuv420" and isinstance(rec, (tuple, list))
           else [np.shape(rec)])
    if got != want:
        raise RdflowError(f"video_codecs.{c.spec.name}: decoded frame {frame} has shape(s) {got}, "
                          f"the {w}x{h} source needs {want} ({c.domain})")


@contextlib.contextmanager
def _recon_writer(path: str | None):
    if path is None:
        yield None
        return
    from ..io import atomic_open

    with atomic_open(path, "wb") as fh:
        yield fh


def recon_frames(config: dict, sequence: str, codec: str, path, *, as_: str = "planes",
                 seq_path: str | None = None):
    """Yield ``(frame index, frame)`` of the decoded frames a compress_sequence job wrote to
    ``path`` (:func:`recon_path`), as 4:2:0 planes (``as_="planes"``) or RGB (``"rgb"``),
    converted exactly as the job measured them. A file that does not hold the selected frames
    at the source's size is an error naming it."""
    seq = probe_sequence(config, sequence, seq_path)
    idx = frame_list(config, sequence)
    domain = codec_class(config, codec).domain
    size = _frame_size(domain, seq.width, seq.height)
    got = Path(path).stat().st_size
    if got != size * len(idx):
        raise RdflowError(
            f"{path}: {got} bytes, but {len(idx)} decoded {seq.width}x{seq.height} frames "
            f"({domain}) of {sequence} {codec} are {size * len(idx)} bytes; delete it and rerun "
            f"(snakemake makes it again with its compress_sequence job)")
    convert = as_planes if as_ == "planes" else as_rgb
    conv = _conv(seq)
    with open(path, "rb") as fh:
        for f in idx:
            yield f, convert(domain, _unpack(domain, fh.read(size), seq.width, seq.height), conv)


def _rows(sequence, codec, kind, quality, idx, measured, enc, seq_bytes, dec_times, clip, seq,
          threads, c) -> list[dict]:
    """One row per coded frame: keys, rate (the frame's bytes + an equal share of the file's
    bytes that belong to no frame), distortion, timing, the sequence's totals, what ran."""
    n = len(idx)
    w, h = clip.width, clip.height
    header_share = enc.header_bytes / n
    types = enc.frame_types or getattr(c, "decoded_types", [])
    desc = c.describe()
    out = []
    for i, f in enumerate(idx):
        keys = {"sequence": sequence, "codec": codec, "quality": quality, "frame": int(f),
                "kind": kind, "coding": "sequence"}
        seq_cols = {
            "frame_type": types[i] if i < len(types) else None,
            "enc_s": enc.frame_enc_s[i] if enc.frame_enc_s else enc.enc_s / n,
            "dec_s": dec_times[i],
            "seq_enc_s": enc.enc_s, "seq_dec_s": float(sum(dec_times)),
            "seq_bytes": seq_bytes, "seq_bpp": seq_bytes * 8.0 / (w * h * n), "n_frames": n,
            "fps": clip.fps, "matrix": seq.matrix, "range": seq.range, "threads": threads,
        }
        out.append(rows.build(keys, rows.rate(enc.frame_bytes[i] + header_share, w, h, header_share),
                              {"frame_bytes": enc.frame_bytes[i]}, measured[i], seq_cols,
                              describe=desc))
    return out
