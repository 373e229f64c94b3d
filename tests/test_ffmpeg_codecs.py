"""Classical anchors through imageio-ffmpeg's ffmpeg: jpeg2000, hevc_intra, av1_intra, jpegxl."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import numpy as np
import pytest

from rdflow import RdflowError
from rdflow import metrics as M
from rdflow.codecs import CODECS, CodecSpec, build
from rdflow.codecs import ffmpeg as ff
from rdflow.stages.compress import code

from conftest import shared_path

# a mid-ladder operating point per kind, and the bitstream's first bytes (standard formats)
POINTS = {"jpeg2000": 10, "hevc_intra": 22, "av1_intra": 20, "jpegxl": 90}
MAGIC = {
    "jpeg2000": b"\x00\x00\x00\x0cjP  \r\n\x87\n",  # JP2 signature box
    "hevc_intra": b"\x00\x00\x00\x01",  # Annex-B start code
    "av1_intra": b"\x12\x00",  # OBU temporal delimiter
    "jpegxl": b"\xff\x0a",  # JPEG XL codestream
}
VARIANTS = [("jpeg2000", "yuv444p"), ("jpeg2000", "yuv420p"), ("hevc_intra", "yuv444p"),
            ("hevc_intra", "yuv420p"), ("av1_intra", "yuv444p"), ("av1_intra", "yuv420p"),
            ("jpegxl", None)]


def _image(h, w, seed=0):
    """Smooth colour pattern plus mild noise: codable at high PSNR by every codec."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([127 + 80 * np.sin(xx / 9.0 + c) * np.cos(yy / 11.0 + 0.5 * c)
                     for c in range(3)], -1)
    return np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)


def _codec(kind, quality=None, pix_fmt=None, **opts):
    if pix_fmt:
        opts["pix_fmt"] = pix_fmt
    return build(CodecSpec(kind, kind, POINTS[kind] if quality is None else quality, opts))


def test_registered_with_quality_ranges():
    for kind, cls in [("jpeg2000", ff.Jpeg2000), ("hevc_intra", ff.HevcIntra),
                      ("av1_intra", ff.Av1Intra), ("jpegxl", ff.JpegXl)]:
        assert CODECS[kind] is cls
    assert ff.HevcIntra.quality_range == (0, 51)
    assert ff.Av1Intra.quality_range == (0, 63)
    assert ff.JpegXl.quality_range == (11, 100)
    assert ff.Jpeg2000.quality_range == (1, 1000)


@pytest.mark.parametrize("kind,pix_fmt", VARIANTS)
def test_round_trip_standard_stream(kind, pix_fmt, tmp_path):
    rgb = _image(48, 64)
    c = _codec(kind, pix_fmt=pix_fmt)
    coded = code(c, rgb, tmp_path / "x.bin")
    data = (tmp_path / "x.bin").read_bytes()
    assert coded.data == data and data.startswith(MAGIC[kind])
    assert c.header_bytes(data) == 0
    assert coded.recon.shape == rgb.shape and coded.recon.dtype == np.uint8
    assert M.psnr_rgb(rgb, coded.recon) > 33.0
    assert np.array_equal(c.decode(data), coded.recon)  # deterministic decoder
    assert coded.enc_s > 0 and coded.dec_s > 0


@pytest.mark.parametrize("kind,pix_fmt", VARIANTS)
@pytest.mark.parametrize("h,w", [(17, 33), (31, 2), (1, 1), (15, 16)])
def test_odd_and_tiny_sizes(kind, pix_fmt, h, w):
    rgb = _image(h, w, seed=h * w)
    # JPEG 2000's rate target includes its ~200 header bytes: give tiny images the most bits
    c = _codec(kind, quality=1 if kind == "jpeg2000" else None, pix_fmt=pix_fmt)
    data = c.encode(rgb)
    recon = c.decode(data)
    assert recon.shape == rgb.shape and recon.dtype == np.uint8
    # padded HEVC carries the 8-byte size header, exactly when HEVC cannot code the size itself
    odd = h % 2 or w % 2
    needs_pad = kind == "hevc_intra" and (min(h, w) < 16 or (pix_fmt == "yuv420p" and odd))
    assert c.header_bytes(data) == (8 if needs_pad else 0)
    if needs_pad:
        assert data[:4] == b"RDFH" and data[8:12] == MAGIC["hevc_intra"]
    else:
        assert data.startswith(MAGIC[kind])
    assert M.psnr_rgb(rgb, recon) > 24.0


