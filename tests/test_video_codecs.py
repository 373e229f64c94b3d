"""Sequence-level video codecs: x264/x265 through the bundled ffmpeg, CompressAI's ssf2020 with
real bitstreams, config checks, and the compress_sequence stage through the real snakemake."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from rdflow import RdflowError
from rdflow.codecs import CodecSpec, build
from rdflow.codecs.sequence import Clip, parse_framemd5, parse_showinfo_types
from rdflow.codecs.ssf import fetch_ssf_weights, pack_ssf, ssf_source_url, unpack_ssf
from rdflow.sources.video import probe_raw, read_frame
from rdflow.stages.video_codecs import (
    check, clip_of, downloads, sequence_job, sequence_rows, targets, weights_file,
)
from test_video_workflow import make_raw

W, H = 64, 48


@pytest.fixture
def clip_file(tmp_path):
    raw = tmp_path / "synth_64x48.yuv"
    make_raw(raw, W, H, n=8)
    return raw


def config_for(raw, video_codecs, count=6):
    return {
        "device": "cpu",
        "metrics": ["psnr_rgb", "ms_ssim"],
        "codecs": {"jpeg": {"kind": "jpeg", "qualities": [50]}},
        "video": {"frames": {"count": count},
                  "sequences": {"synth": {"source": "file", "path": str(raw), "width": W, "height": H}}},
        "video_codecs": video_codecs,
        "weights": {"base_url": None},
    }


def run_job(tmp_path, cfg, codec, q):
    out = tmp_path / "out" / codec / f"q{q}"
    rows = sequence_job(config=cfg, sequence="synth", codec=codec, quality=q,
                        seq_path=cfg["video"]["sequences"]["synth"]["path"],
                        bitstream=str(out / "sequence.bin"), out_json=str(out / "rows.json"))
    assert json.loads((out / "rows.json").read_text()) == json.loads(json.dumps(rows))
    return rows, (out / "sequence.bin").read_bytes()


def ffmpeg_decode_and_psnr(tmp, bitstream, kind, src_raw, n, w=W, h=H):
    """The bundled ffmpeg decodes the kept Annex-B stream to raw I420; returns (numpy Y-PSNR of
    each decoded frame against the source frame, ffmpeg's psnr filter stats per frame)."""
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    fs = w * h * 3 // 2
    dec = subprocess.run([exe, "-v", "error", "-f", {"x264": "h264", "x265": "hevc"}[kind], "-i", str(bitstream),
                          "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"], capture_output=True, check=True).stdout
    assert len(dec) == n * fs, (len(dec), n * fs)
    src = src_raw.read_bytes()[:n * fs]
    (tmp / "dec.yuv").write_bytes(dec)
    (tmp / "src.yuv").write_bytes(src)
    raw = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{w}x{h}"]
    subprocess.run([exe, "-v", "error", *raw, "-i", "dec.yuv", *raw, "-i", "src.yuv",
                    "-lavfi", "[0:v][1:v]psnr=stats_file=psnr.log", "-f", "null", "-"], cwd=tmp, check=True)
    stats = [{k: float(v) for k, v in (kv.split(":") for kv in line.split()) if k.startswith("psnr")}
             for line in (tmp / "psnr.log").read_text().splitlines()]
    assert len(stats) == n
    ys = []
    for i in range(n):
        a = np.frombuffer(dec[i * fs:i * fs + w * h], np.uint8).astype(np.float64)
        b = np.frombuffer(src[i * fs:i * fs + w * h], np.uint8).astype(np.float64)
        mse = np.mean((a - b) ** 2)
        ys.append(math.inf if mse == 0 else 10 * math.log10(255**2 / mse))
    return ys, stats


def check_against_ffmpeg(tmp, rows, bitstream, kind, src_raw):
    """psnr_y/u/v of each row equal ffmpeg's psnr filter on the decoded kept stream (0.01 dB;
    the filter prints two decimals) and numpy's Y-PSNR of the same decoded frames (1e-6 dB)."""
    ys, stats = ffmpeg_decode_and_psnr(tmp, bitstream, kind, src_raw, len(rows))
    for r, y, st in zip(sorted(rows, key=lambda r: r["frame"]), ys, stats):
        assert r["psnr_y"] == pytest.approx(y, abs=1e-6), (r["frame"], r["psnr_y"], y)
        for c in ("y", "u", "v"):
            assert r[f"psnr_{c}"] == pytest.approx(st[f"psnr_{c}"], abs=0.01), (r["frame"], c, st)


# ------------------------------------------------------------------------------ x264 / x265

@pytest.mark.parametrize("kind", ["x264", "x265"])
def test_x26x_sequence_rate_and_quality(tmp_path, clip_file, kind):
    cfg = config_for(clip_file, {kind: {"kind": kind, "qualities": [22, 32, 42], "gop": 4}})
    results = {}
    for q in (22, 32, 42):
        rows, data = run_job(tmp_path, cfg, kind, q)
        assert [r["frame"] for r in rows] == list(range(6))
        # bpp counts the file's bytes: the mean over frames is bytes x 8 / (W x H x frames)
        assert np.mean([r["bpp"] for r in rows]) == pytest.approx(len(data) * 8 / (W * H * 6), rel=1e-12)
        assert all(r["seq_bytes"] == len(data) for r in rows)
        # Annex-B: the access units are the whole file (nothing outside frames)
        assert sum(r["frame_bytes"] for r in rows) == len(data) and rows[0]["header_bytes"] == 0
        assert rows[0]["frame_type"] == "I" and rows[4]["frame_type"] == "I"  # keyint 4
        assert {r["frame_type"] for r in rows} <= {"I", "P", "B"}
        assert rows[0]["frame_bytes"] > max(r["frame_bytes"] for r in rows if r["frame_type"] != "I")
        assert f"crf={q}.0" in rows[0]["settings"] and "keyint=4" in rows[0]["settings"]
        assert rows[0]["encoder"].startswith(kind) and "ffmpeg" in rows[0]["encoder"]
        assert rows[0]["kind"] == kind and rows[0]["coding"] == "sequence"
        assert all(r["enc_s"] > 0 and r["dec_s"] > 0 for r in rows)
        assert math.isnan(rows[0]["ms_ssim"])  # undefined below 161 px: NaN, not a made-up value
        check_against_ffmpeg(tmp_path, rows, tmp_path / "out" / kind / f"q{q}" / "sequence.bin", kind, clip_file)
        results[q] = (np.mean([r["bpp"] for r in rows]), np.mean([r["psnr_y"] for r in rows]),
                      np.mean([r["psnr_rgb"] for r in rows]))
    (b22, y22, rgb22), (b32, y32, rgb32), (b42, y42, rgb42) = results[22], results[32], results[42]
    assert b22 > b32 > b42 > 0
    assert y22 > y32 > y42 > 20 and rgb22 > rgb32 > rgb42 > 18
    assert y22 > 35


def test_x264_qp0_is_lossless_without_hidden_conversion(clip_file):
    """QP 0 x264 is lossless: identical planes prove ffmpeg converts nothing (any range/matrix)."""
    seq = probe_raw(clip_file, W, H)
    for rng, matrix in (("limited", "bt709"), ("full", "bt601")):
        clip = replace(clip_of(seq), range=rng, matrix=matrix)
        c = build(CodecSpec("x", "x264", 0, {"rate_control": "qp"}))
        enc = c.encode((read_frame(seq, i) for i in range(5)), clip)
        dec = list(c.decode(enc.data, clip))
        assert len(dec) == 5
        for i, planes in enumerate(dec):
            for a, b in zip(read_frame(seq, i), planes):
                np.testing.assert_array_equal(a, b)


def test_x264_sei_strip_and_settings(clip_file):
    seq = probe_raw(clip_file, W, H)
    clip = clip_of(seq)
    kept = build(CodecSpec("x", "x264", 30, {"strip_sei": False}))
    enc_kept = kept.encode((read_frame(seq, i) for i in range(4)), clip)
    stripped = build(CodecSpec("x", "x264", 30, {}))
    enc = stripped.encode((read_frame(seq, i) for i in range(4)), clip)
    assert b"x264 - core" in enc_kept.data and b"x264 - core" not in enc.data
    assert 300 < len(enc_kept.data) - len(enc.data) < 2000  # the options SEI, nothing else
    assert stripped.describe()["settings"] == kept.describe()["settings"] != ""
    assert sum(enc.frame_bytes) == len(enc.data) and sum(enc_kept.frame_bytes) == len(enc_kept.data)
    # the stripped stream still decodes to the same pictures
    a = [np.concatenate([p.ravel() for p in f]) for f in kept.decode(enc_kept.data, clip)]
    b = [np.concatenate([p.ravel() for p in f]) for f in stripped.decode(enc.data, clip)]
    assert len(a) == len(b) == 4 and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_framemd5_and_showinfo_parsers():
    text = ("#tb 0: 1/30\n#stream#, dts, pts, duration, size, hash\n"
            "0,         -2,          0,        1,     5852, e19e, S=1, 8, c4af\n"
            "0,         -1,          4,        1,     1249, 1d0a\n")
    assert parse_framemd5(text) == [(-2, 0, 5852), (-1, 4, 1249)]
    log = ("[Parsed_showinfo_0 @ 0x1] n:   0 pts:      0 pts_time:0 fmt:yuv420p iskey:1 type:I checksum:6D\n"
           "[Parsed_showinfo_0 @ 0x1] n:   1 pts:  40000 pts_time:0.03 iskey:0 type:B checksum:D4\n")
    assert parse_showinfo_types(log) == ["I", "B"]
    with pytest.raises(RdflowError, match="unexpected framemd5"):
        parse_framemd5("0, 1, 2\n")


def test_encoder_missing_from_ffmpeg_is_named(tmp_path, monkeypatch, clip_file):
    """An ffmpeg without libx265 (IMAGEIO_FFMPEG_EXE points at it): config check and codec both
    refuse, naming the encoder and the binary."""
    fake = tmp_path / "ffmpeg-without-x265"
    fake.write_text("#!/bin/sh\n"
                    'case "$*" in\n'
                    '  *-encoders*) printf "Encoders:\\n V....D libx264  libx264 H.264\\n";;\n'
                    '  *-version*) echo "ffmpeg version 0.0-fake";;\n'
                    "esac\n")
    fake.chmod(0o755)
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(fake))
    cfg = config_for(clip_file, {"hevc": {"kind": "x265", "qualities": [30]}})
    with pytest.raises(RdflowError, match=r"video_codecs\.hevc\.kind: x265.*libx265.*ffmpeg-without-x265"):
        check(cfg)
    with pytest.raises(RdflowError, match="libx265"):
        build(CodecSpec("hevc", "x265", 30, {}))
    check(config_for(clip_file, {"avc": {"kind": "x264", "qualities": [30]}}))  # libx264 is there


