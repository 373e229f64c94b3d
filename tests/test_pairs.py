"""Pair scoring (rdflow.stages.pairs, issue 15 item 4): a given (reference, distorted) pair
scored without coding. The numbers are checked against computations written here: PSNR of the
planes parsed from the .y4m files by this test (not rdflow's reader), VMAF of a direct run of
the bundled ffmpeg's libvmaf filter on the .y4m files, PSNR-RGB and MS-SSIM (pytorch-msssim) of
a Kodak image and its Pillow JPEG; bad input gives errors naming the key and the files; the
``pairs`` target and the ``rdflow-score`` command run once each."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tomllib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import REPO, shared_path
from rdflow import RdflowError
from rdflow.stages import pairs as stage
from rdflow.stages.pairs.cli import main as cli_main
from rdflow.stages.pairs.spec import resolve

MODEL = "vmaf_v0.6.1neg"  # rdflow's default (vmaf.model)


# ----------------------------------------------------------------------------- helpers
def parse_y4m(path):
    """(width, height, [(y, u, v) uint8 planes per frame]) of an 8-bit 4:2:0 .y4m, parsed here."""
    data = path.read_bytes()
    end = data.index(b"\n")
    tokens = data[:end].split()
    assert tokens[0] == b"YUV4MPEG2"
    w = int(next(t[1:] for t in tokens if t.startswith(b"W")))
    h = int(next(t[1:] for t in tokens if t.startswith(b"H")))
    ys, cs = w * h, (w // 2) * (h // 2)
    frames, pos = [], end + 1
    while pos < len(data):
        nl = data.index(b"\n", pos)
        assert data[pos:nl].startswith(b"FRAME")
        a = np.frombuffer(data, np.uint8, ys + 2 * cs, nl + 1)
        frames.append((a[:ys].reshape(h, w), a[ys:ys + cs].reshape(h // 2, w // 2),
                       a[ys + cs:].reshape(h // 2, w // 2)))
        pos = nl + 1 + ys + 2 * cs
    return w, h, frames


def write_y4m(path, w, h, frames):
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F25:1 Ip A1:1 C420jpeg\n".encode())
        for planes in frames:
            f.write(b"FRAME\n" + b"".join(np.ascontiguousarray(p).tobytes() for p in planes))


def psnr(a, b):
    m = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if m == 0 else 10 * math.log10(255.0 ** 2 / m), m


def direct_vmaf(ref, dist, tmp_path, name="vmaf.json"):
    """Per-frame VMAF of ffmpeg's libvmaf filter run here on the two files."""
    import imageio_ffmpeg

    log = tmp_path / name
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error",
           "-i", str(dist), "-i", str(ref), "-lavfi",
           f"[0:v][1:v]libvmaf=log_fmt=json:log_path={log.name}:model=version={MODEL}",
           "-f", "null", "-"]
    subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True, timeout=300)
    frames = sorted(json.loads(log.read_text())["frames"], key=lambda f: f["frameNum"])
    return [f["metrics"]["vmaf"] for f in frames]


@pytest.fixture(scope="module")
def trees():
    ref = shared_path("data", "video", "trees_640x360_ref.y4m")
    dist = shared_path("data", "video", "trees_640x360_dist.y4m")
    return ref, dist


@pytest.fixture(scope="module")
def trees_scored(trees):
    ref, dist = trees
    p = resolve("trees", {"reference": str(ref), "distorted": str(dist)}, vmaf_model=MODEL)
    return p, stage.score(p, threads=2)


@pytest.fixture(scope="module")
def kodak_jpeg(tmp_path_factory):
    src = shared_path("data", "kodak", "kodim23.png")
    out = tmp_path_factory.mktemp("img") / "kodim23_q20.jpg"
    Image.open(src).convert("RGB").save(out, quality=20)
    return src, out


