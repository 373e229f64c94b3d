"""The video study through the real snakemake: per-frame rows, and exactly-the-new-work reruns."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from test_e2e import planned_jobs, psnr_255, run_snakemake, write_config
from conftest import item_file

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


# luma weights (Kr, Kb) of the matrices, and ffmpeg's chroma positions in 1/256 luma sample
KR_KB = {"bt709": (0.2126, 0.0722), "bt601": (0.299, 0.114)}
CHR_POS = {"left": (0, 128), "center": (128, 128), "topleft": (0, 0)}


def ffmpeg_rgb_frames(raw, w, h, frames, matrix, rng, chroma_loc):
    """The selected I420 frames of ``raw`` as RGB, converted by ffmpeg's swscale (told the
    sequence's matrix, range and chroma siting; bilinear chroma, accurate rounding)."""
    import imageio_ffmpeg

    hp, vp = CHR_POS[chroma_loc]
    select = "+".join(f"eq(n,{f})" for f in frames)
    vf = (f"select='{select}',scale=in_color_matrix={matrix}:in_range={'tv' if rng == 'limited' else 'pc'}:"
          f"out_range=pc:in_h_chr_pos={hp}:in_v_chr_pos={vp}:flags=bilinear+accurate_rnd+full_chroma_int,"
          "format=rgb24")
    out = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "rawvideo", "-pix_fmt", "yuv420p",
                          "-s", f"{w}x{h}", "-i", str(raw), "-vf", vf, "-fps_mode", "passthrough",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    rgb = np.frombuffer(out, np.uint8).reshape(-1, h, w, 3)
    assert len(rgb) == len(frames)
    return dict(zip(frames, rgb))