# ------------------------------------------------------------------------------ ssf2020

def test_ssf_container_round_trip_and_corruption():
    frames = [("I", [b"yy", b"z"]), ("P", [b"m" * 200, b"", b"r" * 3, b"rz"])]
    data, sizes = pack_ssf(100, 60, 12, frames)
    assert len(data) == 12 + sum(sizes)  # 11-byte header + a 1-byte frame count
    assert unpack_ssf(data) == (100, 60, 12, frames, sizes)
    assert unpack_ssf(pack_ssf(100, 60, None, frames)[0])[2] is None
    with pytest.raises(RdflowError, match="truncated"):
        unpack_ssf(data[:-1])
    with pytest.raises(RdflowError, match="trailing"):
        unpack_ssf(data + b"x")
    with pytest.raises(RdflowError, match="RSSF"):
        unpack_ssf(b"JUNK" + data[4:])


def test_ssf2020_bitstream_round_trip_random_weights():
    """64x64, 4 frames, gop 3: I P P I; the decoder (from the bytes) reproduces the encoder's
    reconstructions exactly; every byte is accounted for; padding to 128 is cropped back."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    base = np.stack([(128 + 80 * np.sin(xx / 5.0 + c) * np.cos(yy / 7.0)) for c in range(3)], -1)
    frames = [np.clip(np.roll(base, 2 * i, axis=1) + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)
              for i in range(4)]
    c = build(CodecSpec("ssf", "ssf2020", 3, {"weights": "random", "seed": 1, "gop": 3}, "cpu"))
    clip = Clip(64, 64)
    enc = c.encode(frames, clip)
    assert enc.frame_types == ["I", "P", "P", "I"]
    assert sum(enc.frame_bytes) + enc.header_bytes == len(enc.data) and enc.header_bytes == 12
    dec = list(c.decode(bytes(enc.data), clip))
    assert [d.shape for d in dec] == [(64, 64, 3)] * 4
    assert [hashlib.md5(d.tobytes()).hexdigest() for d in dec] == enc.recon_md5
    # a P-frame record holds 4 strings, an I-frame 2, as the container says
    _, _, gop, recs, sizes = unpack_ssf(enc.data)
    assert gop == 3 and [len(s) for _, s in recs] == [2, 4, 4, 2] and sizes == enc.frame_bytes
    d = c.describe()
    assert d["weights"] == "random(seed=1)" and d["gop"] == 3 and d["encoder"].startswith("compressai")


def test_ssf2020_pretrained_download_check_and_load(http_server, tmp_path, monkeypatch):
    """A zoo-named file is fetched from weights.base_url, its hash prefix checked, and loaded as
    compressai.zoo.video does; a file whose hash does not match its name is refused."""
    import torch
    from compressai.models.video import ScaleSpaceFlow
    from compressai.zoo import video as zoo

    torch.manual_seed(7)
    net = ScaleSpaceFlow()
    net.update(force=True)
    raw = tmp_path / "w.pth.tar"
    torch.save(net.state_dict(), raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    name = f"ssf2020-mse-2-{digest[:8]}.pth.tar"
    raw.rename(http_server.root / name)
    urls = {"ssf2020": {"mse": {**zoo.model_urls["ssf2020"]["mse"], 2: "https://example.invalid/v1/" + name}}}
    monkeypatch.setattr(zoo, "model_urls", urls)
    assert ssf_source_url("mse", 2, http_server.url) == (http_server.url + name, digest[:8])

    dest = tmp_path / "resources" / "q2.pth.tar"
    fetch_ssf_weights("mse", 2, str(dest), http_server.url)
    c = build(CodecSpec("ssf", "ssf2020", 2, {"weights": "pretrained", "weights_path": str(dest)}, "cpu"))
    for k, v in net.state_dict().items():
        assert torch.equal(c.net.state_dict()[k], v), k

    bad = f"ssf2020-mse-3-{'0' * 8}.pth.tar"
    (http_server.root / bad).write_bytes(b"not the weights")
    urls["ssf2020"]["mse"][3] = "https://example.invalid/v1/" + bad
    with pytest.raises(RdflowError, match="SHA-256|sha256|checksum"):
        fetch_ssf_weights("mse", 3, str(tmp_path / "q3.pth.tar"), http_server.url)
    assert not (tmp_path / "q3.pth.tar").exists()


# ------------------------------------------------------------------------------ config

@pytest.mark.parametrize("entry, match", [
    ({"kind": "vp9", "qualities": [30]}, "unknown kind 'vp9'"),
    ({"kind": "x264", "qualities": [20, 60]}, r"\[60\] out of range for x264"),
    ({"kind": "ssf2020", "qualities": [0, 10], "weights": "random"}, r"\[0, 10\] out of range for ssf2020.*1–9"),
    ({"kind": "x265", "qualities": [30], "preset": "fastest"}, "preset: 'fastest'"),
    ({"kind": "x264", "qualities": [30], "rate_control": "abr"}, "rate_control"),
    ({"kind": "x264", "qualities": [30], "weights": "random"}, "weights only applies to kind: ssf2020"),
    # (the kinds taking preset: x264/x265 and any other sequence kind registered beside them)
    ({"kind": "ssf2020", "qualities": [3], "preset": "slow"},
     r"preset only applies to (\w+/)*x264/x265 \(this codec is ssf2020\)"),
    ({"kind": "ssf2020", "qualities": [3], "metric": "ms-ssim"}, "mse only"),
    ({"kind": "x264", "qualities": [30], "sequences": ["nope"]}, "sequences names \\['nope'\\]"),
])
def test_config_errors(clip_file, entry, match):
    with pytest.raises(RdflowError, match=match):
        check(config_for(clip_file, {"vc": entry}))


def test_name_shared_with_image_codec_is_refused(clip_file):
    with pytest.raises(RdflowError, match="also under codecs"):
        check(config_for(clip_file, {"jpeg": {"kind": "x264", "qualities": [30]}}))


def test_schema_accepts_example_and_fills_gop(clip_file):
    from rdflow.config import validate

    cfg = config_for(clip_file, {"avc": {"kind": "x264", "qualities": [22, 37], "preset": "fast"},
                                 "ssf": {"kind": "ssf2020", "qualities": [1], "weights": "random"}})
    validate(cfg)
    assert cfg["video_codecs"]["avc"]["gop"] is None and "preset" not in cfg["video_codecs"]["ssf"]
    bad = config_for(clip_file, {"avc": {"kind": "x264", "qualities": [22], "keyint": 3}})
    with pytest.raises(RdflowError, match="keyint"):
        validate(bad)


def test_targets_and_weights_paths(clip_file):
    cfg = config_for(clip_file, {
        "avc": {"kind": "x264", "qualities": [22, 37]},
        "ssf": {"kind": "ssf2020", "qualities": [1, 2], "weights": "pretrained"},
        "ssfr": {"kind": "ssf2020", "qualities": [1], "weights": "random", "sequences": ["other"]},
    })
    assert sequence_rows(cfg, "synth") == [f"results/video/synth/{c}/q{q}/sequence_rows.json"
                                           for c, q in (("avc", 22), ("avc", 37), ("ssf", 1), ("ssf", 2))]
    assert targets(cfg) == sequence_rows(cfg, "synth")
    assert weights_file(cfg, "ssf", 2) == "resources/weights/zoo-video/ssf2020/mse/q2.pth.tar"
    assert weights_file(cfg, "avc", 22) is None and weights_file(cfg, "ssfr", 1) is None
    assert downloads(cfg) == [weights_file(cfg, "ssf", 1), weights_file(cfg, "ssf", 2)]


def test_gather_reads_row_lists(tmp_path):
    from rdflow.stages.aggregate import gather
    from rdflow.io import write_json

    write_json(tmp_path / "a.json", {"sequence": "s", "codec": "jpeg", "quality": 50, "frame": 0, "bpp": 1.0})
    write_json(tmp_path / "b.json", [{"sequence": "s", "codec": "x264", "quality": 22, "frame": f, "bpp": 0.1}
                                      for f in (1, 0)])
    df = gather([tmp_path / "a.json", tmp_path / "b.json"])
    assert len(df) == 3 and list(df[df.codec == "x264"].frame) == [0, 1]


# ------------------------------------------------------------------------------ end to end

@pytest.mark.e2e
def test_compress_sequence_through_snakemake(tmp_path, clip_file):
    from test_e2e import planned_jobs, run_snakemake, write_config

    work = tmp_path / "study"
    cfg = config_for(clip_file, {
        "avc": {"kind": "x264", "qualities": [22, 37], "gop": 4},
        "hevc": {"kind": "x265", "qualities": [30], "gop": 4, "tune": "psnr"},
        "ssf": {"kind": "ssf2020", "qualities": [1], "weights": "random", "gop": 2},
    }, count=4)
    write_config(work, cfg)
    plan = planned_jobs(work)
    assert plan["compress_sequence"] == 4 and plan["compress_frame"] == 1  # 4 frames, one batch
    # one job at a time: rdflow.stages.compress.process_memory (not this stage's code) reads a half-imported
    # torch from sys.modules while the ssf2020 job imports it in another thread (reported)
    run_snakemake(work, "--cores", "1")
    df = pd.read_csv(work / "results/video_rd_synth.csv", float_precision="round_trip")
    assert sorted(df.codec.unique()) == ["avc", "hevc", "jpeg", "ssf"]
    assert len(df) == 4 * 5 and (df.groupby(["codec", "quality"]).size() == 4).all()
    summary = pd.read_csv(work / "results/video_rd_synth_summary.csv")
    for codec, q in (("avc", 22), ("avc", 37), ("hevc", 30), ("ssf", 1)):
        size = (work / f"results/video/synth/{codec}/q{q}/sequence.bin").stat().st_size
        row = summary[(summary.codec == codec) & (summary.quality == q)].iloc[0]
        assert row.bpp == pytest.approx(size * 8 / (W * H * 4), rel=1e-9)
    avc = summary[summary.codec == "avc"].set_index("quality")
    assert avc.loc[22, "psnr_y"] > avc.loc[37, "psnr_y"] and avc.loc[22, "bpp"] > avc.loc[37, "bpp"]
    assert (work / "results/figures/video_rd_synth_psnr_y.png").stat().st_size > 0
    # every video figure draws the sequence codecs beside the per-frame one, a point per quality
    for m in ("psnr_y", "psnr_rgb"):
        side = json.loads((work / f"results/figures/video_rd_synth_{m}.json").read_text())
        assert {s["label"]: len(s["x"]) for s in side["series"]} == {
            "avc": 2, "hevc": 1, "jpeg": 1, "ssf (random weights)": 1}, m
    # MS-SSIM is undefined on 64x48 frames (NaN in every row): the figure is empty and says why
    assert df.ms_ssim.isna().all()
    side = json.loads((work / "results/figures/video_rd_synth_ms_ssim_db.json").read_text())
    assert side["series"] == [] and "all NaN" in (side["note"] or ""), side["note"]
    assert df[df.codec == "ssf"].recon_match.all()
    # x264/x265 frames: ffmpeg decodes the kept streams and its psnr filter agrees, per frame
    for codec, kind, q in (("avc", "x264", 22), ("avc", "x264", 37), ("hevc", "x265", 30)):
        rows = df[(df.codec == codec) & (df.quality == q)].to_dict("records")
        assert [r["frame"] for r in rows] == [0, 1, 2, 3]
        check_against_ffmpeg(tmp_path, rows, work / f"results/video/synth/{codec}/q{q}/sequence.bin",
                             kind, clip_file)
    # the per-frame JPEG rows: Pillow decodes of the kept .bin files, PSNR by numpy
    from test_video_workflow import check_image_codec_frames

    assert len(check_image_codec_frames(work, df, "synth", clip_file, W, H, ["jpeg"])) == 4
    # VMAF (on by default) scored every sequence codec's decoded frames too, ssf2020's RGB output
    # included; the table's own check holds ffmpeg's psnr_y/u/v to the rows' (0.01 dB)
    vm = pd.read_csv(work / "results/vmaf.csv")
    assert vm.groupby("codec").size().to_dict() == {"avc": 8, "hevc": 4, "jpeg": 4, "ssf": 4}
    assert vm.vmaf.between(0, 100).all()
    assert not list((work / "results/video/synth").glob("*/q*/sequence_recon.raw"))  # temp()
    assert planned_jobs(work) == {}
    # a deleted row file: exactly that job, its VMAF and the aggregation
    (work / "results/video/synth/avc/q37/sequence_rows.json").unlink()
    plan = planned_jobs(work)
    assert plan["compress_sequence"] == 1 and plan["aggregate_video"] == 1
    assert plan["vmaf_video"] == 1