# ----------------------------------------------------------------------------- sequences
def test_trees_per_frame_psnr_equals_numpy_on_the_parsed_planes(trees, trees_scored):
    p, df = trees_scored
    w, h, ref = parse_y4m(trees[0])
    _, _, dist = parse_y4m(trees[1])
    assert (w, h) == (640, 360) and len(ref) == len(dist) == len(df) == 3
    assert list(df["frame"]) == [0, 1, 2] and (df["pair"] == "trees").all()
    mses = {c: [] for c in "yuv"}
    for i, (rp, dp) in enumerate(zip(ref, dist)):
        want = {}
        for c, a, b in zip("yuv", rp, dp):
            want[c], m = psnr(a, b)
            mses[c].append(m)
            assert df[f"psnr_{c}"].iloc[i] == pytest.approx(want[c], abs=1e-9)
            assert df[f"mse_{c}"].iloc[i] == pytest.approx(m, abs=1e-9)
        yuv = (6 * want["y"] + want["u"] + want["v"]) / 8
        assert df["psnr_yuv"].iloc[i] == pytest.approx(yuv, abs=1e-9)
    row = stage.pool(df)
    assert row["n_frames"] == 3
    pooled = {c: 10 * math.log10(255.0 ** 2 / np.mean(mses[c])) for c in "yuv"}
    for c in "yuv":
        assert row[f"psnr_{c}_pooled"] == pytest.approx(pooled[c], abs=1e-9)
        assert row[f"psnr_{c}"] == pytest.approx(df[f"psnr_{c}"].mean(), abs=1e-12)
    assert row["psnr_yuv_pooled"] == pytest.approx(
        (6 * pooled["y"] + pooled["u"] + pooled["v"]) / 8, abs=1e-9)
    assert 20 < row["psnr_y"] < 50 and 0.9 < row["ms_ssim_y"] < 1


def test_trees_per_frame_vmaf_equals_a_direct_libvmaf_run(trees, trees_scored, tmp_path):
    _, df = trees_scored
    want = direct_vmaf(*trees, tmp_path)
    assert len(want) == 3
    np.testing.assert_allclose(df["vmaf"].to_numpy(), want, rtol=0, atol=1e-6)
    row = stage.pool(df)
    v = np.asarray(want)
    assert row["vmaf"] == pytest.approx(v.mean(), abs=1e-6)
    assert row["vmaf_hmean"] == pytest.approx(1 / np.mean(1 / (v + 1)) - 1, abs=1e-6)
    assert row["vmaf_min"] == pytest.approx(v.min(), abs=1e-6)
    assert row["vmaf_min"] <= row["vmaf_hmean"] <= row["vmaf"]


