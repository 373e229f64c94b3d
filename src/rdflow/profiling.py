"""Codec complexity: timing that can be trusted, peak memory, MACs, parameters, model size.

What is measured, and how (numbers must be trustworthy, so the semantics are spelled out):

* **Time** (:func:`time_calls`): ``warmup`` calls first (excluded: they pay one-time costs such
  as oneDNN kernel selection or CUDA context creation for the exact input shape), then
  ``repeats`` calls, each timed with ``time.perf_counter`` (wall) and ``time.process_time``
  (CPU time of the whole process, all threads). ``sync`` (e.g. ``torch.cuda.synchronize``) is
  called before each start and before each stop, so queued GPU work is inside the call that
  queued it. Report the median; p25/p75, min/max and std show the spread.
* **Peak CPU memory** (:class:`RssMeter`, :func:`peak_rss_mb`): the process's peak resident set
  size (RSS) during the measured block, in MiB (2**20 bytes; every ``*_mb`` column is MiB).
  On Linux the kernel's high-water mark (``VmHWM``) is reset at the start of the block by
  writing ``5`` to ``/proc/self/clear_refs`` (it then equals the current RSS) and read at the
  end: exact, per measurement, and nearly free. Before each point's warm-up the study calls
  glibc's ``malloc_trim(0)`` (:func:`release_free_memory`), so heap that an earlier (larger)
  measurement freed but glibc kept is not counted again; the warm-up call runs inside the
  meter, so the working memory of a call counts even when later calls reuse it. Where
  ``clear_refs`` cannot be written, a thread samples RSS every 5 ms instead (``rss_method``
  column ``sampling``; it can miss peaks shorter than the interval, and costs a few percent of
  the timed calls through the GIL). The peak is the absolute process RSS (interpreter,
  libraries and the loaded model included); ``base_mb`` is the RSS at the start, so
  ``peak_mb - base_mb`` is what the block added. RSS and CPU time are per process: run the
  study alone, or with ``isolate=True`` (each codec in its own child process).
* **Peak GPU memory** (:class:`GpuMeter`, :func:`gpu_peak`): ``torch.cuda.reset_peak_memory_stats``
  at the start, ``max_memory_allocated`` / ``max_memory_reserved`` at the end (both include the
  model's weights); ``None`` on CPU.
* **MACs** (:func:`count_macs`): ``torch.utils.flop_counter.FlopCounterMode`` counts the FLOPs
  of the matrix products and convolutions (incl. transposed) that run; torch counts 2 FLOPs per
  multiply-accumulate, so MACs = FLOPs / 2, exactly. Element-wise work (activations, GDN's
  square root, quantisation, the entropy model's CDF look-ups) and the C++ range coder are not
  counted. For learned codecs the count is taken over the real ``compress``/``decompress``
  calls, so the encoder count includes everything the encoder runs (``g_a``, ``h_a`` and also
  ``h_s``, which the encoder needs for the scales, plus the context model of autoregressive
  models) and the decoder count ``h_s`` + ``g_s`` (+ context model). kMAC/px divides by the
  pixels of the original image (the padded input to a multiple of 64 is computed on, but the
  cost is per source pixel).
* **Network vs entropy time** (:func:`network_entropy_split`): forward hooks on the analysis
  and synthesis transforms (``g_a``, ``h_a``, ``h_s``, ``g_s``) time the network; the rest of
  ``compress``/``decompress`` is ``*_entropy_s``: entropy bottleneck and conditional coding,
  quantisation, index building, the range coder, and (for mbt2018 and cheng2020) the
  autoregressive context model that runs interleaved with the coder. These runs are separate
  from the timed runs (hooks would perturb them).

:func:`complexity_study` measures a list of codec operating points at a list of resolutions and
returns one row per (codec, quality, resolution); a resolution that fails (out of memory or
anything else at that point) gives a row with ``status="failed"`` and the error, and the study
goes on. With ``isolate=True`` every codec runs in a fresh child process, so even a kill by the
kernel's OOM killer becomes a failed row.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import gc
import io
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from . import RdflowError

log = logging.getLogger("rdflow.profiling")

MIB = 2**20
NAN = float("nan")

#: the transforms whose forward calls count as "network" time in :func:`network_entropy_split`
NETWORK_PARTS = ("g_a", "h_a", "h_s", "g_s")

#: columns of results/complexity.csv, in order
COLUMNS = [
    "codec", "kind", "quality", "width", "height", "device", "threads", "repeats",
    "enc_s_median", "enc_s_p25", "enc_s_p75", "enc_s_min", "enc_s_max", "enc_s_std",
    "dec_s_median", "dec_s_p25", "dec_s_p75", "dec_s_min", "dec_s_max", "dec_s_std",
    "enc_network_s", "enc_entropy_s", "dec_network_s", "dec_entropy_s",
    "enc_cpu_s", "dec_cpu_s", "cpu_time_s",
    "max_rss_mb", "rss_base_mb", "rss_method", "max_vram_alloc_mb", "max_vram_reserved_mb",
    "params", "model_bytes", "enc_kmac_per_px", "dec_kmac_per_px",
    "bpp", "source", "status", "error",
]


# ------------------------------------------------------------------------------------------
# timing
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TimingResult:
    """Wall and CPU seconds of each measured call (warm-up calls excluded)."""

    samples: tuple[float, ...]
    cpu_samples: tuple[float, ...]
    warmup: int
    value: Any = field(default=None, repr=False, compare=False)  # what the last call returned

    @property
    def median(self) -> float:
        return float(np.median(self.samples))

    @property
    def min(self) -> float:
        return float(min(self.samples))

    @property
    def max(self) -> float:
        return float(max(self.samples))

    @property
    def p25(self) -> float:
        return float(np.percentile(self.samples, 25))

    @property
    def p75(self) -> float:
        return float(np.percentile(self.samples, 75))

    @property
    def iqr(self) -> float:
        return self.p75 - self.p25

    @property
    def std(self) -> float:
        return float(np.std(self.samples, ddof=1)) if len(self.samples) > 1 else 0.0

    @property
    def cpu_time(self) -> float:
        """Median process CPU seconds per call (all threads of the process)."""
        return float(np.median(self.cpu_samples))


def time_calls(fn: Callable[[], Any], *, warmup: int = 1, repeats: int = 5,
               sync: Callable[[], None] | None = None) -> TimingResult:
    """Call ``fn()`` ``warmup`` times untimed, then ``repeats`` times timed.

    ``sync`` is called before each start and before each stop (pass
    ``torch.cuda.synchronize`` for GPU work). ``value`` of the result is what the last call
    returned.
    """
    if int(repeats) < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    if int(warmup) < 0:
        raise ValueError(f"warmup must be 0 or more, got {warmup}")
    value = None
    for _ in range(int(warmup)):
        value = fn()
    wall: list[float] = []
    cpu: list[float] = []
    perf, ptime = time.perf_counter, time.process_time
    for _ in range(int(repeats)):
        if sync is not None:
            sync()
        c0 = ptime()
        t0 = perf()
        value = fn()
        if sync is not None:
            sync()
        t1 = perf()
        c1 = ptime()
        wall.append(t1 - t0)
        cpu.append(c1 - c0)
    return TimingResult(tuple(wall), tuple(cpu), int(warmup), value)


# ------------------------------------------------------------------------------------------
# peak CPU memory
# ------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------
# peak GPU memory
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GpuPeakResult:
    alloc_mb: float  # torch.cuda.max_memory_allocated (tensors, weights included)
    reserved_mb: float  # torch.cuda.max_memory_reserved (held by the caching allocator)


def _is_cuda(device) -> bool:
    return device is not None and str(device).startswith("cuda")


class GpuMeter:
    """Context manager: peak CUDA memory of ``device`` inside the block; ``result`` is None on CPU."""

    def __init__(self, device="cuda"):
        self.device = device
        self.result: GpuPeakResult | None = None
        self._active = False

    def __enter__(self) -> "GpuMeter":
        if _is_cuda(self.device):
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


# ------------------------------------------------------------------------------------------
# all of it around one call
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Measurement:
    timing: TimingResult
    rss_peak_mb: float
    rss_base_mb: float
    rss_method: str
    gpu: GpuPeakResult | None


def measure(fn: Callable[[], Any], *, warmup: int = 1, repeats: int = 5,
            sync: Callable[[], None] | None = None, device="cpu",
            rss_method: str = "auto") -> Measurement:
    """Warm up, then time ``repeats`` calls inside one peak-RSS and one peak-GPU measurement.

    The last warm-up call runs inside the memory meters, so its working memory counts in the
    peak even where the timed calls reuse memory that was already resident. Call
    :func:`release_free_memory` before (not inside: it perturbs the calls after it) so that the
    baseline holds nothing an earlier measurement freed; :func:`measure_point` does. The meters
    cost about 0.1–0.3 ms per measurement, outside the timed calls
    (bench/bench_profiling_overhead.py measures the overhead).
    """
    warmup = int(warmup)
    for _ in range(max(0, warmup - 1)):
        fn()
    with RssMeter(rss_method) as rss, GpuMeter(device) as gpu:
        timing = time_calls(fn, warmup=min(warmup, 1), repeats=repeats, sync=sync)
    timing = dataclasses.replace(timing, warmup=warmup)
    return Measurement(timing, rss.peak_mb, rss.base_mb, rss.method, gpu.result)


# ------------------------------------------------------------------------------------------
# MACs, parameters, size
# ------------------------------------------------------------------------------------------
def count_macs(module_or_fn: Callable[..., Any], inputs: Any = ()) -> int:
    """Multiply-accumulates of ``module_or_fn(*inputs)`` (FlopCounterMode FLOPs / 2).

    ``inputs`` is a tensor or a tuple/list of arguments. Runs under ``torch.no_grad()``.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if isinstance(inputs, torch.Tensor) or not isinstance(inputs, (tuple, list)):
        inputs = (inputs,)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module_or_fn(*inputs)
    flops = int(counter.get_total_flops())
    return flops // 2


