"""The one worker-process protocol: a child Python process that serves function calls.

Used where a job must not run in the Snakemake process itself: detection (importing
ultralytics changes process-wide torch and OpenMP thread settings) and complexity measurement
(memory measured in isolation, a memory cap that cannot hurt the workflow). A worker is a plain
``python -c`` subprocess, not multiprocessing: a spawn/forkserver child re-imports the parent's
``__main__``, which breaks under Snakemake's ``script:`` directive and any unguarded script.

Requests and replies are pickles over the child's stdin/stdout; the child's fd 1 is moved to
stderr first, so a stray ``print`` cannot corrupt the protocol. A request names a function by
``"package.module:function"`` (rdflow's own code, never data); its ``rdflow`` log records come
back with the reply. A worker that dies fails only the call it served (:class:`WorkerDied`).
"""

from __future__ import annotations

import atexit
import importlib
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import traceback

from . import RdflowError

log = logging.getLogger("rdflow.worker")


class WorkerDied(Exception):
    """The worker process ended while serving a call (message: how it ended)."""


def resolve(target: str):
    """The function ``"package.module:function"`` names (only ``rdflow`` modules serve)."""
    module, _, name = target.partition(":")
    if not module.startswith("rdflow.") or not name:
        raise ValueError(f"worker target {target!r} is not an rdflow function")
    return getattr(importlib.import_module(module), name)


def _reply(out, status: str, payload, lines: list[str]) -> None:
    try:
        data = pickle.dumps((status, payload, lines), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001  a result or exception that does not pickle
        data = pickle.dumps((status, RuntimeError(str(payload)), lines), protocol=pickle.HIGHEST_PROTOCOL)
    out.write(data)
    out.flush()


def serve() -> None:
    """The child's main loop: ``(target, args, kwargs)`` in, ``(status, payload, log lines)`` out;
    status ``ok`` (payload: the result), ``user-error`` (an RdflowError's text) or ``error``
    (the exception, or its text with a traceback when it does not pickle)."""
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    proto_in = sys.stdin.buffer
    lines: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record):
            lines.append(self.format(record))

    handler = _Collect(logging.INFO)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    root = logging.getLogger("rdflow")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    while True:
        try:
            target, args, kwargs = pickle.load(proto_in)
        except EOFError:
            return
        lines.clear()
        try:
            _reply(proto_out, "ok", resolve(target)(*args, **kwargs), list(lines))
        except RdflowError as exc:
            _reply(proto_out, "user-error", str(exc), list(lines))
        except BaseException as exc:  # noqa: BLE001  raised again in the parent
            exc.__rdflow_traceback__ = traceback.format_exc()
            _reply(proto_out, "error", exc, list(lines))


def limit_data_memory(limit_mb: float) -> None:
    """Cap this process's data memory (Linux RLIMIT_DATA) at ``limit_mb`` MiB: an allocation
    beyond it fails (MemoryError) instead of swapping or waking the kernel's OOM killer."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    soft = int(limit_mb * 2**20)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def close_process(proc, timeout: float = 30) -> None:
    """End a pipe-driven process: close its stdin (its signal to exit), wait, kill it if it does
    not go, and close both pipes."""
    if proc.poll() is None:
        try:
            proc.stdin.close()
            proc.wait(timeout=timeout)
        except Exception:  # noqa: BLE001
            proc.kill()
            proc.wait()
    for fh in (proc.stdin, proc.stdout):
        try:
            fh.close()
        except OSError:
            pass


class Worker:
    """One child process; :meth:`call` runs a function there and returns its result.

    ``what`` names the worker in errors ("detection", "complexity"). Log lines the call emitted
    in the child are logged here under ``rdflow.worker``.
    """

    def __init__(self, what: str, close_timeout: float = 30):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # tests, src, plugins
        self.what = what
        self.close_timeout = close_timeout
        self.proc = subprocess.Popen([sys.executable, "-c", "from rdflow.worker import serve; serve()"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        log.info("started %s worker process %d", what, self.proc.pid)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _send(self, target: str, args, kwargs):
        try:
            pickle.dump((target, args, kwargs), self.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self.proc.stdin.flush()
            return pickle.load(self.proc.stdout)
        except (EOFError, BrokenPipeError, pickle.UnpicklingError):
            raise WorkerDied(self._death()) from None

    def call(self, target: str, *args, **kwargs):
        status, payload, lines = self._send(target, args, kwargs)
        for line in lines:
            log.info("%s worker %d: %s", self.what, self.pid, line)
        if status == "user-error":
            raise RdflowError(payload)
        if status == "error":
            if isinstance(payload, BaseException):
                raise payload
            raise RuntimeError(f"{self.what} worker process {self.pid} failed: {payload}")
        return payload

    def _death(self) -> str:
        try:
            rc = self.proc.wait(timeout=30)
        except Exception:  # noqa: BLE001
            self.proc.kill()
            rc = self.proc.wait()
        if rc < 0:
            name = signal.Signals(-rc).name if -rc in signal.Signals._value2member_map_ else str(-rc)
            hint = " (the kernel's out-of-memory killer sends SIGKILL; see dmesg)" if rc == -9 else ""
            return f"{self.what} worker process was killed by {name}{hint}"
        return f"{self.what} worker process exited with code {rc} (its stderr says why)"

    def close(self) -> None:
        close_process(self.proc, timeout=self.close_timeout)


class Pool:
    """Idle workers of one kind, reused by the jobs of one process (each job takes one and gives
    it back), so a model is imported and loaded once per worker and run, not once per job."""

    def __init__(self, what: str):
        self.what = what
        self._idle: list[Worker] = []
        self._lock = threading.Lock()
        atexit.register(self.close)

    def call(self, target: str, *args, **kwargs):
        with self._lock:
            worker = self._idle.pop() if self._idle else None
        worker = worker or Worker(self.what)
        try:
            result = worker.call(target, *args, **kwargs)
        except WorkerDied:
            worker.close()
            raise
        except RdflowError:
            self.give_back(worker)
            raise
        except BaseException:
            worker.close()
            raise
        self.give_back(worker)
        return result

    def give_back(self, worker: Worker) -> None:
        with self._lock:
            self._idle.append(worker)

    def close(self) -> None:
        with self._lock:
            workers, self._idle[:] = list(self._idle), []
        for w in workers:
            w.close()
