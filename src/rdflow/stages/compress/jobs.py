"""The coding stage's jobs: code one item (:func:`code`), one image or frame with its row
(:func:`image_job`, :func:`frame_job`), and one batch of them (:func:`image_batch_job`,
:func:`frame_batch_job`), whose folders appear complete or not at all."""

from __future__ import annotations

import logging
import math
import shutil
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ... import RdflowError, rows
from ...codecs import codec_class, codec_spec, get_cached
from ...io import write_bytes, write_json, write_png

log = logging.getLogger("rdflow.compress")


@dataclass
class Coded:
    data: bytes
    recon: np.ndarray
    enc_s: float
    dec_s: float


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
    from ...runtime import import_stack, set_torch_threads

    spec = codec_spec(config, codec, quality, weights_path)
    cls = codec_class(spec.kind)
    if cls.uses_torch:
        import_stack()
        threads = set_torch_threads(threads)
    return get_cached(spec), spec, threads


def _finish(row: dict, c, coded: Coded, item: str, recon, out_json: str) -> dict:
    """Complete the row, store the reconstruction (``recon``: a PNG path, a function that stores
    it in a batch's archive, or None), write the row."""
    row.update({"enc_s": coded.enc_s, "dec_s": coded.dec_s})
    row.update(process_memory())
    row.update(c.describe())
    rows.warn_infinite(row, item)
    if callable(recon):  # a batch's archive
        recon(coded.recon)
    elif recon:
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
    from ...download import verify
    from ...sources.datasets import read_image

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
    from ...metrics.yuv import rgb_to_yuv420, yuv420_to_rgb
    from ...sources.sequences import probe_sequence
    from ...sources.video import read_frame

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
@contextmanager
def staged_folder(folder: str | None):
    """Yield ``<folder>.partial`` (emptied) to write a batch into; when the block completes,
    it replaces ``folder`` (Snakemake made it empty) in one rename, so a folder under its own
    name always holds a whole batch; a failed block removes it. ``None`` yields ``None``."""
    if folder is None:
        yield None
        return
    final = Path(folder)
    part = final.with_name(final.name + ".partial")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    try:
        yield part
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)  # a failed batch leaves none of its items
        raise
    if final.exists():
        shutil.rmtree(final)
    part.rename(final)


@contextmanager
def staged_archive(path: str | None):
    """Yield a function ``add(member, rgb)`` that stores a reconstruction as ``<member>`` (PNG)
    in a zip archive written under a temporary name and renamed to ``path`` when the block
    completes (removed if it fails). ``None`` yields ``None``."""
    if path is None:
        yield None
        return
    import zipfile

    from ...io import atomic_path, png_bytes

    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        yield lambda member, rgb: zf.writestr(member, png_bytes(rgb, f"{path}/{member}"))


def _batch(what: str, items: list, outputs: dict, log_path: str | None, code_one) -> None:
    """Code ``items`` one after another with ``code_one(i, item, bitstream, row, recon)`` into
    the staged ``outputs`` (``batch``: the folder of bitstreams and rows; ``recons``: the archive
    of reconstructions, or None); ``recon`` stores one item's reconstruction (or is None)."""
    from ...runtime import job_log

    with job_log(log_path), ExitStack() as stack:
        out = stack.enter_context(staged_folder(outputs["batch"]))
        add = stack.enter_context(staged_archive(outputs.get("recons")))
        log.info("coding %d %s", len(items), what)
        for i, item in enumerate(items):
            recon = (lambda rgb, m=f"{item}.png": add(m, rgb)) if add is not None else None
            code_one(i, item, str(out / f"{item}.bin"), str(out / f"{item}.json"), recon)
        log.info("coded %d items into %s", len(items), outputs["batch"])


def image_batch_job(*, config: dict, dataset: str, codec: str, quality: int, images: list[str],
                    inputs: list[str], outputs: dict, weights_path: str | None = None,
                    sha256: list | None = None, threads: int = 1, log_path: str | None = None) -> None:
    """Code ``images`` (read from ``inputs``, in the same order) into the batch folders
    ``outputs["batch"]`` and ``outputs["recons"]`` (None: no reconstructions). Logs to
    ``log_path``."""
    sha256 = sha256 or [None] * len(images)

    def one(i, image, bitstream, out_json, recon):
        image_job(config=config, dataset=dataset, image=image, codec=codec, quality=quality,
                  image_path=inputs[i], bitstream=bitstream, out_json=out_json, recon=recon,
                  weights_path=weights_path, sha256=sha256[i], threads=threads)

    _batch(f"images of {dataset} with {codec} q{quality}", images, outputs, log_path, one)


def frame_batch_job(*, config: dict, sequence: str, codec: str, quality: int, frames: list[int],
                    seq_path: str, outputs: dict, weights_path: str | None = None,
                    threads: int = 1, log_path: str | None = None) -> None:
    """Code ``frames`` of ``sequence`` one after another (outputs as for images)."""
    def one(i, frame, bitstream, out_json, recon):
        frame_job(config=config, sequence=sequence, frame=int(frame), codec=codec,
                  quality=quality, seq_path=seq_path, bitstream=bitstream, out_json=out_json,
                  recon=recon, weights_path=weights_path, threads=threads)

    _batch(f"frames of {sequence} with {codec} q{quality}", frames, outputs, log_path, one)


def sources_job(*, dataset: str, images: list[str], inputs: list[str], sha256: list,
                out: str) -> None:
    """Rule image_batch_sources: check the source images of one batch (present, the pinned
    SHA-256 where the dataset has one) and list them with their size and SHA-256."""
    from ...download import sha256_file, verify

    listed = []
    for image, path, pinned in zip(images, inputs, sha256):
        digest = verify(path, pinned, what=f"image {image} of dataset {dataset}") or sha256_file(path)
        listed.append({"image": image, "path": path, "bytes": Path(path).stat().st_size,
                       "sha256": digest})
    write_json(out, listed)
