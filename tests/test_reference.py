"""Published reference curves: local folder, loopback HTTP with cache, and every bad input."""

from __future__ import annotations

import json
import math

import pytest

from rdflow import RdflowError
from rdflow.reference import COLUMNS, CONFIG_KEY, load_reference

KODAK = ("reference", "compressai", "results", "image", "kodak")

JPEG = {"name": "JPEG", "description": "JPEG. Pillow",
        "results": {"bpp": [0.2, 0.4, 0.8, 1.6], "psnr-rgb": [24.0, 28.0, 31.0, 34.0],
                    "ms-ssim-rgb": [0.8, 0.9, 0.95, 0.99],
                    "encoding_time": [0.01, 0.02, 0.03, 0.04],
                    "decoding_time": [0.005, 0.006, 0.007, 0.008]}}
PAPER = {"name": "elic2022", "results": {"bpp": [0.1, 0.2, 0.4], "ms-ssim-db-rgb": [10.0, 13.0,
                                                                                    20.0]}}


def _write(folder, name, doc):
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / f"{name}.json"
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return p


def test_from_local_folder(tmp_path):
    _write(tmp_path, "jpeg", JPEG)
    _write(tmp_path, "paper-elic2022_ms-ssim", PAPER)
    df = load_reference(tmp_path, ["jpeg", "paper-elic2022_ms-ssim"])
    assert list(df.columns) == COLUMNS
    assert (df.source == "compressai-published").all()
    j = df[df.codec == "JPEG"]
    assert j.quality.tolist() == [1, 2, 3, 4]
    assert j.bpp.tolist() == JPEG["results"]["bpp"]
    assert j.psnr_rgb.tolist() == JPEG["results"]["psnr-rgb"]
    assert j.enc_s.tolist() == JPEG["results"]["encoding_time"]
    assert j.dec_s.tolist() == JPEG["results"]["decoding_time"]
    assert j.ms_ssim_db.tolist() == pytest.approx([-10 * math.log10(1 - v)
                                                   for v in JPEG["results"]["ms-ssim-rgb"]])
    e = df[df.reference == "paper-elic2022_ms-ssim"]
    assert (e.codec == "elic2022").all()
    assert e.ms_ssim_db.tolist() == [10.0, 13.0, 20.0]
    assert e.ms_ssim.tolist() == pytest.approx([0.9, 1 - 10 ** -1.3, 0.99])
    assert e.psnr_rgb.isna().all() and e.enc_s.isna().all()


def test_real_compressai_files(shared):
    folder = shared(*KODAK)
    names = ["bpg_444_x265_ycbcr", "compressai-cheng2020-anchor_mse_cpu",
             "compressai-cheng2020-anchor_mse_cuda", "compressai-bmshj2018-hyperprior_mse_cuda"]
    df = load_reference(folder, names)
    sizes = df.groupby("codec").size().to_dict()
    # cpu and cuda runs share the JSON name "cheng2020-anchor": they keep their file stems
    assert sizes == {"BPG 8b 444 x265 ycbcr": 8, "compressai-cheng2020-anchor_mse_cpu": 6,
                     "compressai-cheng2020-anchor_mse_cuda": 6, "bmshj2018-hyperprior": 8}
    doc = json.loads((folder / "bpg_444_x265_ycbcr.json").read_text())["results"]
    bpg = df[df.reference == "bpg_444_x265_ycbcr"]
    assert bpg.psnr_rgb.tolist() == doc["psnr-rgb"] and bpg.ms_ssim.tolist() == doc["ms-ssim-rgb"]
    assert df[["bpp", "psnr_rgb", "ms_ssim", "ms_ssim_db", "enc_s", "dec_s"]].notna().all().all()


