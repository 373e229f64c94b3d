"""VVC (VVenC + ffmpeg's vvc decoder) and AV1 (SVT-AV1, libaom + dav1d) anchors of issue 16:
vvc_intra on a real Kodak crop, vvc and av1 on real frames of the cars clip, each checked against
a direct ffmpeg decode of the same file done here; config and encoder errors."""

from __future__ import annotations

import json
import math
import re
import subprocess

import numpy as np
import pytest
from PIL import Image

from rdflow import RdflowError
from rdflow.codecs import CODECS, CodecSpec, build
from rdflow.codecs.sequence import Clip, Encoded, parse_framemd5
from rdflow.codecs.vvc import VVENC_PRESETS, from_10bit, to_10bit
from rdflow.stages.compress import code
from rdflow.stages.video_codecs import check, sequence_job

from conftest import shared_path

W, H, N = 320, 240, 8
SWS = "accurate_rnd+full_chroma_int+full_chroma_inp+bitexact"


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def psnr(a, b) -> float:
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


# ------------------------------------------------------------------------------ helpers
def test_registered_kinds_and_ranges():
    assert CODECS["vvc_intra"].medium == "image" and CODECS["vvc_intra"].quality_range == (0, 63)
    assert CODECS["vvc"].medium == "sequence" and CODECS["av1"].medium == "sequence"
    assert CODECS["vvc"].quality_range == CODECS["av1"].quality_range == (0, 63)


def test_bit_depth_round_trip_is_exact():
    """8 -> 10 bits is v << 2; 10 -> 8 rounds, so every 8-bit value survives and a 10-bit value
    goes to its nearest 8-bit one (1023 clips to 255)."""
    v = np.arange(256, dtype=np.uint8)
    ten = np.frombuffer(to_10bit(v), "<u2")
    assert np.array_equal(ten, v.astype(np.uint16) * 4)
    assert np.array_equal(from_10bit(ten.tobytes()), v)
    t = np.array([0, 1, 2, 5, 6, 1021, 1022, 1023], "<u2")
    assert from_10bit(t.tobytes()).tolist() == [0, 0, 1, 1, 2, 255, 255, 255]


# ------------------------------------------------------------------------------ vvc_intra
@pytest.fixture(scope="module")
def kodak_crop():
    path = shared_path("data", "kodak", "kodim23.png")
    return np.asarray(Image.open(path).convert("RGB"))[128:320, 192:448].copy()  # 256x192


