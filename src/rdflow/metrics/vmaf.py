"""VMAF (and PSNR-Y/U/V) of 8-bit YUV 4:2:0 video or images with ffmpeg's libvmaf filter.

The ffmpeg is the static build of ``imageio-ffmpeg==0.8.1`` (built with libvmaf);
:func:`find_ffmpeg_with_libvmaf` (rdflow.metrics.libvmaf) checks that its ``-filters`` list names
``libvmaf``.
One ffmpeg run computes, per frame, both

* VMAF with a built-in libvmaf model (``model=version=...``; default ``vmaf_v0.6.1neg``, the
  "no enhancement gain" variant meant for comparing codecs; ``vmaf_v0.6.1`` is the classic one)
  plus libvmaf's feature values (``integer_adm2``, ``integer_vif_scale0``...) from its JSON log;
* PSNR (``psnr_y/u/v``) and MSE (``mse_y``...) of each plane from ffmpeg's ``psnr`` filter, at
  full precision from the frame metadata (``metadata=mode=print``). Not clipped: identical
  planes give ``inf`` (libvmaf's own psnr stops at 60 dB). ``10*log10(255**2/MSE)``.

Filter graph: ``[1]split[r1][r2]; [0][r1]psnr,metadata=print[d]; [d][r2]libvmaf`` (input 0 is
the distorted video, "main"; input 1 the reference), raw ``yuv420p`` in. A file input is read
by ffmpeg; an in-memory one is streamed over stdin; with both in memory the reference is first
written to a private temporary directory (``TMPDIR``), so no two pipes compete and nothing is
written as PNG. ffmpeg runs in that directory and writes its logs there (no path to escape in
the filter string). On success the JSON log is copied atomically to ``log_path``; on failure
nothing is written and :class:`rdflow.RdflowError` carries the exit status and stderr's tail.

RGB input (:func:`vmaf_rgb_frames`, :func:`vmaf_image`: one pair as a one-frame video, motion
0) goes through :func:`rdflow.metrics.yuv.rgb_to_yuv420`, the conversion of rdflow's
PSNR-Y/U/V; VMAF uses luma only, so matrix and range change it, chroma siting only psnr_u/v.
``n_threads`` sets libvmaf's ``n_threads`` and ffmpeg's ``-filter_threads`` (give the job's).
About 10 frames per CPU-second at 1920x1080, 220 at 320x240 (2 shared AMD EPYC AVX2 cores).
libvmaf's integer models crash (SIGSEGV) on frames of 16 pixels or fewer in either dimension:
such sizes are refused up front (:data:`MIN_SIDE`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from .. import RdflowError
from .libvmaf import (  # noqa: F401 (the binary and model checks are part of this API)
    CANDIDATE_MODELS, DEFAULT_MODEL, INSTALL_HINT, _ffmpeg_exe, available_models, check_ffmpeg,
    check_model, find_ffmpeg_with_libvmaf)
from .yuv import rgb_to_yuv420

#: Smallest width and height accepted (libvmaf's integer ADM crashes at 16 pixels or fewer).
MIN_SIDE = 17
_STDERR_TAIL = 2000

Frames = Union[bytes, bytearray, memoryview, np.ndarray, str, os.PathLike]


# --------------------------------------------------------------------------- inputs
def i420_frame_bytes(width: int, height: int) -> int:
    """Bytes of one 8-bit I420 (yuv420p) frame; chroma planes are ceil(W/2) x ceil(H/2)."""
    return width * height + 2 * ((width + 1) // 2) * ((height + 1) // 2)


def _as_input(data: Frames, role: str, width: int, height: int):
    """(path or None, bytes-like or None, number of frames) for one input, validated."""
    fsize = i420_frame_bytes(width, height)
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if not path.is_file():
            raise RdflowError(f"{role} video {path} does not exist or is not a file")
        n_bytes, buf = path.stat().st_size, None
        what = f"{role} file {path}"
    else:
        if isinstance(data, np.ndarray):
            if data.dtype != np.uint8:
                raise RdflowError(f"{role} frames must be 8-bit (uint8), got {data.dtype}")
            data = np.ascontiguousarray(data)
        try:
            buf = memoryview(data).cast("B")
        except TypeError:
            raise RdflowError(f"{role} must be raw I420 bytes, a uint8 array or a file path, "
                              f"got {type(data).__name__}") from None
        path, n_bytes = None, buf.nbytes
        what = f"{role} ({n_bytes} bytes in memory)"
    if n_bytes == 0 or n_bytes % fsize:
        raise RdflowError(f"{what}: {n_bytes} bytes is not a whole, non-zero number of "
                          f"{width}x{height} 8-bit I420 frames ({fsize} bytes each); "
                          f"check the width, height and pixel format")
    return path, buf, n_bytes // fsize


def _stderr_tail(err: bytes) -> str:
    text = err.decode("utf-8", "replace").strip()
    return text[-_STDERR_TAIL:] if text else "(ffmpeg wrote nothing to stderr)"


def _exit_reason(rc: int) -> str:
    if rc < 0:
        try:
            return f"was killed by signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"was killed by signal {-rc}"
    return f"exited with status {rc}"


# --------------------------------------------------------------------------- core
def _check_args(width, height, n_threads) -> None:
    for name, v in (("width", width), ("height", height)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < MIN_SIDE:
            raise RdflowError(f"{name} {v!r} is not an integer >= {MIN_SIDE}: libvmaf cannot "
                              f"score frames that small (frame size {width}x{height})")
    if not isinstance(n_threads, (int, np.integer)) or n_threads < 1:
        raise RdflowError(f"n_threads must be an integer >= 1, got {n_threads!r}")


def _stage_inputs(tmp: Path, ref, dist):
    """ffmpeg's input arguments of reference and distorted, and the bytes for its stdin: a file
    is read by ffmpeg; one in-memory input is streamed; with two, the reference is written."""
    (ref_path, ref_buf), (dist_path, dist_buf) = ref, dist
    if ref_buf is not None and dist_buf is not None:
        ref_path = tmp / "ref.yuv"
        ref_path.write_bytes(ref_buf)
        ref_buf = None

    def arg(path, buf) -> str:
        return "pipe:0" if buf is not None else "file:" + str(Path(path).resolve())

    stdin_data = dist_buf if dist_buf is not None else ref_buf
    return arg(ref_path, ref_buf), arg(dist_path, dist_buf), stdin_data


def _command(exe: str, ref_arg: str, dist_arg: str, width: int, height: int, model: str,
             n_threads: int, stdin: bool) -> list[str]:
    raw = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-video_size", f"{width}x{height}",
           "-framerate", "25"]
    graph = ("[1:v]split=2[r1][r2];"
             "[0:v][r1]psnr,metadata=mode=print:file=psnr.txt[d];"
             f"[d][r2]libvmaf=model=version={model}:log_fmt=json:log_path=vmaf.json"
             f":n_threads={n_threads}")
    cmd = [exe, "-hide_banner", "-nostats", "-v", "warning"]
    if not stdin:
        cmd.append("-nostdin")
    return cmd + ["-filter_threads", str(n_threads), "-filter_complex_threads", str(n_threads),
                  *raw, "-i", dist_arg, *raw, "-i", ref_arg,
                  "-filter_complex", graph, "-f", "null", "-"]


def _run(cmd: list[str], tmp: Path, stdin_data, what: str) -> bytes:
    """Run ffmpeg in ``tmp``; its stderr, or :class:`RdflowError` (``what``: the pair)."""
    try:
        proc = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                stdin=subprocess.PIPE if stdin_data is not None
                                else subprocess.DEVNULL)
    except OSError as e:
        raise RdflowError(f"cannot run ffmpeg {cmd[0]}: {e}; {INSTALL_HINT}") from None
    _, err = proc.communicate(stdin_data)
    if proc.returncode != 0:
        raise RdflowError(f"ffmpeg libvmaf {_exit_reason(proc.returncode)} on {what}. "
                          f"Command: {' '.join(map(str, cmd))}\n"
                          f"stderr tail:\n{_stderr_tail(err)}")
    return err


def _read_logs(tmp: Path, n: int, err: bytes) -> tuple[dict, list[dict]]:
    """libvmaf's JSON log and the per-frame rows of both logs (see :func:`vmaf_yuv420`)."""
    try:
        log = json.loads((tmp / "vmaf.json").read_text())
        psnr_rows = _parse_psnr_metadata((tmp / "psnr.txt").read_text())
    except (OSError, ValueError) as e:
        raise RdflowError(f"ffmpeg exited 0 but its logs are unreadable ({e}); "
                          f"stderr tail:\n{_stderr_tail(err)}") from None
    vmaf_rows = sorted(log.get("frames", []), key=lambda f: f["frameNum"])
    if len(vmaf_rows) != n or len(psnr_rows) != n:
        raise RdflowError(f"ffmpeg scored {len(vmaf_rows)} (VMAF) and {len(psnr_rows)} "
                          f"(PSNR) frames, expected {n}; stderr tail:\n{_stderr_tail(err)}")
    rows = []
    for i, (v, p) in enumerate(zip(vmaf_rows, psnr_rows)):
        metrics = dict(v["metrics"])
        row = {"frame": i, "vmaf": float(metrics.pop("vmaf"))}
        row.update((k, p[k]) for k in ("psnr_y", "psnr_u", "psnr_v", "mse_y", "mse_u", "mse_v"))
        row.update({k: float(x) for k, x in metrics.items()})
        rows.append(row)
    return log, rows


