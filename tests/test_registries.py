"""Registries own their knowledge (issue 14): a codec, a metric and a detector added from a
test module (tests/plugins/rdflow_test_plugin.py: one class or one register call each) and
named in a study file (one config entry each) run through the real workflow and show up in
the tidy CSVs, the summaries, the BD-rate table and the figures, like the built-in ones."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import REPO, item_file
from test_e2e import run_snakemake, write_config

pytestmark = pytest.mark.e2e
PLUGINS = REPO / "tests" / "plugins"


def _images(folder, n=3):
    """Crops of the shipped Kodak images (real photographs, small enough to code quickly), and
    the same crops as a 4:2:0 clip of n frames (detection runs on video: pseudo ground truth
    from the original frames)."""
    from rdflow.metrics.yuv import rgb_to_yuv420

    folder.mkdir(parents=True)
    with open(folder.parent / "clip.yuv", "wb") as clip:
        for i, src in enumerate(sorted((REPO / "workflow/resources/data/kodak").glob("*.png"))[:n]):
            crop = Image.open(src).convert("RGB").crop((100, 100, 292, 228))
            crop.save(folder / f"crop{i}.png")
            for plane in rgb_to_yuv420(np.asarray(crop), matrix="bt601", range="limited", chroma_loc="left"):
                clip.write(plane.tobytes())


@pytest.fixture(scope="module")
def plugin_study(tmp_path_factory):
    work = tmp_path_factory.mktemp("registries")
    _images(work / "images")
    cfg = {"device": "cpu", "plugins": ["rdflow_test_plugin"],
           "metrics": ["psnr_rgb", "psnr_green"],
           "datasets": {"crops": {"kind": "local", "path": str(work / "images")}},
           "codecs": {"poster": {"kind": "posterize", "qualities": [2, 3, 4, 5, 6]},
                      "jpeg": {"kind": "jpeg", "qualities": [5, 15, 30, 60, 90]}},
           "video": {"frames": {"count": 3},
                     "sequences": {"clip": {"source": "file", "path": str(work / "clip.yuv"),
                                            "width": 192, "height": 128, "matrix": "bt601"}}},
           "vmaf": {"enabled": False},
           "detection": {"enabled": True, "backend": "bright_quadrants", "conf": 0.25,
                         "map_conf": 0.01},
           "bd_rate": {"anchor": "jpeg", "metrics": ["psnr_rgb", "psnr_green", "map50_95"]}}
    write_config(work, cfg)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")]))
    old = dict(os.environ)
    os.environ.update(env)
    try:
        run_snakemake(work)
    finally:
        os.environ.clear()
        os.environ.update(old)
    return work


def test_plugin_codec_and_metric_in_the_tidy_csv_and_summary(plugin_study):
    rd = pd.read_csv(plugin_study / "results/image_rd_crops.csv")
    poster = rd[rd.codec == "poster"]
    assert len(poster) == 5 * 3 and set(poster.quality) == {2, 3, 4, 5, 6}
    assert "psnr_green" in rd.columns and rd.psnr_green.notna().all()
    # rate from the real bitstream files; green PSNR rises with the bits kept
    for r in poster.itertuples():
        size = (item_file(plugin_study, "image", "crops", "poster", r.quality, r.image, "bin")).stat().st_size
        assert r.bytes == size and r.bpp == pytest.approx(size * 8 / (r.width * r.height))
    by_q = poster.groupby("quality").psnr_green.mean()
    assert by_q.is_monotonic_increasing and by_q[6] > by_q[2] + 10
    summary = pd.read_csv(plugin_study / "results/image_rd_crops_summary.csv")
    assert {"poster", "jpeg"} <= set(summary.codec) and "psnr_green" in summary.columns


def test_plugin_metric_and_codec_in_the_bd_rate_table(plugin_study):
    bd = pd.read_csv(plugin_study / "results/bd_rate.csv")
    rows = bd[(bd.codec == "poster") & (bd.anchor == "jpeg")]
    # mAP per ground truth: map50_95@pseudo (the original frames' detections)
    assert {"psnr_rgb", "psnr_green", "map50_95@pseudo"} <= set(rows.metric)
    green = rows[rows.metric == "psnr_green"]
    assert len(green) == 2  # the image dataset and the clip
    assert np.isfinite(green.bd_rate_pct).all() or green.reason.notna().all()


def test_plugin_metric_gets_its_own_figure_with_the_plugin_codec(plugin_study):
    fig = plugin_study / "results/figures/image_rd_crops_psnr_green.png"
    assert fig.stat().st_size > 1000
    side = json.loads(fig.with_suffix(".json").read_text())
    text = json.dumps(side)
    assert "poster" in text and "PSNR-G" in text


def test_plugin_detector_in_the_machine_vision_table(plugin_study):
    mv = pd.read_csv(plugin_study / "results/machine_vision.csv")
    assert set(mv.backend) == {"bright_quadrants"} and {"poster", "jpeg"} <= set(mv.codec)
    assert (mv.uncompressed_map50 == 1.0).all() and mv.map50.between(0, 1).all()


def test_unknown_plugin_module_is_refused_naming_the_key(tmp_path):
    write_config(tmp_path, {"plugins": ["no_such_rdflow_plugin"],
                            "codecs": {"jpeg": {"kind": "jpeg", "qualities": [50]}}})
    proc = run_snakemake(tmp_path, "-n", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "plugins[0]" in out and "no_such_rdflow_plugin" in out
    assert "Traceback" not in out