def test_raw_yuv_pair_scores_as_the_y4m_pair(trees, trees_scored, tmp_path):
    """The same frames as headerless .yuv (width/height in the entry), and a frame selection."""
    _, df = trees_scored
    for role, src in zip(("ref", "dist"), trees):
        _, _, frames = parse_y4m(src)
        (tmp_path / f"{role}.yuv").write_bytes(b"".join(p.tobytes() for f in frames for p in f))
    e = {"reference": str(tmp_path / "ref.yuv"), "distorted": str(tmp_path / "dist.yuv"),
         "width": 640, "height": 360, "vmaf": False, "ms_ssim": False,
         "frames": {"first": 1, "count": 2}}
    raw = stage.score(resolve("raw", e, vmaf_model=MODEL))
    assert list(raw["frame"]) == [1, 2] and "vmaf" not in raw and "ms_ssim_y" not in raw
    for c in ("psnr_y", "psnr_u", "psnr_v", "psnr_yuv"):
        np.testing.assert_allclose(raw[c], df[c].iloc[1:], rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- images
def test_image_pair_psnr_rgb_and_ms_ssim_equal_direct_computations(kodak_jpeg):
    import torch
    from pytorch_msssim import ms_ssim

    ref_path, jpg = kodak_jpeg
    p = resolve("k23", {"reference": str(ref_path), "distorted": str(jpg)}, vmaf_model=MODEL)
    assert p.kind == "image" and (p.width, p.height) == (768, 512)
    df = stage.score(p)
    assert len(df) == 1
    ref = np.asarray(Image.open(ref_path).convert("RGB"))
    dist = np.asarray(Image.open(jpg).convert("RGB"))
    want, _ = psnr(ref, dist)
    assert df["psnr_rgb"].iloc[0] == pytest.approx(want, abs=1e-9)
    t = [torch.from_numpy(a.copy()).permute(2, 0, 1)[None].double() for a in (ref, dist)]
    want_ms = float(ms_ssim(t[0], t[1], data_range=255))
    assert df["ms_ssim"].iloc[0] == pytest.approx(want_ms, abs=1e-5)
    assert df["ms_ssim_db"].iloc[0] == pytest.approx(-10 * math.log10(1 - want_ms), abs=1e-3)
    row = stage.pool(df)
    assert row["psnr_rgb"] == row["psnr_rgb_pooled"] == pytest.approx(want, abs=1e-9)
    assert 20 < row["psnr_y"] < 45 and 20 < row["vmaf"] < 100
    assert row["psnr_yuv"] == pytest.approx((6 * row["psnr_y"] + row["psnr_u"]
                                             + row["psnr_v"]) / 8, abs=1e-12)


# ----------------------------------------------------------------------------- bad input
def test_bad_pairs_are_refused_naming_the_key_and_files(trees, kodak_jpeg, tmp_path):
    ref, dist = map(str, trees)

    def err(entry, name="bad"):
        with pytest.raises(RdflowError) as e:
            resolve(name, entry, vmaf_model=MODEL)
        return str(e.value)

    msg = err({"reference": str(tmp_path / "nope.y4m"), "distorted": dist})
    assert "pairs.bad.reference" in msg and "nope.y4m" in msg and "does not exist" in msg
    # frame count: a 2-frame copy of the distorted clip
    w, h, frames = parse_y4m(trees[1])
    write_y4m(tmp_path / "short.y4m", w, h, frames[:2])
    msg = err({"reference": ref, "distorted": str(tmp_path / "short.y4m")})
    assert ref in msg and "short.y4m" in msg and "3 frames" in msg and "has 2" in msg
    assert "pairs.bad.frames.count" in msg
    ok = resolve("ok", {"reference": ref, "distorted": str(tmp_path / "short.y4m"),
                        "frames": {"count": 2}}, vmaf_model=MODEL)
    assert ok.frames == (0, 1)
    # frame size: a 320x180 clip
    half = [tuple(p[::2, ::2] for p in f) for f in frames]
    write_y4m(tmp_path / "half.y4m", w // 2, h // 2, half)
    msg = err({"reference": ref, "distorted": str(tmp_path / "half.y4m")})
    assert ref in msg and "640x360" in msg and "half.y4m" in msg and "320x180" in msg
    # raw yuv without its size
    (tmp_path / "d.yuv").write_bytes(b"\0" * (640 * 360 * 3 // 2))
    msg = err({"reference": str(tmp_path / "d.yuv"), "distorted": str(tmp_path / "d.yuv")})
    assert "pairs.bad.width" in msg and "d.yuv" in msg and "raw YUV" in msg
    msg = err({"reference": str(tmp_path / "d.yuv"), "distorted": str(tmp_path / "d.yuv"),
               "width": 640, "height": 300})
    assert "d.yuv" in msg and "not a whole number" in msg
    # image vs sequence, images of two sizes, keys of the other kind
    src, jpg = map(str, kodak_jpeg)
    assert "not both images" in err({"reference": src, "distorted": dist})
    Image.open(src).resize((384, 256)).save(tmp_path / "small.png")
    msg = err({"reference": src, "distorted": str(tmp_path / "small.png")})
    assert src in msg and "768x512" in msg and "small.png" in msg and "384x256" in msg
    assert "pairs.bad.width" in err({"reference": src, "distorted": jpg, "width": 768})
    assert "pairs.bad.matrix" in err({"reference": ref, "distorted": dist, "matrix": "bt709"})
    assert "pairs.bad.width" in err({"reference": ref, "distorted": dist, "width": 640})


def test_the_study_check_and_the_schema_refuse_bad_pairs(trees, tmp_path):
    from rdflow import study

    ref, dist = map(str, trees)

    def config(entry):
        return {"codecs": {"jpeg": {"kind": "jpeg", "qualities": [50]}}, "pairs": {"t": entry}}

    cfg = study.validate(config({"reference": ref, "distorted": dist}))
    assert cfg["pairs"]["t"]["vmaf"] is True and stage.targets(cfg) == [
        "results/pairs.csv", "results/pairs/t.csv", "results/figures/pairs_t.png"]
    with pytest.raises(RdflowError, match=r"pairs\.t\.distorted: file .*gone\.y4m"):
        study.validate(config({"reference": ref, "distorted": str(tmp_path / "gone.y4m")}))
    with pytest.raises(RdflowError, match=r"pairs\.t.*widht.*width"):
        study.validate(config({"reference": ref, "distorted": dist, "widht": 640}))
    assert stage.targets({"pairs": {}}) == [] and stage.targets({}) == []


# ----------------------------------------------------------------------------- CLI, workflow
def test_rdflow_score_command(trees, trees_scored, tmp_path, capsys):
    entry = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert entry["rdflow-score"] == "rdflow.stages.pairs.cli:main"
    out = tmp_path / "frames.csv"
    proc = subprocess.run([sys.executable, "-m", "rdflow.stages.pairs.cli", *map(str, trees),
                           "--name", "trees", "-o", str(out), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)
    p, df = trees_scored
    got = pd.read_csv(out)
    pd.testing.assert_frame_equal(got, df, check_exact=False, rtol=0, atol=1e-12)
    want = stage.pool(df)
    assert row["n_frames"] == 3 and row["kind"] == "sequence" and row["vmaf_model"] == MODEL
    for k in ("psnr_y", "psnr_yuv", "psnr_y_pooled", "psnr_yuv_pooled", "vmaf", "vmaf_hmean"):
        assert row[k] == pytest.approx(want[k], abs=1e-12)
    # bad input: one line naming the option, exit status 2
    raw = tmp_path / "x.yuv"
    raw.write_bytes(b"\0" * 1000)
    assert cli_main([str(raw), str(raw), "--no-vmaf"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rdflow-score: --width:") and "x.yuv" in err
    assert cli_main([str(tmp_path / "none.png"), str(raw)]) == 2
    assert "REF: file" in capsys.readouterr().err


@pytest.mark.e2e
def test_pairs_target_end_to_end(trees, trees_scored, kodak_jpeg, tmp_path):
    from test_e2e import run_snakemake, write_config

    ref, dist = map(str, trees)
    write_config(tmp_path, {
        "codecs": {"jpeg": {"kind": "jpeg", "qualities": [50]}},  # the study needs one codec
        "pairs": {"trees": {"reference": ref, "distorted": dist},
                  "k23": {"reference": str(kodak_jpeg[0]), "distorted": str(kodak_jpeg[1]),
                          "vmaf": False}}})
    run_snakemake(tmp_path, "pairs")
    res = tmp_path / "results"
    table = pd.read_csv(res / "pairs.csv").set_index("pair")
    assert sorted(table.index) == ["k23", "trees"]
    assert list(table.columns[:7]) == ["kind", "reference", "distorted", "width", "height",
                                       "vmaf_model", "n_frames"]
    frames = pd.read_csv(res / "pairs" / "trees.csv")
    pd.testing.assert_frame_equal(frames, trees_scored[1], check_exact=False, rtol=0, atol=1e-12)
    want = stage.pool(trees_scored[1])
    for k in ("psnr_y", "psnr_u", "psnr_v", "psnr_yuv_pooled", "vmaf", "vmaf_hmean"):
        assert table.loc["trees", k] == pytest.approx(want[k], abs=1e-12)
    assert table.loc["trees", "n_frames"] == 3 and table.loc["k23", "n_frames"] == 1
    assert math.isnan(table.loc["k23", "vmaf"]) and table.loc["k23", "psnr_rgb"] > 20
    assert (res / "figures" / "pairs_trees.png").stat().st_size > 10_000
    assert not (res / "figures" / "pairs_k23.png").exists()  # one frame: no per-frame figure
    side = json.loads((res / "figures" / "pairs_trees.json").read_text())
    assert len(side["panels"]) == 2
