"""Stage compress: code every (dataset | sequence, codec, quality, item) — the unit of caching.

Each item gets its own outputs: the bitstream (``.bin``), its row (``.json``, one line of the
tidy CSV) and the 8-bit reconstruction (``.png``) for VMAF and detection. A *job* codes a
batch of up to ``batch_size`` items of one dataset or sequence with one (codec, quality) and
writes each item's outputs as it goes: start-up (interpreter, torch, model, and on SLURM the
job's own Snakemake) is paid once per batch, not per item, while a deleted or invalidated item
reruns only its batch. The batches are fixed by the study alone (the items in sorted order,
cut every ``batch_size``), so a submitting and a remote Snakemake agree on them.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import RdflowError, paths, rows
from ..codecs import codec_class, codec_spec, get_cached  # noqa: F401  (codec_spec: for callers)
from ..config import codec_applies, dataset_images
from ..io import write_bytes, write_json, write_png

log = logging.getLogger("rdflow.compress")

SECTION = "codecs"
#: its targets are the per-item rows (rdflow.study.all_targets(items=False) leaves them out)
ITEM_TARGETS = True


@dataclass
class Coded:
    data: bytes
    recon: np.ndarray
    enc_s: float
    dec_s: float


# -- the study: items and batches -----------------------------------------------------------
def batch_size(config: dict) -> int:
    return int(config.get("batch_size") or 32)


def batches(items: list, size: int) -> list[list]:
    """``items`` cut into consecutive batches of ``size`` (the last one may be shorter)."""
    return [items[i:i + size] for i in range(0, len(items), size)]


def image_codecs(config: dict, dataset: str) -> list[str]:
    return [c for c in sorted(config["codecs"]) if codec_applies(config, c, dataset)]


def image_batches(config: dict, dataset: str) -> list[list[str]]:
    return batches(sorted(dataset_images(config, dataset)), batch_size(config))


def frame_batches(config: dict, sequence: str) -> list[list[int]]:
    from ..sources.sequences import frames

    return batches(sorted(frames(config, sequence)), batch_size(config))


def image_jobs(config: dict) -> list[tuple[str, str, int, int, list[str]]]:
    """(dataset, codec, quality, batch index, images) of every image coding job."""
    return [(d, c, int(q), b, images) for d in sorted(config.get("datasets") or {})
            for c in image_codecs(config, d) for q in config["codecs"][c]["qualities"]
            for b, images in enumerate(image_batches(config, d))]


def frame_jobs(config: dict) -> list[tuple[str, str, int, int, list[int]]]:
    """(sequence, codec, quality, batch index, frames) of every per-frame coding job."""
    from ..sources.sequences import sequences, video_codecs

    return [(s, c, int(q), b, frames) for s in sorted(sequences(config)) for c in video_codecs(config)
            for q in config["codecs"][c]["qualities"] for b, frames in enumerate(frame_batches(config, s))]


def item_inputs(config: dict, codec: str, quality: int, key: str, items: list, **fixed) -> list[str]:
    """Files a batch's codec reads per item besides the source (asked of the codec class)."""
    c = config["codecs"][codec]
    cls = codec_class(c["kind"])
    return [f for i in items for f in cls.item_inputs(config, codec, c, int(quality), {**fixed, key: i})]


def item_files(pattern: str, ext: str, **keys) -> str:
    return pattern.format(**keys) + ext


def image_rows(config: dict, dataset: str) -> list[str]:
    images = sorted(dataset_images(config, dataset))
    return [item_files(paths.IMAGE_ITEM, ".json", dataset=dataset, codec=c, quality=q, image=i)
            for c in image_codecs(config, dataset) for q in config["codecs"][c]["qualities"]
            for i in images]


def video_rows(config: dict, sequence: str) -> list[str]:
    from ..sources.sequences import frames, video_codecs

    fr = frames(config, sequence)
    return [item_files(paths.FRAME_ITEM, ".json", sequence=sequence, codec=c, quality=q, frame=f)
            for c in video_codecs(config) for q in config["codecs"][c]["qualities"] for f in fr]