def model_size(net) -> tuple[int, int]:
    """(parameter count, bytes of ``torch.save(net.state_dict())``) of a torch module.

    The state dict includes buffers (for CompressAI the entropy models' CDF tables).
    """
    import torch

    params = sum(int(p.numel()) for p in net.parameters())
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    return params, buf.getbuffer().nbytes


def _torch_net(codec):
    """The codec's torch model (``codec.net``) or None for classical codecs."""
    net = getattr(codec, "net", None)
    if net is None:
        return None
    import torch

    return net if isinstance(net, torch.nn.Module) else None


def codec_kmac_per_px(codec, rgb: np.ndarray, data: bytes | None = None) -> tuple[float, float]:
    """(encoder, decoder) kMAC per source pixel of a learned codec, over its real encode/decode.

    NaN for codecs without a torch model (their work is not torch operations).
    """
    if _torch_net(codec) is None:
        return NAN, NAN
    pixels = rgb.shape[0] * rgb.shape[1]
    holder: dict[str, bytes] = {}

    def enc(x):
        holder["data"] = codec.encode(x)

    enc_macs = count_macs(enc, (rgb,))
    data = holder["data"] if data is None else data
    dec_macs = count_macs(codec.decode, (data,))
    return enc_macs / pixels / 1e3, dec_macs / pixels / 1e3


