"""Timing with warm-up and repeats (:func:`time_calls`), and the time of a call together with
its peak memory (:func:`measure`); semantics in :mod:`rdflow.measure`."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..proc import ChildMeter
from .meters import GpuMeter, GpuPeakResult, RssMeter


@dataclass(frozen=True)
class TimingResult:
    """Wall and CPU seconds of each measured call (warm-up calls excluded)."""

    samples: tuple[float, ...]
    cpu_samples: tuple[float, ...]  # the process's CPU seconds plus its children's
    warmup: int
    value: Any = field(default=None, repr=False, compare=False)  # what the last call returned
    child_cpu_samples: tuple[float, ...] = ()  # CPU seconds of the children (rdflow.proc)

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
        """Median CPU seconds per call: all threads of the process and the child processes
        (encoder/decoder binaries) it ran through :func:`rdflow.proc.run`."""
        return float(np.median(self.cpu_samples))

    @property
    def child_cpu_time(self) -> float:
        """Median CPU seconds per call of the child processes alone (0 for in-process codecs)."""
        return float(np.median(self.child_cpu_samples)) if self.child_cpu_samples else 0.0


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
    child: list[float] = []
    perf, ptime = time.perf_counter, time.process_time
    for _ in range(int(repeats)):
        if sync is not None:
            sync()
        with ChildMeter() as kids:
            c0 = ptime()
            t0 = perf()
            value = fn()
            if sync is not None:
                sync()
            t1 = perf()
            c1 = ptime()
        wall.append(t1 - t0)
        cpu.append(c1 - c0 + kids.cpu_s)
        child.append(kids.cpu_s)
    return TimingResult(tuple(wall), tuple(cpu), int(warmup), value, tuple(child))


@dataclass(frozen=True)
class Measurement:
    timing: TimingResult
    rss_peak_mb: float
    rss_base_mb: float
    rss_method: str
    gpu: GpuPeakResult | None
    #: peak RSS of the largest child process run in the block (NaN: none ran)
    child_rss_peak_mb: float = float("nan")


def measure(fn: Callable[[], Any], *, warmup: int = 1, repeats: int = 5,
            sync: Callable[[], None] | None = None, device="cpu",
            rss_method: str = "auto") -> Measurement:
    """Warm up, then time ``repeats`` calls inside one peak-RSS and one peak-GPU measurement.

    The last warm-up call runs inside the memory meters, so its working memory counts in the
    peak even where the timed calls reuse memory that was already resident. Call
    :func:`rdflow.measure.meters.release_free_memory` before (not inside: it perturbs the calls
    after it) so that the baseline holds nothing an earlier measurement freed;
    :func:`rdflow.measure.points.measure_point` does. The meters cost about 0.1–0.3 ms per
    measurement, outside the timed calls (bench/bench_profiling_overhead.py measures the
    overhead).
    """
    warmup = int(warmup)
    for _ in range(max(0, warmup - 1)):
        fn()
    with RssMeter(rss_method) as rss, GpuMeter(device) as gpu, ChildMeter() as kids:
        timing = time_calls(fn, warmup=min(warmup, 1), repeats=repeats, sync=sync)
    timing = dataclasses.replace(timing, warmup=warmup)
    return Measurement(timing, rss.peak_mb, rss.base_mb, rss.method, gpu.result, kids.max_rss_mb)