def vmaf_yuv420(ref: Frames, dist: Frames, width: int, height: int, *,
                model: str = DEFAULT_MODEL, n_threads: int = 1,
                log_path: str | os.PathLike | None = None, ffmpeg: str | None = None):
    """Per-frame VMAF, libvmaf features and PSNR-Y/U/V of 8-bit I420 ``dist`` against ``ref``.

    ``ref`` and ``dist`` are raw yuv420p streams (one or more frames, ``width`` x ``height``):
    bytes-like or uint8 arrays in memory, or paths of raw files. Returns a pandas DataFrame with
    one row per frame: ``frame`` (0-based), ``vmaf``, ``psnr_y``, ``psnr_u``, ``psnr_v``,
    ``mse_y``, ``mse_u``, ``mse_v`` and libvmaf's feature columns; ``df.attrs`` holds
    ``model``, ``n_threads``, ``libvmaf_version`` and ``fps`` (libvmaf's own speed).
    ``log_path``: where to keep libvmaf's JSON log (written only on success).
    ``n_threads``: libvmaf's and ffmpeg's filter threads (give the job's threads).
    """
    import pandas as pd

    from ..io import atomic_path

    _check_args(width, height, n_threads)
    width, height, n_threads = int(width), int(height), int(n_threads)
    exe = _ffmpeg_exe(ffmpeg)
    check_model(model, exe)
    ref_path, ref_buf, n_ref = _as_input(ref, "reference", width, height)
    dist_path, dist_buf, n_dist = _as_input(dist, "distorted", width, height)
    if n_ref != n_dist:
        raise RdflowError(f"frame counts differ: reference has {n_ref}, distorted has {n_dist} "
                          f"{width}x{height} I420 frames; they must be equal")
    what = (f"reference {ref_path if ref_path is not None else '(in memory)'} vs distorted "
            f"{dist_path if dist_path is not None else '(in memory)'} ({n_ref} frames "
            f"{width}x{height}, model {model})")
    with tempfile.TemporaryDirectory(prefix="rdflow-vmaf-") as tmp:
        tmp = Path(tmp)
        ref_arg, dist_arg, stdin_data = _stage_inputs(tmp, (ref_path, ref_buf),
                                                      (dist_path, dist_buf))
        cmd = _command(exe, ref_arg, dist_arg, width, height, model, n_threads,
                       stdin=stdin_data is not None)
        err = _run(cmd, tmp, stdin_data, what)
        log, rows = _read_logs(tmp, n_ref, err)
        if log_path is not None:
            with atomic_path(log_path) as out:
                shutil.copyfile(tmp / "vmaf.json", out)
    df = pd.DataFrame(rows)
    df.attrs.update(model=model, n_threads=n_threads, libvmaf_version=log.get("version"),
                    fps=log.get("fps"), width=width, height=height)
    return df


