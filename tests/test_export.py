"""Results in CompressAI's format (issue 15, item 5): results/compressai/<dataset>/<codec>.json
from a real study (2 Kodak images, JPEG and a random-weights hyperprior), checked against the
per-image rows and the bitstream files, read by CompressAI's own plot utility and by rdflow's
reference reader."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from io import BytesIO

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import item_file
from test_e2e import planned_jobs, psnr_255, run_snakemake, write_config

pytestmark = pytest.mark.e2e
IMAGES = ("kodim01", "kodim02")
CODECS = {"jpeg": [20, 50], "hp": [1, 2]}
#: the keys of CompressAI's published image results (results/image/kodak/*.json)
PUBLISHED_KEYS = {"psnr-rgb", "ms-ssim-rgb", "bpp", "encoding_time", "decoding_time"}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from conftest import shared_path

    kodak = shared_path("data", "kodak")
    published = shared_path("reference", "compressai", "results", "image", "kodak")
    work = tmp_path_factory.mktemp("export") / "study"
    write_config(work, {
        "device": "cpu", "vmaf": {"enabled": False},
        "datasets": {"kodak": {"kind": "kodak", "base_url": kodak.as_uri() + "/", "images": list(IMAGES)}},
        "codecs": {"jpeg": {"kind": "jpeg", "qualities": CODECS["jpeg"]},
                   "hp": {"kind": "learned", "architecture": "bmshj2018-hyperprior",
                          "weights": "random", "qualities": CODECS["hp"]}},
    })
    run_snakemake(work)
    docs = {c: json.loads((work / f"results/compressai/kodak/{c}.json").read_text()) for c in CODECS}
    return work, kodak, published, docs


def _item_rows(work, codec):
    """The per-image result rows the coding jobs wrote (one JSON file per image)."""
    return [json.loads((item_file(work, "image", "kodak", codec, q, i, "json")).read_text())
            for q in CODECS[codec] for i in IMAGES]


def test_one_file_per_dataset_and_codec_in_compressai_format(study):
    work, _, published, docs = study
    assert sorted(p.name for p in (work / "results/compressai/kodak").iterdir()) == ["hp.json", "jpeg.json"]
    ref_keys = set(json.loads((published / "compressai-bmshj2018-hyperprior_mse_cpu.json").read_text())["results"])
    assert ref_keys == PUBLISHED_KEYS
    for codec, doc in docs.items():
        assert set(doc) == {"name", "description", "results"} and doc["name"] == codec
        assert set(doc["results"]) == PUBLISHED_KEYS | {"quality"}
        assert {len(v) for v in doc["results"].values()} == {len(CODECS[codec])}
        assert sorted(doc["results"]["quality"]) == CODECS[codec]
        assert doc["results"]["bpp"] == sorted(doc["results"]["bpp"])  # ascending rate
        assert all(0 < v < 1 for v in doc["results"]["ms-ssim-rgb"])  # linear, as published
        assert "means over 2 images of kodak" in doc["description"]
    assert "kind learned" in docs["hp"]["description"] and "random(seed=0)" in docs["hp"]["description"]
    assert "compressai 1.2.8 bmshj2018-hyperprior" in docs["hp"]["description"]
    assert "kind jpeg" in docs["jpeg"]["description"] and "Pillow" in docs["jpeg"]["description"]


def test_values_are_the_summary_means_of_the_per_image_rows(study):
    """eval_model sums each image's numbers and divides by the image count: the per-image
    rows' plain means (statistics.fmean here), and exactly the summary's numbers."""
    work, _, _, docs = study
    summary = pd.read_csv(work / "results/image_rd_kodak_summary.csv", float_precision="round_trip")
    keys = {"bpp": "bpp", "psnr-rgb": "psnr_rgb", "ms-ssim-rgb": "ms_ssim",
            "encoding_time": "enc_s", "decoding_time": "dec_s"}
    for codec, doc in docs.items():
        rows = _item_rows(work, codec)
        res = doc["results"]
        for i, q in enumerate(res["quality"]):
            mine = [r for r in rows if r["quality"] == q]
            assert len(mine) == len(IMAGES)
            s = summary[(summary.codec == codec) & (summary.quality == q)].iloc[0]
            for key, col in keys.items():
                assert res[key][i] == pytest.approx(statistics.fmean(r[col] for r in mine), rel=1e-12)
                assert res[key][i] == s[col], (codec, q, key)  # the summary's number, unrounded


def test_rates_and_jpeg_psnr_recomputed_from_the_bitstream_files(study):
    work, kodak, _, docs = study
    for codec in CODECS:
        res = docs[codec]["results"]
        for i, q in enumerate(res["quality"]):
            bpps, psnrs = [], []
            for name in IMAGES:
                data = (item_file(work, "image", "kodak", codec, q, name, "bin")).read_bytes()
                ref = np.asarray(Image.open(kodak / f"{name}.png").convert("RGB"))
                bpps.append(len(data) * 8 / (ref.shape[0] * ref.shape[1]))
                if codec == "jpeg":  # the file is a JPEG: Pillow decodes it, numpy scores it
                    psnrs.append(psnr_255(ref, np.asarray(Image.open(BytesIO(data)).convert("RGB"))))
            assert res["bpp"][i] == pytest.approx(sum(bpps) / len(bpps), rel=1e-12)
            if psnrs:
                assert res["psnr-rgb"][i] == pytest.approx(sum(psnrs) / len(psnrs), rel=1e-9)


@pytest.mark.parametrize("metric", ["psnr", "ms-ssim"])
def test_compressai_plot_draws_them_beside_the_published_curves(study, tmp_path, metric):
    work, _, published, _ = study
    files = [work / "results/compressai/kodak/hp.json", work / "results/compressai/kodak/jpeg.json",
             published / "compressai-bmshj2018-hyperprior_mse_cpu.json", published / "jpeg.json"]
    out = tmp_path / f"rd_{metric}.png"
    proc = subprocess.run([sys.executable, "-m", "compressai.utils.plot", "-f", *map(str, files),
                           "-m", metric, "-o", str(out), "--backend", "matplotlib"],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, MPLBACKEND="Agg"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000


def test_compressai_parse_json_file_reads_the_numbers(study):
    from compressai.utils.plot.__main__ import parse_json_file

    work, _, _, docs = study
    for codec, doc in docs.items():
        path = work / f"results/compressai/kodak/{codec}.json"
        psnr = parse_json_file(path, "psnr")
        assert psnr["name"] == codec and psnr["xs"] == doc["results"]["bpp"]
        assert psnr["ys"] == doc["results"]["psnr-rgb"]
        db = parse_json_file(path, "ms-ssim")
        np.testing.assert_allclose(db["ys"], [-10 * math.log10(1 - v) for v in doc["results"]["ms-ssim-rgb"]])


def test_rdflow_reads_them_back_as_reference_curves(study):
    """The exported files are published-format files: a later study can draw them dashed."""
    from rdflow.reference import load_reference

    work, _, _, docs = study
    ref = load_reference(work / "results/compressai/kodak", ["hp", "jpeg"])
    for codec, doc in docs.items():
        got = ref[ref.codec == codec]
        assert list(got.bpp) == doc["results"]["bpp"] and list(got.psnr_rgb) == doc["results"]["psnr-rgb"]
        assert list(got.enc_s) == doc["results"]["encoding_time"]


def test_finished_study_has_nothing_to_redo(study):
    assert planned_jobs(study[0]) == {}


# ---------------------------------------------------------------- the stage's own logic
def _config(**export):
    return {"datasets": {"a": {"kind": "local", "path": "."}, "b": {"kind": "local", "path": "."}},
            "codecs": {"jpeg": {"kind": "jpeg", "qualities": [50]},
                       "only_b": {"kind": "webp", "qualities": [50], "datasets": ["b"]}},
            **({"export": export} if export else {})}


def test_targets_one_per_dataset_and_codec_that_codes_it():
    from rdflow.stages import export

    assert export.targets(_config()) == ["results/compressai/a/jpeg.json",
                                         "results/compressai/b/jpeg.json",
                                         "results/compressai/b/only_b.json"]
    assert export.targets(_config(compressai_json=False)) == []


def test_document_orders_by_rate_and_leaves_out_what_was_not_measured():
    from rdflow import RdflowError
    from rdflow.stages.export import document

    summary = pd.DataFrame({  # a QP-like ladder: higher quality index, fewer bits
        "dataset": "d", "codec": "hevc", "quality": [22, 27, 32], "bpp": [1.5, 0.8, 0.3],
        "psnr_rgb": [40.0, math.inf, 31.0], "ms_ssim": [math.nan] * 3, "enc_s": [0.3, 0.2, 0.1],
        "dec_s": [0.03, 0.02, 0.01], "n_items": 4, "kind": "hevc_intra", "encoder": "x265"})
    doc = document(summary, "d", "hevc")
    res = doc["results"]
    assert res["quality"] == [32, 27, 22] and res["bpp"] == [0.3, 0.8, 1.5]
    assert res["psnr-rgb"] == [31.0, None, 40.0]  # strict JSON: no Infinity
    assert res["encoding_time"] == [0.1, 0.2, 0.3] and "ms-ssim-rgb" not in res
    assert doc["description"].startswith("rdflow: kind hevc_intra, encoder x265; means over 4 images of d")
    json.dumps(doc, allow_nan=False)
    with pytest.raises(RdflowError, match="has no row of codec jpeg .*hevc"):
        document(summary, "d", "jpeg")
