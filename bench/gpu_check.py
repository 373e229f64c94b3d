#!/usr/bin/env python
"""GPU check for CompressAI's learned codecs: CPU/CUDA agreement, cross-device decoding,
throughput with N jobs sharing the GPU, and peak memory. Prints one table line per
(architecture, jobs) and a PASS/FAIL line for the goal of >= 20 coded 1080p frames per second in
aggregate for the hyperprior family (bmshj2018-hyperprior, mbt2018-mean).

Written against CompressAI directly (not rdflow), so it checks the library the workflow uses:

* models: ``compressai.zoo.<arch>(quality, pretrained=False)`` with a fixed seed, gains on its
  latents and output (``calibrate_random``: at random init every latent rounds to 0 and the
  strings would hold nothing) and ``net.update(force=True)``: random weights, nothing
  downloaded, PSNRs low and meaningless as quality. Or the zoo weights with ``--weights zoo``
  when the download works (else it falls back to random weights and says so). The parent builds
  each model once and hands the same state dict to every process.
* frames: Kodak (../shared/data/kodak, or $RDFLOW_SHARED/data/kodak) resized to cover the size and
  centre-cropped, one image per frame in order; else deterministic synthetic images (smooth
  gradients, low-frequency waves, blobs and a little noise). The header says which.
* coding as CompressAI's eval_model: zero padding (``compute_padding(..., min_div=64)``,
  centred, ``F.pad`` constant 0), ``compress`` -> strings -> ``decompress`` -> crop.
  bpp = 8 * (total bytes of the returned strings) / (W * H) of the unpadded frame; nothing else
  (no shape, no header). PSNR-RGB on 8-bit rounded reconstructions against the 8-bit frame.
* one coded frame = compress + decompress + 8-bit reconstruction back on the CPU.
* CPU vs CUDA: the same frames are coded on CPU and on CUDA; max |dbpp| and max |dPSNR|.
* cross-device: strings encoded on CUDA are decoded on CPU. A frame fails when decompress
  raises (or the process dies), the output is not finite, its PSNR differs from the CUDA round
  trip by > 0.1 dB, or it is not the same picture as the CUDA reconstruction (PSNR between the two
  reconstructions < 40 dB: a desynchronised entropy decoder gives garbage).
* jobs: N worker processes (this file with ``--worker``; subprocesses, never fork, each its own
  CUDA context) share the device, each coding its share of the frames. They load and warm up,
  then start together; aggregate fps = frames coded / wall time from the common start to the
  last frame (start-up reported apart). Peak VRAM = torch.cuda.max_memory_allocated of each job
  process (the table shows the largest), peak RSS = getrusage(RUSAGE_SELF).ru_maxrss of each.
  Each job gets cores // N torch threads. The check (CUDA and CPU models in one process, which
  is restarted after a frame whose CPU decode killed it) runs before the jobs rows.
* budget: ``--time-limit`` (default 480 s) for the whole run; the time left is shared equally
  among the remaining architectures (the check gets 40% of an architecture's share) and then
  among its jobs rows; a worker past its share is stopped (its row says "partial", with the
  frames it coded) and configurations with no time left are skipped (their rows say so).

Without CUDA the CUDA columns say "n/a (no CUDA)" and the CPU numbers are still measured (CPU
round trip, fps for each jobs count on CPU), so CI runs it at small sizes (with
``--check-on-cpu`` the check's code runs too, the CPU standing in for CUDA):

    python bench/gpu_check.py                               # the GPU check, <= 8 minutes
    python bench/gpu_check.py --size 128x96 --frames 2 --jobs 1,2 --device cpu \\
        --archs bmshj2018-hyperprior,mbt2018-mean --json out.json

Exit status: 0 when every configuration ran (or was skipped for time), 1 when a worker failed,
2 for bad arguments, 3 with ``--require-goal`` when the goal line says FAIL.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RDFLOW_SHARED", REPO.parent / "shared"))

ARCHS = {  # rdflow / CompressAI name -> compressai.zoo function
    "bmshj2018-hyperprior": "bmshj2018_hyperprior",
    "mbt2018-mean": "mbt2018_mean",
    "cheng2020-anchor": "cheng2020_anchor",
}
HYPERPRIOR_FAMILY = ("bmshj2018-hyperprior", "mbt2018-mean")
GOAL_FPS = 20.0
GOAL_SIZE = (1920, 1080)
CROSS_DPSNR_DB = 0.1      # cross-device decode may differ from the CUDA round trip by this much
SAME_PICTURE_DB = 40.0    # PSNR between the cross-device and CUDA reconstructions, at least
SEED = 20180101
#: random weights: the latent statistics calibrate_random sets
Y_STD, Z_STD, SCALE_MEAN, MEAN_STD = 0.4, 0.5, 0.5, 0.1
TAG = "@@gpu_check "      # prefix of the workers' result lines on stdout
NO_CUDA = "n/a (no CUDA)"


# ----------------------------------------------------------------------------- frames

def kodak_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("kodim*.png")) if folder.is_dir() else []


def resolve_input(choice: str) -> dict:
    folder = SHARED / "data" / "kodak"
    files = kodak_files(folder)
    if choice == "kodak" and not files:
        raise SystemExit(f"--input kodak: no kodim*.png in {folder}")
    if files and choice != "synthetic":
        return {"kind": "kodak", "folder": str(folder), "n_images": len(files),
                "describe": f"Kodak ({len(files)} images from {folder}, resized to cover the "
                            "size and centre-cropped, Lanczos; frame i = image i mod "
                            f"{len(files)})"}
    why = "--input synthetic" if choice == "synthetic" else f"no Kodak at {folder}"
    return {"kind": "synthetic", "describe": "synthetic (deterministic gradients + waves + blobs "
                                             f"+ noise; {why})"}


def make_frame(source: dict, index: int, width: int, height: int):
    """Frame ``index`` as an HxWx3 uint8 array (deterministic)."""
    import numpy as np

    if source["kind"] == "kodak":
        from PIL import Image

        files = kodak_files(Path(source["folder"]))
        img = Image.open(files[index % len(files)]).convert("RGB")
        scale = max(width / img.width, height / img.height)
        rw, rh = max(width, round(img.width * scale)), max(height, round(img.height * scale))
        img = img.resize((rw, rh), Image.LANCZOS)
        left, top = (rw - width) // 2, (rh - height) // 2
        return np.array(img.crop((left, top, left + width, top + height)), dtype=np.uint8)

    rng = np.random.default_rng(SEED + index)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy /= max(height, width)
    xx /= max(height, width)
    img = np.empty((height, width, 3), np.float32)
    for c in range(3):
        a, b, c0 = rng.uniform(-0.6, 0.6, 3)
        ch = c0 + a * xx + b * yy
        for _ in range(4):  # low-frequency waves
            fx, fy = rng.uniform(0.5, 6.0, 2) * rng.choice([-1, 1], 2)
            ch += rng.uniform(0.03, 0.15) * np.sin(2 * np.pi * (fx * xx + fy * yy)
                                                   + rng.uniform(0, 2 * np.pi))
        img[..., c] = ch
    for _ in range(6):  # soft blobs, shared across channels with their own colour
        side = max(height, width)
        cx, cy = rng.uniform(0, width / side), rng.uniform(0, height / side)
        r = rng.uniform(0.03, 0.2)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
        img += blob[..., None] * rng.uniform(-0.4, 0.4, 3).astype(np.float32)
    lo, hi = img.min(), img.max()
    img = 0.08 + 0.84 * (img - lo) / max(hi - lo, 1e-6)
    img += rng.normal(0, 3.0 / 255, img.shape).astype(np.float32)
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- coding

def to_tensor(frame):
    import torch

    return torch.from_numpy(frame).permute(2, 0, 1).unsqueeze(0).contiguous()  # 1x3xHxW uint8


def psnr_u8(a, b) -> float:
    """PSNR between two uint8 tensors of the same shape (max 255); inf when identical."""
    mse = (a.double() - b.double()).pow(2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def string_bytes(strings) -> int:
    if isinstance(strings, (bytes, bytearray)):
        return len(strings)
    return sum(string_bytes(s) for s in strings)


def encode(net, x_u8, device):
    """Pad (as eval_model) and compress; returns (enc, unpad, seconds)."""
    import torch.nn.functional as F
    from compressai.ops import compute_padding

    x = x_u8.to(device).float().div_(255)
    h, w = x.shape[-2:]
    pad, unpad = compute_padding(h, w, min_div=2 ** 6)
    x = F.pad(x, pad, mode="constant", value=0)
    t0 = time.perf_counter()
    enc = net.compress(x)
    return enc, unpad, time.perf_counter() - t0


def decode(net, enc, unpad):
    """Decompress and crop; returns (uint8 reconstruction on CPU, finite?, seconds)."""
    import torch
    import torch.nn.functional as F

    t0 = time.perf_counter()
    x_hat = F.pad(net.decompress(enc["strings"], enc["shape"])["x_hat"], unpad)
    finite = bool(torch.isfinite(x_hat).all().item())
    rec = x_hat.clamp(0, 1).mul(255).round().to(torch.uint8).cpu()
    return rec, finite, time.perf_counter() - t0


def round_trip(net, x_u8, device) -> dict:
    t0 = time.perf_counter()
    enc, unpad, enc_s = encode(net, x_u8, device)
    rec, finite, dec_s = decode(net, enc, unpad)
    total = time.perf_counter() - t0
    pixels = x_u8.shape[-1] * x_u8.shape[-2]
    return {"enc": enc, "unpad": unpad, "rec": rec, "finite": finite,
            "bpp": string_bytes(enc["strings"]) * 8.0 / pixels,
            "psnr": psnr_u8(x_u8, rec) if finite else None,
            "enc_s": enc_s, "dec_s": dec_s, "total_s": total}


# ----------------------------------------------------------------------------- worker side

def emit(event: str, **kw) -> None:
    print(TAG + json.dumps({"event": event, **kw}), flush=True)


def load_net(arch: str, state_path: str, device: str):
    import torch
    from compressai.zoo.image import model_architectures

    state = torch.load(state_path, map_location="cpu", weights_only=True)
    return model_architectures[arch].from_state_dict(state).eval().to(device)


def peak_memory(device: str) -> dict:
    import resource

    import torch

    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
           "peak_vram_mb": None, "peak_vram_reserved_mb": None}
    if device == "cuda":
        out["peak_vram_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
        out["peak_vram_reserved_mb"] = torch.cuda.max_memory_reserved() / 2 ** 20
    return out


def worker_main(spec: dict) -> int:
    import warnings

    warnings.filterwarnings("ignore")  # cheng2020's "GPU not recommended", jit deprecations
    t_boot = time.perf_counter()
    import torch

    torch.set_num_threads(spec["threads"])
    w, h = spec["size"]
    device = spec["device"]
    with torch.inference_mode():
        net = load_net(spec["arch"], spec["state"], device)
        frames = [(i, to_tensor(make_frame(spec["source"], i, w, h))) for i in spec["frames"]]
        if spec["mode"] == "fps":
            return _fps_worker(spec, net, frames, device, t_boot)
        return _check_worker(spec, net, frames, t_boot)


def _fps_worker(spec, net, frames, device, t_boot) -> int:
    import torch

    if frames:  # warm-up on a crop of the first frame (CUDA init, kernels), not counted
        _, x = frames[0]
        round_trip(net, x[..., : min(256, x.shape[-2]), : min(256, x.shape[-1])], device)
        if device == "cuda":
            torch.cuda.synchronize()
    emit("ready", startup_s=time.perf_counter() - t_boot)
    if sys.stdin.readline().strip() != "go":
        return 1
    for i, x in frames:
        r = round_trip(net, x, device)
        emit("frame", index=i, bpp=r["bpp"], psnr=r["psnr"], finite=r["finite"],
             enc_s=r["enc_s"], dec_s=r["dec_s"], total_s=r["total_s"])
    emit("done", **peak_memory(device))
    return 0


def _check_worker(spec, net_cuda, frames, t_boot) -> int:
    """Per frame: CUDA round trip, CPU round trip, CUDA strings decoded on CPU.

    ("CUDA" is spec["device"]: the CPU with --check-on-cpu, which exercises this code in CI;
    spec["fault"] garbles the strings ("corrupt") or kills the process ("crash") before the
    cross decode of the second frame, to test the failure detection.)
    """
    import signal

    net_cpu = load_net(spec["arch"], spec["state"], "cpu")
    gpu_dev = spec["device"]
    emit("ready", startup_s=time.perf_counter() - t_boot)
    if sys.stdin.readline().strip() != "go":
        return 1
    for i, x in frames:
        gpu = round_trip(net_cuda, x, gpu_dev)
        cpu = round_trip(net_cpu, x, "cpu")
        same_strings = gpu["enc"]["strings"] == cpu["enc"]["strings"]
        emit("cross_begin", index=i)  # if the process dies now, the cross decode killed it
        res = {"index": i, "bpp_cuda": gpu["bpp"], "psnr_cuda": gpu["psnr"],
               "bpp_cpu": cpu["bpp"], "psnr_cpu": cpu["psnr"], "strings_identical": same_strings,
               "cuda_s": gpu["total_s"], "cpu_s": cpu["total_s"]}
        try:
            strings = gpu["enc"]["strings"]
            if spec.get("fault") and i == spec["frames"][min(1, len(spec["frames"]) - 1)]:
                if spec["fault"] == "crash":
                    os.kill(os.getpid(), signal.SIGSEGV)
                y = bytearray(strings[0][0])  # y's string: flip bits after a few bytes
                for k in range(min(8, len(y) - 1), len(y), 7):
                    y[k] ^= 0x5A
                strings = [[bytes(y)], *strings[1:]]
            enc = {"strings": strings, "shape": gpu["enc"]["shape"]}
            rec, finite, dec_s = decode(net_cpu, enc, gpu["unpad"])
            res["cross_dec_s"] = dec_s
            if not finite:
                res.update(cross_fail=True, cross_reason="non-finite output")
            else:
                res["psnr_cross"] = psnr_u8(x, rec)
                vs = psnr_u8(gpu["rec"], rec)
                res["cross_vs_cuda_db"] = None if math.isinf(vs) else vs
                res["cross_identical"] = math.isinf(vs)
                if gpu["psnr"] is None:
                    res.update(cross_fail=True, cross_reason="CUDA round trip not finite")
                elif abs(res["psnr_cross"] - gpu["psnr"]) > CROSS_DPSNR_DB:
                    res.update(cross_fail=True, cross_reason=f"|dPSNR| > {CROSS_DPSNR_DB} dB")
                elif vs < SAME_PICTURE_DB:
                    res.update(cross_fail=True, cross_reason=f"not the CUDA picture ({vs:.1f} "
                                                             f"dB < {SAME_PICTURE_DB})")
                else:
                    res.update(cross_fail=False, cross_reason=None)
        except Exception as exc:  # noqa: BLE001 - a failing decode is what we measure
            res.update(cross_fail=True, cross_reason=f"decompress raised {type(exc).__name__}: "
                                                     f"{str(exc)[:200]}")
        emit("check", **res)
    emit("done", **peak_memory(gpu_dev))
    return 0


# ----------------------------------------------------------------------------- parent side

class Workers:
    """Worker subprocesses with their tagged stdout lines gathered in one queue."""

    def __init__(self, specs: list[dict], tmp: Path):
        self.q: queue.Queue = queue.Queue()
        self.procs = []
        self.errs = []
        for k, spec in enumerate(specs):
            env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]),
                       MKL_NUM_THREADS=str(spec["threads"]), PYTHONUNBUFFERED="1")
            err = open(tmp / f"worker-{time.monotonic_ns()}-{k}.err", "w+")
            p = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker",
                                  json.dumps(spec)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=err, text=True, env=env)
            self.procs.append(p)
            self.errs.append(err)
            threading.Thread(target=self._read, args=(k, p), daemon=True).start()

    def _read(self, k, p):
        for line in p.stdout:
            if line.startswith(TAG):
                self.q.put((k, json.loads(line[len(TAG):])))
        self.q.put((k, None))  # end of output

    def get(self, deadline: float):
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            return self.q.get(timeout=left)
        except queue.Empty:
            return None

    def go(self):
        for p in self.procs:
            try:
                p.stdin.write("go\n")
                p.stdin.flush()
            except OSError:
                pass

    def stderr_tail(self, k: int, n: int = 600) -> str:
        self.errs[k].flush()
        self.errs[k].seek(0)
        return self.errs[k].read()[-n:].strip()

    def close(self) -> list:
        codes = []
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            codes.append(p.wait())
        for e in self.errs:
            e.close()
        return codes


def build_state(arch: str, quality: int, weights: str, folder: Path) -> tuple[Path, str]:
    """Build the model once, save its state dict; returns (path, description of the weights)."""
    import socket

    import torch
    import compressai.zoo as zoo

    fn = getattr(zoo, ARCHS[arch])
    net, why = None, ""
    if weights == "zoo":
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(30)
        try:
            with contextlib.redirect_stdout(sys.stderr):  # torch.hub's "Downloading: ..."
                net = fn(quality=quality, pretrained=True, progress=False)
            note = f"zoo (pretrained, quality {quality})"
        except Exception as exc:  # noqa: BLE001 - unreachable download: fall back, say so
            why = f"; zoo download failed: {type(exc).__name__}: {str(exc)[:120]}"
        finally:
            socket.setdefaulttimeout(old)
    if net is None:
        torch.manual_seed(SEED)
        net = fn(quality=quality, pretrained=False)
        gains = calibrate_random(net, arch)
        net.update(force=True)
        note = (f"random (seed {SEED}, update(force=True)), latent gains "
                + ", ".join(f"{k} x{v:.3g}" for k, v in gains.items()) + why)
    path = folder / f"{arch}-q{quality}.pt"
    torch.save(net.state_dict(), path)
    return path, note


def calibrate_random(net, arch: str) -> dict:
    """Make a randomly initialised model code something: gains on its latents and output.

    At random init g_a's latents have a std of ~0.05, so every y symbol rounds to 0, every scale
    is below the scale table's first entry (one index everywhere) and the strings hold nothing
    but z: bpp, coding speed and above all the cross-device check (a scale index that flips
    between CPU and CUDA) would be meaningless. So, measured on one fixed synthetic 256x256 frame
    (not a test frame): g_a's last conv is scaled to give y a std of Y_STD, h_a's last conv to
    give z a std of Z_STD, and the layer that outputs the Gaussian parameters to give the scales
    a mean |.| of SCALE_MEAN (and the means, where there are any, a std of MEAN_STD); the layer
    that reads a rescaled tensor has its weights (not its bias) divided by the same gain, which
    keeps its pre-activations (for cheng2020-anchor g_s opens with a residual block whose
    identity path keeps the gain). Last, g_s's output layer is set to give a mean of 0.5 and a
    std of 0.15 per channel, so reconstructions do not saturate at 0 or 255 and a garbled
    decode shows. The weights stay random: PSNRs are low (5-15 dB) and say nothing about quality.
    """
    import torch

    x = to_tensor(make_frame({"kind": "synthetic"}, 10 ** 6, 256, 256)).float().div_(255)

    def scale_out(layer, k, channels=slice(None)):
        layer.weight[channels].mul_(k)
        if layer.bias is not None:
            layer.bias[channels].mul_(k)

    def conv_of(layer):  # subpel_conv3x3 is Sequential(conv, PixelShuffle)
        return layer[0] if isinstance(layer, torch.nn.Sequential) else layer

    with torch.no_grad():
        cheng = arch == "cheng2020-anchor"
        y = net.g_a(x)
        k_y = Y_STD / y.std().item()
        scale_out(net.g_a[-1], k_y)
        net.h_a[0].weight.div_(k_y)
        (net.g_s[0].conv1 if cheng else net.g_s[0]).weight.div_(k_y)
        y = net.g_a(x)
        z = net.h_a(y if arch != "bmshj2018-hyperprior" else torch.abs(y))
        k_z = Z_STD / z.std().item()
        scale_out(net.h_a[-1], k_z)
        net.h_s[0].weight.div_(k_z)
        params = net.h_s(torch.round(z * k_z))
        gains = {"y": k_y, "z": k_z}
        if arch == "bmshj2018-hyperprior":  # h_s ends conv, ReLU: the scales
            last, scales, means = net.h_s[-2], params, None
        else:  # (scales, means) from h_s's last conv, or entropy_parameters(h_s, context)
            if cheng:
                last = net.entropy_parameters[-1]
                params = net.entropy_parameters(
                    torch.cat((params, net.context_prediction(torch.round(y))), 1))
            else:
                last = net.h_s[-1]
            scales, means = params.chunk(2, 1)
        c = scales.shape[1]
        gains["scales"] = SCALE_MEAN / scales.abs().mean().item()
        scale_out(last, gains["scales"], slice(0, c))
        if means is not None:
            gains["means"] = MEAN_STD / means.std().item()
            scale_out(last, gains["means"], slice(c, 2 * c))

        out_layer = conv_of(net.g_s[-1])
        seen = []
        hook = out_layer.register_forward_hook(lambda m, i, o: seen.append(o))
        net.g_s(torch.round(y))
        hook.remove()
        pre = seen[0] - out_layer.bias.view(1, -1, 1, 1)
        a = 0.15 / pre.std().item()
        out_layer.weight.mul_(a)
        out_layer.bias.copy_(0.5 - a * pre.mean((0, 2, 3)))
        gains["x_hat"] = a
    return gains


def threads_for(jobs: int) -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return max(1, n // jobs)


def run_fps(arch, state, device, jobs, args, source, tmp, deadline) -> dict:
    w, h = args.size
    shares = [list(range(args.frames))[k::jobs] for k in range(jobs)]
    shares = [s for s in shares if s]
    row = {"arch": arch, "device": device, "jobs": jobs, "frames_requested": args.frames,
           "frames": 0, "fps_aggregate": None, "bpp_mean": None, "psnr_mean": None,
           "peak_vram_mb": None, "peak_rss_mb": None, "status": "ok", "per_job": []}
    if len(shares) < jobs:
        row["status"] = f"ok (only {len(shares)} of {jobs} jobs had frames)"
    specs = [{"mode": "fps", "arch": arch, "state": str(state), "device": device,
              "frames": s, "size": [w, h], "source": source, "threads": threads_for(jobs)}
             for s in shares]
    ws = Workers(specs, tmp)
    t_spawn = time.monotonic()
    ready, done = {}, {}
    per_frame = []
    error = None
    t_go = t_last = None
    try:
        while len(ready) < len(specs):
            item = ws.get(deadline)
            if item is None:
                row["status"] = "skipped (time limit reached during start-up)"
                return row
            k, ev = item
            if ev is None:
                error = f"job {k} exited during start-up: {ws.stderr_tail(k)}"
                break
            if ev["event"] == "ready":
                ready[k] = ev["startup_s"]
        if error is None:
            row["startup_s_max"] = time.monotonic() - t_spawn
            ws.go()
            t_go = time.monotonic()
            while len(done) < len(specs):
                item = ws.get(deadline)
                if item is None:
                    row["status"] = (f"partial ({len(per_frame)}/{args.frames} frames by the "
                                     "time limit)" if len(per_frame) < args.frames else
                                     "ok (time limit before the memory report)")
                    break
                k, ev = item
                if ev is None:
                    if k not in done:
                        error = f"job {k} died: {ws.stderr_tail(k)}"
                        break
                    continue
                if ev["event"] == "frame":
                    per_frame.append(ev)
                    t_last = time.monotonic()
                elif ev["event"] == "done":
                    done[k] = ev
    finally:
        codes = ws.close()
    if error is not None:
        row["status"] = "error: " + " ".join(error.split())[:300]
        row["returncodes"] = codes
    row["frames"] = len(per_frame)
    if per_frame and t_last is not None:
        row["wall_s"] = t_last - t_go
        row["fps_aggregate"] = len(per_frame) / max(t_last - t_go, 1e-9)
        row["bpp_mean"] = sum(f["bpp"] for f in per_frame) / len(per_frame)
        ps = [f["psnr"] for f in per_frame if f["psnr"] is not None]
        row["psnr_mean"] = sum(ps) / len(ps) if ps else None
        row["nonfinite_frames"] = sum(1 for f in per_frame if not f["finite"])
        row["enc_s_mean"] = sum(f["enc_s"] for f in per_frame) / len(per_frame)
        row["dec_s_mean"] = sum(f["dec_s"] for f in per_frame) / len(per_frame)
    row["per_job"] = [{"job": k, "frames": len(specs[k]["frames"]), "startup_s": ready.get(k),
                       **({key: done[k][key] for key in ("peak_rss_mb", "peak_vram_mb",
                                                         "peak_vram_reserved_mb")}
                          if k in done else {})} for k in range(len(specs))]
    rss = [j["peak_rss_mb"] for j in row["per_job"] if j.get("peak_rss_mb") is not None]
    vram = [j["peak_vram_mb"] for j in row["per_job"] if j.get("peak_vram_mb") is not None]
    row["peak_rss_mb"] = max(rss) if rss else None
    row["peak_vram_mb"] = max(vram) if vram else None
    return row


def run_check(arch, state, args, source, tmp, deadline, gpu_dev="cuda") -> dict:
    """CPU vs CUDA and cross-device decoding, one CUDA process; resumes after a crash."""
    w, h = args.size
    pending = list(range(args.check_frames))
    frames: list[dict] = []
    status, peak = "ok", {}
    while pending:
        spec = {"mode": "check", "arch": arch, "state": str(state), "device": gpu_dev,
                "frames": pending, "size": [w, h], "source": source, "threads": threads_for(1),
                "fault": args.fault if not frames else None}
        ws = Workers([spec], tmp)
        in_cross = None
        died = None
        try:
            started = False
            while True:
                item = ws.get(deadline)
                if item is None:
                    status = (f"partial ({len(frames)}/{args.check_frames} frames by the time "
                              "limit)" if started or frames else "skipped (time limit)")
                    pending = []
                    break
                _, ev = item
                if ev is None:
                    died = ws.stderr_tail(0)
                    break
                if ev["event"] == "ready":
                    started = True
                    ws.go()
                elif ev["event"] == "cross_begin":
                    in_cross = ev["index"]
                elif ev["event"] == "check":
                    frames.append(ev)
                    in_cross = None
                    pending.remove(ev["index"])
                elif ev["event"] == "done":
                    peak = {k: ev[k] for k in ("peak_rss_mb", "peak_vram_mb")}
                    pending = []
                    break
        finally:
            codes = ws.close()
        if died is not None:
            if in_cross is None:  # died outside the cross decode: a real error
                status = "error: check worker died: " + " ".join(died.split())[:300]
                break
            frames.append({"index": in_cross, "cross_fail": True,
                           "cross_reason": f"CPU decode killed the process (exit {codes[0]})"})
            pending.remove(in_cross)
    out = summarize_check(frames, status, peak, args.check_frames)
    out["stand_in"] = gpu_dev != "cuda"
    return out


def summarize_check(frames, status, peak, requested) -> dict:
    both = [f for f in frames if "bpp_cpu" in f]
    dbpp = [abs(f["bpp_cuda"] - f["bpp_cpu"]) for f in both]
    dpsnr = [abs(f["psnr_cuda"] - f["psnr_cpu"]) for f in both
             if f["psnr_cuda"] is not None and f["psnr_cpu"] is not None]
    fails = sum(1 for f in frames if f.get("cross_fail"))
    return {"status": status, "frames_requested": requested, "frames": len(frames),
            "max_abs_dbpp": max(dbpp) if dbpp else None,
            "max_abs_dpsnr_db": max(dpsnr) if dpsnr else None,
            "strings_identical": sum(1 for f in both if f["strings_identical"]),
            "strings_compared": len(both),
            "cross_fail": fails, "cross_fail_share": fails / len(frames) if frames else None,
            "cross_reasons": sorted({f["cross_reason"] for f in frames if f.get("cross_fail")}),
            **peak, "per_frame": frames}


# ----------------------------------------------------------------------------- report

COLUMNS = [("arch", 20), ("device", 6), ("jobs", 4), ("frames", 6), ("fps_aggregate", 13),
           ("bpp_mean", 8), ("psnr_mean", 9), ("cpu_vs_cuda_dbpp", 16), ("cpu_vs_cuda_dpsnr", 17),
           ("cross_device_fail_share", 23), ("peak_vram_mb", 13), ("peak_rss_mb", 11),
           ("status", 0)]


def fmt(v, digits=3):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if math.isfinite(v) else str(v)
    return str(v)


def table_line(row: dict, check, cuda_na: str | None) -> tuple[list[str], dict]:
    if check is None:
        dbpp = dpsnr = share = cuda_na or "-"
    elif not check["frames"]:
        dbpp = dpsnr = share = f"({check['status']})"
    else:
        mark = "*" if check.get("stand_in") else ""  # --check-on-cpu: CPU stood in for CUDA
        dbpp = fmt(check["max_abs_dbpp"], 5) + mark
        dpsnr = fmt(check["max_abs_dpsnr_db"], 4) + mark
        share = (f"{check['cross_fail']}/{check['frames']} "
                 f"({100 * check['cross_fail_share']:.0f}%){mark}")
    vram = fmt(row["peak_vram_mb"], 0) if row["device"] == "cuda" else (
        cuda_na or "n/a (CPU)")
    vals = {"arch": row["arch"], "device": row["device"], "jobs": str(row["jobs"]),
            "frames": f"{row['frames']}/{row['frames_requested']}",
            "fps_aggregate": fmt(row["fps_aggregate"], 2), "bpp_mean": fmt(row["bpp_mean"], 4),
            "psnr_mean": fmt(row["psnr_mean"], 2), "cpu_vs_cuda_dbpp": dbpp,
            "cpu_vs_cuda_dpsnr": dpsnr, "cross_device_fail_share": share,
            "peak_vram_mb": vram, "peak_rss_mb": fmt(row["peak_rss_mb"], 0),
            "status": row["status"]}
    return [vals[c] for c, _ in COLUMNS], {"cpu_vs_cuda_dbpp": dbpp, "cpu_vs_cuda_dpsnr": dpsnr,
                                          "cross_device_fail_share": share, "peak_vram_mb": vram}


def print_table(lines: list[list[str]]) -> None:
    widths = [max(wd, len(c), *(len(l[i]) for l in lines)) for i, (c, wd) in enumerate(COLUMNS)]
    head = [c for c, _ in COLUMNS]
    for cells in [head] + lines:
        print("  ".join(x.ljust(wd) for x, wd in zip(cells, widths)).rstrip())


def goal_verdict(rows, device, size) -> dict:
    fam = [r for r in rows if r["arch"] in HYPERPRIOR_FAMILY and r["fps_aggregate"] is not None]
    best = max(fam, key=lambda r: r["fps_aggregate"]) if fam else None
    what = (f"best {best['fps_aggregate']:.2f} fps ({best['arch']}, jobs={best['jobs']}, "
            f"{best['device']})" if best else "no hyperprior-family measurement")
    if device != "cuda":
        verdict = "n/a on CPU"
    elif tuple(size) != GOAL_SIZE:
        verdict = f"n/a ({size[0]}x{size[1]} is not 1920x1080)"
    elif best is None:
        verdict = "n/a (not measured)"
    else:
        verdict = "PASS" if best["fps_aggregate"] >= GOAL_FPS else "FAIL"
    return {"goal_fps": GOAL_FPS, "best_fps": best["fps_aggregate"] if best else None,
            "best_arch": best["arch"] if best else None,
            "best_jobs": best["jobs"] if best else None,
            "verdict": verdict,
            "line": (f"goal: hyperprior family ({', '.join(HYPERPRIOR_FAMILY)}) >= {GOAL_FPS:g} "
                     f"coded 1080p frames/s in aggregate: {what} -> {verdict}")}


def finite_json(v):
    """inf/nan (a bit-exact reconstruction has PSNR inf) as strings: the JSON stays strict."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: finite_json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [finite_json(x) for x in v]
    return v