def _parse_psnr_metadata(text: str) -> list[dict]:
    """Rows of psnr_y/u/v and mse_y/u/v from ``metadata=mode=print`` output of ffmpeg's psnr."""
    rows: list[dict] = []
    for line in text.splitlines():
        if line.startswith("frame:"):
            rows.append({})
        elif line.startswith("lavfi.psnr.") and rows:
            key, _, val = line[len("lavfi.psnr."):].partition("=")
            kind, _, plane = key.partition(".")
            if kind in ("psnr", "mse") and plane in ("y", "u", "v"):
                rows[-1][f"{kind}_{plane}"] = float(val)  # float() reads 'inf'
    for i, r in enumerate(rows):
        if len(r) != 6:
            raise ValueError(f"psnr metadata of frame {i} is incomplete: {sorted(r)}")
    return rows


def pooled(frames) -> dict:
    """Sequence-level values from :func:`vmaf_yuv420`'s per-frame table: ``vmaf``, the mean
    over frames (libvmaf's default pooling), ``vmaf_min``, ``vmaf_hmean`` (libvmaf's harmonic
    mean, ``1/mean(1/(v+1)) - 1``), ``psnr_y/u/v`` (mean of the per-frame PSNRs: ``inf`` if
    any frame is identical) and ``n_frames``."""
    v = frames["vmaf"].to_numpy(dtype=np.float64)
    out = {"vmaf": float(v.mean()), "vmaf_min": float(v.min()),
           "vmaf_hmean": float(1.0 / np.mean(1.0 / (v + 1.0)) - 1.0),
           "n_frames": int(len(v))}
    for c in ("psnr_y", "psnr_u", "psnr_v"):
        out[c] = float(frames[c].to_numpy(dtype=np.float64).mean())
    return out


