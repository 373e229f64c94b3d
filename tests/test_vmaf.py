"""rdflow.metrics.vmaf: VMAF/PSNR via imageio-ffmpeg's libvmaf, cross-checked with direct
ffmpeg runs."""

from __future__ import annotations

import json
import math
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from rdflow import RdflowError
from rdflow.metrics import vmaf
from rdflow.metrics.yuv import psnr_yuv, rgb_to_yuv420

W, H = 64, 48


def _ffmpeg():
    return vmaf.find_ffmpeg_with_libvmaf()


def _planes(y, u, v):
    return b"".join(np.asarray(p, dtype=np.uint8).tobytes() for p in (y, u, v))


def _synthetic(n=3, w=W, h=H, noise=0, seed=0):
    """Textured moving I420 frames (ref), and a copy with uniform noise of +-noise (dist)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    ref, dist = [], []
    cw, ch = (w + 1) // 2, (h + 1) // 2
    for t in range(n):
        y = 128 + 70 * np.sin((xx + 2 * t) / 5.0) * np.cos((yy - t) / 7.0)
        y = np.clip(np.rint(y + rng.normal(0, 8, y.shape)), 0, 255)
        u = np.clip(128 + 30 * np.sin(np.arange(cw * ch).reshape(ch, cw) / 9.0), 0, 255)
        v = np.full((ch, cw), 140.0)
        frame = np.concatenate([y.ravel(), u.ravel(), v.ravel()])
        noisy = np.clip(frame + rng.integers(-noise, noise + 1, frame.shape), 0, 255)
        ref.append(frame.astype(np.uint8).tobytes())
        dist.append(noisy.astype(np.uint8).tobytes())
    return b"".join(ref), b"".join(dist)


def _y4m_frames(path):
    """Raw I420 bytes of all frames of a 4:2:0 8-bit y4m file, and its width and height."""
    data = path.read_bytes()
    end = data.index(b"\n")
    header = data[:end].split()
    w = int(next(t[1:] for t in header if t.startswith(b"W")))
    h = int(next(t[1:] for t in header if t.startswith(b"H")))
    fsize = vmaf.i420_frame_bytes(w, h)
    frames, pos = [], end + 1
    while pos < len(data):
        nl = data.index(b"\n", pos)
        assert data[pos:nl].startswith(b"FRAME")
        frames.append(data[nl + 1: nl + 1 + fsize])
        pos = nl + 1 + fsize
    return b"".join(frames), w, h


def _y_mse(ref, dist, w, h):
    fsize = vmaf.i420_frame_bytes(w, h)
    a = np.frombuffer(ref, np.uint8).reshape(-1, fsize)[:, : w * h].astype(np.float64)
    b = np.frombuffer(dist, np.uint8).reshape(-1, fsize)[:, : w * h].astype(np.float64)
    return ((a - b) ** 2).mean(axis=1)


# ----------------------------------------------------------------------------- binary
def test_finds_imageio_ffmpeg_with_libvmaf():
    import imageio_ffmpeg

    exe = vmaf.find_ffmpeg_with_libvmaf()
    assert exe == imageio_ffmpeg.get_ffmpeg_exe()
    out = subprocess.run([exe, "-hide_banner", "-filters"], capture_output=True, text=True).stdout
    assert "libvmaf" in out


def _script(tmp_path, name, body):
    p = tmp_path / name
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return str(p)


@pytest.mark.parametrize("kind", ["false", "no_libvmaf"])
def test_no_ffmpeg_with_libvmaf(tmp_path, monkeypatch, kind):
    import imageio_ffmpeg

    if kind == "false":
        exe = "/bin/false"
    else:  # a binary whose filter list lacks libvmaf, like Debian's ffmpeg
        exe = _script(tmp_path, "ffmpeg", "echo ' TS psnr  VV->V  Calculate the PSNR'\n")
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", lambda: exe)
    with pytest.raises(RdflowError, match=r"pip install imageio-ffmpeg==0\.8\.1") as e:
        vmaf.find_ffmpeg_with_libvmaf()
    assert exe in str(e.value)
    ref, dist = _synthetic(1)
    with pytest.raises(RdflowError, match="no ffmpeg with libvmaf"):
        vmaf.vmaf_yuv420(ref, dist, W, H)


def test_imageio_ffmpeg_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    with pytest.raises(RdflowError, match=r"pip install imageio-ffmpeg==0\.8\.1"):
        vmaf.find_ffmpeg_with_libvmaf()


# ----------------------------------------------------------------------------- models
def test_models_available_and_unknown_model_lists_them():
    models = vmaf.available_models()
    assert {"vmaf_v0.6.1", "vmaf_v0.6.1neg"} <= set(models)
    ref, dist = _synthetic(1, noise=3)
    for bad in ("vmaf_v9", "vmaf_v0.6.1:n_threads=4", ""):
        with pytest.raises(RdflowError, match="unknown VMAF model") as e:
            vmaf.vmaf_yuv420(ref, dist, W, H, model=bad)
        assert "vmaf_v0.6.1neg" in str(e.value) and "vmaf.model" in str(e.value)


# ----------------------------------------------------------------------------- synthetic
@pytest.mark.parametrize("model", ["vmaf_v0.6.1", "vmaf_v0.6.1neg"])
def test_identical_input_scores_near_100_and_psnr_inf(model):
    ref, _ = _synthetic(3)
    df = vmaf.vmaf_yuv420(ref, ref, W, H, model=model)
    assert list(df["frame"]) == [0, 1, 2]
    # frame 0 has no motion feature (0), which costs libvmaf ~2.6 points even when identical
    assert 97.0 < df["vmaf"].iloc[0] <= 100.0
    assert (df["vmaf"].iloc[1:] > 99.99).all()
    assert np.isinf(df[["psnr_y", "psnr_u", "psnr_v"]].to_numpy()).all()
    assert (df[["mse_y", "mse_u", "mse_v"]].to_numpy() == 0).all()
    assert df.attrs["model"] == model


def test_distortion_lowers_vmaf_and_psnr_matches_numpy():
    ref, mild = _synthetic(3, noise=4)
    _, strong = _synthetic(3, noise=40)
    a = vmaf.vmaf_yuv420(ref, mild, W, H)
    b = vmaf.vmaf_yuv420(ref, strong, W, H)
    assert (a["vmaf"] > b["vmaf"] + 5).all()
    for df, dist in ((a, mild), (b, strong)):
        want = 10 * np.log10(255.0 ** 2 / _y_mse(ref, dist, W, H))
        np.testing.assert_allclose(df["psnr_y"], want, atol=1e-4)
    assert {"integer_motion2", "vmaf", "psnr_u", "psnr_v"} <= set(a.columns)
    pooled = vmaf.pooled(a)
    assert pooled["vmaf"] == pytest.approx(a["vmaf"].mean())
    assert pooled["vmaf_min"] <= pooled["vmaf_hmean"] <= pooled["vmaf"]
    assert pooled["n_frames"] == 3 and pooled["psnr_y"] == pytest.approx(a["psnr_y"].mean())


def test_inputs_as_paths_arrays_and_bytes_agree_and_threads_do_not_change_scores(tmp_path):
    ref, dist = _synthetic(4, noise=10)
    (tmp_path / "r.yuv").write_bytes(ref)
    (tmp_path / "d.yuv").write_bytes(dist)
    base = vmaf.vmaf_yuv420(ref, dist, W, H)
    cols = ["vmaf", "psnr_y", "psnr_u", "psnr_v"]
    for r, d, threads in [(tmp_path / "r.yuv", tmp_path / "d.yuv", 1),
                          (str(tmp_path / "r.yuv"), dist, 1),
                          (np.frombuffer(ref, np.uint8), tmp_path / "d.yuv", 2),
                          (bytearray(ref), memoryview(dist), 2)]:
        df = vmaf.vmaf_yuv420(r, d, W, H, n_threads=threads)
        np.testing.assert_allclose(df[cols], base[cols], atol=1e-6)


def test_odd_frame_size():
    w, h = 33, 35
    ref, dist = _synthetic(2, w=w, h=h, noise=6)
    assert len(ref) == 2 * (33 * 35 + 2 * 17 * 18)
    df = vmaf.vmaf_yuv420(ref, dist, w, h)
    np.testing.assert_allclose(df["psnr_y"], 10 * np.log10(255.0 ** 2 / _y_mse(ref, dist, w, h)),
                               atol=1e-4)


def test_log_path_written_on_success(tmp_path):
    ref, dist = _synthetic(2, noise=5)
    log = tmp_path / "logs" / "seq.vmaf.json"
    df = vmaf.vmaf_yuv420(ref, dist, W, H, log_path=log)
    frames = json.loads(log.read_text())["frames"]
    assert [f["metrics"]["vmaf"] for f in frames] == pytest.approx(list(df["vmaf"]), abs=1e-6)
    assert [p.name for p in log.parent.iterdir()] == ["seq.vmaf.json"]  # no temp leftovers


# ----------------------------------------------------------------------------- bad inputs
def test_frame_count_mismatch():
    ref, dist = _synthetic(3, noise=3)
    fsize = vmaf.i420_frame_bytes(W, H)
    with pytest.raises(RdflowError, match="reference has 3, distorted has 2"):
        vmaf.vmaf_yuv420(ref, dist[: 2 * fsize], W, H)
    with pytest.raises(RdflowError, match="reference has 2, distorted has 1"):
        vmaf.vmaf_rgb_frames([np.zeros((H, W, 3), np.uint8)] * 2, [np.zeros((H, W, 3), np.uint8)])


def test_size_mismatch(tmp_path):
    ref, dist = _synthetic(2, noise=3)
    # bytes that are not whole frames of the given size
    with pytest.raises(RdflowError, match=r"not a whole, non-zero number of 64x48") as e:
        vmaf.vmaf_yuv420(ref, dist[:-7], W, H)
    assert "distorted" in str(e.value)
    p = tmp_path / "short.yuv"
    p.write_bytes(ref[:-1])
    with pytest.raises(RdflowError, match="short.yuv"):
        vmaf.vmaf_yuv420(p, dist, W, H)
    with pytest.raises(RdflowError, match="does not exist"):
        vmaf.vmaf_yuv420(tmp_path / "missing.yuv", dist, W, H)
    with pytest.raises(RdflowError, match="not a whole"):
        vmaf.vmaf_yuv420(b"", b"", W, H)
    # RGB frames of different sizes, between ref and dist and within one sequence
    a = np.zeros((48, 64, 3), np.uint8)
    b = np.zeros((48, 62, 3), np.uint8)
    with pytest.raises(RdflowError, match=r"reference \(48, 64, 3\), distorted \(48, 62, 3\)"):
        vmaf.vmaf_rgb_frames([a], [b])
    with pytest.raises(RdflowError, match=r"frame 1 is \(48, 62, 3\)"):
        vmaf.vmaf_rgb_frames([a, b], [a, a])
    with pytest.raises(RdflowError, match="HxWx3 uint8"):
        vmaf.vmaf_rgb_frames([a.astype(np.float32)], [a.astype(np.float32)])


def test_too_small_and_bad_arguments():
    ref, dist = _synthetic(1, w=16, h=48)
    with pytest.raises(RdflowError, match=r"width 16 is not an integer >= 17"):
        vmaf.vmaf_yuv420(ref, dist, 16, 48)
    ref, dist = _synthetic(1)
    with pytest.raises(RdflowError, match="n_threads"):
        vmaf.vmaf_yuv420(ref, dist, W, H, n_threads=0)
    with pytest.raises(RdflowError, match="raw I420 bytes"):
        vmaf.vmaf_yuv420(12345, dist, W, H)
    with pytest.raises(RdflowError, match="8-bit"):
        vmaf.vmaf_yuv420(np.frombuffer(ref, np.uint8).astype(np.uint16), dist, W, H)


@pytest.mark.parametrize("how", ["exit", "signal"])
@pytest.mark.parametrize("piped", [True, False])
def test_ffmpeg_failure_carries_stderr_tail_and_writes_nothing(tmp_path, how, piped):
    real = _ffmpeg()
    fail = ("echo 'noise line' >&2; echo '[in#0 @ 0x1] Error opening input: disk on fire' >&2;"
            " exit 69" if how == "exit" else "kill -SEGV $$")
    # the fake passes the -filters check and the model probe to the real ffmpeg, then fails
    fake = _script(tmp_path, "ffmpeg",
                   f'case "$*" in *-filters*|*color=c=gray*) exec "{real}" "$@";; esac\n{fail}\n')
    # 2 frames of 320x240 (230 kB) overflow the pipe buffer: ffmpeg dies before reading them
    ref, dist = _synthetic(2, w=320, h=240, noise=3)
    if not piped:
        (tmp_path / "d.yuv").write_bytes(dist)
        dist = tmp_path / "d.yuv"
    log = tmp_path / "out" / "v.json"
    with pytest.raises(RdflowError) as e:
        vmaf.vmaf_yuv420(ref, dist, 320, 240, log_path=log, ffmpeg=fake)
    msg = str(e.value)
    if how == "exit":
        assert "exited with status 69" in msg and "disk on fire" in msg
    else:
        assert "killed by signal SIGSEGV" in msg
    assert "stderr tail" in msg and fake in msg
    assert not log.exists()


# ----------------------------------------------------------------------------- RGB input
def test_rgb_conversion_errors():
    a = np.zeros((H, W, 3), np.uint8)
    with pytest.raises(RdflowError, match="unknown colour matrix 'bt2100'"):
        vmaf.vmaf_rgb_frames([a], [a], matrix="bt2100")
    with pytest.raises(RdflowError, match="unknown colour range 'tv'"):
        vmaf.vmaf_rgb_frames([a], [a], range="tv")
    odd = np.zeros((H, W + 1, 3), np.uint8)
    with pytest.raises(RdflowError, match=r"reference frame 0: cannot convert .* even"):
        vmaf.vmaf_image(odd, odd)
    with pytest.raises(RdflowError, match="no frames"):
        vmaf.vmaf_rgb_frames([], [])


def test_vmaf_rgb_frames_equals_yuv_path_and_image_score():
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:H, 0:W]
    base = (128 + 90 * np.sin(xx / 4.0)[..., None] * np.cos(yy / 6.0)[..., None]
            * np.array([1.0, 0.6, -0.8]))
    ref = [np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8) for _ in range(2)]
    dist = [np.clip(f + rng.integers(-12, 13, f.shape), 0, 255).astype(np.uint8) for f in ref]
    df = vmaf.vmaf_rgb_frames(ref, dist, "bt601", "full", "center")
    r = b"".join(p.tobytes() for f in ref for p in rgb_to_yuv420(f, "bt601", "full", "center"))
    d = b"".join(p.tobytes() for f in dist for p in rgb_to_yuv420(f, "bt601", "full", "center"))
    # the I420 that VMAF gets: ffmpeg's zimg converts the same RGB frames (BT.601, full range,
    # centred chroma, bilinear) to the same planes, to float rounding (test_yuv measures <= 0.02)
    got, gw, gh = vmaf.rgb_frames_to_i420(ref, "bt601", "full", "center")
    assert (gw, gh) == (W, H) and len(got) == 2 * W * H * 3 // 2
    import imageio_ffmpeg

    zimg = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
         "-s", f"{W}x{H}", "-i", "-", "-vf",
         "zscale=matrix=470bg:range=full:chromal=center:filter=bilinear:dither=none,format=yuv420p",
         "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"],
        input=b"".join(f.tobytes() for f in ref), capture_output=True, check=True).stdout
    a, b = np.frombuffer(got, np.uint8).astype(int), np.frombuffer(zimg, np.uint8).astype(int)
    assert a.shape == b.shape and np.abs(a - b).mean() <= 0.02 and np.abs(a - b).max() <= 4
    # frame order matters: the frames swapped are far from it
    swapped = np.frombuffer(vmaf.rgb_frames_to_i420(ref[::-1], "bt601", "full", "center")[0], np.uint8)
    assert np.abs(swapped.astype(int) - b).mean() > 1
    direct = vmaf.vmaf_yuv420(r, d, W, H)
    cols = ["vmaf", "psnr_y", "psnr_u"]
    np.testing.assert_allclose(df[cols], direct[cols], atol=1e-9)
    # PSNR-Y/U/V agree with rdflow.metrics.yuv's own psnr_yuv on the same planes
    want = psnr_yuv(rgb_to_yuv420(ref[1], "bt601", "full", "center"),
                    rgb_to_yuv420(dist[1], "bt601", "full", "center"))
    for k, v in want.items():
        assert df[k].iloc[1] == pytest.approx(v, abs=1e-4)
    # matrix and range change luma, hence VMAF
    other = vmaf.vmaf_rgb_frames(ref, dist, "bt709", "limited")
    assert not np.allclose(other["psnr_y"], df["psnr_y"])
    score = vmaf.vmaf_image(ref[0], dist[0], matrix="bt601", range="full", chroma_loc="center")
    assert score == pytest.approx(df["vmaf"].iloc[0], abs=1e-6)  # one-frame pair = frame 0
    assert 0 <= score < vmaf.vmaf_image(ref[0], ref[0])


# ----------------------------------------------------------------------------- real clip
@pytest.mark.parametrize("model", ["vmaf_v0.6.1neg", "vmaf_v0.6.1"])
def test_trees_matches_direct_ffmpeg_libvmaf_and_psnr(tmp_path, shared, model):
    """rdflow (raw planes over pipe/temp file) vs ffmpeg reading the y4m files itself."""
    video = shared("data", "video")
    ref_y4m, dist_y4m = video / "trees_640x360_ref.y4m", video / "trees_640x360_dist.y4m"
    ref, w, h = _y4m_frames(ref_y4m)
    dist, w2, h2 = _y4m_frames(dist_y4m)
    assert (w, h) == (w2, h2) == (640, 360)
    ours = vmaf.vmaf_yuv420(ref, dist, w, h, model=model, n_threads=2)
    assert len(ours) == 3

    exe = _ffmpeg()
    subprocess.run([exe, "-hide_banner", "-nostdin", "-v", "error", "-i", str(dist_y4m),
                    "-i", str(ref_y4m), "-lavfi",
                    f"[0:v][1:v]libvmaf=model=version={model}:log_fmt=json:log_path=direct.json",
                    "-f", "null", "-"], cwd=tmp_path, check=True)
    direct = json.loads((tmp_path / "direct.json").read_text())["frames"]
    np.testing.assert_allclose(ours["vmaf"], [f["metrics"]["vmaf"] for f in direct], atol=1e-3)
    assert 60 < ours["vmaf"].mean() < 95  # a visibly distorted clip, not a broken comparison

    subprocess.run([exe, "-hide_banner", "-nostdin", "-v", "error", "-i", str(dist_y4m),
                    "-i", str(ref_y4m), "-lavfi", "[0:v][1:v]psnr=stats_file=psnr.log",
                    "-f", "null", "-"], cwd=tmp_path, check=True)
    stats = [dict(kv.split(":") for kv in line.split())
             for line in (tmp_path / "psnr.log").read_text().splitlines()]
    for plane in "yuv":
        np.testing.assert_allclose(ours[f"psnr_{plane}"],
                                   [float(s[f"psnr_{plane}"]) for s in stats], atol=0.01)
    np.testing.assert_allclose(ours["psnr_y"],
                               10 * np.log10(255.0 ** 2 / _y_mse(ref, dist, w, h)), atol=1e-4)