class _SplitTimer:
    """Times the network transforms (forward hooks) and compress/decompress of a CompressAI model."""

    def __init__(self, net, sync: Callable[[], None] | None):
        self.net = net
        self.sync = sync
        self.network = 0.0
        self.total = 0.0
        self._t0: dict[int, float] = {}
        self._handles: list = []
        self._wrapped: list[str] = []

    def _pre(self, module, args):
        if self.sync is not None:
            self.sync()
        self._t0[id(module)] = time.perf_counter()

    def _post(self, module, args, output):
        if self.sync is not None:
            self.sync()
        self.network += time.perf_counter() - self._t0.pop(id(module))

    def _wrap(self, name: str) -> None:
        orig = getattr(self.net, name)

        def timed(*args, **kwargs):
            if self.sync is not None:
                self.sync()
            t0 = time.perf_counter()
            try:
                return orig(*args, **kwargs)
            finally:
                if self.sync is not None:
                    self.sync()
                self.total += time.perf_counter() - t0

        self.net.__dict__[name] = timed  # instance attribute shadows the method until restored
        self._wrapped.append(name)

    def __enter__(self) -> "_SplitTimer":
        for part in NETWORK_PARTS:
            mod = getattr(self.net, part, None)
            if mod is not None:
                self._handles.append(mod.register_forward_pre_hook(self._pre))
                self._handles.append(mod.register_forward_hook(self._post))
        for name in ("compress", "decompress"):
            self._wrap(name)
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        for name in self._wrapped:
            self.net.__dict__.pop(name, None)
        self._handles.clear()
        self._wrapped.clear()

    def reset(self) -> None:
        self.network = 0.0
        self.total = 0.0


def network_entropy_split(codec, rgb: np.ndarray, data: bytes, *, repeats: int = 3) -> dict[str, float]:
    """Median seconds in the network transforms vs the rest of compress/decompress.

    Returns ``enc_network_s``, ``enc_entropy_s``, ``dec_network_s``, ``dec_entropy_s`` (NaN
    for codecs without a CompressAI model). Call after a warm-up at this image size.
    """
    net = _torch_net(codec)
    keys = ("enc_network_s", "enc_entropy_s", "dec_network_s", "dec_entropy_s")
    if net is None or not hasattr(net, "compress") or not hasattr(net, "decompress"):
        return dict.fromkeys(keys, NAN)
    sync = codec.synchronize if _is_cuda(getattr(codec, "device", "cpu")) else None
    enc_net, enc_ent, dec_net, dec_ent = [], [], [], []
    with _SplitTimer(net, sync) as st:
        for _ in range(max(1, int(repeats))):
            st.reset()
            codec.encode(rgb)
            enc_net.append(st.network)
            enc_ent.append(max(0.0, st.total - st.network))
            st.reset()
            codec.decode(data)
            dec_net.append(st.network)
            dec_ent.append(max(0.0, st.total - st.network))
    return dict(zip(keys, (float(np.median(v)) for v in (enc_net, enc_ent, dec_net, dec_ent))))


def learned_codec_complexity(architecture: str, quality: int, height: int, width: int,
                             device: str = "cpu", weights: str = "random", *,
                             metric: str = "mse", weights_path: str | None = None, seed: int = 0,
                             repeats: int = 3, image: np.ndarray | None = None) -> dict[str, Any]:
    """Complexity of a CompressAI zoo model at one size.

    Returns params, model_bytes, enc_kmac_per_px, dec_kmac_per_px, the network/entropy time
    split (see :func:`network_entropy_split`), bpp and device.
    """
    from .codecs import CodecSpec, build

    options = {"architecture": architecture, "metric": metric, "weights": weights, "seed": seed}
    if weights_path is not None:
        options["weights_path"] = weights_path
    codec = build(CodecSpec(architecture, "learned", int(quality), options, device))
    rgb = fit_image(_synthetic_image(height, width) if image is None else image, width, height)
    data = codec.encode(rgb)  # warm-up at this size
    codec.decode(data)
    params, nbytes = model_size(codec.net)
    enc_k, dec_k = codec_kmac_per_px(codec, rgb, data)
    out = {"architecture": architecture, "quality": int(quality), "width": width, "height": height,
           "device": codec.device, "params": params, "model_bytes": nbytes,
           "enc_kmac_per_px": enc_k, "dec_kmac_per_px": dec_k,
           "bpp": 8 * len(data) / (width * height)}
    out.update(network_entropy_split(codec, rgb, data, repeats=repeats))
    return out