def check(config: dict) -> None:
    """Every ``codecs.<name>`` entry: a known image-codec kind, the kind's own checks, qualities
    in range, datasets that exist."""
    from .. import metrics as M
    from ..codecs import CODECS

    unknown = [m for m in config.get("metrics") or [] if m not in M.coding_metrics()]
    if unknown:
        raise RdflowError(f"config key metrics: {unknown} are not metrics a coding job computes; "
                          f"known: {', '.join(M.coding_metrics())} (a plugin can register more)")
    codecs = config.get("codecs") or {}
    if not codecs and not config.get("pairs"):
        raise RdflowError("config key codecs is empty: name at least one codec (see config.yaml), "
                          "or only score existing pairs (pairs:)")
    names = set(config.get("datasets") or {}) | set((config.get("video") or {}).get("sequences") or {})
    for name, c in codecs.items():
        where = f"codecs.{name}"
        cls = codec_class(c.get("kind"), where=f"{where}.kind")
        if cls.medium != "image":
            images = sorted(k for k, v in CODECS.items() if v.medium == "image")
            raise RdflowError(f"{where}.kind: {c['kind']} codes whole sequences; put it under "
                              f"video_codecs, or use an image codec kind here: {', '.join(images)}")
        lo, hi = cls.check_entry(config, name, c, where=where) or cls.quality_range
        bad = [q for q in c["qualities"] if not lo <= q <= hi]
        if bad:
            raise RdflowError(f"{where}.qualities: {bad} out of range for "
                              f"{c.get('architecture', c['kind'])}; allowed values are {lo}–{hi}")
        for d in c.get("datasets", []) or []:
            if d not in names:
                raise RdflowError(f"{where}.datasets names {d!r}, which is not in datasets")


def targets(config: dict) -> list[str]:
    """Every per-item row: Snakemake does not rerun a job for a deleted input when the job's
    own outputs are there (the tables), so the rows themselves are targets and a deleted one is
    redone (with the tables that use it)."""
    return rows_of_study(config)


def rows_of_study(config: dict) -> list[str]:
    """Every per-item row of the study."""
    from ..sources.sequences import sequences

    out = [r for d in sorted(config.get("datasets") or {}) for r in image_rows(config, d)]
    return out + [r for s in sorted(sequences(config)) for r in video_rows(config, s)]


def downloads(config: dict) -> list[str]:
    """The weights files the study's codecs fetch (asked of each codec class)."""
    out = []
    for name, c in sorted(config["codecs"].items()):
        out += codec_class(c["kind"]).downloads(config, name, c)
    return out


# -- one item ---------------------------------------------------------------------------------
def code(codec, rgb: np.ndarray, bitstream_path: str | Path | None = None,
         item: dict | None = None) -> Coded:
    """Encode, (write the bitstream atomically and read it back,) decode; time both halves.

    Timings exclude file I/O; the codec synchronises the device before returning. A codec
    that does not code here (results made elsewhere) reads the item's files: no times (NaN).
    """
    t0 = time.perf_counter()
    data = codec.encode_item(rgb, item or {})
    enc_s = time.perf_counter() - t0
    if bitstream_path is not None:
        write_bytes(bitstream_path, data)
        data = Path(bitstream_path).read_bytes()  # decode what is on disk, every byte of it
    t0 = time.perf_counter()
    recon = codec.decode_item(data, item or {}, rgb.shape)
    codec.synchronize()
    dec_s = time.perf_counter() - t0
    if not codec.codes_here:
        enc_s = dec_s = math.nan
    if recon.shape != rgb.shape or recon.dtype != np.uint8:
        raise RdflowError(
            f"{codec.spec.name} decoded {recon.shape} {recon.dtype}, expected {rgb.shape} uint8")
    return Coded(data, recon, enc_s, dec_s)


def process_memory() -> dict:
    """RSS of this process (and CUDA memory when torch uses a GPU), cheap to read per item.

    Jobs run in threads of one process, so this is the process's footprint after the item: it
    shows whether memory stays flat over a long run, not what one codec needs.
    """
    import sys

    import psutil

    out = {"process_rss_mb": psutil.Process().memory_info().rss / 2**20}
    # another job thread may be importing torch right now: only look at a complete module, and
    # only when CUDA was initialised by a codec (never initialise it from here)
    cuda = getattr(sys.modules.get("torch"), "cuda", None)
    try:
        if cuda is not None and cuda.is_initialized():
            out["process_vram_mb"] = cuda.memory_reserved() / 2**20
    except (AttributeError, RuntimeError):
        pass
    return out


def _open_codec(config: dict, codec: str, quality: int, weights_path, threads: int):
    """The cached codec of (codec, quality) and the threads it runs with."""
    from ..runtime import import_stack, set_torch_threads

    spec = codec_spec(config, codec, quality, weights_path)
    cls = codec_class(spec.kind)
    if cls.uses_torch:
        import_stack()
        threads = set_torch_threads(threads)
    return get_cached(spec), spec, threads


def _finish(row: dict, c, coded: Coded, item: str, recon: str | None, out_json: str) -> dict:
    row.update({"enc_s": coded.enc_s, "dec_s": coded.dec_s})
    row.update(process_memory())
    row.update(c.describe())
    rows.warn_infinite(row, item)
    if recon:
        write_png(recon, coded.recon)
    write_json(out_json, row)
    log.info("%s: bpp=%.4f psnr_rgb=%.3f enc_s=%.3f dec_s=%.3f", item, row["bpp"],
             row.get("psnr_rgb", math.nan), row["enc_s"], row["dec_s"])
    return row


