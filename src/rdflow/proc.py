"""Child processes (encoders, decoders) run with their own resource usage recorded.

:func:`run` is ``subprocess.run`` (argument list, optional stdin bytes, captured output,
timeout) that reaps the child with ``os.wait4``, which returns the child's own CPU time and
peak RSS. A :class:`ChildMeter` open in the process (the complexity stage opens one around each
measured call) receives the usage of every child :func:`run` reaps while it is open, so a codec
that works in a child process (the ffmpeg anchors, an external command) is measured with its
process: CPU seconds of its children (``os.wait4``) and the largest child's peak RSS (its
``VmHWM``, sampled every 2 ms while it runs; see :class:`_PeakSampler`).

The meters are process-wide: the complexity stage measures one codec at a time with nothing
beside it (its job takes every core), so the children reaped inside a meter are the measured
codec's.
"""

from __future__ import annotations

import functools
import os
import subprocess
import threading
from dataclasses import dataclass

def imageio_ffmpeg_exe() -> str:
    """The ffmpeg binary of imageio-ffmpeg (``IMAGEIO_FFMPEG_EXE`` overrides it), looked up once
    per value of that variable: imageio-ffmpeg runs ``ffmpeg -version`` on every lookup (~20 ms),
    and the study's checks ask for it once per codec. Raises what imageio-ffmpeg raises
    (ImportError, RuntimeError; a failed lookup is not remembered); callers turn it into their
    own RdflowError."""
    import imageio_ffmpeg

    return _lookup(imageio_ffmpeg.get_ffmpeg_exe, os.environ.get("IMAGEIO_FFMPEG_EXE"))


@functools.lru_cache(maxsize=8)
def _lookup(get_ffmpeg_exe, _override: str | None) -> str:
    return get_ffmpeg_exe()


_LOCK = threading.Lock()
_OPEN: list["ChildMeter"] = []


@dataclass
class ChildMeter:
    """CPU seconds (user + system) of the children reaped while open, their number, and the
    peak RSS of the largest of them (MiB; NaN when none ran)."""

    cpu_s: float = 0.0
    count: int = 0
    max_rss_mb: float = float("nan")

    def __enter__(self) -> "ChildMeter":
        with _LOCK:
            _OPEN.append(self)
        return self

    def __exit__(self, *exc) -> None:
        with _LOCK:
            _OPEN.remove(self)

    def add(self, usage, peak_mb: float) -> None:
        self.cpu_s += usage.ru_utime + usage.ru_stime
        self.count += 1
        self.max_rss_mb = peak_mb if self.count == 1 else max(self.max_rss_mb, peak_mb)


def _metering() -> bool:
    with _LOCK:
        return bool(_OPEN)


def _record(usage, peak_mb: float) -> None:
    with _LOCK:
        for m in _OPEN:
            m.add(usage, peak_mb)


def _hwm_mb(pid: int) -> float | None:
    """VmHWM of a live process (MiB), None once it has exited (a zombie has no memory)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


class _PeakSampler(threading.Thread):
    """Reads the child's high-water mark (VmHWM) every ``interval`` s until stopped.

    Not ``ru_maxrss``: Linux folds the RSS of the image the child was forked from (this whole
    Python process) into it at exec. VmHWM is the peak of the child's own memory since exec
    (Popen returns only once exec has happened), and, being a high-water mark, a sample taken
    any time after the peak sees it: only growth in the last interval before exit is missed."""

    def __init__(self, pid: int, interval: float = 0.002):
        super().__init__(daemon=True, name="rdflow-child-rss")
        self.pid, self.interval, self.peak_mb = pid, interval, float("nan")
        self.stop = threading.Event()

    def run(self) -> None:
        while True:
            v = _hwm_mb(self.pid)
            if v is not None:
                self.peak_mb = v if self.peak_mb != self.peak_mb else max(self.peak_mb, v)
            if self.stop.wait(self.interval):
                return


def run(cmd: list[str], *, input: bytes | None = None, timeout: float | None = None,
        cwd: str | None = None, stdout: bool = True, group: bool = False) -> subprocess.CompletedProcess:
    """Run ``cmd`` (an argument list), feeding ``input``; return its exit status, stdout
    (unless ``stdout`` is false: discarded) and stderr. ``timeout``: the child (with ``group``,
    its whole process group: it runs in a session of its own) is killed and
    ``subprocess.TimeoutExpired`` raised. OSError (e.g. no such binary) propagates."""
    p = subprocess.Popen(list(cmd), cwd=cwd, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                         stdout=subprocess.PIPE if stdout else subprocess.DEVNULL, stderr=subprocess.PIPE,
                         start_new_session=group)
    out: dict[str, bytes] = {"stdout": b"", "stderr": b""}
    io_threads = _start_io(p, input, out)
    state = {"reaped": False, "killed": False}
    lock = threading.Lock()

    def kill() -> None:
        with lock:
            if not state["reaped"]:
                state["killed"] = True
                try:
                    os.killpg(p.pid, 9) if group else os.kill(p.pid, 9)
                except (ProcessLookupError, PermissionError):
                    pass

    timer = threading.Timer(timeout, kill) if timeout else None
    if timer:
        timer.daemon = True
        timer.start()
    sampler = _PeakSampler(p.pid) if _metering() else None
    if sampler:
        sampler.start()
    try:
        # wait for the exit without reaping, so that the pid stays this child's while the
        # sampler and the timer may still use it; then reap it with its resource usage
        os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
        if sampler:
            sampler.stop.set()
            sampler.join()
        with lock:
            state["reaped"] = True
        _, status, usage = os.wait4(p.pid, 0)
    finally:
        with lock:
            state["reaped"] = True
        if timer:
            timer.cancel()
    p.returncode = os.waitstatus_to_exitcode(status)
    for t in io_threads:
        t.join()
    _record(usage, sampler.peak_mb if sampler else float("nan"))
    if state["killed"]:
        raise subprocess.TimeoutExpired(cmd, timeout, out["stdout"], out["stderr"])
    return subprocess.CompletedProcess(cmd, p.returncode, out["stdout"], out["stderr"])


def _start_io(p: subprocess.Popen, input: bytes | None, out: dict) -> list[threading.Thread]:
    """Threads that drain the child's stdout/stderr into ``out`` and feed it ``input``."""

    def drain(name: str, fh) -> None:
        out[name] = fh.read()
        fh.close()

    threads = [threading.Thread(target=drain, args=(n, fh), daemon=True)
               for n, fh in (("stdout", p.stdout), ("stderr", p.stderr)) if fh is not None]
    if input is not None:
        threads.append(threading.Thread(target=_feed, args=(p.stdin, input), daemon=True))
    for t in threads:
        t.start()
    return threads


def _feed(fh, data: bytes) -> None:
    try:
        fh.write(data)
    except (BrokenPipeError, OSError):
        pass  # the child exited early; its status and stderr tell why
    finally:
        try:
            fh.close()
        except OSError:
            pass
