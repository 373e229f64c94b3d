"""The bundled ffmpeg as a tool: finding it, running it, its version, its encoders, PPM output.

Shared by the image anchors (rdflow.codecs.ffmpeg) and the sequence codecs
(rdflow.codecs.sequence, x26x).
"""

from __future__ import annotations

import functools
import re
import subprocess

import numpy as np

from .. import RdflowError

INSTALL_FIX = ("set the environment variable IMAGEIO_FFMPEG_EXE to an ffmpeg that lists it in "
               "'ffmpeg -encoders', or reinstall imageio-ffmpeg==0.8.1, whose bundled build has "
               "libopenjpeg, libx265, libaom-av1 and libjxl (pip install --force-reinstall "
               "imageio-ffmpeg==0.8.1)")


def ffmpeg_exe() -> str:
    """The ffmpeg binary of imageio-ffmpeg (``IMAGEIO_FFMPEG_EXE`` overrides it)."""
    from ..proc import imageio_ffmpeg_exe

    try:
        return imageio_ffmpeg_exe()
    except ImportError:
        raise RdflowError("the ffmpeg codecs need imageio-ffmpeg, which is not installed: "
                          "pip install imageio-ffmpeg==0.8.1") from None
    except RuntimeError as e:
        raise RdflowError(f"imageio-ffmpeg found no ffmpeg binary ({e}); {INSTALL_FIX}") from None


def _run(exe: str, args: list[str], data: bytes | None = None, *, what: str) -> bytes:
    """Run ffmpeg once; its stdout, or RdflowError with the command and the end of stderr."""
    from ..proc import run

    cmd = [exe, "-hide_banner", "-nostats", *args]
    try:
        p = run(cmd, input=data)  # the child's CPU time and peak RSS count in complexity
    except OSError as e:
        raise RdflowError(f"{what}: could not run {exe} ({e}); {INSTALL_FIX}") from None
    if p.returncode != 0:
        err = p.stderr.decode("utf-8", "replace").strip()[-1500:]
        raise RdflowError(f"{what}: ffmpeg exited with {p.returncode}.\ncommand: "
                          f"{' '.join(cmd)}\n{err}")
    return p.stdout


def _version(exe: str) -> str:
    out = _run(exe, ["-version"], what="ffmpeg -version").decode("utf-8", "replace")
    m = re.search(r"ffmpeg version (\S+)", out)
    return m.group(1) if m else "unknown"


@functools.lru_cache(maxsize=None)
def ffmpeg_version(exe: str) -> str:
    """``ffmpeg -version``'s version (remembered per binary: rdflow.toolcache)."""
    from ..toolcache import remembered

    return remembered(exe, "ffmpeg version", lambda: _version(exe),
                      keep=lambda v: v != "unknown")


def _encoders(exe: str) -> list[str]:
    out = _run(exe, ["-encoders"], what=f"{exe} -encoders").decode("utf-8", "replace")
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and re.fullmatch(r"[VASFXBD.]{6}", parts[0]) and parts[1] != "=":
            names.add(parts[1])
    return sorted(names)


@functools.lru_cache(maxsize=None)
def available_encoders(exe: str) -> frozenset[str]:
    """Names in ``ffmpeg -encoders`` (remembered per binary: rdflow.toolcache)."""
    from ..toolcache import remembered

    return frozenset(remembered(exe, "ffmpeg -encoders", lambda: _encoders(exe), keep=bool))


def require_encoder(encoder: str, *, where: str, exe: str | None = None) -> str:
    """The ffmpeg binary, after checking that it has ``encoder``; RdflowError naming it if not."""
    exe = exe or ffmpeg_exe()
    if encoder not in available_encoders(exe):
        raise RdflowError(
            f"{where}: the ffmpeg encoder {encoder} is missing from {exe} (version "
            f"{ffmpeg_version(exe)}; see '{exe} -encoders'). Fix: {INSTALL_FIX}, or remove "
            "this codec from config.yaml")
    return exe


def read_ppm(data: bytes, *, what: str) -> np.ndarray:
    """An 8-bit binary PPM (P6) as HxWx3 uint8."""
    m = re.match(rb"P6\s+(\d+)\s+(\d+)\s+(\d+)\s", data)
    if not m or int(m.group(3)) != 255:
        raise RdflowError(f"{what}: ffmpeg did not return an 8-bit PPM image")
    w, h = int(m.group(1)), int(m.group(2))
    body = data[m.end():m.end() + w * h * 3]
    if len(body) != w * h * 3:
        raise RdflowError(f"{what}: ffmpeg returned a truncated {w}x{h} image")
    return np.frombuffer(body, np.uint8).reshape(h, w, 3).copy()


@functools.lru_cache(maxsize=None)
def _library_version(exe: str, encoder: str) -> str:
    """The encoder library's version, from a probe encode of a 64x64 image (cached)."""
    probe = {
        "libx265": (["-c:v", "libx265", "-x265-params", "qp=30:log-level=info", "-f", "hevc"],
                    rb"HEVC encoder version (\S+)", "x265 {}"),
        "libaom-av1": (["-c:v", "libaom-av1", "-usage", "allintra", "-cpu-used", "8", "-crf",
                        "40", "-b:v", "0", "-f", "obu"], rb"\] v(\d\S*)", "libaom {}"),
        "libopenjpeg": (["-c:v", "libopenjpeg", "-format", "j2k", "-f", "image2pipe"],
                        rb"Created by OpenJPEG version ([0-9][0-9A-Za-z.+-]*)", "OpenJPEG {}"),
        "libvvenc": (["-c:v", "libvvenc", "-preset", "faster", "-qp", "40", "-f", "vvc"],
                     rb"libvvenc version: (\S+)", "VVenC {}"),
        "libsvtav1": (["-c:v", "libsvtav1", "-preset", "12", "-crf", "50", "-f", "obu"],
                      rb"SVT-AV1 Encoder Lib v?(\S+)", "SVT-AV1 {}"),
    }
    if encoder not in probe:
        return f"{encoder} version not reported by ffmpeg"
    args, pattern, fmt = probe[encoder]
    cmd = [exe, "-hide_banner", "-loglevel", "verbose", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", "64x64", "-i", "pipe:0", *args, "-frames:v", "1", "pipe:1"]
    try:
        p = subprocess.run(cmd, input=bytes(64 * 64 * 3), capture_output=True)
    except OSError:
        return "unknown version"
    m = re.search(pattern, p.stderr + p.stdout)
    return fmt.format(m.group(1).decode("ascii", "replace")) if m else "unknown version"


