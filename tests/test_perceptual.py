"""rdflow.stages.vmaf: the VMAF stage (jobs, targets, scoring, tables, correlation, figures),
cross-checked against direct ffmpeg libvmaf / psnr runs, and end to end through snakemake."""

from __future__ import annotations

import io
import json
import logging
import math
import shutil
import stat
import subprocess

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from rdflow import RdflowError
from rdflow.io import write_png
from rdflow.metrics.vmaf import find_ffmpeg_with_libvmaf
from rdflow.stages import vmaf as stage
from rdflow.metrics.yuv import rgb_to_yuv420, yuv420_to_rgb
from conftest import item_file

W, H = 96, 64


def make_raw(path, w=W, h=H, n=8):
    """Textured moving I420 frames whose chroma changes per frame (frame order is visible)."""
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for i in range(n):
        y = np.clip(120 + 60 * np.sin((xx + 0.5 * i) / 6.0) * np.cos(yy / 5.0) + i, 0, 255)
        u = np.full((h // 2, w // 2), 110 + 3 * i, np.uint8)
        v = np.full((h // 2, w // 2), 140 - 3 * i, np.uint8)
        out.append(y.astype(np.uint8).tobytes() + u.tobytes() + v.tobytes())
    path.write_bytes(b"".join(out))


def read_i420(path, w, h, i):
    fs = w * h * 3 // 2
    buf = np.frombuffer(path.read_bytes()[i * fs:(i + 1) * fs], np.uint8)
    y = buf[:w * h].reshape(h, w)
    u = buf[w * h:w * h + w * h // 4].reshape(h // 2, w // 2)
    v = buf[w * h + w * h // 4:].reshape(h // 2, w // 2)
    return y, u, v


def jpeg_roundtrip(rgb, q=30):
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=q)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def video_config(raw, first=1, count=3, stride=2, w=W, h=H, **vmaf):
    return {"device": "cpu",
            "codecs": {"jpeg": {"kind": "jpeg", "qualities": [30, 80]}},
            "video": {"frames": {"first": first, "count": count, "stride": stride},
                      "sequences": {"synth": {"source": "file", "path": str(raw), "width": w,
                                              "height": h}}},
            "vmaf": vmaf}


def direct_ffmpeg(tmp, src_raw, dist_raw, w, h, select, model="vmaf_v0.6.1neg"):
    """ffmpeg itself: reference = the source file with ffmpeg's select filter picking the
    frames; returns (libvmaf per-frame scores, psnr filter's psnr_y per frame)."""
    exe = find_ffmpeg_with_libvmaf()
    raw = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-video_size", f"{w}x{h}"]
    graph = (f"[1:v]select='{select}',setpts=N/FRAME_RATE/TB[r];[r]split[r1][r2];"
             f"[0:v][r1]psnr=stats_file=psnr.log[d];"
             f"[d][r2]libvmaf=model=version={model}:log_fmt=json:log_path=direct.json")
    subprocess.run([exe, "-hide_banner", "-nostdin", "-v", "error", *raw, "-i", str(dist_raw),
                    *raw, "-i", str(src_raw), "-filter_complex", graph, "-f", "null", "-"],
                   cwd=tmp, check=True)
    vm = [f["metrics"]["vmaf"] for f in json.loads((tmp / "direct.json").read_text())["frames"]]
    ps = [float(dict(kv.split(":") for kv in line.split())["psnr_y"])
          for line in (tmp / "psnr.log").read_text().splitlines()]
    return np.array(vm), np.array(ps)


def fake_ffmpeg(tmp_path, body):
    p = tmp_path / "ffmpeg"
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return str(p)


# ----------------------------------------------------------------------------- targets, config
def test_targets_and_jobs(tmp_path):
    raw = tmp_path / "s.yuv"
    make_raw(raw)
    cfg = video_config(raw)
    cfg["codecs"]["hp"] = {"kind": "learned", "architecture": "bmshj2018-hyperprior",
                           "weights": "random", "qualities": [2], "datasets": ["k"]}
    cfg["datasets"] = {"k": {"kind": "kodak"}, "m": {"kind": "local", "path": "x"}}
    assert stage.video_jobs(cfg) == [("synth", "hp", 2), ("synth", "jpeg", 30),
                                          ("synth", "jpeg", 80)]
    # hp is restricted to dataset k
    assert stage.image_jobs(cfg) == [("k", "hp", 2), ("k", "jpeg", 30), ("k", "jpeg", 80),
                                          ("m", "jpeg", 30), ("m", "jpeg", 80)]
    assert stage.video_recons(cfg, "synth", "jpeg", 30) == [
        f"results/video/synth/jpeg/q30/batch0.recon.zip/{f}.png" for f in (1, 3, 5)]
    assert stage.video_recon_inputs(cfg, "synth", "jpeg", 30) == [
        "results/video/synth/jpeg/q30/batch0.recon.zip"]
    t = stage.targets(cfg)
    assert {"results/vmaf.csv", "results/vmaf_correlation.csv",
            "results/figures/vmaf_bpp_video_synth.png", "results/figures/vmaf_vs_psnr_video.pdf",
            "results/figures/vmaf_bpp_image_k.pdf", "results/figures/vmaf_vs_psnr_image_m.png",
            "results/vmaf/video/synth/jpeg/q80.csv", "results/vmaf/image/k/hp/q2.csv"} <= set(t)
    ins = stage.table_inputs(cfg)
    assert ins["video_rd"] == ["results/video_rd_synth.csv"]
    assert ins["image_rd"] == ["results/image_rd_k.csv", "results/image_rd_m.csv"]
    cfg["vmaf"] = {"enabled": False}
    assert stage.targets(cfg) == [] and stage.table_inputs(cfg)["video"] == []
    assert stage.targets({"codecs": {}, "vmaf": {}}) == []


def test_unknown_model_is_a_config_error(tmp_path):
    import rdflow.config

    raw = tmp_path / "s.yuv"
    make_raw(raw)
    with pytest.raises(RdflowError, match=r"vmaf_v0\.6\.1neg.*vmaf_v0\.6\.1") as e:
        rdflow.config.validate(video_config(raw, model="vmaf_v9"))
    assert "vmaf_v9" in str(e.value)
    with pytest.raises(RdflowError, match=r"vmaf\.model: unknown VMAF model 'vmaf_4k'; known "
                                          r"models: vmaf_v0\.6\.1neg, vmaf_v0\.6\.1"):
        stage.check(video_config(raw, model="vmaf_4k"))
    cfg = rdflow.config.validate(video_config(raw))  # defaults filled by the schema
    # the documented defaults, written out here
    assert cfg["vmaf"] == {"enabled": True, "model": "vmaf_v0.6.1neg", "keep_logs": True,
                           "image_matrix": "bt709", "image_range": "limited",
                           "image_chroma_loc": "left"}


@pytest.mark.parametrize("kind", ["false", "no_libvmaf"])
def test_no_ffmpeg_with_libvmaf_fails_at_config_check(tmp_path, monkeypatch, kind):
    import imageio_ffmpeg

    exe = "/bin/false" if kind == "false" else fake_ffmpeg(
        tmp_path, "echo ' TS psnr  VV->V  Calculate the PSNR'\n")
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", lambda: exe)
    raw = tmp_path / "s.yuv"
    make_raw(raw)
    with pytest.raises(RdflowError) as e:
        stage.check(video_config(raw))
    msg = str(e.value)
    assert "no ffmpeg with libvmaf" in msg and "pip install imageio-ffmpeg==0.8.1" in msg
    assert exe in msg and "vmaf: {enabled: false}" in msg
    stage.check(video_config(raw, enabled=False))  # off: no ffmpeg needed


# ----------------------------------------------------------------------------- video scoring
def _video_job(tmp_path, first=1, count=3, stride=2, q=30, **vmaf):
    raw = tmp_path / "s.yuv"
    make_raw(raw)
    cfg = video_config(raw, first, count, stride, **vmaf)
    idx = list(range(first, first + count * stride, stride))
    recons, dist = [], []
    for i in idx:
        rgb = yuv420_to_rgb(*read_i420(raw, W, H, i))
        rec = jpeg_roundtrip(rgb, q)
        p = tmp_path / "rec" / f"{i}.png"
        write_png(p, rec)
        recons.append(p)
        dist.append(b"".join(x.tobytes() for x in rgb_to_yuv420(rec)))
    return cfg, raw, idx, recons, b"".join(dist)


@pytest.mark.parametrize("model", ["vmaf_v0.6.1neg", "vmaf_v0.6.1"])
def test_video_vmaf_equals_direct_ffmpeg(tmp_path, model):
    cfg, raw, idx, recons, dist = _video_job(tmp_path, model=model)
    out = tmp_path / "out" / "q30.csv"
    logj = tmp_path / "out" / "q30.vmaf.json"
    df = stage.score_video(config=cfg, sequence="synth", codec="jpeg", quality=30,
                                seq_path=raw, recons=recons, out_csv=out, out_log=logj,
                                threads=2)
    got = pd.read_csv(out)
    assert list(got.frame) == idx == [1, 3, 5]
    assert set(got.sequence) == {"synth"} and set(got.vmaf_model) == {model}
    assert len(json.loads(logj.read_text())["frames"]) == 3
    (tmp_path / "dist.yuv").write_bytes(dist)
    vm, ps = direct_ffmpeg(tmp_path, raw, tmp_path / "dist.yuv", W, H,
                           "between(n,1,5)*not(mod(n-1,2))", model)
    np.testing.assert_allclose(got.vmaf, vm, atol=1e-3)
    np.testing.assert_allclose(got.psnr_y, ps, atol=0.01)
    assert 20 < got.vmaf.mean() < 99.5 and (df.vmaf == got.vmaf).all()


def test_video_frame_count_and_size_mismatch(tmp_path):
    cfg, raw, idx, recons, _ = _video_job(tmp_path)
    out = tmp_path / "o.csv"
    kw = dict(config=cfg, sequence="synth", codec="jpeg", quality=30, seq_path=raw, out_csv=out)
    with pytest.raises(RdflowError, match=r"frame counts differ.*has 3 selected frames.*has 2 "
                                          r"reconstructions"):
        stage.score_video(recons=recons[:2], **kw)
    write_png(recons[1], np.zeros((H, W - 2, 3), np.uint8))
    with pytest.raises(RdflowError, match=rf"frame sizes differ: reference .*s\.yuv frame 3 is "
                                          rf"{W}x{H}, distorted .*3\.png is {W - 2}x{H}"):
        stage.score_video(recons=recons, **kw)
    assert not out.exists()


def test_ffmpeg_failure_goes_to_error_and_log_and_writes_no_row(tmp_path):
    from rdflow.runtime import job_log

    real = find_ffmpeg_with_libvmaf()
    fake = fake_ffmpeg(tmp_path, f'case "$*" in *-filters*|*color=c=gray*) exec "{real}" "$@";; '
                                 "esac\necho 'Error: disk on fire' >&2; exit 3\n")
    cfg, raw, idx, recons, _ = _video_job(tmp_path)
    out, logj, joblog = tmp_path / "o.csv", tmp_path / "o.vmaf.json", tmp_path / "job.log"
    with pytest.raises(RdflowError) as e, job_log(joblog):
        stage.score_video(config=cfg, sequence="synth", codec="jpeg", quality=30,
                               seq_path=raw, recons=recons, out_csv=out, out_log=logj,
                               ffmpeg=fake)
    assert "exited with status 3" in str(e.value) and "disk on fire" in str(e.value)
    assert "disk on fire" in joblog.read_text()
    assert not out.exists() and not logj.exists()


# ----------------------------------------------------------------------------- images
def test_images_odd_small_and_direct(tmp_path, caplog):
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:65, 0:97]
    big = np.dstack([(120 + 60 * np.sin(xx / 5.0 + k) * np.cos(yy / 7.0)).astype(np.uint8)
                     for k in range(3)])
    small = rng.integers(0, 255, (12, 20, 3), dtype=np.uint8)
    refs, recons = [], []
    for name, img in (("big", big), ("small", small)):
        Image.fromarray(img).save(tmp_path / f"{name}.png")
        refs.append(tmp_path / f"{name}.png")
        write_png(tmp_path / f"{name}.rec.png", jpeg_roundtrip(img))
        recons.append(tmp_path / f"{name}.rec.png")
    cfg = {"codecs": {}, "vmaf": {"image_matrix": "bt601", "image_range": "full"}}
    out, logj = tmp_path / "o.csv", tmp_path / "o.json"
    with caplog.at_level(logging.WARNING, logger="rdflow"):
        df = stage.score_images(config=cfg, dataset="d", codec="jpeg", quality=30,
                                     images=["big", "small"], refs=refs, recons=recons,
                                     out_csv=out, out_log=logj, threads=1)
    assert "is odd" in caplog.text and "too small for libvmaf" in caplog.text
    got = pd.read_csv(out).set_index("image")
    assert math.isnan(got.loc["small", "vmaf"])
    assert (got.loc["big", "width"], got.loc["big", "height"]) == (96, 64)
    assert got.loc["big", "matrix"] == "bt601" and set(json.loads(logj.read_text())["images"]) \
        == {"big"}
    # direct: ffmpeg scores the same cropped pair converted the same way
    rec = jpeg_roundtrip(big)[:64, :96]
    for role, img in (("ref", big[:64, :96]), ("dist", rec)):
        (tmp_path / f"{role}.yuv").write_bytes(
            b"".join(p.tobytes() for p in rgb_to_yuv420(img, "bt601", "full", "left")))
    vm, ps = direct_ffmpeg(tmp_path, tmp_path / "ref.yuv", tmp_path / "dist.yuv", 96, 64, "1")
    assert got.loc["big", "vmaf"] == pytest.approx(vm[0], abs=1e-3)
    assert got.loc["big", "psnr_y"] == pytest.approx(ps[0], abs=0.01)
    assert len(df) == 2


def test_image_size_mismatch(tmp_path):
    img = np.full((40, 40, 3), 100, np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    write_png(tmp_path / "a.rec.png", img[:, :38])
    with pytest.raises(RdflowError, match=r"image sizes differ: reference .*a\.png is 40x40, "
                                          r"distorted .*a\.rec\.png is 38x40"):
        stage.score_images(config={}, dataset="d", codec="c", quality=1, images=["a"],
                                refs=[tmp_path / "a.png"], recons=[tmp_path / "a.rec.png"],
                                out_csv=tmp_path / "o.csv")
    assert not (tmp_path / "o.csv").exists()


# ----------------------------------------------------------------------------- tables, stats
def test_fit_stats():
    from scipy import stats

    x = np.array([30, 32, 35, 37, 40, np.inf, np.nan], float)
    y = np.array([60, 71, 75, 86, 90, 99, 50], float)
    s = stage.fit_stats(x, y)
    xf, yf = x[:5], y[:5]
    assert s["n"] == 5 and s["n_dropped"] == 2
    assert s["pearson_r"] == pytest.approx(np.corrcoef(xf, yf)[0, 1], abs=1e-12)
    assert s["spearman_rho"] == pytest.approx(1.0)
    slope, icpt = np.polyfit(xf, yf, 1)
    assert (s["slope"], s["intercept"]) == pytest.approx((slope, icpt), abs=1e-9)
    resid = yf - (slope * xf + icpt)
    assert s["r2"] == pytest.approx(1 - resid.var() / yf.var(), abs=1e-12)
    assert s["r2"] == pytest.approx(stats.pearsonr(xf, yf).statistic ** 2, abs=1e-12)
    assert math.isnan(stage.fit_stats([1, 1, 1], [1, 2, 3])["pearson_r"])
    assert math.isnan(stage.fit_stats([1, 2], [1, 2])["r2"])


def _tables(tmp_path, psnr_offset=0.0, drop_rd_row=False):
    vm = pd.DataFrame({"sequence": "s", "codec": ["a"] * 3 + ["b"] * 3, "quality": 1,
                       "frame": [0, 1, 2] * 2, "vmaf": [50, 60, 70, 40, 45, 80.0],
                       "psnr_y": [30, 32, 34, 29, 31, 38.0], "psnr_u": 40.0, "psnr_v": 41.0,
                       "vmaf_model": "vmaf_v0.6.1neg"})
    rd = vm[["sequence", "codec", "quality", "frame"]].copy()
    rd["bpp"], rd["psnr_rgb"], rd["ms_ssim"] = 0.5, vm.psnr_y - 1, [0.9, 0.95, 0.99, 0.9, .92, 1]
    rd["psnr_y"], rd["psnr_u"], rd["psnr_v"] = vm.psnr_y + psnr_offset, 40.0, 41.0
    rd["weights"] = "random(seed=0)"
    if drop_rd_row:
        rd = rd.iloc[1:]
    vm.to_csv(tmp_path / "vm.csv", index=False)
    rd.to_csv(tmp_path / "rd.csv", index=False)
    return [tmp_path / "vm.csv"], [tmp_path / "rd.csv"]


def test_table_and_correlation(tmp_path):
    v, r = _tables(tmp_path, psnr_offset=0.004)
    inputs = {"video": v, "video_rd": r}
    table, corr = stage.write_tables(inputs, tmp_path / "vmaf.csv", tmp_path / "corr.csv")
    t = pd.read_csv(tmp_path / "vmaf.csv")
    assert len(t) == 6 and set(t.domain) == {"video"} and (t.bpp == 0.5).all()
    assert np.isinf(t.ms_ssim_db.iloc[-1]) and t.ms_ssim_db.iloc[0] == pytest.approx(10.0)
    c = pd.read_csv(tmp_path / "corr.csv")
    assert set(zip(c.codec, c.x)) == {(k, x) for k in ("a", "b", "(pooled)")
                                      for x in ("psnr_y", "ms_ssim_db")}
    pooled = c[(c.codec == "(pooled)") & (c.x == "psnr_y")].iloc[0]
    assert pooled.n == 6 and pooled.pearson_r == pytest.approx(
        np.corrcoef(t.psnr_y, t.vmaf)[0, 1])
    ms = c[(c.codec == "(pooled)") & (c.x == "ms_ssim_db")].iloc[0]
    assert ms.n == 5 and ms.n_dropped == 1  # MS-SSIM 1 -> inf dB left out
    stage.plot_vmaf_vs_psnr(tmp_path / "vmaf.csv", tmp_path / "corr.csv", "video",
                                 [tmp_path / "s.png", tmp_path / "s.pdf"])
    stage.plot_vmaf_bpp(tmp_path / "vmaf.csv", "video", "s", [tmp_path / "b.png"])
    assert (tmp_path / "s.png").stat().st_size > 1000 and (tmp_path / "s.pdf").exists()
    assert (tmp_path / "b.png").stat().st_size > 1000
    import json

    scatter = json.loads((tmp_path / "s.json").read_text())
    pts = {s["label"].split(":")[0]: s for s in scatter["series"]}
    assert {k: len(s["x"]) for k, s in pts.items()} == {
        "a (random weights)": 3, "b (random weights)": 3, "pooled": 50}
    assert pts["a (random weights)"]["y"] == [50, 60, 70] and scatter["note"] is None
    curves = json.loads((tmp_path / "b.json").read_text())
    # one (codec, quality) each: one point per codec at the mean VMAF
    assert [(s["label"], s["x"], s["y"]) for s in curves["series"]] == [
        ("a (random weights)", [0.5], [60.0]), ("b (random weights)", [0.5], [55.0])]


def test_table_refuses_inconsistent_psnr_and_missing_rows(tmp_path):
    v, r = _tables(tmp_path, psnr_offset=0.5)
    with pytest.raises(RdflowError, match=r"psnr_y of ffmpeg's psnr filter .* differs from the "
                                          r"video RD row.s .*\(6 rows differ"):
        stage.write_tables({"video": v, "video_rd": r}, tmp_path / "t.csv",
                                tmp_path / "c.csv")
    v, r = _tables(tmp_path, drop_rd_row=True)
    with pytest.raises(RdflowError, match=r"1 VMAF rows have no row in the video RD table, "
                                          r"e\.g\. sequence=s, codec=a, quality=1, frame=0"):
        stage.write_tables({"video": v, "video_rd": r}, tmp_path / "t.csv",
                                tmp_path / "c.csv")
    assert not (tmp_path / "t.csv").exists() and not (tmp_path / "c.csv").exists()


# ----------------------------------------------------------------------------- end to end
@pytest.mark.e2e
def test_workflow_vmaf_matches_direct_ffmpeg(tmp_path):
    from test_e2e import planned_jobs, run_snakemake, write_config

    w, h = 176, 168  # MS-SSIM needs >= 161 px
    raw = tmp_path / "synth.yuv"
    make_raw(raw, w, h)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    yy, xx = np.mgrid[0:170, 0:180]
    Image.fromarray(np.dstack([(128 + 80 * np.sin(xx / (4.0 + k)) * np.cos(yy / 6.0))
                               .astype(np.uint8) for k in range(3)])).save(imgs / "tex.png")
    work = tmp_path / "study"
    cfg = video_config(raw, first=1, count=3, stride=2, w=w, h=h)
    cfg["codecs"]["hp"] = {"kind": "learned", "architecture": "bmshj2018-hyperprior",
                           "weights": "random", "qualities": [2]}
    cfg["datasets"] = {"mine": {"kind": "local", "path": str(imgs)}}
    write_config(work, cfg)
    plan = planned_jobs(work)
    assert plan["vmaf_video"] == 3 and plan["vmaf_image"] == 3 and plan["vmaf_table"] == 1
    run_snakemake(work)

    t = pd.read_csv(work / "results/vmaf.csv")
    vid, img = t[t.domain == "video"], t[t.domain == "image"]
    assert len(vid) == 3 * 3 and sorted(vid.frame.unique()) == [1, 3, 5] and len(img) == 3
    assert t.vmaf.notna().all() and set(t.vmaf_model) == {"vmaf_v0.6.1neg"}
    # psnr_y in vmaf.csv (ffmpeg's psnr filter) equals rdflow's own psnr_y of the video rows
    rd = pd.read_csv(work / "results/video_rd_synth.csv")
    m = vid.merge(rd, on=["codec", "quality", "frame"], suffixes=("", "_rd"))
    np.testing.assert_allclose(m.psnr_y, m.psnr_y_rd, atol=0.01)
    np.testing.assert_allclose(m.bpp, m.bpp_rd, rtol=0, atol=0)
    # VMAF of the workflow equals ffmpeg's own on the same pair: the source file with ffmpeg
    # selecting frames 1, 3, 5, against the kept JPEG bitstreams decoded and converted
    dist = b""
    for f in (1, 3, 5):
        rec = np.asarray(Image.open(item_file(work, "video", "synth", "jpeg", 30, f, "bin"))
                         .convert("RGB"))
        dist += b"".join(p.tobytes() for p in rgb_to_yuv420(rec, "bt709", "limited", "left"))
    (tmp_path / "dist.yuv").write_bytes(dist)
    vm, ps = direct_ffmpeg(tmp_path, raw, tmp_path / "dist.yuv", w, h,
                           "between(n,1,5)*not(mod(n-1,2))")
    ours = vid[(vid.codec == "jpeg") & (vid.quality == 30)].sort_values("frame")
    np.testing.assert_allclose(ours.vmaf, vm, atol=1e-3)
    np.testing.assert_allclose(ours.psnr_y, ps, atol=0.01)

    c = pd.read_csv(work / "results/vmaf_correlation.csv")
    assert {("video", "psnr_y"), ("video", "ms_ssim_db"), ("image", "psnr_rgb"),
            ("image", "ms_ssim_db")} <= set(zip(c.domain, c.x))
    assert (c[(c.domain == "video") & (c.codec == "(pooled)")].n == 9).all()
    for stem in ("vmaf_bpp_video_synth", "vmaf_vs_psnr_video", "vmaf_bpp_image_mine",
                 "vmaf_vs_psnr_image_mine"):
        for ext in ("png", "pdf"):
            assert (work / f"results/figures/{stem}.{ext}").stat().st_size > 1000
    # what the VMAF-rate figures show: every codec of the table, a point per quality
    for stem, domain in (("vmaf_bpp_video_synth", "video"), ("vmaf_bpp_image_mine", "image")):
        side = json.loads((work / f"results/figures/{stem}.json").read_text())
        got = {s["label"].replace(" (random weights)", ""): len(s["x"]) for s in side["series"]}
        assert got == t[t.domain == domain].groupby("codec").quality.nunique().to_dict(), stem
    assert (work / "results/vmaf/video/synth/hp/q2.vmaf.json").exists()
    assert "2 threads" in (work / "logs/vmaf_video/synth/jpeg/q30.log").read_text()
    # reconstructions were temporary: gone once VMAF ran
    assert not list((work / "results").rglob("*.recon.zip"))
    assert not list((work / "results/image").rglob("*.png"))
    assert not list((work / "results/video").rglob("*.png"))
    assert planned_jobs(work) == {}
    # one batch folder deleted: that group's VMAF is redone, which needs all its (temporary)
    # reconstructions again: every frame of that (sequence, codec, quality) is recoded (its
    # one batch job)
    shutil.rmtree(item_file(work, "video", "synth", "jpeg", 80, 3, "json").parent)
    plan = planned_jobs(work)
    assert plan["compress_frame"] == 1 and plan["vmaf_video"] == 1 and plan["vmaf_table"] == 1
    assert "vmaf_image" not in plan
    run_snakemake(work)
    t2 = pd.read_csv(work / "results/vmaf.csv")
    pd.testing.assert_frame_equal(t2, t)  # deterministic: the same numbers again
    # switched off: no VMAF job is planned
    cfg["vmaf"] = {"enabled": False}
    write_config(work, cfg)
    plan = planned_jobs(work)
    assert not [r for r in plan if "vmaf" in r] and "compress_frame" not in plan