def test_hevc_padding_is_cropped_exactly():
    rgb = _image(17, 33)
    c = _codec("hevc_intra", quality=0, pix_fmt="yuv420p")
    recon = c.decode(c.encode(rgb))
    # the padded column/row are replicated edges: cropping keeps the real image aligned
    assert M.psnr_rgb(rgb, recon) > 38.0
    with pytest.raises(RdflowError, match="truncated"):
        c.decode(b"RDFH\x00")


@pytest.mark.parametrize("kind,pix_fmt,ext", [("hevc_intra", "yuv444p", "hevc"),
                                              ("av1_intra", "yuv444p", "obu"),
                                              ("hevc_intra", "yuv420p", "hevc"),
                                              ("av1_intra", "yuv420p", "obu"),
                                              ("jpegxl", None, "jxl")])
def test_plain_ffmpeg_reads_the_stream_tags(kind, pix_fmt, ext, tmp_path):
    """ffmpeg given only the file decodes to our image: matrix and range come from the stream's
    tags (BT.601, full). For 4:2:0 the chroma siting is passed as well, because ffmpeg's scale
    filter does not take it from the frame (without it: mean difference ~1.3 levels)."""
    rgb = _image(64, 96)
    c = _codec(kind, pix_fmt=pix_fmt)
    data = c.encode(rgb)
    path = tmp_path / f"x.{ext}"
    path.write_bytes(data)
    vf = f"scale=flags={ff.SWS_FLAGS}"
    if pix_fmt == "yuv420p":
        vf += ":in_h_chr_pos=0:in_v_chr_pos=128"
    out = subprocess.run([ff.ffmpeg_exe(), "-v", "error", "-i", str(path), "-vf", vf,
                          "-frames:v", "1", "-f", "image2pipe", "-c:v", "ppm", "-pix_fmt", "rgb24",
                          "-"], capture_output=True, check=True).stdout
    plain = ff.read_ppm(out, what=str(path))
    assert np.abs(plain.astype(int) - c.decode(data).astype(int)).max() <= 1


@pytest.mark.parametrize("pix_fmt", ["yuv444p", "yuv420p"])
def test_jp2_is_sycc_for_an_independent_decoder(pix_fmt):
    """Pillow's OpenJPEG reads the JP2's sYCC colour box and gives back our RGB."""
    from PIL import Image, features

    if not features.check("jpg_2000"):
        pytest.skip("Pillow was built without OpenJPEG")
    rgb = _image(64, 96)
    c = _codec("jpeg2000", quality=4, pix_fmt=pix_fmt)
    data = c.encode(rgb)
    with Image.open(io.BytesIO(data)) as im:
        theirs = np.asarray(im.convert("RGB"))
    ours = c.decode(data)
    assert theirs.shape == ours.shape
    # OpenJPEG's own sYCC->RGB is integer and (4:2:0) upsamples chroma by replication; a wrong
    # colour interpretation would be off by tens of levels
    mad, dpsnr = (1.0, 1.5) if pix_fmt == "yuv444p" else (3.0, 3.5)
    assert np.abs(theirs.astype(int) - ours.astype(int)).mean() < mad
    assert abs(M.psnr_rgb(rgb, theirs) - M.psnr_rgb(rgb, ours)) < dpsnr


def test_one_ffmpeg_process_per_encode_and_decode(monkeypatch):
    import rdflow.proc

    calls = []
    real = rdflow.proc.run

    def counting(cmd, *a, **k):
        calls.append(cmd)
        return real(cmd, *a, **k)

    c = _codec("jpegxl")
    monkeypatch.setattr(rdflow.proc, "run", counting)  # every child of a codec goes through it
    data = c.encode(_image(32, 32))
    assert len(calls) == 1
    c.decode(data)
    assert len(calls) == 2
    assert all(cmd[0] == c.exe for cmd in calls)


# ------------------------------------------------------------------------- ladders
LADDERS = {
    "jpeg2000": [40, 20, 10, 5],  # target 0.3, 0.6, 1.2, 2.4 bpp
    "hevc_intra": [42, 37, 32, 27],
    "av1_intra": [50, 40, 30, 20],
    "jpegxl": [30, 60, 80, 95],
}


@pytest.fixture(scope="module")
def kodim():
    from rdflow.sources.datasets import read_image

    return read_image(shared_path("data", "kodak", "kodim19.png")).rgb


