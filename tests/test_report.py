"""End to end: BD-rate table, the resize ablation and the HTML report on a tiny study (real
snakemake, two synthetic local images and a synthetic clip; no ../shared needed)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from test_e2e import planned_jobs, run_snakemake, write_config
from test_video_workflow import make_raw

pytestmark = pytest.mark.e2e
LADDER = [20, 40, 60, 80]


def _images(folder):
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[0:176, 0:192]
    for i in range(2):
        base = (128 + 90 * np.sin((xx + 7 * i) / (8.0 + i)) * np.cos(yy / 10.0)).astype(np.uint8)
        Image.fromarray(np.dstack([base, base[::-1], np.roll(base, 5 * i, axis=1)])).save(
            folder / f"img{i}.png")


def _config(tmp_path):
    _images(tmp_path / "imgs")
    make_raw(tmp_path / "clip.yuv", w=64, h=48, n=2)
    return {
        "device": "cpu",
        "metrics": ["psnr_rgb", "ms_ssim"],
        "datasets": {"imgs": {"kind": "local", "path": str(tmp_path / "imgs")}},
        "codecs": {"jpeg": {"kind": "jpeg", "qualities": LADDER},
                   "webp": {"kind": "webp", "qualities": LADDER},
                   "jpeg3": {"kind": "jpeg", "qualities": [30, 50, 70], "datasets": ["imgs"]}},
        "video": {"frames": {"count": 2}, "codecs": ["jpeg", "webp"],
                  "sequences": {"clip": {"source": "file", "path": str(tmp_path / "clip.yuv"),
                                         "width": 64, "height": 48}}},
        "bd_rate": {"anchor": "webp"},
        "ablation": {"variants": {"r64": {"resize": [64, 64]}}, "datasets": ["imgs"]},
        "vmaf": {"enabled": False},
        "detection": {"enabled": False},
    }


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    work = tmp / "study"
    cfg = _config(tmp)
    write_config(work, cfg)
    plan = planned_jobs(work)
    # one preprocessing job for the batch of both images
    assert plan["preprocess_image"] == 1 and plan["bd_rate"] == 1 and plan["environment"] == 1
    run_snakemake(work)
    return work, cfg


def test_ablation_variant_is_coded_like_a_dataset(study):
    work, _ = study
    for image in ("img0", "img1"):
        with Image.open(work / f"resources/variants/imgs-r64/{image}.png") as im:
            assert im.size == (64, 64) and im.mode == "RGB"
    rows = pd.read_csv(work / "results/image_rd_imgs-r64.csv")
    assert set(rows.dataset) == {"imgs-r64"} and set(rows.image) == {"img0", "img1"}
    assert set(rows.codec) == {"jpeg", "webp", "jpeg3"}  # jpeg3 is restricted to imgs: and its variants
    assert len(rows) == 2 * (4 + 4 + 3)
    assert (rows.width == 64).all() and (rows.height == 64).all()
    assert np.allclose(rows.bpp, rows.bytes * 8 / (64 * 64))
    base = pd.read_csv(work / "results/image_rd_imgs.csv")
    assert (base.width == 192).all() and (base.height == 176).all()
    table = pd.read_csv(work / "results/ablation_imgs.csv")
    assert set(zip(table.variant, table.preprocess)) == {("baseline", "none"), ("r64", "resize 64x64")}
    for m in ("psnr_rgb", "ms_ssim_db"):
        for ext in ("png", "pdf"):
            assert (work / f"results/figures/ablation_imgs_{m}.{ext}").stat().st_size > 5000
        # what the figure shows: per codec, the baseline and the variant, a point per quality
        side = json.loads((work / f"results/figures/ablation_imgs_{m}.json").read_text())
        assert side["note"] is None
        n = {"jpeg": 4, "webp": 4, "jpeg3": 3}
        assert sorted(p["title"] for p in side["panels"]) == sorted(n)
        for p in side["panels"]:
            want = {"baseline": n[p["title"]], "r64 (resize 64x64)": n[p["title"]]}
            if m == "ms_ssim_db":  # 5-scale MS-SSIM is undefined under 161 px: no r64 points
                del want["r64 (resize 64x64)"]
            assert {s["label"]: len(s["x"]) for s in p["series"]} == want, (m, p["title"])


def test_bd_rate_table(study):
    work, _ = study
    t = pd.read_csv(work / "results/bd_rate.csv")
    assert set(t.anchor) == {"webp"} and "webp" not in set(t.codec)
    img = t[(t.study == "image") & (t.dataset == "imgs")].set_index(["codec", "metric"])
    jp = img.loc[("jpeg", "psnr_rgb")]
    assert math.isfinite(jp.bd_rate_pct) and jp.bd_rate_pct > 0  # WebP beats JPEG on PSNR
    assert math.isfinite(jp.bd_quality) and jp.bd_quality < 0
    assert jp.n_points == 4 and jp.n_anchor == 4 and jp.overlap_low < jp.overlap_high
    assert pd.isna(jp.reason)
    assert ("jpeg", "ms_ssim_db") in img.index
    few = img.loc[("jpeg3", "psnr_rgb")]
    assert math.isnan(few.bd_rate_pct) and math.isnan(few.bd_quality)
    assert "fewer than 4 rate points: codec 'jpeg3' has 3" in few.reason
    # the variant dataset has its own rows, and the video sequence too
    assert ("imgs-r64", "jpeg") in set(zip(t.dataset, t.codec))
    vid = t[(t.study == "video") & (t.sequence == "clip")]
    assert set(vid.codec) == {"jpeg"} and vid.bd_rate_pct.notna().any()
    html = (work / "results/bd_rate.html").read_text()
    assert "BD-rate against webp" in html and "fewer than 4 rate points" in html


def test_environment_record(study):
    work, _ = study
    env = pd.read_csv(work / "results/environment.csv").set_index("item")["value"]
    assert env["numpy"] == np.__version__ and env["device"] == "cpu"
    assert env["ffmpeg"].startswith("ffmpeg version")


def test_html_report(study):
    work, _ = study
    proc = run_snakemake(work, "--report", "report.html")
    assert "Report created" in proc.stdout + proc.stderr
    page = work / "report.html"
    html = page.read_text()
    assert page.stat().st_size > 200_000  # figures and tables are embedded
    assert "src=\"http" not in html  # self-contained: nothing fetched from the network
    for name in ("bd_rate.csv", "bd_rate.html", "ablation_imgs_psnr_rgb.png", "ablation_imgs.csv",
                 "image_rd_imgs_psnr_rgb.png", "video_rd_clip_summary.csv", "environment.csv"):
        assert name in html, name
    # captions and the front page are JSON strings inside the page: undo the line breaks
    flat = " ".join(html.replace("\\n", " ").split())
    for text in ("BD-rate table of the study: every codec against the anchor codec",
                 "Preprocessing ablation of dataset imgs: psnr_rgb against bpp",
                 "What ran the study, recorded by the run", "rdflow study",
                 "Per-(codec, quality) means over the images of dataset imgs-r64"):
        assert text in flat, text
    # front page: the environment and the configuration, as YAML
    for text in ("imageio-ffmpeg 0.8.1", f"numpy {np.__version__}", "ffmpeg ffmpeg version",
                 "device cpu", "imgs-r64: kind: &quot;variant&quot; of: &quot;imgs&quot;",
                 "bd_rate: anchor: &quot;webp&quot;"):
        assert text in flat, text
    for category in ("BD-rate", "Ablation", "Image", "Video", "Study"):
        assert category in html


def test_anchor_not_in_study_fails_at_start(tmp_path):
    cfg = _config(tmp_path)
    cfg["bd_rate"] = {"anchor": "bpg"}
    work = tmp_path / "bad"
    write_config(work, cfg)
    proc = run_snakemake(work, "-n", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "bd_rate.anchor is 'bpg', which is not a codec of this study; codecs: jpeg, jpeg3, webp" in out


def test_bd_rate_reads_the_vmaf_stage(tmp_path):
    """With vmaf.enabled, results/vmaf.csv (one row per image) feeds BD-rate rows for vmaf."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    yy, xx = np.mgrid[0:48, 0:64]
    for i in range(2):
        base = (128 + 90 * np.sin((xx + 5 * i) / 6.0) * np.cos(yy / 7.0)).astype(np.uint8)
        Image.fromarray(np.dstack([base, base[::-1], base])).save(
            folder / f"im{i}.png")
    work = tmp_path / "study"
    write_config(work, {
        "device": "cpu", "metrics": ["psnr_rgb"],
        "datasets": {"imgs": {"kind": "local", "path": str(folder)}},
        "codecs": {"jpeg": {"kind": "jpeg", "qualities": LADDER},
                   "webp": {"kind": "webp", "qualities": LADDER}},
        "bd_rate": {"anchor": "webp"},
        "vmaf": {"enabled": True},
        "detection": {"enabled": False},
    })
    run_snakemake(work)
    vmaf = pd.read_csv(work / "results/vmaf.csv")
    t = pd.read_csv(work / "results/bd_rate.csv").set_index(["codec", "metric"])
    assert list(t.index) == [("jpeg", "psnr_rgb"), ("jpeg", "vmaf")]
    row = t.loc[("jpeg", "vmaf")]
    assert row.n_points == 4 and row.n_anchor == 4
    # the curves are the per-image VMAF averaged per operating point, at the RD rows' bpp
    means = {c: g.groupby("quality").vmaf.mean() for c, g in vmaf.groupby("codec")}
    assert all(m.is_monotonic_increasing for m in means.values())
    assert math.isfinite(row.bd_rate_pct) and row.bd_rate_pct > 0
    assert row.overlap_low == pytest.approx(max(m.min() for m in means.values()))
    assert row.overlap_high == pytest.approx(min(m.max() for m in means.values()))
