"""Child processes (encoders, decoders) run with their own resource usage recorded.

:func:`run` is ``subprocess.run`` (argument list, optional stdin bytes, captured output,
timeout) that reaps the child with ``os.wait4``, which returns the child's own CPU time and
peak RSS. A :class:`ChildMeter` open in the process (the complexity stage opens one around each
measured call) receives the usage of every child :func:`run` reaps while it is open, so a codec
that works in a child process (the ffmpeg anchors, an external command) is measured with its
process: CPU seconds of its children and the largest child's peak RSS.

The meters are process-wide: the complexity stage measures one codec at a time with nothing
beside it (its job takes every core), so the children reaped inside a meter are the measured
codec's.
"""

from __future__ import annotations

import os
import subprocess
import threading
from dataclasses import dataclass

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

    def add(self, usage) -> None:
        self.cpu_s += usage.ru_utime + usage.ru_stime
        self.count += 1
        rss = usage.ru_maxrss / 1024.0  # KiB on Linux
        self.max_rss_mb = rss if self.count == 1 else max(self.max_rss_mb, rss)


def _record(usage) -> None:
    with _LOCK:
        for m in _OPEN:
            m.add(usage)


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

    def drain(name: str, fh) -> None:
        out[name] = fh.read()
        fh.close()

    readers = [threading.Thread(target=drain, args=(n, fh), daemon=True)
               for n, fh in (("stdout", p.stdout), ("stderr", p.stderr)) if fh is not None]
    for t in readers:
        t.start()
    feeder = None
    if input is not None:
        feeder = threading.Thread(target=_feed, args=(p.stdin, input), daemon=True)
        feeder.start()
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
    try:
        _, status, usage = os.wait4(p.pid, 0)
    finally:
        with lock:
            state["reaped"] = True
        if timer:
            timer.cancel()
    p.returncode = os.waitstatus_to_exitcode(status)
    for t in readers + ([feeder] if feeder else []):
        t.join()
    _record(usage)
    if state["killed"]:
        raise subprocess.TimeoutExpired(cmd, timeout, out["stdout"], out["stderr"])
    return subprocess.CompletedProcess(cmd, p.returncode, out["stdout"], out["stderr"])


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