# ------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------
def parse_resolution(value, *, where: str = "complexity.resolutions") -> tuple[int, int]:
    """``"1920x1080"``, ``[1920, 1080]`` or ``512`` (square) -> (width, height)."""
    w = h = None
    if isinstance(value, bool):
        pass
    elif isinstance(value, int):
        w = h = value
    elif isinstance(value, str):
        parts = value.lower().replace("×", "x").split("x")
        if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
            w, h = (int(p) for p in parts)
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        w, h = value
    if w is None or h is None or w < 1 or h < 1:
        raise RdflowError(f"{where}: {value!r} is not a resolution; write WIDTHxHEIGHT "
                          "(e.g. \"1920x1080\"), [WIDTH, HEIGHT] or one positive integer for a square")
    return int(w), int(h)


def _synthetic_image(height: int, width: int) -> np.ndarray:
    """A deterministic smooth image with edges and mild noise (used when no image is given)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 128 + 90 * np.sin(xx / 23.0) * np.cos(yy / 31.0)
    g = 128 + 90 * np.sin((xx + yy) / 41.0)
    b = np.where((xx // 64 + yy // 64) % 2 == 0, 200.0, 60.0)
    noise = np.random.default_rng(0).normal(0, 6, size=(height, width, 3))
    img = np.stack([r, g, b], axis=-1) + noise
    return np.clip(img, 0, 255).astype(np.uint8)


def fit_image(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Centre-crop ``rgb`` to width x height; mirror-pad where it is smaller."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise RdflowError(f"complexity image must be HxWx3 uint8, got shape {rgb.shape} {rgb.dtype}")
    out = rgb
    h, w = out.shape[:2]
    if h < height or w < width:
        ph, pw = max(0, height - h), max(0, width - w)
        out = np.pad(out, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode="symmetric")
    h, w = out.shape[:2]
    top, left = (h - height) // 2, (w - width) // 2
    return np.ascontiguousarray(out[top:top + height, left:left + width])


def load_image(path: str | os.PathLike) -> np.ndarray:
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise RdflowError(f"complexity image {path} does not exist: set complexity.image to an "
                          "existing PNG (e.g. a Kodak image) or leave it empty for a synthetic image")
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


# ------------------------------------------------------------------------------------------
# the study
# ------------------------------------------------------------------------------------------
def _is_oom(error: str) -> bool:
    e = error.lower()
    return any(k in e for k in ("memoryerror", "allocate", "out of memory", "cannot allocate"))


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\r", " ").replace("\n", " ")
    return text[:500]


def _base_row(spec, width: int, height: int, device: str, source: str, repeats: int) -> dict:
    row = dict.fromkeys(COLUMNS, NAN)
    row.update(codec=spec.name, kind=spec.kind, quality=spec.quality, width=width, height=height,
               device=device, repeats=repeats, rss_method="", source=source, status="ok", error="")
    return row


def _free_memory(device: str) -> None:
    gc.collect()
    if _is_cuda(device):
        import torch

        torch.cuda.empty_cache()


def _threads_of(codec) -> float:
    if _torch_net(codec) is not None:
        import torch

        return float(torch.get_num_threads())
    n = getattr(codec, "threads", None)
    return float(n) if n is not None else NAN


def measure_point(codec, rgb: np.ndarray, *, repeats: int = 5, warmup: int = 1,
                  split_repeats: int = 3, macs: bool = True, rss_method: str = "auto") -> dict:
    """Measure one built codec on one image; the measurement columns of a complexity row."""
    device = str(getattr(codec, "device", "cpu"))
    sync = codec.synchronize if _is_cuda(device) else None
    h, w = rgb.shape[:2]
    row: dict[str, Any] = {}
    release_free_memory()  # before the warm-up: the baseline holds nothing earlier points freed
    enc = measure(lambda: codec.encode(rgb), warmup=warmup, repeats=repeats, sync=sync,
                  device=device, rss_method=rss_method)
    data = enc.timing.value
    dec = measure(lambda: codec.decode(data), warmup=warmup, repeats=repeats, sync=sync,
                  device=device, rss_method=rss_method)
    out = np.asarray(dec.timing.value)
    if out.shape != rgb.shape:
        raise RdflowError(f"decoded image has shape {out.shape}, expected {rgb.shape}")
    for prefix, m in (("enc", enc), ("dec", dec)):
        t = m.timing
        row.update({f"{prefix}_s_median": t.median, f"{prefix}_s_p25": t.p25, f"{prefix}_s_p75": t.p75,
                    f"{prefix}_s_min": t.min, f"{prefix}_s_max": t.max, f"{prefix}_s_std": t.std,
                    f"{prefix}_cpu_s": t.cpu_time})
    row["cpu_time_s"] = row["enc_cpu_s"] + row["dec_cpu_s"]
    row["max_rss_mb"] = max(enc.rss_peak_mb, dec.rss_peak_mb)
    row["rss_base_mb"] = enc.rss_base_mb
    row["rss_method"] = enc.rss_method
    if enc.gpu is not None and dec.gpu is not None:
        row["max_vram_alloc_mb"] = max(enc.gpu.alloc_mb, dec.gpu.alloc_mb)
        row["max_vram_reserved_mb"] = max(enc.gpu.reserved_mb, dec.gpu.reserved_mb)
    row["bpp"] = 8 * len(data) / (w * h)
    row["threads"] = _threads_of(codec)
    net = _torch_net(codec)
    if net is not None:
        row["params"], row["model_bytes"] = model_size(net)
        if split_repeats > 0:
            row.update(network_entropy_split(codec, rgb, data, repeats=split_repeats))
        if macs:
            row["enc_kmac_per_px"], row["dec_kmac_per_px"] = codec_kmac_per_px(codec, rgb, data)
    return row


class _CodecHolder:
    """Keeps the one codec being measured; building the next frees the previous one."""

    def __init__(self, threads: int | None = None):
        self.key: str | None = None
        self.codec = None
        self.threads = threads  # torch intra-op threads, set when a torch codec is built

    def get(self, spec):
        from .codecs import build

        if self.key != spec.key():
            device = str(getattr(self.codec, "device", "cpu"))
            self.key, self.codec = None, None
            _free_memory(device)
            self.codec = build(spec)
            self.key = spec.key()
            if self.threads is not None and _torch_net(self.codec) is not None:
                import torch

                torch.set_num_threads(int(self.threads))
        return self.codec


def _point(holder: _CodecHolder, spec, width: int, height: int, rgb: np.ndarray, source: str,
           opts: dict) -> dict:
    """One complexity row; failures at this point (not configuration errors) become failed rows."""
    row = _base_row(spec, width, height, "cpu" if spec.kind != "learned" else spec.device,
                    source, opts["repeats"])
    try:
        codec = holder.get(spec)
    except RdflowError:
        raise  # configuration (unknown kind, missing weights, CUDA absent): the user must fix it
    except Exception as exc:  # noqa: BLE001  e.g. out of memory moving the model to the GPU
        log.warning("complexity: %s q%s: building failed: %s", spec.name, spec.quality, _error_text(exc))
        row.update(status="failed", error=_error_text(exc))
        holder.key = holder.codec = None
        _free_memory(spec.device)
        return row
    row["device"] = str(getattr(codec, "device", "cpu"))
    try:
        row.update(measure_point(codec, fit_image(rgb, width, height), repeats=opts["repeats"],
                                 warmup=opts["warmup"], split_repeats=opts["split_repeats"],
                                 macs=opts["macs"], rss_method=opts["rss_method"]))
    except Exception as exc:  # noqa: BLE001  MemoryError, CUDA/CPU out of memory, codec limits
        log.warning("complexity: %s q%s at %dx%d failed: %s", spec.name, spec.quality, width, height,
                    _error_text(exc))
        row = _base_row(spec, width, height, row["device"], source, opts["repeats"])
        row.update(status="failed", error=_error_text(exc))
        _free_memory(row["device"])
        return row
    for p in ("enc", "dec"):
        if row[f"{p}_s_p75"] > 1.5 * row[f"{p}_s_p25"]:
            log.warning("complexity: %s q%s at %dx%d: %s times vary widely (p25 %.4g s, p75 %.4g s): "
                        "is the machine busy? fewer threads (complexity.threads) or more repeats help",
                        spec.name, spec.quality, width, height, p, row[f"{p}_s_p25"], row[f"{p}_s_p75"])
    return row


# -- child-process isolation ----------------------------------------------------------------
# A plain subprocess (``python -c``) that talks pickles over a pipe, not multiprocessing: a
# spawn/forkserver child re-imports the parent's __main__, which breaks under Snakemake's
# script: directive and any unguarded script. The child's fd 1 goes to stderr, so stray prints
# cannot corrupt the protocol.
class _WorkerDied(Exception):
    pass


def _worker_main() -> None:
    import pickle
    import sys

    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # print() in the child goes to stderr
    proto_in = sys.stdin.buffer
    holder = _CodecHolder()  # threads come with the init message

    def reply(status, payload):
        try:
            data = pickle.dumps((status, payload), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001  an exception that does not pickle
            data = pickle.dumps((status, RuntimeError(str(payload))), protocol=pickle.HIGHEST_PROTOCOL)
        proto_out.write(data)
        proto_out.flush()

    while True:
        try:
            msg = pickle.load(proto_in)
        except EOFError:
            return
        try:
            if msg[0] == "init":
                _, user_init, holder.threads, limit_mb = msg  # no torch import for classical codecs
                if limit_mb is not None:
                    _limit_data_memory(limit_mb)
                if user_init is not None:
                    user_init()
                reply("ok", None)
            elif msg[0] == "point":
                reply("ok", _point(holder, *msg[1]))
            else:
                return
        except Exception as exc:  # noqa: BLE001  sent back and raised in the parent
            reply("error", exc)


def _limit_data_memory(limit_mb: float) -> None:
    """Cap this process's data memory (heap and private anonymous mappings: Linux
    RLIMIT_DATA) at ``limit_mb`` MiB: an allocation beyond it fails (MemoryError, torch's
    "can't allocate memory"), so an oversized resolution becomes a failed row instead of
    swapping or waking the kernel's OOM killer."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    soft = int(limit_mb * MIB)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


