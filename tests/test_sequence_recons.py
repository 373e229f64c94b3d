"""Sequence codecs (video_codecs: x264, x265, ssf2020, ...) decode their bitstreams to per-frame
reconstructions, so VMAF, detection and BD-rate treat them like the per-frame image codecs:
the plans, the reconstruction file against an independent ffmpeg decode, wrong frame counts,
and a small study through the real snakemake (x264, x265 and JPEG on 8 frames of the shipped
cars clip, VMAF against a direct libvmaf run, FastestDet, BD-rate against x265)."""

from __future__ import annotations

import itertools
import json
import math
import subprocess

import numpy as np
import pandas as pd
import pytest

from conftest import REPO
from rdflow import RdflowError
from rdflow.codecs import CODECS, register
from rdflow.codecs.sequence import Encoded, SequenceCodec
from rdflow.codecs.x26x import X264
from rdflow.metrics.yuv import yuv420_to_rgb
from rdflow.stages import detection as mv
from rdflow.stages import vmaf as vmaf_stage
from rdflow.stages import video_codecs as vc
from test_video_workflow import make_raw

W, H = 64, 48
CARS = REPO / "workflow/resources/data/video/cars_320x240.i420"  # 8 frames, 320x240, BT.601


def psnr(a, b) -> float:
    """8-bit PSNR over all samples, numpy float64 (not rdflow's)."""
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def i420_frames(data: bytes, w: int, h: int):
    fs = w * h * 3 // 2
    assert len(data) % fs == 0
    for k in range(len(data) // fs):
        a = np.frombuffer(data[k * fs:(k + 1) * fs], np.uint8)
        yield (a[:w * h].reshape(h, w), a[w * h:w * h * 5 // 4].reshape(h // 2, w // 2),
               a[w * h * 5 // 4:].reshape(h // 2, w // 2))


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_decode(bitstream, fmt: str) -> bytes:
    """The bundled ffmpeg decodes a kept Annex-B stream to raw I420 (independent of rdflow)."""
    return subprocess.run([ffmpeg_exe(), "-v", "error", "-f", fmt, "-i", str(bitstream), "-f",
                           "rawvideo", "-pix_fmt", "yuv420p", "-"], capture_output=True,
                          check=True).stdout


@pytest.fixture
def raw(tmp_path):
    p = tmp_path / "synth.yuv"
    make_raw(p, W, H, n=8)
    return p


def study(raw, video_codecs, *, frames=None, detection=True, vmaf=True, **extra) -> dict:
    seqs = {"synth": {"source": "file", "path": str(raw), "width": W, "height": H,
                      "matrix": "bt601"}}
    return {"device": "cpu", "metrics": ["psnr_rgb"],
            "codecs": {"jpeg": {"kind": "jpeg", "qualities": [50]}},
            "video": {"frames": frames or {"first": 1, "count": 3, "stride": 2},
                      "sequences": seqs},
            "video_codecs": video_codecs, "vmaf": {"enabled": vmaf},
            "detection": {"enabled": detection, "backend": "hog"}, "weights": {"base_url": None},
            **extra}


def job(tmp_path, cfg, codec, q, recon=True):
    out = tmp_path / "out" / codec / f"q{q}"
    rows = vc.sequence_job(config=cfg, sequence="synth", codec=codec, quality=q,
                           seq_path=cfg["video"]["sequences"]["synth"]["path"],
                           bitstream=str(out / "sequence.bin"), out_json=str(out / "rows.json"),
                           recon=str(out / "recon.raw") if recon else None)
    return rows, out


# ------------------------------------------------------------------------------ plans
def test_vmaf_and_detection_plans_include_the_sequence_codecs(raw, tmp_path):
    raw2 = tmp_path / "other.yuv"
    make_raw(raw2, W, H, n=8)
    cfg = study(raw, {"avc": {"kind": "x264", "qualities": [22, 37]},
                      "hevc": {"kind": "x265", "qualities": [30], "sequences": ["other"]}})
    cfg["video"]["sequences"]["other"] = dict(cfg["video"]["sequences"]["synth"], path=str(raw2))
    assert vc.points(cfg) == [("other", "avc", 22), ("other", "avc", 37), ("other", "hevc", 30),
                              ("synth", "avc", 22), ("synth", "avc", 37)]
    assert vmaf_stage.video_jobs(cfg) == [
        ("other", "jpeg", 50), ("other", "avc", 22), ("other", "avc", 37), ("other", "hevc", 30),
        ("synth", "jpeg", 50), ("synth", "avc", 22), ("synth", "avc", 37)]
    recon = "results/video/synth/avc/q22/sequence_recon.raw"
    assert vmaf_stage.video_recons(cfg, "synth", "avc", 22) == [recon]
    assert vmaf_stage.video_recons(cfg, "synth", "jpeg", 50) == [
        f"results/video/synth/jpeg/q50/batch0.recon.zip/{f}.png" for f in (1, 3, 5)]
    assert vmaf_stage.video_recon_inputs(cfg, "synth", "avc", 22) == [recon]
    assert "results/vmaf/video/other/hevc/q30.csv" in vmaf_stage.targets(cfg)
    assert mv.points(cfg, "video", "synth") == [("jpeg", 50), ("avc", 22), ("avc", 37)]
    assert mv.points(cfg, "video", "other")[-1] == ("hevc", 30)
    assert mv.decoded_paths(cfg, "video", "synth", "avc", 22) == [recon]
    assert mv.rate_rows(cfg, "video", "synth", "avc", 22) == [
        "results/video/synth/avc/q22/sequence_rows.json"]
    assert mv.rate_inputs(cfg, "video", "synth", "avc", 22) == [
        "results/video/synth/avc/q22/sequence_rows.json"]
    assert "results/detection/video/other/hevc/q30_eval.json" in mv.targets(cfg)
    # both stages off: no sequence-codec point is read by anyone
    off = study(raw, {"avc": {"kind": "x264", "qualities": [22]}}, detection=False, vmaf=False)
    assert vmaf_stage.video_jobs(off) == [] and mv.targets(off) == []


# ------------------------------------------------------------------------------ the job
@pytest.mark.parametrize("kind,fmt", [("x264", "h264"), ("x265", "hevc")])
def test_recon_file_is_the_decoded_stream_the_rows_measured(raw, tmp_path, monkeypatch, kind,
                                                            fmt):
    cfg = study(raw, {"c": {"kind": kind, "qualities": [30], "gop": 2}})
    rows, out = job(tmp_path, cfg, "c", 30)
    idx = [1, 3, 5]
    assert [r["frame"] for r in rows] == idx
    data = (out / "recon.raw").read_bytes()
    assert len(data) == len(idx) * W * H * 3 // 2
    # the file holds exactly ffmpeg's own decode of the kept bitstream
    assert data == ffmpeg_decode(out / "sequence.bin", fmt)
    src = list(i420_frames(raw.read_bytes(), W, H))
    got = list(vc.recon_frames(cfg, "synth", "c", out / "recon.raw"))
    assert [f for f, _ in got] == idx
    for r, (f, planes) in zip(rows, got):
        for name, a, b in zip(("y", "u", "v"), src[f], planes):
            assert r[f"psnr_{name}"] == pytest.approx(psnr(a, b), abs=1e-9), (f, name)
    # detection reads the same frames as RGB, converted with the sequence's own conversion
    monkeypatch.chdir(tmp_path)
    dst = tmp_path / vc.recon_path("synth", "c", 30)
    dst.parent.mkdir(parents=True)
    dst.write_bytes(data)
    det = list(mv.decoded_frames(cfg, "video", "synth", "c", 30))
    assert [f for f, _ in det] == [str(f) for f in idx]
    for r, (f, rgb), (_, planes) in zip(rows, det, got):
        np.testing.assert_array_equal(rgb, yuv420_to_rgb(*planes, matrix="bt601"))
        src_rgb = yuv420_to_rgb(*src[int(f)], matrix="bt601")
        assert r["psnr_rgb"] == pytest.approx(psnr(src_rgb, rgb), abs=1e-9)


def test_no_recon_file_unless_asked(raw, tmp_path):
    cfg = study(raw, {"c": {"kind": "x264", "qualities": [30]}})
    _, out = job(tmp_path, cfg, "c", 30, recon=False)
    assert sorted(p.name for p in out.iterdir()) == ["rows.json", "sequence.bin"]


@pytest.fixture
def rgb_codec():
    """A sequence codec coding RGB (as ssf2020 does): each frame's top ``quality`` bits; its
    decoder can drop, repeat or crop frames (``drop``, ``extra``, ``shrink``) to test the
    checks. Registered for the test only."""

    @register
    class _Posterize(SequenceCodec):
        kind = "test_rgb_posterize"
        domain = "rgb"
        quality_range = (1, 8)
        entry_keys = frozenset({"drop", "extra", "shrink"})

        def encode(self, frames, clip):
            k = 8 - self.spec.quality
            parts = [((np.asarray(f) >> k) << k).astype(np.uint8).tobytes() for f in frames]
            return Encoded(b"".join(parts), [len(p) for p in parts], ["I"] * len(parts), 0.01)

        def decode(self, data, clip):
            fs = clip.width * clip.height * 3
            out = [np.frombuffer(data[i:i + fs], np.uint8).reshape(clip.height, clip.width, 3)
                   for i in range(0, len(data), fs)]
            if self.spec.options.get("drop"):
                out = out[:-1]
            if self.spec.options.get("extra"):
                out = out + out[-1:]
            if self.spec.options.get("shrink"):
                out = [o[:-2] for o in out]
            yield from out

    yield _Posterize
    CODECS.pop(_Posterize.kind)


def test_rgb_codec_recon_is_its_rgb_output(raw, tmp_path, rgb_codec):
    from rdflow.metrics.yuv import rgb_to_yuv420

    cfg = study(raw, {"p": {"kind": rgb_codec.kind, "qualities": [3]}})
    rows, out = job(tmp_path, cfg, "p", 3)
    data = (out / "recon.raw").read_bytes()
    assert len(data) == 3 * W * H * 3  # packed RGB24: no 4:2:0 round trip for detection
    src = list(i420_frames(raw.read_bytes(), W, H))
    rgb = list(vc.recon_frames(cfg, "synth", "p", out / "recon.raw", as_="rgb"))
    planes = list(vc.recon_frames(cfg, "synth", "p", out / "recon.raw", as_="planes"))
    for k, (r, (f, im), (_, pl)) in enumerate(zip(rows, rgb, planes)):
        src_rgb = yuv420_to_rgb(*src[f], matrix="bt601")
        expect = (src_rgb >> 5) << 5
        np.testing.assert_array_equal(im, expect)
        assert r["psnr_rgb"] == pytest.approx(psnr(src_rgb, expect), abs=1e-9)
        # VMAF's planes: the RGB output converted once, as the rows' psnr_y/u/v saw it
        for a, b in zip(pl, rgb_to_yuv420(expect, matrix="bt601")):
            np.testing.assert_array_equal(a, b)
        assert r["psnr_y"] == pytest.approx(psnr(src[f][0], pl[0]), abs=1e-9)


@pytest.mark.parametrize("fault,why", [("drop", r"decoded 2 frames of the 3 coded"),
                                       ("extra", r"returned more frames than the 3 coded"),
                                       ("shrink", r"decoded frame 1 has shape")])
def test_wrong_frame_count_is_a_job_error_without_rows(raw, tmp_path, rgb_codec, fault, why):
    cfg = study(raw, {"p": {"kind": rgb_codec.kind, "qualities": [3], fault: True}})
    with pytest.raises(RdflowError, match=rf"video_codecs\.p: .*{why}"):
        job(tmp_path, cfg, "p", 3)
    out = tmp_path / "out/p/q3"
    assert not (out / "rows.json").exists() and not (out / "recon.raw").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]


def test_x264_decoder_losing_a_frame_is_a_job_error(raw, tmp_path, monkeypatch):
    real = X264.decode
    monkeypatch.setattr(X264, "decode", lambda self, data, clip: itertools.islice(
        real(self, data, clip), 2))
    cfg = study(raw, {"c": {"kind": "x264", "qualities": [30]}})
    with pytest.raises(RdflowError, match=r"video_codecs\.c: decoded 2 frames of the 3 coded "
                                          r"\(.*sequence\.bin\)"):
        job(tmp_path, cfg, "c", 30)
    assert not (tmp_path / "out/c/q30/rows.json").exists()
    assert not (tmp_path / "out/c/q30/recon.raw").exists()


def test_truncated_recon_file_names_it(raw, tmp_path):
    cfg = study(raw, {"c": {"kind": "x264", "qualities": [30]}})
    _, out = job(tmp_path, cfg, "c", 30)
    p = out / "recon.raw"
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(RdflowError, match=r"recon\.raw: 13814 bytes, but 3 decoded 64x48 frames "
                                          r"\(yuv420\) of synth c are 13824 bytes"):
        list(vc.recon_frames(cfg, "synth", "c", p))


# ------------------------------------------------------------------------------ the workflow
def _outputs(work, cfg, *args) -> str:
    """The files the DAG of one compress_sequence job makes (snakemake --detailed-summary)."""
    from test_e2e import run_snakemake, write_config

    write_config(work, cfg)
    target = "results/video/synth/c/q30/sequence_rows.json"
    return run_snakemake(work, *(args or ("--detailed-summary",)), target).stdout


@pytest.mark.e2e
def test_recon_output_only_when_read_or_kept(raw, tmp_path):
    base = dict(detection=False, vmaf=False, frames={"count": 3})
    codecs = {"c": {"kind": "x264", "qualities": [30]}}
    assert "sequence_rows.json" in _outputs(tmp_path / "a", study(raw, codecs, **base))
    assert "sequence_recon.raw" not in _outputs(tmp_path / "a", study(raw, codecs, **base))
    read = _outputs(tmp_path / "b", study(raw, codecs, frames={"count": 3}, detection=False))
    assert "results/video/synth/c/q30/sequence_recon.raw" in read
    # kept: written although no stage reads it, and still there after the run
    _outputs(tmp_path / "c", study(raw, codecs, keep_reconstructions=True, **base), "--cores", "1")
    kept = tmp_path / "c/results/video/synth/c/q30/sequence_recon.raw"
    assert kept.read_bytes() == ffmpeg_decode(kept.with_name("sequence.bin"), "h264")


CRFS = [18, 24, 30, 36, 42, 48]


@pytest.fixture(scope="module")
def cars_study(tmp_path_factory):
    from test_e2e import run_snakemake, write_config

    work = tmp_path_factory.mktemp("sequence_recons")
    seq = {"source": "file", "path": str(CARS), "width": 320, "height": 240, "fps": 30,
           "matrix": "bt601", "range": "limited"}
    write_config(work, {
        "device": "cpu", "metrics": ["psnr_rgb"],
        "codecs": {"jpeg": {"kind": "jpeg", "qualities": [10, 50]}},
        "video": {"frames": {"count": 8}, "codecs": ["jpeg"], "sequences": {"cars": seq}},
        "video_codecs": {k: {"kind": k, "qualities": CRFS, "preset": "veryfast", "gop": 8}
                         for k in ("x264", "x265")},
        "vmaf": {"enabled": True},
        "detection": {"enabled": True, "backend": "fastestdet"},
        "bd_rate": {"anchor": "jpeg", "video_anchor": "x265",
                    "metrics": ["psnr_y", "vmaf", "map50_95"]},
        "complexity": {"enabled": False}})
    run_snakemake(work)
    return work


@pytest.mark.e2e
def test_study_vmaf_of_sequence_codecs_equals_direct_libvmaf(cars_study, tmp_path):
    r = cars_study / "results"
    vm = pd.read_csv(r / "vmaf.csv")
    video = pd.read_csv(r / "video_rd_cars.csv")
    for codec, fmt, q in (("x264", "h264", 30), ("x265", "hevc", 42)):
        bitstream = r / f"video/cars/{codec}/q{q}/sequence.bin"
        (tmp_path / "dec.yuv").write_bytes(ffmpeg_decode(bitstream, fmt))
        rawfmt = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-video_size", "320x240"]
        subprocess.run([ffmpeg_exe(), "-v", "error", *rawfmt, "-i", "dec.yuv", *rawfmt, "-i",
                        str(CARS), "-lavfi", "[0:v][1:v]libvmaf=model=version=vmaf_v0.6.1neg:"
                        "log_fmt=json:log_path=direct.json", "-f", "null", "-"], cwd=tmp_path,
                       check=True)
        direct = [f["metrics"]["vmaf"] for f in
                  json.loads((tmp_path / "direct.json").read_text())["frames"]]
        rows = vm[(vm.domain == "video") & (vm.codec == codec) & (vm.quality == q)]
        rows = rows.sort_values("frame")
        assert list(rows.frame) == list(range(8))
        np.testing.assert_allclose(rows.vmaf, direct, atol=1e-3)
        # the rate is the sequence codec's frame rows': their mean is the file's bits per pixel
        rd = video[(video.codec == codec) & (video.quality == q)].sort_values("frame")
        np.testing.assert_array_equal(rows.bpp.to_numpy(), rd.bpp.to_numpy())
        assert rows.bpp.mean() == pytest.approx(bitstream.stat().st_size * 8 / (320 * 240 * 8))
        assert not (bitstream.parent / "sequence_recon.raw").exists()  # temp(): gone after use
    assert set(vm[vm.domain == "video"].codec) == {"jpeg", "x264", "x265"}
    side = json.loads((r / "figures/vmaf_bpp_video_cars.json").read_text())
    assert {s["label"]: len(s["x"]) for s in side["series"]} == {"jpeg": 2, "x264": 6, "x265": 6}


@pytest.mark.e2e
def test_study_detection_rows_and_bd_rate_cells_of_sequence_codecs(cars_study):
    from test_e2e import planned_jobs

    r = cars_study / "results"
    mv_rows = pd.read_csv(r / "machine_vision.csv")
    summary = pd.read_csv(r / "video_rd_cars_summary.csv")
    for codec in ("x264", "x265"):
        rows = mv_rows[(mv_rows["codec"] == codec) & (mv_rows["gt"] == "pseudo")].sort_values("quality")
        assert list(rows.quality) == CRFS
        assert rows.map50_95.between(0, 1).all() and (rows.n_frames == 8).all()
        s = summary[summary.codec == codec].sort_values("quality")
        np.testing.assert_allclose(rows.bpp, s.bpp, rtol=1e-12)
        assert rows.map50_95.iloc[0] > rows.map50_95.iloc[-1]  # CRF 48 loses detections
    bd = pd.read_csv(r / "bd_rate.csv")
    cells = bd[(bd.study == "video") & (bd.codec == "x264") & (bd.anchor == "x265")]
    by = cells.set_index("metric")
    for metric in ("psnr_y", "vmaf", "map50_95@pseudo"):
        assert np.isfinite(by.loc[metric, "bd_rate_pct"]), by.loc[metric].to_dict()
        assert pd.isna(by.loc[metric, "reason"])
    assert by.loc["vmaf", "bd_rate_pct"] > 0  # x264 needs more bits than x265 for equal VMAF
    assert planned_jobs(cars_study) == {}  # deleted temp() reconstructions ask for no rerun
