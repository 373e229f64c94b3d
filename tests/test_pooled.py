"""Pooled PSNRs, spreads over items and lossy sources (issue 16).

Pooled: a summary's ``psnr_<plane>_pooled`` is the PSNR of the MSE pooled over its items (what
ffmpeg's psnr filter prints as its ``y:``/``u:``/``v:`` averages), checked against numpy on the
raw planes and against the bundled ffmpeg on the trees clip of ../shared. Spreads: ``_std`` and
``_ci95`` equal numpy/scipy on the rows. Figures: RD figures carry the CIs as error bars.
Lossy sources: a JPEG input is named in a warning and marked in its row."""

from __future__ import annotations

import json
import logging
import math
import re
import subprocess

import numpy as np
import pandas as pd
import pytest
from PIL import Image as PILImage
from scipy import stats

from rdflow import plots, rows
from rdflow.metrics.yuv import yuv420_to_rgb
from rdflow.sources import datasets as DS
from rdflow.stages import aggregate as AG

SEQ_GROUP = ("sequence", "codec", "quality")


def np_mse(a, b) -> float:
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return float((d * d).mean())


def noisy(planes, sigma: float, rng):
    return tuple(np.clip(p.astype(np.float64) + rng.normal(0, sigma, p.shape), 0, 255)
                 .round().astype(np.uint8) for p in planes)


def frame_row(sequence, codec, quality, frame, ref, rec, n_bytes=1000, config=None) -> dict:
    """A per-frame row as the coding jobs build it (rdflow.rows), from 4:2:0 planes."""
    h, w = ref[0].shape
    src_rgb, rec_rgb = yuv420_to_rgb(*ref), yuv420_to_rgb(*rec)
    return rows.build({"sequence": sequence, "codec": codec, "quality": quality, "frame": frame},
                      rows.rate(n_bytes, w, h),
                      rows.distortion(config or {"metrics": ["psnr_rgb"]}, src_rgb, rec_rgb, ref, rec))


@pytest.fixture
def frames():
    """Five random 4:2:0 frames of 64x48 and their reconstructions at very different noise
    levels (so the mean of per-frame PSNRs and the pooled PSNR differ clearly)."""
    rng = np.random.default_rng(16)
    refs = [tuple(rng.integers(0, 256, s, dtype=np.uint8) for s in ((48, 64), (24, 32), (24, 32)))
            for _ in range(5)]
    recs = [noisy(r, sigma, rng) for r, sigma in zip(refs, (0.6, 2.0, 5.0, 12.0, 30.0))]
    return refs, recs


# ---------------------------------------------------------------------------- rows
def test_rows_carry_the_plane_mses_and_psnr_yuv(frames):
    refs, recs = frames
    r = frame_row("s", "c", 1, 0, refs[1], recs[1])
    for p, a, b in zip("yuv", refs[1], recs[1]):
        assert r[f"mse_{p}"] == pytest.approx(np_mse(a, b), rel=1e-12)
        assert r[f"psnr_{p}"] == pytest.approx(10 * math.log10(255**2 / np_mse(a, b)), rel=1e-12)
    assert r["psnr_yuv"] == pytest.approx((6 * r["psnr_y"] + r["psnr_u"] + r["psnr_v"]) / 8)
    rgb_ref, rgb_rec = yuv420_to_rgb(*refs[1]), yuv420_to_rgb(*recs[1])
    assert r["mse_rgb"] == pytest.approx(np_mse(rgb_ref, rgb_rec), rel=1e-12)
    assert r["psnr_rgb"] == pytest.approx(10 * math.log10(255**2 / r["mse_rgb"]), rel=1e-12)


# ---------------------------------------------------------------------------- pooled PSNRs
def test_pooled_psnr_y_is_the_psnr_of_the_mean_mse_over_frames(frames):
    refs, recs = frames
    df = pd.DataFrame([frame_row("s", "c", 1, i, a, b) for i, (a, b) in enumerate(zip(refs, recs))])
    s = AG.summarise(df, SEQ_GROUP).iloc[0]
    for k, p in enumerate("yuv"):
        mses = [np_mse(a[k], b[k]) for a, b in zip(refs, recs)]
        pooled = 10 * math.log10(255**2 / np.mean(mses))
        per_frame = np.mean([10 * math.log10(255**2 / m) for m in mses])
        assert s[f"psnr_{p}_pooled"] == pytest.approx(pooled, abs=1e-9)
        assert s[f"psnr_{p}"] == pytest.approx(per_frame, abs=1e-9)
        assert s[f"psnr_{p}"] - s[f"psnr_{p}_pooled"] > 1.0  # noise 0.6..30: far apart
    assert s["psnr_yuv_pooled"] == pytest.approx(
        (6 * s["psnr_y_pooled"] + s["psnr_u_pooled"] + s["psnr_v_pooled"]) / 8, abs=1e-12)
    assert s["psnr_yuv"] == pytest.approx((6 * s["psnr_y"] + s["psnr_u"] + s["psnr_v"]) / 8, abs=1e-9)
    sse = sum(((a[k].astype(float) - b[k]) ** 2).sum() for a, b in zip(refs, recs) for k in range(3))
    n = sum(a[k].size for a in refs for k in range(3))
    assert s["psnr_yuv_mse_pooled"] == pytest.approx(10 * math.log10(255**2 * n / sse), abs=1e-9)


