"""Zoo weights: URL from compressai.zoo, base URL swap, hash-prefix check, loading."""

import hashlib

import numpy as np
import pytest

from rdflow import RdflowError
from rdflow.codecs import CodecSpec, build, weights_file
from rdflow.codecs.learned import zoo_filename, zoo_hash_prefix, zoo_url
from rdflow.weights import fetch_zoo, zoo_source_url


def test_url_comes_from_compressai():
    from compressai.zoo.image import model_urls

    assert zoo_url("mbt2018", "mse", 3) == model_urls["mbt2018"]["mse"][3]
    name = zoo_filename("bmshj2018-hyperprior", "mse", 1)
    assert zoo_hash_prefix(name) == name.rsplit("-", 1)[1].split(".")[0]


def test_base_url_replaces_host_keeps_name():
    url, prefix = zoo_source_url("cheng2020-anchor", "mse", 2, "http://127.0.0.1:9/mirror/")
    assert url == "http://127.0.0.1:9/mirror/" + zoo_filename("cheng2020-anchor", "mse", 2)
    assert prefix and len(prefix) >= 6


def test_weights_file_paths():
    cfg = {"codecs": {
        "a": {"kind": "learned", "architecture": "mbt2018", "metric": "mse", "weights": "pretrained"},
        "b": {"kind": "learned", "architecture": "mbt2018", "weights": "checkpoint",
              "checkpoint": "http://h/x-q{quality}.pt"},
        "c": {"kind": "learned", "architecture": "mbt2018", "weights": "checkpoint",
              "checkpoint": "ckpt/q{quality}.pt"},
        "d": {"kind": "learned", "architecture": "mbt2018", "weights": "random"},
        "e": {"kind": "jpeg"}}}
    assert weights_file(cfg, "a", 3) == "resources/weights/zoo/mbt2018/mse/q3.pth.tar"
    assert weights_file(cfg, "b", 3) == "resources/weights/checkpoints/b/q3.pth.tar"
    assert weights_file(cfg, "c", 3) == "ckpt/q3.pt"
    assert weights_file(cfg, "d", 3) is None and weights_file(cfg, "e", 3) is None


def test_no_pretrained_weights_for_quality():
    with pytest.raises(RdflowError, match="no pretrained weights"):
        zoo_url("cheng2020-anchor", "mse", 8)


def test_pretrained_download_and_load(http_server, tmp_path, monkeypatch):
    """A zoo-style file whose name carries its own hash prefix is fetched, checked and loaded."""
    import torch
    from compressai.zoo import image as zoo
    from compressai.zoo.image import cfgs, model_architectures

    torch.manual_seed(5)
    net = model_architectures["bmshj2018-factorized"](*cfgs["bmshj2018-factorized"][1])
    net.update(force=True)
    raw = tmp_path / "w.pth.tar"
    torch.save(net.state_dict(), raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    name = f"bmshj2018-factorized-prior-1-{digest[:8]}.pth.tar"
    (http_server.root / name).write_bytes(raw.read_bytes())
    urls = {k: {m: dict(v) for m, v in d.items()} for k, d in zoo.model_urls.items()}
    urls["bmshj2018-factorized"]["mse"][1] = "https://example.invalid/models/" + name
    monkeypatch.setattr(zoo, "model_urls", urls)

    dest = tmp_path / "resources" / "q1.pth.tar"
    fetch_zoo("bmshj2018-factorized", "mse", 1, str(dest), http_server.url)
    assert dest.read_bytes() == raw.read_bytes()
    codec = build(CodecSpec("f", "learned", 1, {"architecture": "bmshj2018-factorized",
                                               "weights": "pretrained", "weights_path": str(dest)}, "cpu"))
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    with torch.no_grad():
        direct = net.compress(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255)
    assert codec.encode(rgb).endswith(direct["strings"][0][0])
