"""Stage video_codecs: sequence-level video codecs (x264, x265 via ffmpeg; CompressAI's ssf2020;
:mod:`rdflow.codecs.sequence`).

The per-frame video study codes every frame on its own with image codecs. These codecs code the
selected frames of a sequence as ONE bitstream with inter-frame prediction, so their unit of
work is one (sequence, codec, quality) job (rule ``compress_sequence``) that writes the
bitstream file (``paths.SEQUENCE_BITSTREAM``) and a JSON list of per-frame rows
(``paths.SEQUENCE_ROWS``), which ``aggregate_video`` puts in the sequence's video CSV beside the
image codecs' frame rows. The rows are built by :mod:`rdflow.rows`, as every other coding path's.
"""

from __future__ import annotations

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


def clip_of(seq, stride: int = 1) -> Clip:
    return Clip(width=seq.width, height=seq.height, fps=(seq.fps or 30.0) / max(1, stride),
                matrix=seq.matrix, range=seq.range, chroma_loc=seq.chroma_loc)


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
                 threads: int = 1) -> list[dict]:
    """Code the selected frames of one sequence with one video codec operating point; write the
    bitstream file, decode it FROM THE FILE, and write one row per frame (a JSON list).

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
    clip = clip_of(seq, frame_selection(config, sequence)["stride"])
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
    measured = _measure(config, c, seq, idx, decoded, enc)
    if len(measured) != len(idx):
        raise RdflowError(f"video_codecs.{codec}: decoded {len(measured)} frames of the {len(idx)} coded "
                          f"({bitstream})")
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


def _measure(config: dict, c, seq, idx: list[int], decoded, enc) -> list[dict]:
    """Distortion of each decoded frame against its source (and, for a codec that reports its
    own reconstructions, whether the decoder's match them)."""
    from ..metrics.yuv import rgb_to_yuv420, yuv420_to_rgb
    from ..sources.video import read_frame

    conv = _conv(seq)
    out = []
    for i, (f, rec) in enumerate(zip(idx, decoded)):
        planes = read_frame(seq, f)
        src_rgb = yuv420_to_rgb(*planes, **conv)
        if c.domain == "yuv420":
            rec_planes, rec_rgb = rec, yuv420_to_rgb(*rec, **conv)
        else:
            rec_planes, rec_rgb = rgb_to_yuv420(rec, **conv), rec
        m = rows.distortion(config, src_rgb, rec_rgb, planes, rec_planes)
        if enc.recon_md5 is not None:
            m["recon_match"] = hashlib.md5(rec.tobytes()).hexdigest() == enc.recon_md5[i]
        out.append(m)
    for _ in decoded:  # more frames than coded: consume to report it
        raise RdflowError(f"video_codecs.{c.spec.name}: the decoder returned more frames than the "
                          f"{len(idx)} coded")
    return out


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