def test_pooled_psnr_rgb_weighs_images_by_their_samples():
    rng = np.random.default_rng(3)
    sizes, sigmas = ((32, 48), (96, 64), (40, 40)), (2.0, 9.0, 20.0)
    out, sse, n = [], 0.0, 0
    for i, ((h, w), sigma) in enumerate(zip(sizes, sigmas)):
        ref = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        rec = noisy((ref,), sigma, rng)[0]
        out.append(rows.build({"dataset": "d", "codec": "c", "quality": 1, "image": f"i{i}"},
                              rows.rate(100, w, h), rows.distortion({"metrics": ["psnr_rgb"]}, ref, rec)))
        sse += ((ref.astype(float) - rec) ** 2).sum()
        n += ref.size
    s = AG.summarise(pd.DataFrame(out)).iloc[0]
    assert s["psnr_rgb_pooled"] == pytest.approx(10 * math.log10(255**2 * n / sse), abs=1e-9)
    assert s["psnr_rgb"] == pytest.approx(np.mean([r["psnr_rgb"] for r in out]), abs=1e-12)
    assert "psnr_y_pooled" not in s  # no planes, no plane PSNRs


def test_a_missing_mse_makes_the_pool_nan_and_old_rows_have_none():
    df = pd.DataFrame([{"dataset": "d", "codec": "c", "quality": 1, "image": "a", "bpp": 1.0,
                        "psnr_rgb": 30.0, "mse_rgb": 65.0},
                       {"dataset": "d", "codec": "c", "quality": 1, "image": "b", "bpp": 1.0,
                        "psnr_rgb": 31.0}])
    assert math.isnan(AG.summarise(df).iloc[0]["psnr_rgb_pooled"])
    assert "psnr_rgb_pooled" not in AG.summarise(df.drop(columns="mse_rgb")).columns


@pytest.fixture(scope="module")
def trees(request):
    from conftest import shared_path

    from rdflow.sources.video import probe_y4m, read_frame

    ref = probe_y4m(shared_path("data", "video", "trees_640x360_ref.y4m"))
    dist = probe_y4m(shared_path("data", "video", "trees_640x360_dist.y4m"))
    df = pd.DataFrame([frame_row("trees", "dist", 0, f, read_frame(ref, f), read_frame(dist, f))
                       for f in range(ref.n_frames)])
    return ref, dist, df


def ffmpeg_psnr(ref, dist) -> dict[str, float]:
    """The averages ffmpeg's psnr filter prints at the end (its ``PSNR y: u: v: average:``)."""
    import imageio_ffmpeg

    p = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostats", "-i",
                        str(dist.path), "-i", str(ref.path), "-lavfi", "psnr", "-f", "null", "-"],
                       capture_output=True, text=True, check=True, timeout=120)
    line = [x for x in p.stderr.splitlines() if "PSNR y:" in x][-1]
    return {k: float(v) for k, v in re.findall(r"(\w+):([0-9.]+|inf)", line.split("PSNR", 1)[1])}


def test_pooled_psnr_equals_ffmpegs_psnr_filter_on_the_trees_clip(trees):
    ref, dist, df = trees
    ff = ffmpeg_psnr(ref, dist)
    s = AG.summarise(df, SEQ_GROUP).iloc[0]
    assert s["n_items"] == ref.n_frames == 3
    for p in "yuv":  # ffmpeg prints 6 decimals
        assert s[f"psnr_{p}_pooled"] == pytest.approx(ff[p], abs=1e-6)
    assert s["psnr_yuv_mse_pooled"] == pytest.approx(ff["average"], abs=1e-6)
    # the mean of per-frame PSNRs is another number: pooled <= mean (Jensen), here by a little
    assert all(s[f"psnr_{p}"] >= s[f"psnr_{p}_pooled"] for p in "yuv")
    print({k: round(float(s[k]), 6) for k in ("psnr_y", "psnr_y_pooled", "psnr_u", "psnr_u_pooled",
                                              "psnr_v", "psnr_v_pooled", "psnr_yuv",
                                              "psnr_yuv_pooled", "psnr_yuv_mse_pooled")}, ff)


