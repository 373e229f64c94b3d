"""Figures checked by content (the data sidecar ``<figure>.json`` written beside every figure):
codec colours shared by published curves and across figures, degenerate points that do not
squash the axes, empty panels that say why, megapixel ticks, sequence codecs in video figures."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from rdflow import plots
from rdflow.plots import limits
from rdflow.stages import aggregate
from rdflow.stages.complexity import figures as profiling
from rdflow.stages.detection import plots as mv
from rdflow.stages import vmaf as perceptual


def side(path) -> dict:
    return json.loads(plots.sidecar_path(path).read_text())


def series(data: dict, panel: int | None = None) -> dict[str, dict]:
    return {s["label"]: s for s in data["series"] if panel is None or s["panel"] == panel}


def rd_rows(curves: dict[str, tuple[float, float]], n: int = 5, **extra) -> list[dict]:
    """Per-(codec, quality) summary rows: bpp 0.2..1.0, PSNR a + b*q."""
    return [{"codec": c, "quality": q, "bpp": 0.2 * q, "psnr_rgb": a + b * q, **extra.get(c, {})}
            for c, (a, b) in curves.items() for q in range(1, n + 1)]


def write_reference(folder, stem: str, name: str, bpp, psnr) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps(
        {"name": name, "results": {"bpp": list(bpp), "psnr-rgb": list(psnr)}}))


# ---------------------------------------------------------------------------- the sidecar
def test_sidecar_schema_one_per_stem(tmp_path):
    s = pd.DataFrame(rd_rows({"jpeg": (25, 3), "webp": (26, 3)}, n=4))
    paths = [tmp_path / "f.png", tmp_path / "f.pdf"]
    plots.rd_curves(s, "psnr_rgb", paths, title="kodak: PSNR")
    assert all(p.stat().st_size > 1000 for p in paths)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json", "f.pdf", "f.png"]
    d = side(paths[0])
    assert {"title", "xlabel", "ylabel", "series", "note"} <= set(d)
    assert (d["title"], d["xlabel"], d["ylabel"], d["note"]) == (
        "kodak: PSNR", "Rate [bpp]", "PSNR-RGB [dB]", None)
    jpeg = series(d)["jpeg"]
    assert {"label", "color", "linestyle", "x", "y"} <= set(jpeg)
    assert jpeg["linestyle"] == "-" and jpeg["x"] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert jpeg["y"] == pytest.approx([28, 31, 34, 37])


# ---------------------------------------------------------------------------- colours
def test_codec_colours_deterministic_from_sorted_names():
    c = plots.codec_colours(["webp", "jpeg", "bmshj", "jpeg"])
    assert c == {"bmshj": plots.PALETTE[0], "jpeg": plots.PALETTE[1], "webp": plots.PALETTE[2]}
    assert plots.codec_colours(["jpeg", "webp", "bmshj"]) == c
    assert len(set(plots.PALETTE)) == len(plots.PALETTE)
    cfg = {"codecs": {"jpeg": {}, "hp": {}}, "video_codecs": {"x264": {}}}
    assert plots.study_codecs(cfg) == ["hp", "jpeg", "x264"]


def test_reference_match():
    study = {"hp": {"kind": "learned", "architecture": "bmshj2018-hyperprior", "metric": "mse"},
             "hp-ms": {"kind": "learned", "architecture": "bmshj2018-hyperprior", "metric": "ms-ssim"},
             "jpeg-q": {"kind": "jpeg"}, "webp": {"kind": "webp"}}
    m = plots.reference_match
    assert m("bmshj2018-hyperprior", "compressai-bmshj2018-hyperprior_mse_cpu", study) == "hp"
    assert m("x", "compressai-bmshj2018-hyperprior_ms-ssim_cuda", study) == "hp-ms"
    assert m("JPEG", "jpeg", study) == "jpeg-q"  # by kind
    assert m("WebP", "webp", study) == "webp"  # by name
    assert m("hp", None, study) == "hp"
    assert m("VTM", "vtm", study) is None
    assert m("BPG 8b 444 x265 ycbcr", "bpg_444_x265_ycbcr", study) is None
    assert m("BPG", "bpg_444_x265_ycbcr", dict(study, bpg444={"kind": "hevc_intra"})) == "bpg444"
    assert m("BPG", "bpg_444_x265_ycbcr", dict(study, bpg444={}, **{"bpg444-x265": {}})) == "bpg444-x265"
    assert m("BPG", "bpg_444_x265_ycbcr", dict(study, bpg={}, bpg444={})) == "bpg"  # the stem's name
    assert m("JPEG 2000", "jpeg2000", {"jpeg": {"kind": "jpeg"}}) is None


def test_published_curve_in_its_codec_colour_dashed(tmp_path):
    kodak = tmp_path / "results" / "image" / "kodak"
    bpp = [0.25, 0.5, 0.75, 1.0]
    write_reference(kodak, "jpeg", "JPEG", bpp, [26, 29, 31, 33])
    write_reference(kodak, "compressai-bmshj2018-hyperprior_mse_cpu", "bmshj2018-hyperprior",
                    bpp, [30, 33, 35, 37])
    write_reference(kodak, "vtm", "VTM", bpp, [31, 34, 36, 38])
    config = {"datasets": {"kodak": {"kind": "kodak"}},
              "codecs": {"jpeg": {"kind": "jpeg"}, "webp": {"kind": "webp"}, "bpg444": {"kind": "hevc_intra"},
                         "hp": {"kind": "learned", "architecture": "bmshj2018-hyperprior", "metric": "mse"}},
              "video_codecs": {"x264": {"kind": "x264"}},
              "reference": {"compressai_results": str(tmp_path / "results"),
                            "curves": ["jpeg", "compressai-bmshj2018-hyperprior_mse_cpu", "vtm"]}}
    s = pd.DataFrame(rd_rows({"jpeg": (25, 3), "webp": (26, 3), "hp": (28, 3)},
                             hp={"kind": "learned", "architecture": "bmshj2018-hyperprior"}))
    s.to_csv(tmp_path / "summary.csv", index=False)
    png = tmp_path / "fig" / "image_rd_kodak_psnr_rgb.png"
    aggregate.plot_image_rd(config, "kodak", "psnr_rgb", tmp_path / "summary.csv", [png])
    d = series(side(png))
    assert d["JPEG (published)"]["color"] == d["jpeg"]["color"]
    assert d["bmshj2018-hyperprior (published)"]["color"] == d["hp"]["color"]
    for k in ("JPEG (published)", "bmshj2018-hyperprior (published)", "VTM (published)"):
        assert d[k]["linestyle"] == "--" and len(d[k]["x"]) == 4
    for k in ("jpeg", "hp", "webp"):
        assert d[k]["linestyle"] == "-"
    # a curve of no study codec: a colour no study codec has (bpg444 and x264 included, though
    # not drawn here), so it is never mistaken for one
    study_colours = set(plots.codec_colours(plots.study_codecs(config)).values())
    assert d["VTM (published)"]["color"] not in study_colours
    # colours are the run's: the same codec has the same colour in a figure of fewer codecs
    png2 = tmp_path / "fig" / "video_rd_seq_psnr_rgb.png"
    plots.rd_curves(s[s.codec != "hp"], "psnr_rgb", [png2], codecs=plots.study_codecs(config))
    d2 = series(side(png2))
    assert d2["jpeg"]["color"] == d["jpeg"]["color"] and d2["webp"]["color"] == d["webp"]["color"]


def test_vmaf_scatter_uses_the_shared_colours(tmp_path):
    t = pd.DataFrame({"domain": "video", "sequence": "s", "codec": ["x264"] * 3 + ["jpeg"] * 3,
                      "quality": [1, 2, 3] * 2, "frame": 0, "bpp": [0.1, 0.2, 0.3] * 2,
                      "vmaf": [40, 60, 80, 35, 55, 75.0], "psnr_y": [30, 33, 36, 29, 32, 35.0],
                      "vmaf_model": "vmaf_v0.6.1"})
    t.to_csv(tmp_path / "vmaf.csv", index=False)
    corr = perceptual.correlation(t)
    corr.to_csv(tmp_path / "corr.csv", index=False)
    codecs = ["hp", "jpeg", "x264"]
    perceptual.plot_vmaf_vs_psnr(tmp_path / "vmaf.csv", tmp_path / "corr.csv", "video",
                                 [tmp_path / "s.png"], codecs=codecs)
    colours = plots.codec_colours(codecs)
    d = {k.split(":")[0]: v for k, v in series(side(tmp_path / "s.png")).items()}
    assert d["x264"]["color"] == colours["x264"] and d["jpeg"]["color"] == colours["jpeg"]
    assert len(d["x264"]["x"]) == 3 and d["pooled"]["color"] == "#000000"


# ---------------------------------------------------------------------------- degenerate points
def test_one_lossless_point_does_not_squash_the_axes(tmp_path):
    rows = rd_rows({"jpeg": (25, 3), "webp": (26, 3), "hp": (28, 3)})  # 0.2-1.0 bpp, 28-43 dB
    rows += [{"codec": "png", "quality": 1, "bpp": 24.0, "psnr_rgb": 99.0},
             {"codec": "png", "quality": 2, "bpp": 24.0, "psnr_rgb": math.inf}]
    rows += [{"codec": "jpeg", "quality": 6, "bpp": float("nan"), "psnr_rgb": 50.0}]
    png = tmp_path / "f.png"
    plots.rd_curves(pd.DataFrame(rows), "psnr_rgb", [png])
    d = side(png)
    p = d["panels"][0]
    lo, hi = p["ylim"]
    assert 25 <= lo < 28 and 43 < hi <= 46  # the other curves' range, a small margin
    assert 0.1 <= p["xlim"][0] < 0.2 and 1.0 < p["xlim"][1] < 1.2
    assert p["hidden"] == [{"label": "png", "x": 24.0, "y": 99.0}]
    s = series(d)
    assert len(s["png"]["x"]) == 1  # the inf point is dropped, the 99 dB one drawn out of view
    assert len(s["jpeg"]["x"]) == 5  # its NaN-rate point dropped


def test_a_curve_that_extends_the_others_is_kept(tmp_path):
    rows = rd_rows({"hp": (28, 3), "mbt": (29, 3)})  # up to 1.0 bpp
    rows += [{"codec": "jpeg", "quality": q, "bpp": b, "psnr_rgb": p}
             for q, (b, p) in enumerate([(0.5, 28), (1.0, 32), (2.0, 37), (3.5, 42)])]
    png = tmp_path / "f.png"
    plots.rd_curves(pd.DataFrame(rows), "psnr_rgb", [png])
    p = side(png)["panels"][0]
    assert p["hidden"] == [] and p["xlim"][1] > 3.5


def test_robust_interval_rule():
    ri = limits._robust_interval
    core = list(np.linspace(25, 45, 20))
    assert ri(core + [99.0]) == (25.0, 45.0)
    assert ri(core + [99.0, 100.0]) == (25.0, 45.0)  # two lossless codecs: both out
    assert ri(core + [60.0]) == (25.0, 60.0)  # within one core width of the end: kept
    assert ri([1.0, 2.0, 50.0]) == (1.0, 50.0)  # too few values to judge
    assert ri([0.0, 0.0, 0.0, 5.0]) == (0.0, 5.0)  # no spread: nothing left out
    assert ri([math.inf, math.nan]) is None
    lo, hi = ri([1e-3, 2e-3, 4e-3, 8e-3, 1e3], log_scale=True)
    assert (lo, hi) == pytest.approx((1e-3, 8e-3))


# ---------------------------------------------------------------------------- empty panels
def test_empty_figure_says_why(tmp_path):
    s = pd.DataFrame(rd_rows({"jpeg": (25, 3)}, n=2))
    png = tmp_path / "vmaf.png"
    plots.rd_curves(s, "vmaf", [png, tmp_path / "vmaf.pdf"])
    assert png.stat().st_size > 1000 and (tmp_path / "vmaf.pdf").exists()
    d = side(png)
    assert d["series"] == [] and d["note"].startswith("no finite vmaf values")
    s["psnr_y"] = [math.inf, math.nan]
    plots.rd_curves(s.assign(codec=["x264", "x265"]), "psnr_y", [png])
    note = side(png)["note"]
    assert note.startswith("no finite psnr_y values:")
    assert "x264: all infinite" in note and "x265: all NaN" in note


def test_empty_machine_vision_panel_says_why(tmp_path):
    rows = [{"source": "video", "sequence": "s", "dataset": None, "codec": c, "quality": q,
             "gt": "pseudo", "bpp": 0.2 * q, "map50": math.nan, "map50_95": math.nan,
             "detections_per_frame": 2.0 * q, "uncompressed_map50": math.nan,
             "uncompressed_map50_95": math.nan, "uncompressed_detections_per_frame": 5.0,
             "backend": "hog", "conf": 0.0} for c in ("jpeg", "x264") for q in (1, 2)]
    pd.DataFrame(rows).to_csv(tmp_path / "mv.csv", index=False)
    mp, pp = tmp_path / "map.png", tmp_path / "proxy.png"
    mv.plot_unit(tmp_path / "mv.csv", "video", "s", [mp], [pp])
    d = side(mp)
    assert mp.stat().st_size > 1000 and d["series"] == []
    assert [p["note"] for p in d["panels"]] == ["no finite map50 values: jpeg: all NaN; x264: all NaN",
                                                "no finite map50_95 values: jpeg: all NaN; x264: all NaN"]
    proxy = series(side(pp))
    assert len(proxy["x264"]["x"]) == 2 and proxy["uncompressed"]["kind"] == "hline"


# ---------------------------------------------------------------------------- megapixel ticks
def complexity_rows():
    rows = []
    for codec, dev, k in (("jpeg", "cpu", 1.0), ("hp", "cpu", 3.0), ("hp", "cuda:0", 0.5)):
        for w, h in ((64, 48), (512, 512), (1920, 1080)):
            for q in (1, 2, 3):
                t = k * 1e-7 * w * h
                rows.append(dict(codec=codec, device=dev, width=w, height=h, quality=q, status="ok",
                                 bpp=0.3 * q, enc_s_median=t, enc_s_p25=0.9 * t, enc_s_p75=1.1 * t,
                                 dec_s_median=t, dec_s_p25=0.9 * t, dec_s_p75=1.2 * t,
                                 max_rss_mb=200 + w * h / 1e4,
                                 max_vram_alloc_mb=40.0 if dev != "cpu" else math.nan, error=""))
    return rows


def test_resolution_ticks_in_megapixels(tmp_path):
    profiling.plot_complexity(complexity_rows(), tmp_path, suffixes=(".png", ".pdf"))
    d = json.loads((tmp_path / "complexity_resolution.json").read_text())
    assert len(d["panels"]) == 4  # time x 2, RSS, VRAM (a GPU was measured)
    for p in d["panels"]:
        assert p["xticklabels"] == ["64x48\n0.0031 MP", "512x512\n0.26 MP", "1920x1080\n2.07 MP"]
    s = series(d, 0)
    assert sorted(s) == ["hp (cpu) q2", "hp (cuda:0) q2", "jpeg (cpu) q2"]
    assert s["hp (cpu) q2"]["color"] == s["hp (cuda:0) q2"]["color"]  # the codec's colour
    assert (s["hp (cpu) q2"]["linestyle"], s["hp (cuda:0) q2"]["linestyle"]) == ("-", "--")
    assert s["jpeg (cpu) q2"]["color"] == plots.codec_colours(["hp", "jpeg"])["jpeg"]
    assert all(len(v["x"]) == 3 for v in s.values())
    bpp = json.loads((tmp_path / "complexity_bpp_time.json").read_text())
    assert {k: len(v["x"]) for k, v in series(bpp, 0).items()} == {
        "hp (cpu)": 3, "hp (cuda:0)": 3, "jpeg (cpu)": 3}
    assert profiling.megapixel_label(512, 512) == "512x512\n0.26 MP"


# ---------------------------------------------------------------------------- sequence codecs
def video_frame_rows() -> list[dict]:
    """Per-frame rows of one sequence as aggregate_video gathers them: the per-frame image codec
    jpeg and the sequence codecs x264/x265 (no weights, kind x264/x265, coding sequence)."""
    rows = []
    for codec, kind, qs in (("jpeg", "jpeg", (30, 60)), ("avc", "x264", (22, 32, 42)), ("hevc", "x265", (27, 37))):
        for i, q in enumerate(qs):
            for f in range(3):
                r = {"sequence": "s", "codec": codec, "quality": q, "frame": f, "kind": kind,
                     "bpp": 0.1 * (len(qs) - i) + 0.01 * f, "psnr_rgb": 30 + 3 * (len(qs) - i) + f,
                     "psnr_y": 31 + 3 * (len(qs) - i) + f, "ms_ssim": 0.9 + 0.02 * (len(qs) - i)}
                if kind == "jpeg":
                    r["weights"] = None
                else:
                    r["coding"] = "sequence"
                rows.append(r)
    return rows


@pytest.mark.parametrize("metric", ["psnr_y", "psnr_rgb", "ms_ssim_db"])
def test_sequence_codecs_in_every_video_rd_figure(tmp_path, metric):
    summary = aggregate.summarise(pd.DataFrame(video_frame_rows()), ("sequence", "codec", "quality"))
    png = tmp_path / f"video_rd_s_{metric}.png"
    plots.rd_curves(summary, metric, [png], title="s")
    assert {k: len(v["x"]) for k, v in series(side(png)).items()} == {"avc": 3, "hevc": 2, "jpeg": 2}


def test_sequence_codecs_in_the_vmaf_bpp_figure(tmp_path):
    t = pd.DataFrame(video_frame_rows()).assign(domain="video", dataset=None, vmaf_model="vmaf_v0.6.1")
    t["vmaf"] = t["psnr_y"] * 2
    t.to_csv(tmp_path / "vmaf.csv", index=False)
    png = tmp_path / "vmaf_bpp_video_s.png"
    perceptual.plot_vmaf_bpp(tmp_path / "vmaf.csv", "video", "s", [png])
    assert {k: len(v["x"]) for k, v in series(side(png)).items()} == {"avc": 3, "hevc": 2, "jpeg": 2}
