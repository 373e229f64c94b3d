"""One coding job: encode an image, write the bitstream, decode it from the file, measure.

This is the unit of caching of the workflow: one (dataset, codec, quality, image) or one
(sequence, codec, quality, frame). The row it writes is one line of the tidy CSV.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import metrics as M
from .codecs import CodecSpec, get_cached
from .io import write_bytes, write_json

log = logging.getLogger("rdflow.coding")


@dataclass
class Coded:
    data: bytes
    recon: np.ndarray
    enc_s: float
    dec_s: float


def code(codec, rgb: np.ndarray, bitstream_path: str | Path | None = None) -> Coded:
    """Encode, (write the bitstream atomically and read it back,) decode; time both halves.

    Timings exclude file I/O; the codec synchronises the device before returning.
    """
    t0 = time.perf_counter()
    data = codec.encode(rgb)
    enc_s = time.perf_counter() - t0
    if bitstream_path is not None:
        write_bytes(bitstream_path, data)
        data = Path(bitstream_path).read_bytes()  # decode what is on disk, every byte of it
    t0 = time.perf_counter()
    recon = codec.decode(data)
    codec.synchronize()
    dec_s = time.perf_counter() - t0
    if recon.shape != rgb.shape or recon.dtype != np.uint8:
        raise RuntimeError(
            f"{codec.spec.name} decoded {recon.shape} {recon.dtype}, expected {rgb.shape} uint8"
        )
    return Coded(data, recon, enc_s, dec_s)


def codec_spec(config: dict, codec: str, quality: int, weights_path: str | None = None) -> CodecSpec:
    c = dict(config["codecs"][codec])
    options = {k: v for k, v in c.items() if k not in ("kind", "qualities", "datasets")}
    if weights_path:
        options["weights_path"] = str(weights_path)
    return CodecSpec(name=codec, kind=c["kind"], quality=int(quality), options=options,
                     device=config.get("device", "auto"))


def process_memory() -> dict:
    """RSS of this process (and CUDA memory when torch uses a GPU), cheap to read per job.

    Coding jobs run in threads of one process, so this is the process's footprint after the
    job: it shows whether memory stays flat over a long run, not what one codec needs.
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


def row_for(codec, coded: Coded, rgb: np.ndarray, metric_names: list[str]) -> dict:
    h, w = rgb.shape[:2]
    n_bytes = len(coded.data)
    row = {
        "height": h,
        "width": w,
        "bytes": n_bytes,
        "header_bytes": codec.header_bytes(coded.data),
        "bpp": n_bytes * 8.0 / (h * w),
    }
    row.update(M.compute(rgb, coded.recon, metric_names))
    row.update({"enc_s": coded.enc_s, "dec_s": coded.dec_s})
    row.update(process_memory())
    return row


def image_job(*, config: dict, dataset: str, image: str, codec: str, quality: int,
              image_path: str, bitstream: str, out_json: str, recon: str | None = None,
              weights_path: str | None = None, sha256: str | None = None, threads: int = 1) -> dict:
    """Code one image with one codec operating point; write its bitstream, JSON row and (for
    later stages: VMAF, detection) the 8-bit reconstruction as a PNG."""
    from .runtime import import_stack

    import_stack()
    from .datasets import read_image
    from .download import verify

    spec = codec_spec(config, codec, quality, weights_path)
    if sha256:
        verify(image_path, sha256, what=f"image {image} of dataset {dataset}")
    img = read_image(image_path)
    if spec.kind == "learned":
        from .runtime import set_torch_threads

        threads = set_torch_threads(threads)
    c = get_cached(spec)
    log.info("coding %s/%s with %s q%s on %s", dataset, image, codec, quality, spec.device)
    coded = code(c, img.rgb, bitstream)
    row = {"dataset": dataset, "codec": codec, "quality": int(quality), "image": image}
    row.update(row_for(c, coded, img.rgb, config.get("metrics", ["psnr_rgb", "ms_ssim"])))
    row.update({"source_mode": img.source_mode, "threads": threads, "kind": spec.kind})
    row.setdefault("device", "cpu")
    row.update(c.describe())
    for k, v in list(row.items()):
        if isinstance(v, float) and math.isinf(v):
            log.warning("%s is infinite for %s (lossless reconstruction)", k, image)
    if recon:
        write_png(recon, coded.recon)
    write_json(out_json, row)
    log.info("bpp=%.4f psnr_rgb=%.3f enc_s=%.3f dec_s=%.3f", row["bpp"], row.get("psnr_rgb", math.nan),
             row["enc_s"], row["dec_s"])
    return row


def frame_job(*, config: dict, sequence: str, frame: int, codec: str, quality: int,
              seq_path: str, bitstream: str, out_json: str, recon: str | None,
              weights_path: str | None = None, threads: int = 1) -> dict:
    """Code one frame of a sequence: YUV 4:2:0 -> RGB, encode, write, decode, measure.

    psnr_rgb/ms_ssim compare the RGB frame with the 8-bit RGB reconstruction; psnr_y/u/v compare
    the source planes with the reconstruction converted back to 4:2:0 with the sequence's own
    matrix, range and chroma siting. The reconstruction is written as a PNG (a temp() output of
    the rule) for the stages that need it (VMAF, detection).
    """
    from .runtime import import_stack

    import_stack()
    from .sequences import probe_sequence
    from .video import read_frame
    from .yuv import psnr_yuv, rgb_to_yuv420, yuv420_to_rgb

    seq = probe_sequence(config, sequence, seq_path)
    conv = dict(matrix=seq.matrix, range=seq.range, chroma_loc=seq.chroma_loc)
    planes = read_frame(seq, frame)
    rgb = yuv420_to_rgb(*planes, **conv)
    spec = codec_spec(config, codec, quality, weights_path)
    if spec.kind == "learned":
        from .runtime import set_torch_threads

        threads = set_torch_threads(threads)
    c = get_cached(spec)
    log.info("coding %s frame %d with %s q%s on %s", sequence, frame, codec, quality, spec.device)
    coded = code(c, rgb, bitstream)
    row = {"sequence": sequence, "codec": codec, "quality": int(quality), "frame": int(frame)}
    row.update(row_for(c, coded, rgb, config.get("metrics", ["psnr_rgb", "ms_ssim"])))
    row.update(psnr_yuv(planes, rgb_to_yuv420(coded.recon, **conv)))
    row.update({"threads": threads, "kind": spec.kind, "matrix": seq.matrix, "range": seq.range})
    row.setdefault("device", "cpu")
    row.update(c.describe())
    if recon:
        write_png(recon, coded.recon)
    write_json(out_json, row)
    log.info("bpp=%.4f psnr_rgb=%.3f psnr_y=%.3f", row["bpp"], row.get("psnr_rgb", math.nan), row["psnr_y"])
    return row


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """Lossless 8-bit RGB PNG, fast compression (an intermediate, not an archive)."""
    import cv2

    from .io import atomic_path

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError(f"could not encode {path} as PNG")
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(buf.tobytes())


def read_png(path: str | Path) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise RuntimeError(f"cannot read {path}")
    return np.ascontiguousarray(bgr[..., ::-1])