# ---------------------------------------------------------------------------- spreads
def image_rows() -> list[dict]:
    rng = np.random.default_rng(7)
    out = []
    for codec, shift in (("jpeg", 0.0), ("webp", 1.5)):
        for q, base in ((30, 28.0), (60, 33.0), (90, 38.0)):
            for i in range(6):
                out.append({"dataset": "d", "codec": codec, "quality": q, "image": f"i{i}",
                            "bpp": base / 40 + rng.uniform(0, 0.3), "psnr_rgb": base + shift + rng.normal(0, 1.5),
                            "ms_ssim": 0.9 + rng.uniform(0, 0.08), "enc_s": 0.1, "dec_s": 0.1, "bytes": 1000})
    for r in out:
        r["ms_ssim_db"] = -10 * math.log10(1 - r["ms_ssim"])
    out[0]["ms_ssim"] = out[0]["ms_ssim_db"] = math.nan  # an image below MS-SSIM's 161 px
    out.append({"dataset": "d", "codec": "one", "quality": 1, "image": "i0", "bpp": 0.5,
                "psnr_rgb": 30.0, "ms_ssim": 0.95, "ms_ssim_db": 13.0})
    return out


def test_std_and_ci95_equal_numpy_and_scipy_on_the_rows():
    df = pd.DataFrame(image_rows())
    s = AG.summarise(df).set_index(["codec", "quality"])
    for (codec, q), g in df.groupby(["codec", "quality"]):
        for c in ("bpp", "psnr_rgb", "ms_ssim", "ms_ssim_db"):
            v = g[c].dropna().to_numpy(float)
            if len(v) < 2:
                assert math.isnan(s.loc[(codec, q), f"{c}_ci95"]), (codec, c)
                assert math.isnan(s.loc[(codec, q), f"{c}_std"])
                continue
            sd = np.std(v, ddof=1)
            assert s.loc[(codec, q), f"{c}_std"] == pytest.approx(sd, rel=1e-12)
            ci = stats.t.ppf(0.975, len(v) - 1) * sd / math.sqrt(len(v))
            assert s.loc[(codec, q), f"{c}_ci95"] == pytest.approx(ci, rel=1e-12)
    # jpeg q30 lost one MS-SSIM value: 5 items, t(0.975, 4) = 2.776
    v = df[(df.codec == "jpeg") & (df.quality == 30)].ms_ssim.dropna()
    assert len(v) == 5 and s.loc[("jpeg", 30), "ms_ssim_ci95"] == pytest.approx(
        2.7764451 * np.std(v, ddof=1) / math.sqrt(5), rel=1e-6)
    assert s.loc[("one", 1), "n_items"] == 1 and math.isnan(s.loc[("one", 1), "psnr_rgb_ci95"])
    assert not any(c.startswith(("enc_s_", "dec_s_", "bytes_")) for c in s.columns)
    cols = list(AG.summarise(df).columns)  # means first, then the spreads
    assert cols[:6] == ["dataset", "codec", "quality", "bpp", "psnr_rgb", "ms_ssim"]
    assert cols.index("n_items") < cols.index("bpp_std") < cols.index("bpp_ci95") < cols.index("psnr_rgb_std")


def test_a_lossless_item_gives_no_spread():
    df = pd.DataFrame([{"dataset": "d", "codec": "c", "quality": 1, "image": i, "bpp": 1.0 + k,
                        "psnr_rgb": v} for k, (i, v) in enumerate((("a", 40.0), ("b", math.inf), ("c", 42.0)))])
    s = AG.summarise(df).iloc[0]
    assert math.isinf(s["psnr_rgb"]) and math.isnan(s["psnr_rgb_std"]) and math.isnan(s["psnr_rgb_ci95"])
    assert s["bpp_std"] == pytest.approx(1.0)