def source_planes(raw, w, h, frame):
    """The Y, U, V planes of I420 frame ``frame`` of a raw file, read with numpy."""
    fs = w * h * 3 // 2
    with open(raw, "rb") as f:
        f.seek(frame * fs)
        buf = np.frombuffer(f.read(fs), np.uint8)
    c = w * h // 4
    return (buf[:w * h].reshape(h, w), buf[w * h:w * h + c].reshape(h // 2, w // 2),
            buf[w * h + c:].reshape(h // 2, w // 2))


def luma_of(rgb, matrix, rng):
    """Y' of 8-bit RGB by the matrix's definition (float64 here, rounded to 8 bits)."""
    kr, kb = KR_KB[matrix]
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    e = kr * r + (1 - kr - kb) * g + kb * b
    y = 16 + e * 219 / 255 if rng == "limited" else e
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def check_image_codec_frames(work, df, sequence, raw, w, h, codecs):
    """Per-frame rows of image codecs, recomputed from the kept bitstreams: Pillow decodes them,
    numpy computes PSNR. Returns the rows checked.

    psnr_y: the source Y plane read from the file against the luma of the decoded RGB by the
    matrix's definition (float64 here; rdflow rounds in float32: 0.01 dB). psnr_rgb: against
    the source frame in RGB, exactly (1e-9 dB) with rdflow.yuv's conversion (test_yuv checks
    it against ffmpeg), and to 0.1 dB with ffmpeg's own swscale conversion (a level off on a
    few samples moves a 46 dB PSNR by a few 0.01 dB)."""
    from rdflow.metrics.yuv import yuv420_to_rgb

    meta = json.loads((work / f"results/video/{sequence}/sequence.json").read_text())
    rows = df[df.codec.isin(codecs)]
    assert len(rows) > 0
    assert set(rows["matrix"]) == {meta["matrix"]} and set(rows["range"]) == {meta["range"]}
    conv = dict(matrix=meta["matrix"], range=meta["range"], chroma_loc=meta["chroma_loc"])
    ff = ffmpeg_rgb_frames(raw, w, h, sorted(rows.frame.unique()), *conv.values())
    for r in rows.itertuples():
        path = item_file(work, "video", sequence, r.codec, r.quality, r.frame, "bin")
        data = path.read_bytes()
        assert r.bytes == len(data) and r.bpp == len(data) * 8 / (w * h)
        with Image.open(path) as im:
            assert im.format == r.codec.upper() and im.size == (w, h)
            rec = np.asarray(im.convert("RGB"))
        y = luma_of(rec, meta["matrix"], meta["range"])
        assert r.psnr_y == pytest.approx(psnr_255(source_planes(raw, w, h, r.frame)[0], y), abs=0.01), r
        src = yuv420_to_rgb(*source_planes(raw, w, h, r.frame), **conv)
        assert r.psnr_rgb == pytest.approx(psnr_255(src, rec), abs=1e-9), r
        assert r.psnr_rgb == pytest.approx(psnr_255(ff[r.frame], rec), abs=0.1), r
    return rows


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
    cfg["batch_size"] = 2  # frames [0, 1] and [2, 3]: one job per batch and codec point
    write_config(work, cfg)
    assert planned_jobs(work)["compress_frame"] == 3 * 2
    run_snakemake(work)
    df = pd.read_csv(work / "results/video_rd_synth.csv", float_precision="round_trip")
    assert len(df) == 12 and sorted(df.frame.unique()) == [0, 1, 2, 3]
    assert {"psnr_y", "psnr_u", "psnr_v", "psnr_rgb", "ms_ssim", "bpp", "enc_s", "dec_s"} <= set(df.columns)
    checked = check_image_codec_frames(work, df, "synth", raw, 64, 48, ["jpeg"])
    assert len(checked) == 2 * 4
    # more JPEG quality: more bits and more PSNR on every frame
    j = checked.pivot(index="frame", columns="quality", values=["bpp", "psnr_y"])
    assert (j["bpp"][80] > j["bpp"][40]).all() and (j["psnr_y"][80] > j["psnr_y"][40]).all()
    hp = df[df.codec == "hp"]
    assert set(hp.weights) == {"random(seed=0)"} and len(hp) == 4
    for r in hp.itertuples():
        assert r.bpp == (item_file(work, "video", "synth", "hp", 2, r.frame, "bin")).stat().st_size * 8 / (64 * 48)
    # decoded frames are temp(): gone once nothing needs them; bitstreams are kept
    assert not list((work / "results/video").rglob("*.recon.zip"))
    assert len(list((work / "results/video").rglob("*.bin"))) == 12
    assert planned_jobs(work) == {}

    # more frames: exactly the new batch [4, 5] per codec point (3), plus aggregation; the
    # batches of frames 0-3 are untouched
    cfg["video"]["frames"]["count"] = 6
    write_config(work, cfg)
    plan = planned_jobs(work)
    assert plan["compress_frame"] == 3 and plan["aggregate_video"] == 1
    assert "probe_sequence" not in plan

    # one more quality: exactly that quality's batches
    cfg["video"]["frames"]["count"] = 4
    cfg["codecs"]["jpeg"]["qualities"].append(90)
    write_config(work, cfg)
    assert planned_jobs(work)["compress_frame"] == 2

    # one frame's batch folder deleted: exactly that batch (frames 2 and 3), and the table
    cfg["codecs"]["jpeg"]["qualities"] = [40, 80]
    write_config(work, cfg)
    folder = item_file(work, "video", "synth", "jpeg", 80, 2, "json").parent
    assert sorted(p.name for p in folder.glob("*.json")) == ["2.json", "3.json"]
    shutil.rmtree(folder)
    plan = planned_jobs(work)
    assert plan["compress_frame"] == 1 and plan["aggregate_video"] == 1
    run_snakemake(work)
    assert (item_file(work, "video", "synth", "jpeg", 80, 2, "json")).exists()
    again = pd.read_csv(work / "results/video_rd_synth.csv", float_precision="round_trip")
    cols = ["codec", "quality", "frame", "bpp", "psnr_y", "psnr_rgb"]
    pd.testing.assert_frame_equal(again[cols].sort_values(cols[:3]).reset_index(drop=True),
                                  df[cols].sort_values(cols[:3]).reset_index(drop=True))


def test_granularity_with_vmaf_and_kept_reconstructions(tmp_path):
    """VMAF needs every reconstruction of a group: kept, only new frames are coded."""
    raw = tmp_path / "synth_64x48.yuv"
    make_raw(raw)
    work = tmp_path / "study"
    cfg = base_config(raw, vmaf=True)
    cfg["keep_reconstructions"] = True
    cfg["batch_size"] = 2
    cfg["codecs"].pop("hp")
    write_config(work, cfg)
    run_snakemake(work)
    kept = sorted((work / "results/video").rglob("*.recon.zip"))
    assert len(kept) == 4  # 2 qualities x 2 batches of 2 frames, 2 PNGs each
    assert sum(len(zipfile.ZipFile(p).namelist()) for p in kept) == 8
    cfg["video"]["frames"]["count"] = 6
    write_config(work, cfg)
    plan = planned_jobs(work)
    # the new batch [4, 5] of each quality; the VMAF of each quality again
    assert plan["compress_frame"] == 2 and plan["vmaf_video"] == 2


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
    df = pd.read_csv(work / "results/video_rd_people.csv", float_precision="round_trip")
    assert sorted(df.frame.unique()) == [0, 3, 6]
    w = check_image_codec_frames(work, df, "people", clip, 320, 192, ["webp"])
    assert sorted(w.frame) == [0, 3, 6]
    assert set(df[df.codec == "hp"].weights) == {"random(seed=0)"} and len(df) == 2 * 3
    meta = yaml.safe_load((work / "results/video/people/sequence.json").read_text())
    assert meta["n_frames"] == 9 and meta["frames"] == [0, 3, 6]
