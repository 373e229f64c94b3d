"""Peak memory of a block of code: the process's RSS (:class:`RssMeter`) and CUDA memory
(:class:`GpuMeter`); semantics in :mod:`rdflow.measure`."""

from __future__ import annotations

import ctypes
import functools
import gc
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable

from .. import RdflowError

MIB = 2**20
NAN = float("nan")


# -- peak CPU memory --------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[], Any] | None:
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


def _reset_hwm() -> bool:
    """Reset the kernel's RSS high-water mark of this process; False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _status_kib(key: str) -> int | None:
    """A ``kB`` field of /proc/self/status (e.g. VmHWM, VmRSS), or None."""
    try:
        with open("/proc/self/status", "rb", buffering=0) as fh:
            data = fh.read(8192)
    except OSError:
        return None
    i = data.find(b"\n" + key.encode() + b":")
    if i < 0:
        return None
    return int(data[i + len(key) + 2:data.index(b"\n", i + 1)].split()[0])


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def current_rss_mb() -> float:
    """The process's resident set size now, in MiB."""
    try:
        with open("/proc/self/statm", "rb", buffering=0) as fh:
            return int(fh.read().split()[1]) * _PAGE / MIB
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss / MIB


@functools.lru_cache(maxsize=1)
def _hwm_readable() -> bool:
    return _status_kib("VmHWM") is not None


class RssMeter:
    """Context manager: the process's peak RSS (MiB) inside the ``with`` block.

    ``method``: ``"auto"`` (kernel high-water mark where available, else sampling),
    ``"hwm"`` (fail if unavailable) or ``"sampling"``. After the block: ``peak_mb``,
    ``base_mb`` (RSS at the start, after ``malloc_trim``), ``delta_mb`` and ``method`` (used).
    """

    def __init__(self, method: str = "auto", interval: float = 0.005, trim: bool = False):
        if method not in ("auto", "hwm", "sampling"):
            raise ValueError(f"unknown RSS method {method!r}; use auto, hwm or sampling")
        self.requested = method
        self.trim = trim
        self.interval = interval
        self.method = ""
        self.base_mb = NAN
        self.peak_mb = NAN
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sampled = 0.0

    def __enter__(self) -> "RssMeter":
        if self.trim:
            release_free_memory(collect=False)
        self.base_mb = current_rss_mb()
        if self.requested in ("auto", "hwm") and _hwm_readable() and _reset_hwm():
            self.method = "hwm"
        elif self.requested == "hwm":
            raise RdflowError("peak RSS method 'hwm' needs a writable /proc/self/clear_refs "
                              "(Linux); use method 'auto' or 'sampling'")
        else:
            self.method = "sampling"
            self._sampled = self.base_mb
            self._stop.clear()
            self._thread = threading.Thread(target=self._sample, name="rdflow-rss", daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._sampled = max(self._sampled, current_rss_mb())

    def __exit__(self, *exc) -> None:
        if self.method == "hwm":
            self.peak_mb = _status_kib("VmHWM") / 1024
        else:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            self.peak_mb = max(self._sampled, current_rss_mb())

    @property
    def delta_mb(self) -> float:
        return self.peak_mb - self.base_mb


def release_free_memory(collect: bool = True) -> None:
    """Collect garbage (``collect``) and hand the heap's free pages back to the OS (glibc
    ``malloc_trim(0)``), so that the next RSS measurement's baseline holds no memory that an
    earlier, larger measurement freed. Do it before warm-up: the calls right after it pay page
    faults that steady-state calls do not."""
    if collect:
        gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim()


def peak_rss_mb(fn: Callable[..., Any], *args, method: str = "auto", trim: bool = True,
                **kwargs) -> tuple[Any, RssMeter]:
    """Run ``fn(*args, **kwargs)``; return its value and the :class:`RssMeter` of the call
    (``trim``: :func:`release_free_memory` first, without garbage collection)."""
    with RssMeter(method, trim=trim) as meter:
        value = fn(*args, **kwargs)
    return value, meter


# -- peak GPU memory --------------------------------------------------------------------------
@dataclass(frozen=True)
class GpuPeakResult:
    alloc_mb: float  # torch.cuda.max_memory_allocated (tensors, weights included)
    reserved_mb: float  # torch.cuda.max_memory_reserved (held by the caching allocator)


def is_cuda(device) -> bool:
    """Whether ``device`` names a CUDA device (``cuda``, ``cuda:N``)."""
    return device is not None and str(device).startswith("cuda")


class GpuMeter:
    """Context manager: peak CUDA memory of ``device`` inside the block; ``result`` is None on CPU."""

    def __init__(self, device="cuda"):
        self.device = device
        self.result: GpuPeakResult | None = None
        self._active = False

    def __enter__(self) -> "GpuMeter":
        if is_cuda(self.device):
            import torch

            if torch.cuda.is_available():
                torch.cuda.synchronize(self.device)
                torch.cuda.reset_peak_memory_stats(self.device)
                self._active = True
        return self

    def __exit__(self, *exc) -> None:
        if self._active:
            import torch

            torch.cuda.synchronize(self.device)
            self.result = GpuPeakResult(torch.cuda.max_memory_allocated(self.device) / MIB,
                                        torch.cuda.max_memory_reserved(self.device) / MIB)


def gpu_peak(fn: Callable[..., Any], *args, device="cuda",
             **kwargs) -> tuple[Any, GpuPeakResult | None]:
    """Run ``fn(*args, **kwargs)``; return its value and its peak CUDA memory (None on CPU)."""
    with GpuMeter(device) as meter:
        value = fn(*args, **kwargs)
    return value, meter.result


def free_memory(device: str) -> None:
    """Collect garbage, and empty torch's CUDA cache when ``device`` is a GPU."""
    gc.collect()
    if is_cuda(device):
        import torch

        torch.cuda.empty_cache()
