"""Job runtime helpers: per-job log files for in-process jobs, and torch thread settings.

rdflow's coding rules are ``run:`` jobs that Snakemake executes in threads of its own process
(``force-use-threads`` in profiles/default), so that torch and CompressAI are imported once per
workflow run instead of once per image. Each job still gets its own ``log:`` file: the handler
installed here only takes records emitted by the job's own thread.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import traceback
from pathlib import Path
from typing import Iterator

_threads_lock = threading.Lock()
_stack_lock = threading.Lock()  # import_stack
#: held while torch is being imported (taken after torch's module lock), and while scipy runs
#: (:func:`torch_settled`, whose blocks must not import torch)
_torch_lock = threading.RLock()
_imported = False

#: the heavy packages jobs share, in an order that imports each one's dependencies first
STACK = ("numpy", "torch", "torch.nn.functional", "compressai", "compressai.ops", "compressai.zoo",
         "compressai.zoo.image", "compressai.zoo.video", "compressai.losses", "pytorch_msssim")


def import_stack() -> None:
    """Import torch, CompressAI and pytorch-msssim once, one thread at a time.

    Jobs run in threads of the Snakemake process; two threads that import CompressAI for the
    first time at once can die with ``_DeadlockError`` (CompressAI's zoo modules import each
    other). Every job that needs the stack calls this first: one thread imports, the others
    wait for it, later calls return at once.
    """
    global _imported
    if _imported:
        return
    import importlib

    with _stack_lock:
        if not _imported:
            for name in STACK:
                importlib.import_module(name)
            _imported = True


class _LockedLoader:
    """torch's own loader, with :data:`_torch_lock` held from ``create_module`` (before torch
    enters ``sys.modules``) to the end of ``exec_module``."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        _torch_lock.acquire()
        try:
            return self._loader.create_module(spec)
        except BaseException:
            _torch_lock.release()
            raise

    def exec_module(self, module) -> None:
        try:
            self._loader.exec_module(module)
        finally:
            _torch_lock.release()

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _TorchFinder:
    """A ``sys.meta_path`` finder that hands torch's spec to :class:`_LockedLoader`."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "torch":
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(fullname, path)
        if spec is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _LockedLoader(spec.loader)
        return spec


def serialise_torch_import() -> None:
    """Make the first ``import torch`` of this process exclusive with :func:`torch_settled`.

    scipy looks torch up in ``sys.modules`` (to tell torch tensors from arrays) at import and in
    functions such as ``pearsonr``; a torch that another job thread is still importing has no
    ``Tensor`` yet, and scipy fails with "partially initialized module 'torch'". Called at the
    start of a run (``onstart``) and by :func:`torch_settled`; does nothing once torch is
    imported or the finder is installed.
    """
    import sys

    if "torch" in sys.modules or any(isinstance(f, _TorchFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _TorchFinder())


@contextlib.contextmanager
def torch_settled() -> Iterator[None]:
    """While the block runs, torch is either fully imported or not being imported: wrap every use
    of scipy in a job (:func:`serialise_torch_import`). The block must not import torch: a torch
    import holds torch's module lock, then this lock."""
    serialise_torch_import()
    with _torch_lock:
        yield


class _ThreadFilter(logging.Filter):
    def __init__(self, ident: int):
        super().__init__()
        self.ident = ident

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread == self.ident


@contextlib.contextmanager
def job_log(path: str | Path | None, name: str = "rdflow") -> Iterator[logging.Logger]:
    """Send this thread's ``rdflow`` log records to ``path`` while the block runs.

    An exception is logged with its traceback before it propagates, so the log explains a
    failed job.
    """
    logger = logging.getLogger(name)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    if path is None:
        yield logger
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_ThreadFilter(threading.get_ident()))
    logging.getLogger().addHandler(handler)
    t0 = time.perf_counter()
    try:
        yield logger
        logger.info("done in %.2f s", time.perf_counter() - t0)
    except BaseException as exc:
        logger.error("failed: %s\n%s", exc, traceback.format_exc())
        raise
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def set_torch_threads(n: int) -> int:
    """Set torch's intra-op threads (process-wide) to ``n``; returns the value in force.

    All coding jobs of a run declare the same ``threads``, so setting it from every job is
    consistent. Torch is only imported if it already is or when a learned codec needs it.
    """
    import torch

    n = max(1, int(n))
    with _threads_lock:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
        return torch.get_num_threads()


class Cache:
    """The one in-process cache of loaded models (codecs, sequence codecs, detectors): a small LRU
    keyed by a string that identifies what was built. One thread builds a key while the others
    with the same key wait for it; different keys build side by side."""

    def __init__(self, maxsize: int = 6):
        import collections

        self.maxsize = maxsize
        self._items: "collections.OrderedDict[str, object]" = collections.OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[str, threading.Lock] = {}

    def get(self, key: str, build):
        """The object cached under ``key``, or ``build()``'s result, cached."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            build_lock = self._building.setdefault(key, threading.Lock())
        with build_lock:
            with self._lock:
                if key in self._items:
                    return self._items[key]
            value = build()
            with self._lock:
                self._items[key] = value
                while len(self._items) > self.maxsize:
                    self._items.popitem(last=False)
                self._building.pop(key, None)
            return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def remove_stale_parts(folders=("results", "resources")) -> int:
    """Delete the temporary ``.<name>.<hex>.part`` files that a killed run's atomic writes left
    behind (rdflow.io). Called when a run starts: Snakemake's lock on the working directory
    means no other run is writing them. Returns how many were removed."""
    import re

    pattern = re.compile(r"^\..+\.[0-9a-f]{8}\.part$|^\..+\.part$")
    n = 0
    for folder in folders:
        root = Path(folder)
        if not root.is_dir():
            continue
        for p in root.rglob(".*.part"):
            if p.is_file() and pattern.match(p.name):
                p.unlink(missing_ok=True)
                n += 1
    if n:
        logging.getLogger("rdflow").warning("removed %d partial file(s) a killed run left behind", n)
    return n


def run_logged(log_path: str | Path | None, fn, *args, **kwargs):
    """A rule's whole ``run:`` block: ``fn(*args, **kwargs)`` with this thread's ``rdflow`` log
    records in ``log_path`` (:func:`job_log`)."""
    with job_log(log_path):
        return fn(*args, **kwargs)