# --------------------------------------------------------------------------- RGB input
def rgb_frames_to_i420(frames: Sequence[np.ndarray], matrix: str = "bt709",
                       range: str = "limited", chroma_loc: str = "left",
                       role: str = "frames") -> tuple[bytes, int, int]:
    """Concatenated I420 bytes of equally sized 8-bit RGB frames (via
    :func:`rdflow.metrics.yuv.rgb_to_yuv420`), with their width and height."""
    if len(frames) == 0:
        raise RdflowError(f"{role}: no frames given")
    shape0 = np.shape(frames[0])
    out = []
    for i, f in enumerate(frames):
        if np.shape(f) != shape0:
            raise RdflowError(f"{role}: frame {i} is {np.shape(f)}, frame 0 is {shape0}; "
                              f"all frames of a sequence must have one size")
        try:
            planes = rgb_to_yuv420(f, matrix, range, chroma_loc)
        except ValueError as e:  # rdflow.metrics.yuv: not HxWx3 uint8, or odd size
            raise RdflowError(f"{role} frame {i}: cannot convert to YUV 4:2:0 for VMAF: {e}")\
                from None
        out.extend(p.tobytes() for p in planes)
    return b"".join(out), int(shape0[1]), int(shape0[0])


def vmaf_rgb_frames(ref_frames: Sequence[np.ndarray], dist_frames: Sequence[np.ndarray],
                    matrix: str = "bt709", range: str = "limited", chroma_loc: str = "left", *,
                    model: str = DEFAULT_MODEL, n_threads: int = 1,
                    log_path: str | os.PathLike | None = None, ffmpeg: str | None = None):
    """:func:`vmaf_yuv420` of two lists of 8-bit RGB frames (HxWx3), both converted to I420
    by :func:`rdflow.metrics.yuv.rgb_to_yuv420` with ``matrix``, ``range`` and ``chroma_loc``."""
    if len(ref_frames) != len(dist_frames):
        raise RdflowError(f"frame counts differ: reference has {len(ref_frames)}, distorted "
                          f"has {len(dist_frames)} frames; they must be equal")
    if len(ref_frames) and np.shape(ref_frames[0]) != np.shape(dist_frames[0]):
        raise RdflowError(f"frame sizes differ: reference {np.shape(ref_frames[0])}, "
                          f"distorted {np.shape(dist_frames[0])} (HxWx3)")
    ref, w, h = rgb_frames_to_i420(ref_frames, matrix, range, chroma_loc, "reference")
    dist, _, _ = rgb_frames_to_i420(dist_frames, matrix, range, chroma_loc, "distorted")
    return vmaf_yuv420(ref, dist, w, h, model=model, n_threads=n_threads, log_path=log_path,
                       ffmpeg=ffmpeg)


def vmaf_image(ref: np.ndarray, rec: np.ndarray, *, matrix: str = "bt709",
               range: str = "limited", chroma_loc: str = "left", model: str = DEFAULT_MODEL,
               n_threads: int = 1, ffmpeg: str | None = None) -> float:
    """VMAF of one RGB image pair (HxWx3 uint8) scored as a one-frame video.

    Identical images score about 97.4, not 100: a single frame has no motion feature."""
    df = vmaf_rgb_frames([ref], [rec], matrix, range, chroma_loc, model=model,
                         n_threads=n_threads, ffmpeg=ffmpeg)
    v = float(df["vmaf"].iloc[0])
    if math.isnan(v):
        raise RdflowError("libvmaf returned NaN for an image pair")
    return v