def test_image_rd_figure_has_ci95_error_bars(tmp_path):
    from matplotlib.container import ErrorbarContainer

    summary = AG.summarise(pd.DataFrame(image_rows()))
    csv = tmp_path / "summary.csv"
    summary.to_csv(csv, index=False)
    png = tmp_path / "image_rd_d_psnr_rgb.png"
    AG.plot_image_rd({"datasets": {"d": {"kind": "local"}}, "codecs": {"jpeg": {}, "webp": {}, "one": {}}},
                     "d", "psnr_rgb", csv, [png])
    side = json.loads(plots.sidecar_path(png).read_text())
    by = {s["label"]: s for s in side["series"]}
    for codec in ("jpeg", "webp"):
        g = summary[summary.codec == codec].sort_values("bpp")
        assert by[codec]["yerr"] == pytest.approx(list(g["psnr_rgb_ci95"]), rel=1e-9)
        assert by[codec]["xerr"] == pytest.approx(list(g["bpp_ci95"]), rel=1e-9)
        assert by[codec]["error_level"] == 0.95
    assert "yerr" not in by["one"] and "xerr" not in by["one"]  # one item: no interval, no bars
    # the matplotlib figure itself: a y error bar of full length 2 * ci95 at each point
    fig = plots.rd_curves(summary, "psnr_rgb", [tmp_path / "again.png"])
    bars = [c for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 2 and all(c.has_yerr and c.has_xerr for c in bars)
    jpeg = next(c for c in bars if c.get_label() == "_ci95 jpeg")
    segs = jpeg.lines[2][-1].get_segments()  # the y bars (x bars come first)
    g = summary[summary.codec == "jpeg"].sort_values("bpp")
    assert [s[1][1] - s[0][1] for s in segs] == pytest.approx(list(2 * g["psnr_rgb_ci95"]), rel=1e-9)


def test_video_rd_figure_has_error_bars_on_psnr_y(frames, tmp_path):
    refs, recs = frames
    df = pd.DataFrame([frame_row("s", "c", q, i, a, b, n_bytes=500 * q + 37 * i)
                       for q in (1, 2) for i, (a, b) in enumerate(zip(refs, recs))])
    summary = AG.summarise(df, SEQ_GROUP)
    csv = tmp_path / "video_summary.csv"
    summary.to_csv(csv, index=False)
    png = tmp_path / "video_rd_s_psnr_y.png"
    AG.plot_video_rd({"codecs": {"c": {}}}, "s", "psnr_y", csv, [png])
    c = {s["label"]: s for s in json.loads(plots.sidecar_path(png).read_text())["series"]}["c"]
    assert c["yerr"] == pytest.approx(list(summary.sort_values("bpp")["psnr_y_ci95"]), rel=1e-9)
    assert all(e > 0 for e in c["yerr"])


def test_figure_without_spread_columns_has_no_error_bars(tmp_path):
    s = pd.DataFrame([{"codec": "a", "quality": q, "bpp": 0.2 * q, "psnr_rgb": 30 + q} for q in (1, 2, 3)])
    png = tmp_path / "f.png"
    fig = plots.rd_curves(s, "psnr_rgb", [png])
    assert not fig.axes[0].containers
    assert "yerr" not in json.loads(plots.sidecar_path(png).read_text())["series"][0]


# ---------------------------------------------------------------------------- lossy sources
@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "imgs"
    d.mkdir()
    for name, fmt in (("a.jpg", "JPEG"), ("b.png", "PNG"), ("c.jpeg", "JPEG")):
        PILImage.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(d / name, format=fmt)
    return d


def test_a_jpeg_source_is_named_in_a_warning_and_marked_in_its_row(folder, tmp_path, caplog):
    from rdflow.stages.compress import image_job

    caplog.set_level(logging.INFO, logger="rdflow")
    png = DS.read_image(folder / "b.png")
    assert (png.format, png.lossy) == ("PNG", False)
    assert "lossy" not in caplog.text
    config = {"metrics": ["psnr_rgb"], "codecs": {"j": {"kind": "jpeg", "qualities": [50]}}}
    out = []
    for name in ("a.jpg", "b.png"):
        out.append(image_job(config=config, dataset="d", image=name.split(".")[0], codec="j",
                             quality=50, image_path=str(folder / name),
                             bitstream=str(tmp_path / f"{name}.bin"), out_json=str(tmp_path / f"{name}.json")))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "lossy-coded" in r.getMessage()]
    assert len(warnings) == 1 and str(folder / "a.jpg") in warnings[0].getMessage()
    assert [(r["source_format"], r["source_lossy"], r["source_mode"]) for r in out] == [
        ("JPEG", True, "RGB"), ("PNG", False, "RGB")]
    assert json.loads((tmp_path / "a.jpg.json").read_text())["source_lossy"] is True
    assert AG.summarise(pd.DataFrame(out)).iloc[0]["n_lossy_sources"] == 1


def test_config_check_warns_once_per_dataset_with_jpeg_files(folder, caplog):
    caplog.set_level(logging.INFO, logger="rdflow")
    DS.check_images({"datasets": {"loc": {"kind": "local", "path": str(folder)},
                                  "png": {"kind": "local", "path": str(folder), "images": ["b"]}}})
    msgs = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(msgs) == 1 and msgs[0].startswith("dataset loc: 2 of 3 image(s) are lossy-coded")
    assert "a.jpg, c.jpeg" in msgs[0]


def test_coco8_images_are_all_flagged_lossy(shared, caplog):
    val = shared("data", "coco8", "images", "val")
    caplog.set_level(logging.WARNING, logger="rdflow")
    DS.check_images({"datasets": {"coco8": {"kind": "local", "path": str(val)}}})
    assert "dataset coco8: 4 of 4 image(s) are lossy-coded" in caplog.text
    img = DS.read_image(sorted(val.glob("*.jpg"))[0])
    assert img.format == "JPEG" and rows.source(img)["source_lossy"] is True