def test_from_http_with_cache(http_server, tmp_path):
    _write(http_server.root / "image" / "kodak", "jpeg", JPEG)
    cache = tmp_path / "resources" / "reference"
    url = http_server.url + "image/kodak/"
    df = load_reference(url, ["jpeg"], cache)
    assert df.bpp.tolist() == JPEG["results"]["bpp"] and (df.codec == "JPEG").all()
    assert json.loads((cache / "jpeg.json").read_text()) == JPEG
    assert http_server.hits == ["image/kodak/jpeg.json"]
    again = load_reference(url.rstrip("/"), ["jpeg"], cache)  # served from the cache
    assert again.equals(df) and len(http_server.hits) == 1


def test_real_file_over_http(http_server, tmp_path, shared):
    src = shared(*KODAK, "webp.json")
    _write(http_server.root, "webp", src.read_text())
    df = load_reference(http_server.url, ["webp"], tmp_path / "cache")
    assert len(df) == 19 and (df.codec == "WebP").all()


def test_missing_local_file(tmp_path):
    _write(tmp_path, "jpeg", JPEG)
    with pytest.raises(RdflowError) as e:
        load_reference(tmp_path, ["jpeg", "bpg"])
    msg = str(e.value)
    assert str(tmp_path / "bpg.json") in msg and CONFIG_KEY in msg and "jpeg" in msg
    with pytest.raises(RdflowError, match="does not exist"):
        load_reference(tmp_path / "nowhere", ["jpeg"])


def test_missing_remote_file(http_server, tmp_path):
    with pytest.raises(RdflowError) as e:
        load_reference(http_server.url + "image/kodak", ["vtm"], tmp_path / "cache")
    msg = str(e.value)
    assert http_server.url + "image/kodak/vtm.json" in msg and CONFIG_KEY in msg
    assert not (tmp_path / "cache" / "vtm.json").exists()
    assert len(http_server.hits) == 1  # a 404 is not retried


def test_malformed_local_json(tmp_path):
    p = _write(tmp_path, "broken", '{"name": "x", "results": {"bpp": [0.1, ')
    with pytest.raises(RdflowError, match=f"{p}.*not valid JSON"):
        load_reference(tmp_path, ["broken"])


def test_malformed_remote_json_is_not_cached(http_server, tmp_path):
    _write(http_server.root, "page", "<html>login</html>")
    cache = tmp_path / "cache"
    with pytest.raises(RdflowError) as e:
        load_reference(http_server.url, ["page"], cache)
    assert http_server.url + "page.json" in str(e.value) and "not valid JSON" in str(e.value)
    assert not (cache / "page.json").exists()


@pytest.mark.parametrize("doc, match", [
    ({"name": "x"}, "no results.bpp list"),
    ([1, 2, 3], "no results.bpp list"),
    ({"results": {"bpp": [0.1, 0.2], "psnr-rgb": [30.0]}}, r"results.psnr-rgb has 1 values .* 2"),
    ({"results": {"bpp": [0.1, 0.2], "psnr-rgb": ["a", 3]}}, "non-numbers"),
    ({"results": {"bpp": [0.1, 0.2], "encoding_time": [1, 2]}}, "neither psnr-rgb nor ms-ssim"),
])
def test_wrong_structure(tmp_path, doc, match):
    p = _write(tmp_path, "odd", doc)
    with pytest.raises(RdflowError, match=match) as e:
        load_reference(tmp_path, ["odd"])
    assert str(p) in str(e.value)


def test_other_bad_locations(tmp_path):
    with pytest.raises(RdflowError, match=f"{CONFIG_KEY}.*only local folders and http"):
        load_reference("ftp://example.org/results", ["jpeg"], tmp_path)
    with pytest.raises(RdflowError, match="no cache folder"):
        load_reference("http://127.0.0.1:9/results", ["jpeg"], None)
    with pytest.raises(RdflowError, match="no reference curves named"):
        load_reference(tmp_path, [])


def test_json_name_fallback_to_stem(tmp_path):
    doc = {"results": {"bpp": [0.1, 0.2], "psnr-rgb": [30.0, 32.0]}}
    _write(tmp_path, "anonymous", doc)
    df = load_reference(tmp_path, "anonymous")
    assert (df.codec == "anonymous").all()