# ----------------------------------------------------------------------------- main

def parse_size(s: str):
    try:
        w, h = (int(v) for v in s.lower().split("x"))
        assert w > 0 and h > 0
        return w, h
    except (ValueError, AssertionError):
        raise argparse.ArgumentTypeError(f"--size wants WxH, got {s!r}") from None


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=parse_size, default=(1920, 1080), help="WxH (1920x1080)")
    p.add_argument("--frames", type=int, default=8, help="frames per configuration (8)")
    p.add_argument("--check-frames", type=int, default=None,
                   help="frames for the CPU/CUDA and cross-device check (default: --frames)")
    p.add_argument("--archs", default=",".join(ARCHS), help="comma list (%(default)s)")
    p.add_argument("--jobs", default="1,2,4", help="concurrent worker processes (1,2,4)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--weights", choices=["random", "zoo"], default="random")
    p.add_argument("--quality", type=int, default=3)
    p.add_argument("--input", choices=["auto", "kodak", "synthetic"], default="auto",
                   help="frames from Kodak when present (auto), or force one")
    p.add_argument("--json", type=Path, default=None, help="write machine-readable results")
    p.add_argument("--time-limit", type=float, default=480.0, help="seconds for the run (480)")
    p.add_argument("--require-goal", action="store_true", help="exit 3 when the goal FAILs")
    p.add_argument("--check-on-cpu", action="store_true",
                   help="test aid: run the CPU/CUDA and cross-device check with the CPU standing "
                        "in for CUDA (values marked *; they agree trivially)")
    p.add_argument("--fault", choices=["corrupt", "crash"], help=argparse.SUPPRESS)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return args
    args.archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    bad = [a for a in args.archs if a not in ARCHS]
    if bad or not args.archs:
        p.error(f"--archs: unknown {bad}; choose from {list(ARCHS)}")
    try:
        args.jobs = [int(j) for j in args.jobs.split(",") if j.strip()]
        assert args.jobs and all(j > 0 for j in args.jobs)
    except (ValueError, AssertionError):
        p.error("--jobs wants a comma list of positive integers")
    if args.frames < 1:
        p.error("--frames must be >= 1")
    args.check_frames = args.frames if args.check_frames is None else args.check_frames
    return args