@pytest.mark.parametrize("kind", sorted(LADDERS))
def test_quality_ladder_monotone_on_kodak(kind, kodim):
    """Along the documented direction of each ladder, bpp and PSNR both rise strictly."""
    bpp, psnr = [], []
    for q in LADDERS[kind]:
        c = _codec(kind, quality=q)
        coded = code(c, kodim)
        bpp.append(len(coded.data) * 8 / (kodim.shape[0] * kodim.shape[1]))
        psnr.append(M.psnr_rgb(kodim, coded.recon))
    assert all(np.diff(bpp) > 0), (kind, bpp)
    assert all(np.diff(psnr) > 0), (kind, psnr)
    assert 0.05 < bpp[0] and bpp[-1] < 4.0 and 24 < psnr[0] and psnr[-1] < 50
    # the ladder's direction is what the class says
    qs = LADDERS[kind]
    assert (qs[-1] > qs[0]) == CODECS[kind].rate_rises_with_quality
    if kind == "jpeg2000":  # rate-targeted: bpp = 12 / q (compression ratio 2q:1 of 24 bpp)
        np.testing.assert_allclose(bpp, [12 / q for q in qs], rtol=0.03)


# ------------------------------------------------------------------------- provenance
def test_describe_names_exact_encoder_version_and_settings():
    exe = ff.ffmpeg_exe()
    ver = ff.ffmpeg_version(exe)
    assert ver != "unknown"
    d = _codec("hevc_intra", quality=32).describe()
    assert re.search(r"^libx265 \(x265 \d+\.\d+\S*\) via ffmpeg ", d["encoder"]), d
    assert ver in d["encoder"]
    for s in ("quality=32", "qp=32", "-preset medium", "info=0", "out_color_matrix=bt601",
              "out_range=full", "-pix_fmt yuv444p", "-f hevc", "in_color_matrix=bt601"):
        assert s in d["settings"], (s, d["settings"])
    d = _codec("av1_intra", quality=30, pix_fmt="yuv420p", cpu_used=4).describe()
    assert re.search(r"^libaom-av1 \(libaom \d+\.\d+\.\d+\S*\) via ffmpeg ", d["encoder"]), d
    for s in ("-crf 30", "-cpu-used 4", "-usage allintra", "-still-picture 1", "-pix_fmt yuv420p",
              "out_h_chr_pos=0:out_v_chr_pos=128", "-c:v libdav1d"):
        assert s in d["settings"], (s, d["settings"])
    d = _codec("jpeg2000", quality=10).describe()
    assert re.search(r"^libopenjpeg \(OpenJPEG \d+\.\d+\.\d+\) via ffmpeg ", d["encoder"]), d
    for s in ("-compression_level 10", "-irreversible 1", "-format jp2", "target 12/q bpp"):
        assert s in d["settings"], (s, d["settings"])
    d = _codec("jpegxl", quality=90, effort=5).describe()
    assert d["encoder"].startswith("libjxl (libjxl version not reported by ffmpeg) via ffmpeg ")
    assert "-distance 1.0000" in d["settings"] and "-effort 5" in d["settings"]


def test_jxl_distance_matches_libjxl_mapping():
    assert ff.jxl_distance(100) == 0.0
    assert ff.jxl_distance(90) == pytest.approx(1.0)
    assert ff.jxl_distance(30) == pytest.approx(6.4)
    assert ff.jxl_distance(29.999) == pytest.approx(6.4, abs=1e-3)  # continuous at 30
    assert ff.jxl_distance(11) < 15 < ff.jxl_distance(10)  # ffmpeg caps the distance at 15
    d = [ff.jxl_distance(q) for q in range(11, 101)]
    assert all(np.diff(d) < 0)


# ------------------------------------------------------------------------- bad input
@pytest.fixture
def ffmpeg_without_libjxl(tmp_path, monkeypatch):
    """A fake ffmpeg whose -encoders list lacks libjxl (and which fails anything else)."""
    real = ff.ffmpeg_exe()
    listing = subprocess.run([real, "-hide_banner", "-encoders"], capture_output=True,
                             text=True, check=True).stdout
    kept = "\n".join(line for line in listing.splitlines() if " libjxl" not in line)
    (tmp_path / "encoders.txt").write_text(kept + "\n")
    fake = tmp_path / "ffmpeg"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"if '-encoders' in sys.argv: print(open({str(tmp_path / 'encoders.txt')!r}).read())\n"
        "elif '-version' in sys.argv: print('ffmpeg version fake-1.0')\n"
        "else: sys.exit(1)\n")
    fake.chmod(0o755)
    from rdflow.codecs import ffmpeg_tools

    for module in (ff, ffmpeg_tools):  # the codecs' name and the tools' own
        monkeypatch.setattr(module, "ffmpeg_exe", lambda: str(fake))
    return fake