class _Worker:
    def __init__(self, user_init: Callable[[], None] | None, threads: int | None,
                 memory_limit_mb: float | None = None):
        import subprocess
        import sys

        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([p for p in sys.path if p])  # tests, src, plugins
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from rdflow.profiling import _worker_main; _worker_main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        try:
            self._call(("init", user_init, threads, memory_limit_mb))
        except _WorkerDied as exc:
            raise RdflowError(f"the complexity worker process did not start ({exc}); "
                              "run with isolate: false or fix the error printed above") from None

    def _call(self, msg):
        import pickle

        try:
            pickle.dump(msg, self.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self.proc.stdin.flush()
            status, payload = pickle.load(self.proc.stdout)
        except (EOFError, BrokenPipeError, pickle.UnpicklingError):
            raise _WorkerDied(self._death()) from None
        if status == "error":
            raise payload
        return payload

    def _death(self) -> str:
        import signal

        try:
            rc = self.proc.wait(timeout=30)
        except Exception:  # noqa: BLE001
            self.proc.kill()
            rc = self.proc.wait()
        if rc < 0:
            name = signal.Signals(-rc).name if -rc in signal.Signals._value2member_map_ else str(-rc)
            hint = " (the kernel's out-of-memory killer sends SIGKILL; see dmesg)" if rc == -9 else ""
            return f"worker process was killed by {name} while measuring{hint}"
        return f"worker process exited with code {rc} while measuring (its stderr says why)"

    def point(self, *args) -> dict:
        return self._call(("point", args))

    def close(self) -> None:
        from .runtime import close_worker

        close_worker(self.proc, timeout=60)


def complexity_study(specs: Iterable, resolutions: Sequence, device: str | None = "auto",
                     repeats: int = 5, *, warmup: int = 1, image: np.ndarray | str | os.PathLike | None = None,
                     threads: int | None = None, split_repeats: int | None = None, macs: bool = True,
                     isolate: bool = False, worker_init: Callable[[], None] | None = None,
                     rss_method: str = "auto", memory_limit_mb: float | None = None) -> list[dict]:
    """One row (:data:`COLUMNS`) per (codec spec, resolution).

    specs: :class:`rdflow.codecs.CodecSpec` (learned ones run on ``device``; ``None`` keeps
    each spec's own device). resolutions: anything :func:`parse_resolution` accepts. image:
    HxWx3 uint8 array or image path, centre-cropped / mirror-padded to each resolution (a
    synthetic image when None; a natural image gives representative bpp and entropy-coding
    time). threads: torch intra-op threads (None keeps torch's default). split_repeats: runs
    for the network/entropy split (default ``min(repeats, 3)``; 0 skips it). isolate: run each
    codec in a fresh child process (``python -c``; clean RSS and CPU time, survives the OOM
    killer, needs no ``if __name__ == "__main__"`` guard in the calling script);
    ``worker_init`` is called in each child first (e.g. to register plugin codecs).
    memory_limit_mb: with ``isolate``, cap each child's data memory (RLIMIT_DATA, Linux; the
    interpreter, torch and the model count too, about 1 GiB with CompressAI): a resolution
    that needs more gives a failed row that says so.
    """
    from .codecs import CodecSpec
    from .codecs.base import codec_class

    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise RdflowError(f"complexity.repeats must be an integer >= 1, got {repeats!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise RdflowError(f"complexity.warmup must be an integer >= 0, got {warmup!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise RdflowError(f"complexity.threads must be an integer >= 1 or empty, got {threads!r}")
    if memory_limit_mb is not None:
        if isinstance(memory_limit_mb, bool) or not isinstance(memory_limit_mb, (int, float)) \
                or memory_limit_mb <= 0:
            raise RdflowError(f"complexity.memory_limit_mb must be a positive number of MiB or empty, "
                              f"got {memory_limit_mb!r}")
        if not isolate:
            raise RdflowError("complexity.memory_limit_mb needs complexity.isolate: true (the limit "
                              "applies to the child process that measures)")
    sizes = [parse_resolution(r) for r in resolutions]
    if not sizes:
        raise RdflowError("complexity.resolutions is empty: list at least one, e.g. [\"512x512\"]")
    specs = list(specs)
    for s in specs:
        if not isinstance(s, CodecSpec):
            raise TypeError(f"complexity_study wants CodecSpec objects, got {type(s).__name__}")
        codec_class(s.kind, where=f"codecs.{s.name}.kind")
    if device is not None and any(s.kind == "learned" for s in specs):
        from .codecs.learned import resolve_device

        device = resolve_device(str(device))  # RdflowError when CUDA is asked for but absent
        specs = [dataclasses.replace(s, device=device) if s.kind == "learned" else s for s in specs]
    if image is None:
        w_max = max(w for w, _ in sizes)
        h_max = max(h for _, h in sizes)
        rgb, source = _synthetic_image(h_max, w_max), "synthetic"
    elif isinstance(image, (str, os.PathLike)):
        rgb, source = load_image(image), Path(image).name
    else:
        rgb, source = np.asarray(image), "array"
    fit_image(rgb, 1, 1)  # RdflowError now for an image that is not HxWx3 uint8
    opts = {"repeats": repeats, "warmup": warmup, "macs": bool(macs), "rss_method": rss_method,
            "split_repeats": min(repeats, 3) if split_repeats is None else int(split_repeats)}

    rows: list[dict] = []
    if not isolate:
        holder = _CodecHolder()
        old_threads = None
        if threads is not None:
            import torch

            old_threads = torch.get_num_threads()
            torch.set_num_threads(threads)
        try:
            for spec in specs:
                for w, h in sizes:
                    rows.append(_point(holder, spec, w, h, rgb, source, opts))
                    log.info("complexity: %s q%s %dx%d %s", spec.name, spec.quality, w, h, rows[-1]["status"])
        finally:
            holder.key = holder.codec = None
            if old_threads is not None:
                import torch

                torch.set_num_threads(old_threads)
        return rows

    for spec in specs:
        worker = _Worker(worker_init, threads, memory_limit_mb)
        try:
            for w, h in sizes:
                try:
                    row = worker.point(spec, w, h, rgb, source, opts)
                except _WorkerDied as exc:
                    row = _base_row(spec, w, h, spec.device if spec.kind == "learned" else "cpu",
                                    source, repeats)
                    row.update(status="failed", error=str(exc))
                    log.warning("complexity: %s q%s at %dx%d: %s", spec.name, spec.quality, w, h, exc)
                    worker.close()
                    worker = _Worker(worker_init, threads, memory_limit_mb)
                if memory_limit_mb is not None and row["status"] == "failed" and _is_oom(row["error"]):
                    row["error"] = f"{row['error']} [limit complexity.memory_limit_mb={memory_limit_mb:g}]"[:600]
                rows.append(row)
        finally:
            worker.close()
    return rows


def write_complexity_csv(rows: list[dict], path: str | os.PathLike) -> None:
    """Write rows to ``path`` (atomic), columns in :data:`COLUMNS` order."""
    import pandas as pd

    from .io import write_csv

    write_csv(path, pd.DataFrame(rows, columns=COLUMNS))


# ------------------------------------------------------------------------------------------
# figures
# ------------------------------------------------------------------------------------------
def megapixel_label(width: int, height: int) -> str:
    """``512, 512`` -> ``"512x512\\n0.26 MP"`` (a tick label of a resolution axis: the size
    over its megapixels)."""
    mp = width * height / 1e6
    num = f"{mp:.0f}" if mp >= 10 else f"{mp:.2f}" if mp >= 0.1 else f"{mp:.2g}"
    return f"{width}x{height}\n{num} MP"


def plot_complexity(rows_or_frame, out_dir: str | os.PathLike, *,
                    suffixes: Sequence[str] = (".png",), codecs=None) -> list[Path]:
    """Two figures from complexity rows: ``complexity_bpp_time`` (bpp vs encode and decode
    time at the largest resolution where every curve has a successful row; one curve per
    codec, or per codec and device when rows come from several devices) and
    ``complexity_resolution`` (encode/decode time, peak RSS and, from a GPU, peak VRAM vs
    megapixels, per curve at its median quality; ticks at the measured resolutions, labelled
    ``WxH`` and megapixels). Failed rows and non-finite values are left out; when no row
    succeeded, both figures say so in a centred text. Colours: one per codec
    (:func:`rdflow.plots.codec_colours` of ``codecs``, default the table's), the device by line
    style. Each figure has its data sidecar (``<stem>.json``, :func:`rdflow.plots.save`).
    Returns the written figure paths.
    """
    import pandas as pd
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

    from .plots import codec_colours, finite_rows, note_empty, robust_limits, save as save_figure

    raw = rows_or_frame if isinstance(rows_or_frame, pd.DataFrame) else pd.DataFrame(rows_or_frame)
    n_rows = len(raw)
    df = raw[raw["status"] == "ok"].copy() if "status" in raw else raw.iloc[:0].copy()
    out_dir = Path(out_dir)
    written: list[Path] = []

    def save(fig, stem):
        paths = [out_dir / f"{stem}{suf}" for suf in suffixes]
        save_figure(fig, paths)
        written.extend(paths)

    if df.empty:
        errors = sorted({str(e) for e in raw.get("error", pd.Series(dtype=object)).dropna() if str(e)})
        text = (f"no successful complexity rows: all {n_rows} measurements failed (see the error "
                "column of results/complexity.csv)" + (f"\ne.g. {errors[0][:120]}" if errors else ""))
        log.warning("%s", text)
        for stem, labels in (("complexity_bpp_time", ("Rate [bpp]", "Encode time, median [s]")),
                             ("complexity_resolution", ("Resolution [megapixels]", "Encode time, median [s]"))):
            fig = Figure(figsize=(6.4, 4.2), layout="constrained")
            ax = fig.subplots()
            ax.set_xlabel(labels[0])
            ax.set_ylabel(labels[1])
            note_empty(ax, text)
            save(fig, stem)
        return written
    df["mpx"] = df["width"] * df["height"] / 1e6
    # one curve per (codec, device): a codec measured on CPU and GPU gives two curves
    devices = sorted(set(df["device"].astype(str)))
    multi = len(devices) > 1
    df["curve"] = df["codec"].astype(str) + (" (" + df["device"].astype(str) + ")" if multi else "")
    colours = codec_colours(list(codecs or []) + [str(c) for c in df["codec"].unique()])
    dashes = ("-", "--", ":", "-.")

    def style(g):
        return dict(color=colours[str(g["codec"].iloc[0])],
                    ls=dashes[devices.index(str(g["device"].iloc[0])) % len(dashes)])

    # bpp vs time at the largest resolution where every curve has a successful row (else the
    # largest of all, the missing curves named in the title)
    sizes = sorted({(int(w), int(h)) for w, h in zip(df["width"], df["height"])},
                   key=lambda wh: (wh[0] * wh[1], wh), reverse=True)
    curves = set(df["curve"])
    at = {wh: df[(df["width"] == wh[0]) & (df["height"] == wh[1])] for wh in sizes}
    common = [wh for wh in sizes if set(at[wh]["curve"]) == curves]
    big = at[common[0] if common else sizes[0]]
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, col, label in ((axes[0], "enc_s_median", "Encode"), (axes[1], "dec_s_median", "Decode")):
        for name, g in big.groupby("curve", sort=True):
            g = finite_rows(g, ["bpp", col], f"complexity_bpp_time {name}").sort_values("bpp")
            if g.empty:
                continue
            mid = g[col].to_numpy(float)
            lo = np.nan_to_num(mid - g[col.replace("median", "p25")].to_numpy(float))
            hi = np.nan_to_num(g[col.replace("median", "p75")].to_numpy(float) - mid)
            ax.errorbar(g["bpp"].to_numpy(float), mid, yerr=np.vstack([lo, hi]),
                        marker="o", capsize=2, label=str(name), **style(g))
        ax.set_xlabel("Rate [bpp]")
        ax.set_ylabel(f"{label} time, median [s]")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_lines():
            robust_limits(ax)
        else:
            note_empty(ax, f"no finite {col} values at this size")
    w, h = int(big["width"].iloc[0]), int(big["height"].iloc[0])
    dev = ", ".join(sorted(set(big["device"].astype(str))))
    missing = sorted(set(df["curve"]) - set(big["curve"]))
    note = f"; no successful row at this size: {', '.join(missing)}" if missing else ""
    fig.suptitle(f"Rate vs coding time at {w}x{h} ({dev}){note}")
    if axes[0].get_lines():
        axes[0].legend(fontsize="small")
    save(fig, "complexity_bpp_time")

    # time and memory vs resolution (a fourth panel with peak VRAM when a GPU was measured)
    vram = "max_vram_alloc_mb" in df and df["max_vram_alloc_mb"].astype(float).notna().any()
    panels = [("enc_s_median", "Encode time, median [s]"), ("dec_s_median", "Decode time, median [s]"),
              ("max_rss_mb", "Peak RSS of the process [MiB]")]
    if vram:
        panels.append(("max_vram_alloc_mb", "Peak VRAM allocated [MiB]"))
    fig = Figure(figsize=(4.4 * len(panels), 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels))
    for name, g in df.groupby("curve", sort=True):
        qs = sorted(g["quality"].unique())
        q = qs[len(qs) // 2]
        g = g[g["quality"] == q].sort_values("mpx")
        for ax, (col, _) in zip(axes, panels):
            gc_ = finite_rows(g, ["mpx", col], f"complexity_resolution {name} {col}")
            if len(gc_):
                ax.plot(gc_["mpx"], gc_[col].astype(float), marker="o", label=f"{name} q{q}", **style(g))
    # ticks at the measured resolutions: "WxH" and megapixels (several sizes of one pixel count
    # share a tick)
    ticks: dict[float, list[str]] = {}
    for wh in sorted(sizes, key=lambda wh: (wh[0] * wh[1], wh)):
        ticks.setdefault(wh[0] * wh[1] / 1e6, []).append(f"{wh[0]}x{wh[1]}")
    locs = sorted(ticks)
    tick_labels = ["/".join(ticks[m]) + "\n" + megapixel_label(*map(int, ticks[m][0].split("x"))).split("\n")[1]
                   for m in locs]
    for i, (ax, (col, ylab)) in enumerate(zip(axes, panels)):
        ax.set_xlabel("Resolution [megapixels]")
        ax.set_ylabel(ylab)
        ax.set_xscale("log")
        if i < 2:
            ax.set_yscale("log")
        ax.xaxis.set_major_locator(FixedLocator(locs))
        ax.xaxis.set_major_formatter(FixedFormatter(tick_labels))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.tick_params(axis="x", labelsize=7)
        if len(locs) > 4:
            for t in ax.get_xticklabels():
                t.set_rotation(30)
                t.set_ha("right")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_lines():
            robust_limits(ax, x=False)  # every measured resolution stays in view
        else:
            note_empty(ax, f"no finite {col} values")
    if axes[0].get_lines():
        axes[0].legend(fontsize="small")
    fig.suptitle(f"Coding time and memory vs resolution ({', '.join(devices)})")
    save(fig, "complexity_resolution")
    return written
