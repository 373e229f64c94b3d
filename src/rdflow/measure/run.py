"""The complexity study: codec operating points x resolutions, one row each, in this process
or each codec in a fresh worker process (:class:`rdflow.worker.Worker`)."""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Callable, Iterable, Sequence

import numpy as np

from .. import RdflowError
from ..worker import Worker, WorkerDied
from .images import parse_resolution, study_image
from .points import CodecHolder, failed_row, is_oom, point, spec_device

log = logging.getLogger("rdflow.measure")

_POINTS = "rdflow.measure.points"


def _is_count(v, lo: int) -> bool:
    return not isinstance(v, bool) and isinstance(v, int) and v >= lo


def _check_options(repeats, warmup, threads, memory_limit_mb, isolate) -> None:
    if not _is_count(repeats, 1):
        raise RdflowError(f"complexity.repeats must be an integer >= 1, got {repeats!r}")
    if not _is_count(warmup, 0):
        raise RdflowError(f"complexity.warmup must be an integer >= 0, got {warmup!r}")
    if threads is not None and not _is_count(threads, 1):
        raise RdflowError(f"complexity.threads must be an integer >= 1 or empty, got {threads!r}")
    if memory_limit_mb is not None:
        if isinstance(memory_limit_mb, bool) or not isinstance(memory_limit_mb, (int, float)) \
                or memory_limit_mb <= 0:
            raise RdflowError(f"complexity.memory_limit_mb must be a positive number of MiB or empty, "
                              f"got {memory_limit_mb!r}")
        if not isolate:
            raise RdflowError("complexity.memory_limit_mb needs complexity.isolate: true (the limit "
                              "applies to the child process that measures)")


def _resolve_specs(specs: Iterable, device: str | None) -> list:
    """The specs, checked (CodecSpec of a known kind), torch codecs moved to ``device``
    (resolved here: ``auto`` is the GPU when torch sees one; RdflowError when CUDA is asked
    for but absent); ``device`` None keeps each spec's own."""
    from ..codecs import CodecSpec
    from ..codecs.base import codec_class

    specs = list(specs)
    for s in specs:
        if not isinstance(s, CodecSpec):
            raise TypeError(f"complexity_study wants CodecSpec objects, got {type(s).__name__}")
        codec_class(s.kind, where=f"codecs.{s.name}.kind")
    torch_specs = [codec_class(s.kind).uses_torch for s in specs]
    if device is None or not any(torch_specs):
        return specs
    from ..codecs.learned import resolve_device

    device = resolve_device(str(device))
    return [dataclasses.replace(s, device=device) if t else s for s, t in zip(specs, torch_specs)]


def complexity_study(specs: Iterable, resolutions: Sequence, device: str | None = "auto",
                     repeats: int = 5, *, warmup: int = 1, image: np.ndarray | str | os.PathLike | None = None,
                     threads: int | None = None, split_repeats: int | None = None, macs: bool = True,
                     isolate: bool = False, worker_init: Callable[[], None] | None = None,
                     rss_method: str = "auto", memory_limit_mb: float | None = None) -> list[dict]:
    """One row (:data:`rdflow.measure.points.COLUMNS`) per (codec spec, resolution).

    specs: :class:`rdflow.codecs.CodecSpec` (torch codecs run on ``device``; ``None`` keeps
    each spec's own device). resolutions: anything :func:`rdflow.measure.images.parse_resolution`
    accepts. image: HxWx3 uint8 array or image path, centre-cropped / mirror-padded to each
    resolution (a synthetic image when None; a natural image gives representative bpp and
    entropy-coding time). threads: torch intra-op threads (None keeps torch's default).
    split_repeats: runs for the network/entropy split (default ``min(repeats, 3)``; 0 skips
    it). isolate: run each codec in a fresh worker process (:class:`rdflow.worker.Worker`;
    clean RSS and CPU time, survives the OOM killer, needs no ``if __name__ == "__main__"``
    guard in the calling script); ``worker_init`` is called in each worker first (e.g. to
    register plugin codecs). memory_limit_mb: with ``isolate``, cap each worker's data memory
    (RLIMIT_DATA, Linux; the interpreter, torch and the model count too, about 1 GiB with
    CompressAI): a resolution that needs more gives a failed row that says so.
    """
    _check_options(repeats, warmup, threads, memory_limit_mb, isolate)
    sizes = [parse_resolution(r) for r in resolutions]
    if not sizes:
        raise RdflowError("complexity.resolutions is empty: list at least one, e.g. [\"512x512\"]")
    specs = _resolve_specs(specs, device)
    rgb, source = study_image(image, sizes)
    opts = {"repeats": repeats, "warmup": warmup, "macs": bool(macs), "rss_method": rss_method,
            "split_repeats": min(repeats, 3) if split_repeats is None else int(split_repeats)}
    if not isolate:
        return _in_process(specs, sizes, rgb, source, opts, threads)
    return [row for spec in specs
            for row in _isolated(spec, sizes, rgb, source, opts, (worker_init, threads, memory_limit_mb))]


def _in_process(specs: list, sizes: list, rgb: np.ndarray, source: str, opts: dict,
                threads: int | None) -> list[dict]:
    holder = CodecHolder()
    old_threads = None
    if threads is not None:
        import torch

        old_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
    rows: list[dict] = []
    try:
        for spec in specs:
            for w, h in sizes:
                rows.append(point(holder, spec, w, h, rgb, source, opts))
                log.info("complexity: %s q%s %dx%d %s", spec.name, spec.quality, w, h, rows[-1]["status"])
    finally:
        holder.drop()
        if old_threads is not None:
            import torch

            torch.set_num_threads(old_threads)
    return rows


def _start_worker(init: tuple) -> Worker:
    """A fresh measuring worker, initialised (:func:`rdflow.measure.points.init`): ``init`` is
    (worker_init, threads, memory_limit_mb). An exception of ``worker_init`` is raised here."""
    worker = Worker("complexity", close_timeout=60)
    try:
        worker.call(f"{_POINTS}:init", *init)
    except WorkerDied as exc:
        worker.close()
        raise RdflowError(f"the complexity worker process did not start ({exc}); "
                          "run with isolate: false or fix the error printed above") from None
    except BaseException:
        worker.close()
        raise
    return worker


def _isolated(spec, sizes: list, rgb: np.ndarray, source: str, opts: dict, init: tuple) -> list[dict]:
    """The rows of one codec, measured in its own worker; a worker that dies (the OOM killer)
    gives a failed row, and a fresh worker measures the next resolution."""
    limit_mb = init[2]
    rows: list[dict] = []
    worker = _start_worker(init)
    try:
        for w, h in sizes:
            try:
                row = worker.call(f"{_POINTS}:held_point", spec, w, h, rgb, source, opts)
            except WorkerDied as exc:
                row = failed_row(spec, w, h, spec_device(spec), source, opts["repeats"], str(exc))
                log.warning("complexity: %s q%s at %dx%d: %s", spec.name, spec.quality, w, h, exc)
                worker.close()
                worker = _start_worker(init)
            if limit_mb is not None and row["status"] == "failed" and is_oom(row["error"]):
                row["error"] = f"{row['error']} [limit complexity.memory_limit_mb={limit_mb:g}]"[:600]
            rows.append(row)
    finally:
        worker.close()
    return rows