def test_missing_encoder_is_named_with_the_fix(ffmpeg_without_libjxl):
    with pytest.raises(RdflowError) as e:
        _codec("jpegxl")
    msg = str(e.value)
    assert "libjxl" in msg and str(ffmpeg_without_libjxl) in msg and "fake-1.0" in msg
    assert "IMAGEIO_FFMPEG_EXE" in msg and "codecs.jpegxl.kind" in msg
    _codec("hevc_intra")  # libx265 is still listed: builds


def test_missing_encoder_fails_at_config_check(ffmpeg_without_libjxl):
    from rdflow.stages.compress import check

    config = {"codecs": {"jxl": {"kind": "jpegxl", "qualities": [80]}}, "datasets": {}}
    with pytest.raises(RdflowError, match=r"codecs\.jxl\.kind: jpegxl.*libjxl.*missing"):
        check(config)


def test_config_keys_validate_and_reach_the_codec():
    from rdflow.stages.compress import codec_spec
    from rdflow.study import validate

    config = {"codecs": {
        "bpg444": {"kind": "hevc_intra", "qualities": [27, 32], "preset": "fast"},
        "avif": {"kind": "av1_intra", "qualities": [30], "pix_fmt": "yuv420p", "cpu_used": 8},
        "j2k": {"kind": "jpeg2000", "qualities": [10]},
        "jxl": {"kind": "jpegxl", "qualities": [80], "effort": 3}}}
    validate(config)
    c = build(codec_spec(config, "avif", 30))
    assert c.opts == {"pix_fmt": "yuv420p", "cpu_used": 8}
    assert c.pix_fmt == "yuv420p"
    assert "-preset fast" in build(codec_spec(config, "bpg444", 27)).describe()["settings"]


@pytest.mark.parametrize("entry,match", [
    ({"kind": "jpegxl", "qualities": [80], "pix_fmt": "yuv420p"},
     r"codecs\.x\.pix_fmt does not apply to kind jpegxl"),
    ({"kind": "av1_intra", "qualities": [30], "preset": "slow"},
     r"codecs\.x\.preset does not apply to kind av1_intra"),
    ({"kind": "hevc_intra", "qualities": [30], "preset": "turbo"},
     r"codecs\.x\.preset: 'turbo' is not an x265 preset"),
    ({"kind": "hevc_intra", "qualities": [30, 52]}, r"codecs\.x\.qualities: \[52\] out of range"),
    ({"kind": "jpegxl", "qualities": [10]}, r"codecs\.x\.qualities: \[10\] out of range"),
    ({"kind": "av1_intra", "qualities": [64]}, r"codecs\.x\.qualities: \[64\] out of range"),
])
def test_bad_options_are_config_errors(entry, match):
    from rdflow.stages.compress import check

    with pytest.raises(RdflowError, match=match):
        check({"codecs": {"x": entry}, "datasets": {}})


def test_schema_rejects_bad_values():
    from rdflow.study import validate

    for entry, key in (({"kind": "hevc_intra", "qualities": [30], "pix_fmt": "rgb24"}, "pix_fmt: 'rgb24' is not one of"),
                       ({"kind": "av1_intra", "qualities": [30], "cpu_used": 9}, "cpu_used: 9 is greater than the maximum"),
                       ({"kind": "jpegxl", "qualities": [80], "effort": 0}, "effort: 0 is less than the minimum")):
        with pytest.raises(RdflowError, match=f"config key codecs.x.{key}"):
            validate({"codecs": {"x": entry}})


def test_ffmpeg_failure_names_codec_and_command():
    c = _codec("hevc_intra")
    with pytest.raises(RdflowError, match=r"hevc_intra \(hevc\) decode: ffmpeg exited"):
        c.decode(b"\x00\x00\x00\x01garbage")
    with pytest.raises(RdflowError, match="8-bit PPM"):
        ff.read_ppm(b"not an image", what="x")
