"""One complexity point: a codec operating point measured at one resolution (one row of
:data:`COLUMNS`), the holder of the codec being measured, and the entry points a measuring
worker process serves (:func:`init`, :func:`held_point`, called through
``rdflow.worker.Worker.call("rdflow.measure.points:...")``)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .. import RdflowError
from ..worker import limit_data_memory
from .images import fit_image
from .macs import codec_kmac_per_px, model_size, network_entropy_split, torch_net
from .meters import NAN, free_memory, is_cuda, release_free_memory
from .timing import measure

log = logging.getLogger("rdflow.measure")

#: columns of the complexity table, in order
COLUMNS = [
    "codec", "kind", "quality", "width", "height", "device", "threads", "repeats",
    "enc_s_median", "enc_s_p25", "enc_s_p75", "enc_s_min", "enc_s_max", "enc_s_std",
    "dec_s_median", "dec_s_p25", "dec_s_p75", "dec_s_min", "dec_s_max", "dec_s_std",
    "enc_network_s", "enc_entropy_s", "dec_network_s", "dec_entropy_s",
    "enc_cpu_s", "dec_cpu_s", "cpu_time_s",
    "max_rss_mb", "process_max_rss_mb", "child_max_rss_mb", "enc_child_cpu_s", "dec_child_cpu_s",
    "rss_base_mb", "rss_method", "max_vram_alloc_mb", "max_vram_reserved_mb",
    "params", "model_bytes", "enc_kmac_per_px", "dec_kmac_per_px",
    "bpp", "source", "status", "error",
]


def is_oom(error: str) -> bool:
    e = error.lower()
    return any(k in e for k in ("memoryerror", "allocate", "out of memory", "cannot allocate"))


def error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\r", " ").replace("\n", " ")
    return text[:500]


def spec_device(spec) -> str:
    """The device a spec runs on: its own for a torch codec, else the CPU."""
    from ..codecs.base import codec_class

    return spec.device if codec_class(spec.kind).uses_torch else "cpu"


def base_row(spec, width: int, height: int, device: str, source: str, repeats: int) -> dict:
    row = dict.fromkeys(COLUMNS, NAN)
    row.update(codec=spec.name, kind=spec.kind, quality=spec.quality, width=width, height=height,
               device=device, repeats=repeats, rss_method="", source=source, status="ok", error="")
    return row


def failed_row(spec, width: int, height: int, device: str, source: str, repeats: int,
               error: str) -> dict:
    row = base_row(spec, width, height, device, source, repeats)
    row.update(status="failed", error=error)
    return row


def _threads_of(codec) -> float:
    if torch_net(codec) is not None:
        import torch

        return float(torch.get_num_threads())
    n = getattr(codec, "threads", None)
    return float(n) if n is not None else NAN


def _timing_columns(enc, dec) -> dict:
    row: dict[str, Any] = {}
    for prefix, m in (("enc", enc), ("dec", dec)):
        t = m.timing
        row.update({f"{prefix}_s_median": t.median, f"{prefix}_s_p25": t.p25, f"{prefix}_s_p75": t.p75,
                    f"{prefix}_s_min": t.min, f"{prefix}_s_max": t.max, f"{prefix}_s_std": t.std,
                    f"{prefix}_cpu_s": t.cpu_time, f"{prefix}_child_cpu_s": t.child_cpu_time})
    row["cpu_time_s"] = row["enc_cpu_s"] + row["dec_cpu_s"]
    # the process tree: this process's peak plus its largest encoder/decoder child's (the
    # process waits while the child runs, so the sum bounds what both held at once)
    row["process_max_rss_mb"] = max(enc.rss_peak_mb, dec.rss_peak_mb)
    kids = [m.child_rss_peak_mb for m in (enc, dec) if m.child_rss_peak_mb == m.child_rss_peak_mb]
    row["child_max_rss_mb"] = max(kids) if kids else NAN
    row["max_rss_mb"] = max(m.rss_peak_mb + (m.child_rss_peak_mb if m.child_rss_peak_mb == m.child_rss_peak_mb
                                              else 0.0) for m in (enc, dec))
    row["rss_base_mb"] = enc.rss_base_mb
    row["rss_method"] = enc.rss_method
    if enc.gpu is not None and dec.gpu is not None:
        row["max_vram_alloc_mb"] = max(enc.gpu.alloc_mb, dec.gpu.alloc_mb)
        row["max_vram_reserved_mb"] = max(enc.gpu.reserved_mb, dec.gpu.reserved_mb)
    return row


def _model_columns(codec, rgb: np.ndarray, data: bytes, split_repeats: int, macs: bool) -> dict:
    net = torch_net(codec)
    if net is None:
        return {}
    row: dict[str, Any] = {}
    row["params"], row["model_bytes"] = model_size(net)
    if split_repeats > 0:
        row.update(network_entropy_split(codec, rgb, data, repeats=split_repeats))
    if macs:
        row["enc_kmac_per_px"], row["dec_kmac_per_px"] = codec_kmac_per_px(codec, rgb, data)
    return row


def measure_point(codec, rgb: np.ndarray, *, repeats: int = 5, warmup: int = 1,
                  split_repeats: int = 3, macs: bool = True, rss_method: str = "auto") -> dict:
    """Measure one built codec on one image; the measurement columns of a complexity row."""
    device = str(getattr(codec, "device", "cpu"))
    sync = codec.synchronize if is_cuda(device) else None
    h, w = rgb.shape[:2]
    release_free_memory()  # before the warm-up: the baseline holds nothing earlier points freed
    enc = measure(lambda: codec.encode(rgb), warmup=warmup, repeats=repeats, sync=sync,
                  device=device, rss_method=rss_method)
    data = enc.timing.value
    dec = measure(lambda: codec.decode(data), warmup=warmup, repeats=repeats, sync=sync,
                  device=device, rss_method=rss_method)
    out = np.asarray(dec.timing.value)
    if out.shape != rgb.shape:
        raise RdflowError(f"decoded image has shape {out.shape}, expected {rgb.shape}")
    row = _timing_columns(enc, dec)
    row["bpp"] = 8 * len(data) / (w * h)
    row["threads"] = _threads_of(codec)
    row.update(_model_columns(codec, rgb, data, split_repeats, macs))
    return row


class CodecHolder:
    """Keeps the one codec being measured; building the next frees the previous one."""

    def __init__(self, threads: int | None = None):
        self.key: str | None = None
        self.codec = None
        self.threads = threads  # torch intra-op threads, set when a torch codec is built

    def get(self, spec):
        from ..codecs import build

        if self.key != spec.key():
            device = str(getattr(self.codec, "device", "cpu"))
            self.key, self.codec = None, None
            free_memory(device)
            self.codec = build(spec)
            self.key = spec.key()
            if self.threads is not None and torch_net(self.codec) is not None:
                import torch

                torch.set_num_threads(int(self.threads))
        return self.codec

    def drop(self) -> None:
        self.key = self.codec = None


def _warn_spread(spec, width: int, height: int, row: dict) -> None:
    for p in ("enc", "dec"):
        if row[f"{p}_s_p75"] > 1.5 * row[f"{p}_s_p25"]:
            log.warning("complexity: %s q%s at %dx%d: %s times vary widely (p25 %.4g s, p75 %.4g s): "
                        "is the machine busy? fewer threads (complexity.threads) or more repeats help",
                        spec.name, spec.quality, width, height, p, row[f"{p}_s_p25"], row[f"{p}_s_p75"])


def point(holder: CodecHolder, spec, width: int, height: int, rgb: np.ndarray, source: str,
          opts: dict) -> dict:
    """One complexity row; failures at this point (not configuration errors) become failed rows."""
    try:
        codec = holder.get(spec)
    except RdflowError:
        raise  # configuration (unknown kind, missing weights, CUDA absent): the user must fix it
    except Exception as exc:  # noqa: BLE001  e.g. out of memory moving the model to the GPU
        log.warning("complexity: %s q%s: building failed: %s", spec.name, spec.quality, error_text(exc))
        holder.drop()
        free_memory(spec.device)
        return failed_row(spec, width, height, spec_device(spec), source, opts["repeats"], error_text(exc))
    row = base_row(spec, width, height, str(getattr(codec, "device", "cpu")), source, opts["repeats"])
    try:
        row.update(measure_point(codec, fit_image(rgb, width, height), repeats=opts["repeats"],
                                 warmup=opts["warmup"], split_repeats=opts["split_repeats"],
                                 macs=opts["macs"], rss_method=opts["rss_method"]))
    except Exception as exc:  # noqa: BLE001  MemoryError, CUDA/CPU out of memory, codec limits
        log.warning("complexity: %s q%s at %dx%d failed: %s", spec.name, spec.quality, width, height,
                    error_text(exc))
        free_memory(row["device"])
        return failed_row(spec, width, height, row["device"], source, opts["repeats"], error_text(exc))
    _warn_spread(spec, width, height, row)
    return row


# -- a measuring worker process's side ---------------------------------------------------------
#: the codec a worker process measures, kept between its calls (building the next frees it)
_HOLDER = CodecHolder()


def init(user_init=None, threads: int | None = None, memory_limit_mb: float | None = None) -> None:
    """The first call a measuring worker serves: its torch threads (set when a torch codec is
    built, so a classical codec's worker never imports torch), its data-memory cap
    (:func:`rdflow.worker.limit_data_memory`), then ``user_init()`` (e.g. plugin codecs)."""
    _HOLDER.threads = threads
    if memory_limit_mb is not None:
        limit_data_memory(memory_limit_mb)
    if user_init is not None:
        user_init()


def held_point(spec, width: int, height: int, rgb: np.ndarray, source: str, opts: dict) -> dict:
    """:func:`point` with the worker's own codec holder."""
    return point(_HOLDER, spec, width, height, rgb, source, opts)