def direct_decode_rgb(path) -> np.ndarray:
    """The bundled ffmpeg, one process, given only the .266 file: 10-bit decode, rounding to 8
    bits in swscale (no dither), then BT.601 full-range 4:2:0 (chroma left) -> RGB."""
    vf = (f"scale=sws_dither=none:flags=accurate_rnd+bitexact,format=yuv420p,scale="
          f"in_color_matrix=bt601:in_range=full:in_h_chr_pos=0:in_v_chr_pos=128:flags={SWS},"
          "format=rgb24")
    out = subprocess.run([ffmpeg(), "-v", "error", "-f", "vvc", "-i", str(path), "-vf", vf,
                          "-f", "rawvideo", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(out, np.uint8)


def test_vvc_intra_kodak_crop_rate_quality_and_direct_decode(kodak_crop, tmp_path):
    img = kodak_crop
    h, w = img.shape[:2]
    points = {}
    for qp in (27, 37, 47):
        c = build(CodecSpec("vvc", "vvc_intra", qp, {"preset": "faster", "pix_fmt": "yuv420p"}))
        path = tmp_path / f"q{qp}.266"
        coded = code(c, img, path)
        data = path.read_bytes()
        assert coded.data == data and data[:4] == b"\x00\x00\x00\x01" and c.header_bytes(data) == 0
        ref = direct_decode_rgb(path)
        assert ref.size == img.size
        assert np.array_equal(coded.recon, ref.reshape(img.shape))  # the file, decoded directly
        points[qp] = (len(data) * 8 / (h * w), psnr(img, coded.recon))
    (b27, p27), (b37, p37), (b47, p47) = points[27], points[37], points[47]
    assert b27 > b37 > b47 > 0.01 and p27 > p37 > p47
    assert p27 > 34 and p47 > 22, points  # sane for 4:2:0 at these QPs
    info = subprocess.run([ffmpeg(), "-hide_banner", "-i", str(tmp_path / "q37.266")],
                          capture_output=True, text=True).stderr
    assert re.search(r"vvc \(Main 10\).*yuv420p10le\(pc, bt470bg", info), info  # VUI: BT.601 full


def test_vvc_intra_slice_qp_and_settings_recorded(kodak_crop, tmp_path):
    c = build(CodecSpec("v", "vvc_intra", 30, {"preset": "faster"}))
    d = c.describe()
    assert re.match(r"libvvenc \(VVenC \d+\.\d+", d["encoder"]) and "via ffmpeg" in d["encoder"]
    for s in ("-preset faster", "-qp 30", "IntraPeriod=1", "IntraQPOffset=0", "PerceptQPA=0",
              "VideoFullRange=1", "yuv420p10le", "(v+2)>>2", "out_color_matrix=bt601",
              "in_color_matrix=bt601"):
        assert s in d["settings"], s
    # the encoder's own report of the picture it coded (VVenC prints it on stdout): one IDR at
    # slice QP 30
    h, w = kodak_crop.shape[:2]
    p = subprocess.run([ffmpeg(), "-hide_banner", "-loglevel", "verbose", "-f", "rawvideo",
                        "-pix_fmt", "yuv420p10le", "-s", f"{w}x{h}", "-i", "pipe:0",
                        *c.encode_args(h, w), "-y", str(tmp_path / "x.266")],
                       input=bytes(w * h * 3), capture_output=True)
    assert re.findall(rb"POC +0 .*?\((.*?)\)", p.stdout) == [b"  IDR_N_LP, I-SLICE, QP 30, TF 0"]


def test_vvc_intra_stream_is_what_libvvenc_writes_to_a_file(kodak_crop, tmp_path):
    """The same 10-bit picture given to libvvenc by a plain ffmpeg run writing a file: the same
    bytes as rdflow's bitstream (VVenC's stdout warnings are not in it)."""
    c = build(CodecSpec("v", "vvc_intra", 32, {"preset": "faster"}))
    data = c.encode(kodak_crop)
    h, w = kodak_crop.shape[:2]
    yuv = subprocess.run([ffmpeg(), "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s",
                          f"{w}x{h}", "-i", "-", *c._to_yuv(), "-f", "rawvideo", "-"],
                         input=kodak_crop.tobytes(), capture_output=True, check=True).stdout
    ten = (np.frombuffer(yuv, np.uint8).astype("<u2") * 4).tobytes()
    subprocess.run([ffmpeg(), "-v", "error", "-f", "rawvideo", "-pix_fmt", "yuv420p10le", "-s",
                    f"{w}x{h}", "-colorspace", "bt470bg", "-color_range", "pc",
                    "-color_primaries", "bt709", "-color_trc", "iec61966-2-1",
                    "-chroma_sample_location", "left", "-i", "-", *c.encode_args(h, w),
                    "-y", str(tmp_path / "ref.266")], input=ten, capture_output=True, check=True)
    assert data == (tmp_path / "ref.266").read_bytes()
    assert b"Configuration warning" not in data


@pytest.mark.parametrize("h,w", [(17, 33), (1, 1), (15, 16), (31, 2)])
def test_vvc_intra_odd_and_tiny_sizes_padded_with_header(kodak_crop, h, w):
    img = np.ascontiguousarray(kodak_crop[:h, :w])
    c = build(CodecSpec("v", "vvc_intra", 22, {"preset": "faster"}))
    data = c.encode(img)
    assert data[:4] == b"RDFV" and c.header_bytes(data) == 8 and data[8:12] == b"\x00\x00\x00\x01"
    rec = c.decode(data)
    assert rec.shape == img.shape and psnr(img, rec) > 28


def test_vvc_intra_picture_over_8bpp_fails_with_the_reason():
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    c = build(CodecSpec("v", "vvc_intra", 0, {"preset": "faster"}))
    with pytest.raises(RdflowError, match=r"(?s)libvvenc\) encode: ffmpeg exited.*Error.*8 bpp"):
        c.encode(noise)


def test_vvc_intra_bad_streams_are_errors():
    from rdflow.codecs.vvc import read_y4m_10bit

    c = build(CodecSpec("v", "vvc_intra", 30, {"preset": "faster"}))
    with pytest.raises(RdflowError, match=r"vvc_intra|v \(vvc\) decode"):
        c.decode(b"\x00\x00\x00\x01garbage")
    with pytest.raises(RdflowError, match="truncated bitstream"):
        c.decode(b"RDFV\x00")
    one = b"YUV4MPEG2 W2 H2 F25:1 C420p10\nFRAME\n" + bytes(12)
    assert read_y4m_10bit(one, what="t") == (2, 2, bytes(12))
    with pytest.raises(RdflowError, match="expected one 2x2 picture, got 2.00"):
        read_y4m_10bit(one + b"FRAME\n" + bytes(12), what="t")
    with pytest.raises(RdflowError, match="not 10-bit 4:2:0"):
        read_y4m_10bit(one.replace(b"C420p10", b"C444p10"), what="t")


@pytest.mark.parametrize("entry,match", [
    ({"pix_fmt": "yuv444p"}, r"codecs\.x\.pix_fmt: yuv444p is refused: the libvvenc of this ffmpeg "
                             r"codes only 4:2:0"),
    ({"preset": "placebo"}, r"codecs\.x\.preset: 'placebo' is not a vvenc preset; allowed: "
                            r"faster, fast, medium, slow, slower"),
    ({"cpu_used": 4}, r"codecs\.x\.cpu_used does not apply to kind vvc_intra"),
])
def test_vvc_intra_config_errors(entry, match):
    from rdflow.stages.compress import check as check_images

    with pytest.raises(RdflowError, match=match):
        check_images({"codecs": {"x": {"kind": "vvc_intra", "qualities": [30], **entry}},
                      "datasets": {}})
    with pytest.raises(RdflowError, match=r"qualities: \[64\] out of range"):
        check_images({"codecs": {"x": {"kind": "vvc_intra", "qualities": [64]}}, "datasets": {}})
    assert VVENC_PRESETS == ("faster", "fast", "medium", "slow", "slower")


# ------------------------------------------------------------------------------ sequences
@pytest.fixture(scope="module")
def cars():
    return shared_path("data", "video", "cars_320x240.i420")


def seq_config(path, video_codecs, count=N):
    return {"device": "cpu", "metrics": ["psnr_rgb"], "codecs": {},
            "video": {"frames": {"count": count},
                      "sequences": {"cars": {"source": "file", "path": str(path), "width": W,
                                             "height": H}}},
            "video_codecs": video_codecs, "weights": {"base_url": None}}


def source_planes(path, n=N):
    raw = np.fromfile(path, np.uint8, count=n * W * H * 3 // 2).reshape(n, -1)
    return [(f[:W * H].reshape(H, W), f[W * H:W * H * 5 // 4].reshape(H // 2, W // 2),
             f[W * H * 5 // 4:].reshape(H // 2, W // 2)) for f in raw]


def direct_decode(path, kind, n=N):
    """The file decoded by the bundled ffmpeg alone (vvc: 10 bits rounded by swscale without
    dither; av1: libdav1d), as (Y, U, V) per frame."""
    dec = (["-f", "vvc", "-i", str(path), "-vf", "scale=sws_dither=none:flags=accurate_rnd+bitexact"]
           if kind == "vvc" else ["-f", "obu", "-c:v", "libdav1d", "-i", str(path)])
    out = subprocess.run([ffmpeg(), "-v", "error", *dec, "-pix_fmt", "yuv420p", "-f", "rawvideo",
                          "-"], capture_output=True, check=True).stdout
    assert len(out) == n * W * H * 3 // 2
    frames = np.frombuffer(out, np.uint8).reshape(n, -1)
    return [(f[:W * H].reshape(H, W), f[W * H:W * H * 5 // 4].reshape(H // 2, W // 2),
             f[W * H * 5 // 4:].reshape(H // 2, W // 2)) for f in frames]


def demuxed_sizes(path, kind) -> list[int]:
    """Packet sizes ffmpeg's own parser finds in the file (decode order), independent of the
    encoder's packet list."""
    fmt = "vvc" if kind == "vvc" else "obu"
    text = subprocess.run([ffmpeg(), "-v", "error", "-f", fmt, "-i", str(path), "-c", "copy",
                           "-f", "framemd5", "-"], capture_output=True, text=True, check=True).stdout
    return [s for _, _, s in parse_framemd5(text)]


CASES = {
    "vvc_ra": ({"kind": "vvc", "preset": "faster", "gop": 4}, (27, 37), "Intra period (keyframe)=4"),
    "vvc_ld": ({"kind": "vvc", "preset": "faster", "mode": "low_delay"}, (32,), "PicReordering=0"),
    "av1_svt": ({"kind": "av1", "preset": 12, "gop": 4}, (30, 45), "gop size=4"),
    "av1_aom": ({"kind": "av1", "library": "libaom-av1", "preset": 8, "gop": 4}, (35,),
                "-cpu-used 8"),
}


def run_job(tmp_path, cfg, codec, q):
    out = tmp_path / codec / f"q{q}"
    rows = sequence_job(config=cfg, sequence="cars", codec=codec, quality=q,
                        seq_path=cfg["video"]["sequences"]["cars"]["path"],
                        bitstream=str(out / "sequence.bin"), out_json=str(out / "rows.json"))
    assert json.loads((out / "rows.json").read_text()) == json.loads(json.dumps(rows))
    return rows, out / "sequence.bin"


@pytest.mark.parametrize("case", sorted(CASES))
def test_sequence_rows_match_the_file_and_a_direct_decode(tmp_path, cars, case):
    entry, qualities, setting = CASES[case]
    kind = entry["kind"]
    cfg = seq_config(cars, {case: {**entry, "qualities": list(qualities)}})
    check(cfg)
    src = source_planes(cars)
    means = []
    for q in qualities:
        rows, path = run_job(tmp_path, cfg, case, q)
        data = path.read_bytes()
        assert [r["frame"] for r in rows] == list(range(N)) and rows[0]["n_frames"] == N
        sizes = [r["frame_bytes"] for r in rows]
        assert sum(sizes) == len(data) and rows[0]["header_bytes"] == 0
        assert sorted(sizes) == sorted(demuxed_sizes(path, kind))
        assert np.mean([r["bpp"] for r in rows]) == pytest.approx(len(data) * 8 / (W * H * N), rel=1e-12)
        types = [r["frame_type"] for r in rows]
        assert types[0] == "I" and set(types) <= {"I", "P", "B"}
        if entry.get("gop") == 4:
            assert [i for i, t in enumerate(types) if t == "I"] == [0, 4], types
        else:
            assert types.count("I") == 1, types
        assert rows[0]["frame_bytes"] > max(s for s, t in zip(sizes, types) if t != "I")
        ref = direct_decode(path, kind)
        for r, s, d in zip(rows, src, ref):
            for i, c in enumerate("yuv"):
                assert r[f"psnr_{c}"] == pytest.approx(psnr(s[i], d[i]), abs=1e-9), (r["frame"], c)
        codec = build(CodecSpec(case, kind, q, {k: v for k, v in entry.items() if k != "kind"}))
        mine = list(codec.decode(data, Clip(W, H, 30.0)))
        assert len(mine) == N and all(np.array_equal(a, b) for m, d in zip(mine, ref)
                                      for a, b in zip(m, d))
        assert setting in rows[0]["settings"] + rows[0]["ffmpeg_args"], rows[0]["settings"]
        assert re.match(r"(VVenC|SVT-AV1|libaom) \d", rows[0]["encoder"]), rows[0]["encoder"]
        assert rows[0]["kind"] == kind and rows[0]["coding"] == "sequence"
        means.append((len(data), np.mean([r["psnr_y"] for r in rows])))
    for (b0, p0), (b1, p1) in zip(means, means[1:]):
        assert b0 > b1 and p0 > p1  # higher QP/CRF: fewer bits, lower PSNR
    assert means[0][1] > 30


@pytest.mark.parametrize("entry,match", [
    ({"kind": "vvc", "preset": "veryslow"}, r"preset: 'veryslow' is not a vvenc preset; allowed: "
                                            r"faster, fast, medium, slow, slower"),
    ({"kind": "av1", "preset": 14}, r"preset: 14 is not an SVT-AV1 preset; use an integer 0 "
                                    r"\(slowest\) – 13"),
    ({"kind": "av1", "preset": "fast"}, r"preset: 'fast' is not an SVT-AV1 preset"),
    ({"kind": "av1", "library": "libaom-av1", "preset": 9}, r"preset: 9 is not an libaom cpu-used"),
    ({"kind": "av1", "library": "librav1e"}, r"library: 'librav1e'; use one of libsvtav1, libaom-av1"),
    ({"kind": "av1", "library": "libaom-av1", "rate_control": "qp"}, r"qp is not available with libaom"),
    ({"kind": "vvc", "mode": "hierarchical"}, r"mode: 'hierarchical'; use one of random_access, low_delay"),
    ({"kind": "vvc", "rate_control": "crf"}, r"rate_control only applies to kind: av1, x264, x265"),
    ({"kind": "vvc", "strip_sei": False}, r"strip_sei only applies to kind: x264, x265"),
    ({"kind": "x265", "mode": "low_delay"}, r"mode only applies to kind: av1, vvc"),
    ({"kind": "vvc", "qualities": [64]}, r"\[64\] out of range for vvc"),
    ({"kind": "vvc", "gop": 16}, r"video_codecs\.vc\.gop: 16 is longer than the 8 frames selected "
                                 r"from sequence cars"),
    ({"kind": "av1", "gop": 9}, r"gop: 9 is longer than the 8 frames"),
])
def test_sequence_config_errors(cars, entry, match):
    with pytest.raises(RdflowError, match=match):
        check(seq_config(cars, {"vc": {"qualities": [30], **entry}}))


def test_gop_check_follows_the_sequence_frame_selection(cars):
    cfg = seq_config(cars, {"vc": {"kind": "vvc", "qualities": [30], "gop": 16}}, count=24)
    check(cfg)  # 24 frames: fine
    cfg["video"]["sequences"]["cars"]["frames"] = {"count": 6, "stride": 3}  # the sequence's own
    with pytest.raises(RdflowError, match=r"gop: 16 is longer than the 6 frames .*"
                                          r"video\.sequences\.cars\.frames"):
        check(cfg)
    cfg["video_codecs"]["vc"]["sequences"] = ["cars"]
    cfg["video_codecs"]["vc"]["gop"] = 6
    check(cfg)


def test_schema_takes_the_new_keys(cars):
    from rdflow.config import validate

    cfg = seq_config(cars, {"v": {"kind": "vvc", "qualities": [32], "mode": "low_delay",
                                  "preset": "fast", "params": "PerceptQPA=1"},
                            "a": {"kind": "av1", "qualities": [35], "preset": 6,
                                  "library": "libsvtav1", "rate_control": "qp", "threads": 2}})
    cfg["codecs"] = {"vv": {"kind": "vvc_intra", "qualities": [32], "preset": "slow"}}
    validate(cfg)
    assert cfg["codecs"]["vv"]["pix_fmt"] == "yuv420p" and cfg["video_codecs"]["v"]["gop"] is None
    check(cfg)
    bad = seq_config(cars, {"a": {"kind": "av1", "qualities": [35], "library": "rav1e"}})
    with pytest.raises(RdflowError, match="library"):
        validate(bad)


@pytest.mark.parametrize("kind,opts,match", [
    ("vvc", {"params": "GOPSize=5"}, r"(?s)libvvenc\) encode: ffmpeg exited with \d+.*GOP auto "
                                     r"configuration only supported for GOP size"),
    ("vvc", {"params": "NoSuchKey=1"}, r"(?s)ffmpeg exited.*Unknown vvenc option: NoSuchKey"),
    ("av1", {"params": "bogus-key=3"}, r"(?s)libsvtav1\) encode: the encoder did not accept a "
                                       r"setting:.*Error parsing option bogus-key"),
    ("av1", {"params": "bogus=1", "library": "libaom-av1"},
     r"(?s)libaom-av1\) encode: ffmpeg exited.*Cannot find aom option bogus"),
])
def test_setting_the_encoder_rejects_is_an_error_with_its_message(cars, kind, opts, match):
    preset = {"vvc": "faster", "av1": 8 if opts.get("library") else 12}[kind]
    c = build(CodecSpec("x", kind, 35, {"preset": preset, **opts}))
    with pytest.raises(RdflowError, match=match):
        c.encode(iter(source_planes(cars, 2)), Clip(W, H, 30.0))


def test_decoded_frame_count_differs_from_coded_is_a_job_error(tmp_path, cars, monkeypatch):
    """A stream that decodes to fewer frames than were coded (its last temporal unit cut off):
    the job fails naming the counts, and writes no row file."""
    av1 = CODECS["av1"]
    real = av1.encode

    def short(self, frames, clip):
        enc = real(self, frames, clip)
        return Encoded(data=enc.data[:-enc.frame_bytes[-1]], frame_bytes=enc.frame_bytes,
                       frame_types=[], enc_s=enc.enc_s, info=enc.info)

    monkeypatch.setattr(av1, "encode", short)
    cfg = seq_config(cars, {"a": {"kind": "av1", "qualities": [40], "preset": 12}})
    with pytest.raises(RdflowError, match=r"video_codecs\.a: decoded 7 frames of the 8 coded"):
        run_job(tmp_path, cfg, "a", 40)
    assert not (tmp_path / "a" / "q40" / "rows.json").exists()