def main(argv=None) -> int:
    t_start = time.monotonic()
    args = parse_args(argv)
    if args.worker:
        return worker_main(json.loads(args.worker))
    deadline = t_start + args.time_limit - min(3.0, 0.02 * args.time_limit)

    import warnings

    warnings.filterwarnings("ignore")
    import compressai
    import torch

    cuda_ok = torch.cuda.is_available()
    if args.device == "cuda" and not cuda_ok:
        print("gpu_check: --device cuda, but torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    device = "cuda" if args.device == "cuda" or (args.device == "auto" and cuda_ok) else "cpu"
    cuda_na = None if device == "cuda" else (NO_CUDA if not cuda_ok else "n/a (--device cpu)")
    source = resolve_input(args.input)
    w, h = args.size
    meta = {
        "size": [w, h], "frames": args.frames, "check_frames": args.check_frames,
        "archs": args.archs, "jobs": args.jobs, "quality": args.quality, "device": device,
        "cuda_available": cuda_ok,
        "gpu": torch.cuda.get_device_name(0) if cuda_ok else None,
        "torch": torch.__version__, "compressai": compressai.__version__,
        "python": sys.version.split()[0], "cpu_threads": threads_for(1),
        "input": source["describe"], "weights_requested": args.weights,
        "time_limit_s": args.time_limit,
        "tf32": {"cudnn": torch.backends.cudnn.allow_tf32,
                 "matmul": torch.backends.cuda.matmul.allow_tf32} if cuda_ok else None,
        "bpp": "8 * total bytes of compress()'s strings / (W*H) of the unpadded frame; "
               "nothing else",
        "psnr": "PSNR-RGB, 8-bit rounded reconstruction vs the 8-bit frame",
        "fps": "frames / wall from the common start to the last frame; one frame = compress + "
               "decompress + 8-bit reconstruction on the CPU; start-up and warm-up excluded",
        "cross_device_fail": f"CUDA-encoded, CPU-decoded: raises/dies, non-finite, |dPSNR| > "
                             f"{CROSS_DPSNR_DB} dB vs the CUDA round trip, or < {SAME_PICTURE_DB}"
                             " dB against the CUDA reconstruction",
    }
    print(f"gpu_check: {w}x{h}, {args.frames} frames, quality {args.quality}, device {device}"
          + (f" ({meta['gpu']})" if device == "cuda" else
             " (no CUDA)" if not cuda_ok else " (CUDA present, not used: --device cpu)")
          + f", torch {torch.__version__}, compressai {compressai.__version__}, "
            f"{meta['cpu_threads']} CPU threads")
    print(f"input: {source['describe']}")
    if meta["tf32"]:
        print(f"tf32: cudnn={meta['tf32']['cudnn']} matmul={meta['tf32']['matmul']} "
              "(as torch set them)")
    print(f"bpp: {meta['bpp']}; PSNR: {meta['psnr']}")
    print(f"fps: {meta['fps']}")
    sys.stdout.flush()

    rows, checks, weights_notes, lines = [], {}, {}, []
    failed = False
    skipped = 0
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmpd:
        tmp = Path(tmpd)
        for ai, arch in enumerate(args.archs):
            def skip_rest(arch=arch):
                return [{"arch": arch, "device": device, "jobs": j, "frames_requested": args.frames,
                         "frames": 0, "fps_aggregate": None, "bpp_mean": None, "psnr_mean": None,
                         "peak_vram_mb": None, "peak_rss_mb": None,
                         "status": "skipped (time limit)", "per_job": []} for j in args.jobs]

            if deadline - time.monotonic() <= 0:
                rows += skip_rest()
                skipped += len(args.jobs)
                continue
            now = time.monotonic()
            arch_deadline = now + (deadline - now) / (len(args.archs) - ai)
            state, note = build_state(arch, args.quality, args.weights, tmp)
            weights_notes[arch] = note
            check = None
            if (device == "cuda" or args.check_on_cpu) and args.check_frames > 0:
                check = run_check(arch, state, args, source, tmp,
                                  time.monotonic() + 0.4 * (arch_deadline - time.monotonic()),
                                  gpu_dev="cuda" if device == "cuda" else "cpu")
                checks[arch] = check
                failed |= check["status"].startswith("error")
            for ji, jobs in enumerate(args.jobs):
                left = arch_deadline - time.monotonic()
                if left <= 0:
                    r = skip_rest()[ji]
                    skipped += 1
                else:
                    r = run_fps(arch, state, device, jobs, args, source, tmp,
                                time.monotonic() + left / (len(args.jobs) - ji))
                    skipped += r["status"].startswith("skipped")
                    failed |= r["status"].startswith("error")
                rows.append(r)
                cells, shown = table_line(r, check, cuda_na)
                r["shown"] = shown
                lines.append(cells)
                print("  ".join(cells[:7]) + f"  {r['status']}", file=sys.stderr, flush=True)
        for r in rows:  # rows skipped before their arch started have no line yet
            if "shown" not in r:
                cells, r["shown"] = table_line(r, checks.get(r["arch"]), cuda_na)
                lines.append(cells)
    lines.sort(key=lambda c: (args.archs.index(c[0]), int(c[2])))
    rows.sort(key=lambda r: (args.archs.index(r["arch"]), r["jobs"]))

    print()
    print_table(lines)
    goal = goal_verdict(rows, device, args.size)
    print(goal["line"])
    for arch, note in weights_notes.items():
        print(f"weights {arch}: {note}")
    if any(c.get("stand_in") for c in checks.values()):
        print("* --check-on-cpu: the CPU stood in for CUDA in the check (a test of the code path, "
              "not a measurement)")
    for arch, c in checks.items():
        print(f"check {arch}: {c['frames']}/{c['frames_requested']} frames ({c['status']}); "
              f"strings bit-identical CPU vs CUDA on {c['strings_identical']}/"
              f"{c['strings_compared']}; cross-device "
              f"failures {c['cross_fail']}" + (f" ({'; '.join(c['cross_reasons'])})"
                                              if c["cross_reasons"] else ""))
    partial = sum(1 for r in rows if r["status"].startswith("partial"))
    partial += sum(1 for c in checks.values() if c["status"].startswith(("partial", "skipped")))
    if skipped or partial:
        print(f"time limit: {args.time_limit:g} s reached; {skipped} configuration(s) skipped, "
              f"{partial} cut short (partial)")
    elapsed = time.monotonic() - t_start
    print(f"elapsed: {elapsed:.1f} s")

    if args.json:
        out = {"meta": {**meta, "weights": weights_notes, "elapsed_s": elapsed},
               "rows": rows, "checks": checks, "goal": goal}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(finite_json(out), indent=1, allow_nan=False,
                                        default=str) + "\n")
    if failed:
        return 1
    if args.require_goal and goal["verdict"] == "FAIL":
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
