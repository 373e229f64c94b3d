"""The video study through the real snakemake: per-frame rows, and exactly-the-new-work reruns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from test_e2e import planned_jobs, run_snakemake, write_config

pytestmark = pytest.mark.e2e


def make_raw(path, w=64, h=48, n=12, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for i in range(n):
        y = (120 + 60 * np.sin((xx + 3 * i) / 6.0) * np.cos(yy / 5.0)).astype(np.uint8)
        u = np.full((h // 2, w // 2), 110 + i, np.uint8)
        v = np.full((h // 2, w // 2), 140 - i, np.uint8)
        frames.append(y.tobytes() + u.tobytes() + v.tobytes())
    path.write_bytes(b"".join(frames))


def base_config(raw, count=4, vmaf=False):
    return {
        "device": "cpu",
        "vmaf": {"enabled": vmaf},
        "codecs": {"jpeg": {"kind": "jpeg", "qualities": [40, 80]},
                   "hp": {"kind": "learned", "architecture": "bmshj2018-hyperprior",
                          "weights": "random", "qualities": [2]}},
        "video": {"frames": {"count": count},
                  "sequences": {"synth": {"source": "file", "path": str(raw), "width": 64, "height": 48}}},
    }


def test_video_rows_and_granularity(tmp_path):
    raw = tmp_path / "synth_64x48.yuv"
    make_raw(raw)
    work = tmp_path / "study"
    cfg = base_config(raw)
    write_config(work, cfg)
    assert planned_jobs(work)["compress_frame"] == 3 * 4
    run_snakemake(work)
    df = pd.read_csv(work / "results/video_rd_synth.csv")
    assert len(df) == 12 and sorted(df.frame.unique()) == [0, 1, 2, 3]
    assert {"psnr_y", "psnr_u", "psnr_v", "psnr_rgb", "ms_ssim", "bpp", "enc_s", "dec_s"} <= set(df.columns)
    assert (df[df.codec == "jpeg"].psnr_y > 30).all() and (df.bpp > 0).all()
    # decoded frames are temp(): gone once nothing needs them; bitstreams are kept
    assert not list((work / "results/video").rglob("*.png"))
    assert len(list((work / "results/video").rglob("*.bin"))) == 12
    assert planned_jobs(work) == {}

    # more frames: exactly the new frames' jobs (3 codec points x 2 frames), plus aggregation
    cfg["video"]["frames"]["count"] = 6
    write_config(work, cfg)
    plan = planned_jobs(work)
    assert plan["compress_frame"] == 6 and plan["aggregate_video"] == 1
    assert "probe_sequence" not in plan

    # one more quality: exactly that quality's frames
    cfg["video"]["frames"]["count"] = 4
    cfg["codecs"]["jpeg"]["qualities"].append(90)
    write_config(work, cfg)
    assert planned_jobs(work)["compress_frame"] == 4

    # one frame's result deleted: exactly that job
    cfg["codecs"]["jpeg"]["qualities"] = [40, 80]
    write_config(work, cfg)
    (work / "results/video/synth/jpeg/q80/2.json").unlink()
    plan = planned_jobs(work)
    assert plan["compress_frame"] == 1 and plan["aggregate_video"] == 1


def test_granularity_with_vmaf_and_kept_reconstructions(tmp_path):
    """VMAF needs every reconstruction of a group: kept, only new frames are coded."""
    raw = tmp_path / "synth_64x48.yuv"
    make_raw(raw)
    work = tmp_path / "study"
    cfg = base_config(raw, vmaf=True)
    cfg["keep_reconstructions"] = True
    cfg["codecs"].pop("hp")
    write_config(work, cfg)
    run_snakemake(work)
    assert len(list((work / "results/video").rglob("*.png"))) == 8
    cfg["video"]["frames"]["count"] = 6
    write_config(work, cfg)
    plan = planned_jobs(work)
    assert plan["compress_frame"] == 2 * 2 and plan["vmaf_video"] == 2


def test_more_frames_than_the_file_has_fails_at_start(tmp_path):
    raw = tmp_path / "synth.yuv"
    make_raw(raw, n=5)
    work = tmp_path / "study"
    write_config(work, base_config(raw, count=8))
    proc = run_snakemake(work, "-n", check=False)
    assert proc.returncode != 0
    assert "8 frames were asked" in proc.stdout + proc.stderr and "only 5 frames" in proc.stdout + proc.stderr


def test_raw_size_not_multiple_of_frame_size(tmp_path):
    raw = tmp_path / "synth.yuv"
    make_raw(raw, n=3)
    raw.write_bytes(raw.read_bytes() + b"\0" * 100)
    work = tmp_path / "study"
    write_config(work, base_config(raw, count=2))
    proc = run_snakemake(work, "-n", check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "4608" in text  # the frame size in bytes (64x48x1.5)


def test_real_clip_learned_and_classical(shared, tmp_path):
    clip = shared("data", "video", "CiscoVT2people_320x192_12fps.yuv")
    work = tmp_path / "study"
    cfg = {"device": "cpu",
           "codecs": {"hp": {"kind": "learned", "architecture": "bmshj2018-hyperprior",
                             "weights": "random", "qualities": [1]},
                      "webp": {"kind": "webp", "qualities": [60]}},
           "video": {"frames": {"count": 3, "stride": 3},
                     "sequences": {"people": {"source": "file", "path": str(clip), "width": 320,
                                              "height": 192, "fps": 12}}}}
    write_config(work, cfg)
    run_snakemake(work)
    df = pd.read_csv(work / "results/video_rd_people.csv")
    assert sorted(df.frame.unique()) == [0, 3, 6]
    w = df[df.codec == "webp"]
    assert (w.psnr_y > 30).all() and (w.psnr_rgb > 25).all()
    meta = yaml.safe_load((work / "results/video/people/sequence.json").read_text())
    assert meta["n_frames"] == 9 and meta["frames"] == [0, 3, 6]
