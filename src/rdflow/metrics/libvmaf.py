"""Which ffmpeg has libvmaf, and which built-in VMAF models its libvmaf loads.

The ffmpeg is the static build of ``imageio-ffmpeg==0.8.1`` (built with libvmaf):
:func:`find_ffmpeg_with_libvmaf` checks that its ``-filters`` list names ``libvmaf``;
:func:`check_model` that ``libvmaf=model=version=<model>`` initialises. Both answers are asked
of the binary once and remembered per binary (rdflow.toolcache): the study's checks run at
every Snakemake start. rdflow.metrics.vmaf computes the scores.
"""

from __future__ import annotations

import functools
import subprocess

from .. import RdflowError

#: The model used unless one is asked for: the "no enhancement gain" variant, for codec comparisons.
DEFAULT_MODEL = "vmaf_v0.6.1neg"
#: libvmaf built-in model versions that are tried when listing what the binary accepts.
CANDIDATE_MODELS = ("vmaf_v0.6.1", "vmaf_v0.6.1neg", "vmaf_4k_v0.6.1", "vmaf_4k_v0.6.1neg",
                    "vmaf_float_v0.6.1", "vmaf_float_v0.6.1neg", "vmaf_float_4k_v0.6.1",
                    "vmaf_float_4k_v0.6.1neg", "vmaf_b_v0.6.3", "vmaf_float_b_v0.6.3")
INSTALL_HINT = "pip install imageio-ffmpeg==0.8.1"


# --------------------------------------------------------------------------- ffmpeg binary
@functools.lru_cache(maxsize=None)
def _filters_of(exe: str) -> tuple[int, str]:
    try:
        p = subprocess.run([exe, "-hide_banner", "-filters"], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, errors="replace", timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return -1, str(e)
    return p.returncode, p.stdout


def _lists_libvmaf(exe: str) -> bool:
    rc, out = _filters_of(exe)
    return rc == 0 and any(line.split()[1:2] == ["libvmaf"] for line in out.splitlines())


def _has_libvmaf(exe: str) -> bool:
    """Whether ``exe -filters`` lists libvmaf (a yes is remembered per binary: rdflow.toolcache)."""
    from ..toolcache import remembered

    return bool(remembered(exe, "ffmpeg -filters has libvmaf", lambda: _lists_libvmaf(exe),
                           keep=bool))


def _imageio_ffmpeg_exe() -> str:
    from ..proc import imageio_ffmpeg_exe

    try:
        return imageio_ffmpeg_exe()
    except ImportError:
        raise RdflowError(f"VMAF needs the ffmpeg of imageio-ffmpeg, which is not installed: "
                          f"{INSTALL_HINT}") from None
    except RuntimeError as e:
        raise RdflowError(f"imageio-ffmpeg found no ffmpeg binary ({e}); reinstall it: "
                          f"{INSTALL_HINT}") from None


def check_ffmpeg(exe: str) -> str:
    """Return ``exe`` if its ``-filters`` list has libvmaf, else raise :class:`RdflowError`."""
    if not _has_libvmaf(exe):
        rc, out = _filters_of(exe)
        why = (f"'{exe} -filters' failed (exit {rc}: {out.strip()[-300:]})" if rc != 0
               else f"'{exe} -filters' does not list libvmaf")
        raise RdflowError(f"no ffmpeg with libvmaf: {why}. The static ffmpeg of imageio-ffmpeg "
                          f"0.8.1 has it: {INSTALL_HINT} (Debian's ffmpeg has no libvmaf)")
    return exe


def find_ffmpeg_with_libvmaf() -> str:
    """The ffmpeg binary of imageio-ffmpeg, after checking that it has the libvmaf filter."""
    return check_ffmpeg(_imageio_ffmpeg_exe())


def _ffmpeg_exe(ffmpeg: str | None) -> str:
    return check_ffmpeg(ffmpeg) if ffmpeg else find_ffmpeg_with_libvmaf()


# --------------------------------------------------------------------------- models
@functools.lru_cache(maxsize=None)
def _model_loads(exe: str, model: str) -> bool:
    """Whether ``libvmaf=model=version=<model>`` initialises (a 1-frame 32x32 run, ~20 ms; a yes
    is remembered per binary: rdflow.toolcache)."""
    if not model or any(c in model for c in ":=,;[]'\"\\ \t\n"):
        return False
    from ..toolcache import remembered

    return bool(remembered(exe, f"libvmaf loads model {model}", lambda: _try_model(exe, model),
                           keep=bool))


def _try_model(exe: str, model: str) -> bool:
    src = "color=c=gray:s=32x32:d=0.04,format=yuv420p"
    p = subprocess.run([exe, "-hide_banner", "-nostdin", "-v", "error", "-f", "lavfi", "-i", src,
                        "-f", "lavfi", "-i", src, "-lavfi",
                        f"[0:v][1:v]libvmaf=model=version={model}:n_threads=1", "-f", "null", "-"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    return p.returncode == 0


def available_models(ffmpeg: str | None = None) -> list[str]:
    """The :data:`CANDIDATE_MODELS` that this ffmpeg's libvmaf accepts as ``model=version=``."""
    exe = _ffmpeg_exe(ffmpeg)
    return [m for m in CANDIDATE_MODELS if _model_loads(exe, m)]


def check_model(model: str, ffmpeg: str | None = None) -> str:
    """Return ``model`` if libvmaf loads it, else raise :class:`RdflowError` listing known ones."""
    exe = _ffmpeg_exe(ffmpeg)
    if not isinstance(model, str) or not _model_loads(exe, model):
        raise RdflowError(f"unknown VMAF model {model!r} (config key vmaf.model); this libvmaf "
                          f"knows: {', '.join(available_models(exe))}")
    return model
