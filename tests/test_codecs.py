"""Codec layer: registry, padding, bitstream container and round trips with random weights."""

import numpy as np
import pytest

from rdflow import RdflowError
from rdflow.codecs import CODECS, CodecSpec, build
from rdflow.codecs.learned import ARCH_QUALITIES, Learned
from rdflow.stages.compress import code

ARCHS = ["bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean", "mbt2018",
         "cheng2020-anchor", "cheng2020-attn"]


def _image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([127 + 90 * np.sin(xx / 7.0 + c) * np.cos(yy / 9.0) for c in range(3)], -1)
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def _learned(arch, quality=1, seed=0):
    return build(CodecSpec(arch, "learned", quality,
                           {"architecture": arch, "weights": "random", "seed": seed}, "cpu"))


def test_quality_table_matches_compressai_zoo():
    from compressai.zoo.image import cfgs, model_architectures

    assert set(ARCHS) <= set(ARCH_QUALITIES)
    for arch, (lo, hi) in ARCH_QUALITIES.items():
        assert arch in model_architectures, arch
        qs = sorted(cfgs[arch])
        assert (qs[0], qs[-1]) == (lo, hi) and qs == list(range(lo, hi + 1)), arch


def test_odd_sizes_are_padded_and_cropped_through_rdflow(tmp_path):
    """Sizes that are not multiples of 64 (odd ones among them) through rdflow's learned codec:
    the container stores the original size, the latent is that of the 64-padded image, and the
    decoded image is CompressAI's own reconstruction of the padded image cropped back (same
    place, not just the same shape)."""
    import struct

    import torch
    import torch.nn.functional as F
    from compressai.ops import compute_padding

    codec = _learned("bmshj2018-factorized")
    for h, w in [(45, 70), (1, 1), (65, 129)]:
        rgb = _image(h, w, seed=h)
        coded = code(codec, rgb, tmp_path / f"{h}x{w}.bin")
        data = (tmp_path / f"{h}x{w}.bin").read_bytes()
        # rdflow's container: big-endian uint16 height, width, then the latent's height, width
        ph, pw = -(-h // 64) * 64, -(-w // 64) * 64
        assert struct.unpack(">HHHH", data[:8]) == (h, w, ph // 16, pw // 16)  # 4 stride-2 convs
        assert coded.recon.shape == (h, w, 3) and coded.recon.dtype == np.uint8
        assert codec.decode(data).shape == (h, w, 3)
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
        pad, unpad = compute_padding(h, w, min_div=64)
        with torch.no_grad():
            xp = F.pad(x, pad)
            assert xp.shape[-2:] == (ph, pw)
            out = codec.net.compress(xp)
            xh = F.pad(codec.net.decompress(out["strings"], out["shape"])["x_hat"], unpad)
        ref = xh[0].mul(255).clamp(0, 255).round().byte().permute(1, 2, 0).numpy()
        assert ref.shape == (h, w, 3) and np.array_equal(ref, coded.recon), (h, w)


@pytest.mark.parametrize("arch", ARCHS)
def test_bitstream_round_trip_every_architecture(arch, tmp_path):
    codec = _learned(arch)
    rgb = _image(70, 100)  # not a multiple of 64: padded then cropped
    coded = code(codec, rgb, tmp_path / "x.bin")
    on_disk = (tmp_path / "x.bin").read_bytes()
    assert coded.data == on_disk and len(on_disk) > 9
    # decoding the file's bytes again gives the identical image (deterministic decoder)
    assert np.array_equal(codec.decode(on_disk), coded.recon)
    assert coded.recon.shape == rgb.shape and coded.recon.dtype == np.uint8
    h, w, shape, strings = Learned.unpack(on_disk)
    assert (h, w) == (70, 100)
    assert codec.header_bytes(on_disk) + sum(map(len, strings)) == len(on_disk)
    # the in-memory compress/decompress of CompressAI gives the same reconstruction
    import torch
    import torch.nn.functional as F
    from compressai.ops import compute_padding

    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    pad, unpad = compute_padding(70, 100, min_div=64)
    with torch.no_grad():
        out = codec.net.compress(F.pad(x, pad))
        assert [s[0] for s in out["strings"]] == strings
        xh = F.pad(codec.net.decompress(out["strings"], out["shape"])["x_hat"], unpad)
    ref = xh[0].mul(255).clamp(0, 255).round().byte().permute(1, 2, 0).numpy()
    assert np.array_equal(ref, coded.recon)


def test_random_weights_are_seeded():
    rgb = _image(64, 64)
    a = _learned("bmshj2018-factorized", seed=3).encode(rgb)
    b = _learned("bmshj2018-factorized", seed=3).encode(rgb)
    c = _learned("bmshj2018-factorized", seed=4).encode(rgb)
    assert a == b and a != c


def test_images_smaller_than_64_and_odd_sizes():
    codec = _learned("bmshj2018-hyperprior")
    for h, w in [(1, 1), (17, 33), (63, 64)]:
        rgb = _image(h, w)
        rec = codec.decode(codec.encode(rgb))
        assert rec.shape == (h, w, 3)


def test_truncated_bitstream_is_an_error():
    with pytest.raises(RdflowError, match="too short"):
        Learned.unpack(b"\x00\x01")


@pytest.mark.parametrize("kind,q", [("jpeg", 75), ("webp", 75)])
def test_classical_codecs_round_trip(kind, q):
    rgb = _image(97, 131)
    codec = build(CodecSpec(kind, kind, q, {}, "cpu"))
    data = codec.encode(rgb)
    rec = codec.decode(data)
    assert rec.shape == rgb.shape
    assert codec.header_bytes(data) == 0
    mse = np.mean((rec.astype(float) - rgb.astype(float)) ** 2)
    assert 0 < mse < 200  # lossy but close at q75


def test_registry_has_foundation_codecs():
    assert {"learned", "jpeg", "webp"} <= set(CODECS)


def test_cuda_requested_without_gpu_is_a_clear_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RdflowError, match="device: auto"):
        build(CodecSpec("x", "learned", 1, {"architecture": "bmshj2018-factorized",
                                            "weights": "random"}, "cuda"))


def test_corrupt_weights_file_names_the_file(tmp_path):
    bad = tmp_path / "w.pth.tar"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(RdflowError, match=str(bad)):
        build(CodecSpec("x", "learned", 1, {"architecture": "bmshj2018-factorized",
                                            "weights": "checkpoint", "weights_path": str(bad)}, "cpu"))