def image_job(*, config: dict, dataset: str, image: str, codec: str, quality: int,
              image_path: str, bitstream: str, out_json: str, recon: str | None = None,
              weights_path: str | None = None, sha256: str | None = None, threads: int = 1) -> dict:
    """Code one image with one codec operating point; write its bitstream, JSON row and (for
    later stages: VMAF, detection) the 8-bit reconstruction as a PNG."""
    from ..download import verify
    from ..sources.datasets import read_image

    c, spec, threads = _open_codec(config, codec, quality, weights_path, threads)
    if sha256:
        verify(image_path, sha256, what=f"image {image} of dataset {dataset}")
    img = read_image(image_path)
    coded = code(c, img.rgb, bitstream, {"dataset": dataset, "image": image})
    h, w = img.rgb.shape[:2]
    row = rows.build({"dataset": dataset, "codec": codec, "quality": int(quality), "image": image},
                     rows.rate(len(coded.data), w, h, c.header_bytes(coded.data)),
                     rows.distortion(config, img.rgb, coded.recon),
                     {**rows.source(img), "threads": threads, "kind": spec.kind})
    return _finish(row, c, coded, f"{dataset}/{image}", recon, out_json)


def frame_job(*, config: dict, sequence: str, frame: int, codec: str, quality: int,
              seq_path: str, bitstream: str, out_json: str, recon: str | None,
              weights_path: str | None = None, threads: int = 1) -> dict:
    """Code one frame of a sequence: YUV 4:2:0 -> RGB, encode, write, decode, measure.

    psnr_rgb/ms_ssim compare the RGB frame with the 8-bit RGB reconstruction; psnr_y/u/v compare
    the source planes with the reconstruction converted back to 4:2:0 with the sequence's own
    matrix, range and chroma siting.
    """
    from ..metrics.yuv import rgb_to_yuv420, yuv420_to_rgb
    from ..sources.sequences import probe_sequence
    from ..sources.video import read_frame

    seq = probe_sequence(config, sequence, seq_path)
    conv = dict(matrix=seq.matrix, range=seq.range, chroma_loc=seq.chroma_loc)
    planes = read_frame(seq, frame)
    rgb = yuv420_to_rgb(*planes, **conv)
    c, spec, threads = _open_codec(config, codec, quality, weights_path, threads)
    coded = code(c, rgb, bitstream, {"sequence": sequence, "frame": int(frame)})
    h, w = rgb.shape[:2]
    row = rows.build({"sequence": sequence, "codec": codec, "quality": int(quality), "frame": int(frame)},
                     rows.rate(len(coded.data), w, h, c.header_bytes(coded.data)),
                     rows.distortion(config, rgb, coded.recon, planes, rgb_to_yuv420(coded.recon, **conv)),
                     {"threads": threads, "kind": spec.kind, "matrix": seq.matrix, "range": seq.range})
    return _finish(row, c, coded, f"{sequence} frame {frame}", recon, out_json)


# -- one batch (a job) ----------------------------------------------------------------------
def image_batch_job(*, config: dict, dataset: str, codec: str, quality: int, images: list[str],
                    inputs: list[str], outputs: dict, weights_path: str | None = None,
                    sha256: list | None = None, threads: int = 1, log_path: str | None = None) -> None:
    """Code ``images`` (with their ``inputs``) one after another; ``outputs`` holds the lists
    ``bitstreams``, ``rows`` and ``recons`` in the same order. Logs to ``log_path``."""
    from ..runtime import job_log

    with job_log(log_path):
        log.info("coding %d images of %s with %s q%s", len(images), dataset, codec, quality)
        for i, image in enumerate(images):
            image_job(config=config, dataset=dataset, image=image, codec=codec, quality=quality,
                      image_path=inputs[i], bitstream=outputs["bitstreams"][i],
                      out_json=outputs["rows"][i], recon=outputs["recons"][i],
                      weights_path=weights_path, sha256=(sha256 or [None] * len(images))[i],
                      threads=threads)


def frame_batch_job(*, config: dict, sequence: str, codec: str, quality: int, frames: list[int],
                    seq_path: str, outputs: dict, weights_path: str | None = None,
                    threads: int = 1, log_path: str | None = None) -> None:
    """Code ``frames`` of ``sequence`` one after another (outputs as for images)."""
    from ..runtime import job_log

    with job_log(log_path):
        log.info("coding %d frames of %s with %s q%s", len(frames), sequence, codec, quality)
        for i, frame in enumerate(frames):
            frame_job(config=config, sequence=sequence, frame=int(frame), codec=codec,
                      quality=quality, seq_path=seq_path, bitstream=outputs["bitstreams"][i],
                      out_json=outputs["rows"][i], recon=outputs["recons"][i],
                      weights_path=weights_path, threads=threads)
