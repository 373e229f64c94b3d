"""Analysis stage units: preprocessing variants (ablation), the study's BD-rate table, the
environment record. End-to-end runs of the same are in test_report.py."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from rdflow import RdflowError
from rdflow import paths as P
from rdflow.config import codec_applies, dataset_images
from rdflow.stages import ablation as A
from rdflow.stages import bd_rate as BD
from rdflow.stages import report as RP
from rdflow.study import validate


def _image(h=48, w=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


# --- preprocessing steps ---------------------------------------------------------------------

def test_resize_is_pillow_lanczos_to_width_height():
    rgb = _image(48, 40)
    out = A.apply_step(rgb, {"resize": [24, 30]})
    assert out.shape == (30, 24, 3) and out.dtype == np.uint8
    ref = np.asarray(Image.fromarray(rgb).resize((24, 30), Image.Resampling.LANCZOS))
    assert np.array_equal(out, ref)
    flat = np.full((50, 70, 3), 77, np.uint8)
    assert np.all(A.apply_step(flat, {"resize": [192, 192]}) == 77)


@pytest.mark.parametrize("h, w, f", [(48, 40, 2), (49, 43, 2), (50, 50, 3)])
def test_downscale_is_the_block_mean_after_cropping(h, w, f):
    rgb = _image(h, w, seed=h)
    out = A.apply_step(rgb, {"downscale": f})
    hh, ww = h // f, w // f
    assert out.shape == (hh, ww, 3)
    blocks = rgb[:hh * f, :ww * f].astype(float).reshape(hh, f, ww, f, 3).mean(axis=(1, 3))
    assert np.abs(out.astype(float) - blocks).max() <= 0.5 + 1e-9


def test_center_crop_takes_the_centred_window():
    rgb = _image(48, 40)
    out = A.apply_step(rgb, {"center_crop": [20, 10]})
    assert np.array_equal(out, rgb[19:29, 10:30])
    with pytest.raises(RdflowError, match=r"center_crop 41x10 is larger than the 40x48 image"):
        A.apply_step(rgb, {"center_crop": [41, 10]})


@pytest.mark.parametrize("step, match", [
    ({"resize": [64, 64], "downscale": 2}, "exactly one preprocessing step"),
    ({}, "exactly one preprocessing step"),
    ({"rotate": 90}, "unknown preprocessing step 'rotate'"),
    ({"resize": [64]}, r"here\.resize: expected \[width, height\]"),
    ({"resize": [64, 0]}, r"here\.resize: expected \[width, height\]"),
    ({"center_crop": "64x64"}, r"here\.center_crop: expected \[width, height\]"),
    ({"downscale": 1}, r"here\.downscale: expected an integer factor >= 2"),
    ({"downscale": 1.5}, r"here\.downscale: expected an integer factor >= 2"),
])
def test_bad_steps_name_the_key(step, match):
    with pytest.raises(RdflowError, match=match):
        A.check_step(step, "here")


def test_preprocess_image_writes_png_from_grayscale(tmp_path):
    src = tmp_path / "g.png"
    Image.fromarray(_image(40, 30)[..., 0]).save(src)
    dst = tmp_path / "out" / "g.png"
    assert A.preprocess_image(src, dst, {"resize": [16, 16]}) == (16, 16)
    with Image.open(dst) as im:
        assert im.mode == "RGB" and im.size == (16, 16)
    assert not list(dst.parent.glob(".*part"))
    with pytest.raises(RdflowError, match="does not match|SHA-256|sha256"):
        A.preprocess_image(src, tmp_path / "x.png", {"resize": [8, 8]}, sha256="0" * 64)
    assert not (tmp_path / "x.png").exists()


def test_preprocess_images_does_a_batch_and_checks_each_digest(tmp_path):
    from rdflow.download import sha256_file

    srcs = []
    for k, (w, h) in enumerate([(40, 30), (24, 36)]):
        srcs.append(tmp_path / f"s{k}.png")
        Image.fromarray(_image(h=h, w=w)).save(srcs[-1])
    dsts = [tmp_path / "v" / "s0.png", tmp_path / "v" / "s1.png"]
    digests = [sha256_file(s) for s in srcs]
    assert A.preprocess_images(srcs, dsts, {"downscale": 2}, sha256=digests) == [(20, 15), (12, 18)]
    for d, size in zip(dsts, [(20, 15), (12, 18)]):
        with Image.open(d) as im:
            assert im.size == size
    with pytest.raises(RdflowError, match="s1.png"):
        A.preprocess_images(srcs, [tmp_path / "w0.png", tmp_path / "w1.png"], {"downscale": 2},
                            sha256=[digests[0], "0" * 64])
    assert not (tmp_path / "w1.png").exists()
    with pytest.raises(RdflowError, match="do not pair up"):
        A.preprocess_images(srcs, dsts[:1], {"downscale": 2})


# --- variant datasets in the config ----------------------------------------------------------

@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(2):
        Image.fromarray(_image(40, 40, seed=i)).save(d / f"im{i}.png")
    return d


def _cfg(folder, **extra):
    c = {"device": "cpu",
         "datasets": {"loc": {"kind": "local", "path": str(folder)}, "kodak": {"kind": "kodak"}},
         "codecs": {"jpeg": {"kind": "jpeg", "qualities": [50]},
                    "webp": {"kind": "webp", "qualities": [50]}}}
    c.update(copy.deepcopy(extra))
    return c


def test_ablation_section_makes_variant_datasets(folder):
    c = validate(_cfg(folder, ablation={"variants": {"r64": {"resize": [64, 64]},
                                                      "half": {"downscale": 2}},
                                         "datasets": ["loc"]}))
    assert c["datasets"]["loc-r64"] == {"kind": "variant", "of": "loc",
                                        "preprocess": {"resize": [64, 64]}}
    assert c["datasets"]["loc-half"]["preprocess"] == {"downscale": 2}
    assert "kodak-r64" not in c["datasets"]
    assert dataset_images(c, "loc-r64") == {"im0": None, "im1": None}
    assert A.variants_of(c, "loc") == ["loc-half", "loc-r64"]
    assert A.variant_label(c, "loc-r64") == "r64"
    targets = A.targets(c)
    assert "results/ablation_loc.csv" in targets
    assert "results/figures/ablation_loc_ms_ssim_db.pdf" in targets
    assert not any("kodak" in t for t in targets)
    # validating the expanded config again changes nothing (idempotent)
    again = validate(copy.deepcopy(c))["datasets"]
    assert set(again) == set(c["datasets"])
    assert again["loc-r64"]["preprocess"] == {"resize": [64, 64]}


def test_ablation_defaults_to_every_base_dataset(folder):
    c = validate(_cfg(folder, ablation={"variants": {"c32": {"center_crop": [32, 32]}}}))
    assert {"loc-c32", "kodak-c32"} <= set(c["datasets"])
    assert len(dataset_images(c, "kodak-c32")) == 24


def test_variant_written_as_a_dataset(folder):
    c = _cfg(folder)
    c["datasets"]["small"] = {"kind": "variant", "of": "loc", "preprocess": {"downscale": 2}}
    c = validate(c)
    assert A.variants_of(c, "loc") == ["small"] and A.variant_label(c, "small") == "small"


def test_codec_restricted_to_a_dataset_runs_on_its_variants(folder):
    c = _cfg(folder, ablation={"variants": {"r64": {"resize": [64, 64]}}, "datasets": ["loc"]})
    c["codecs"]["jpeg"]["datasets"] = ["loc"]
    c = validate(c)
    assert codec_applies(c, "jpeg", "loc-r64") and not codec_applies(c, "jpeg", "kodak")


@pytest.mark.parametrize("change, match", [
    (lambda c: c.update(ablation={"variants": {"r": {"resize": [64, 64]}}, "datasets": ["nope"]}),
     "ablation.datasets names 'nope', which is not in datasets"),
    (lambda c: c["datasets"].update(v={"kind": "variant", "preprocess": {"downscale": 2}}),
     r"datasets\.v\.of: a variant dataset needs of"),
    (lambda c: c["datasets"].update(v={"kind": "variant", "of": "gone", "preprocess": {"downscale": 2}}),
     r"datasets\.v\.of names 'gone'"),
    (lambda c: c["datasets"].update(v={"kind": "variant", "of": "loc", "preprocess": {"downscale": 2}},
                                    w={"kind": "variant", "of": "v", "preprocess": {"downscale": 2}}),
     r"datasets\.w\.of: 'v' is a variant dataset"),
    (lambda c: c["datasets"].update(v={"kind": "variant", "of": "loc", "images": ["im0"],
                                       "preprocess": {"downscale": 2}}),
     r"datasets\.v\.images: a variant codes every image"),
    (lambda c: (c.update(ablation={"variants": {"r": {"resize": [64, 64]}}, "datasets": ["loc"]}),
                c["datasets"].update({"loc-r": {"kind": "local", "path": "x"}})),
     r"makes dataset 'loc-r', but datasets\.loc-r already exists"),
    (lambda c: c.update(ablation={"variants": {"r": {"resize": [64, 64]}}, "datasets": ["loc-x"]}) or
     c["datasets"].update({"loc-x": {"kind": "variant", "of": "loc", "preprocess": {"downscale": 2}}}),
     "ablation.datasets: 'loc-x' is a variant dataset"),
])
def test_bad_variant_config(folder, change, match):
    c = _cfg(folder)
    change(c)
    with pytest.raises(RdflowError, match=match):
        validate(c)


@pytest.mark.parametrize("variant", [{"resize": [64]}, {"downscale": 1}, {"blur": 2},
                                     {"resize": [64, 64], "downscale": 2}])
def test_schema_refuses_bad_variants(folder, variant):
    with pytest.raises(RdflowError, match="ablation"):
        validate(_cfg(folder, ablation={"variants": {"v": variant}}))


def test_ablation_table_and_figure(folder, tmp_path):
    c = validate(_cfg(folder, ablation={"variants": {"r64": {"resize": [64, 64]}},
                                         "datasets": ["loc"]}))
    paths = {}
    for name, shift in (("loc", 0.0), ("loc-r64", -1.5)):
        rows = [{"dataset": name, "codec": codec, "quality": q, "bpp": 0.1 * q,
                 "psnr_rgb": 25 + 3 * q + shift + (codec == "webp"), "ms_ssim_db": 10 + q}
                for codec in ("jpeg", "webp") for q in (1, 2, 3)]
        paths[name] = tmp_path / f"{name}.csv"
        pd.DataFrame(rows).to_csv(paths[name], index=False)
    A.write_ablation_table(c, "loc", paths, tmp_path / "ab.csv")
    t = pd.read_csv(tmp_path / "ab.csv")
    assert list(t.columns[:3]) == ["variant", "preprocess", "dataset"]
    assert set(zip(t.variant, t.preprocess)) == {("baseline", "none"), ("r64", "resize 64x64")}
    assert len(t) == 12
    out = [tmp_path / "fig.png", tmp_path / "fig.pdf"]
    A.plot_ablation(c, "loc", "psnr_rgb", tmp_path / "ab.csv", out)
    assert all(p.stat().st_size > 5000 for p in out)
    import json

    side = json.loads((tmp_path / "fig.json").read_text())
    assert side["note"] is None and [p["title"] for p in side["panels"]] == ["jpeg", "webp"]
    for panel in side["panels"]:  # baseline and the variant, 3 qualities each
        assert [(s["label"], len(s["x"])) for s in panel["series"]] == [
            ("baseline", 3), ("r64 (resize 64x64)", 3)]
    # a metric the table lacks: the figure is written and says why
    A.plot_ablation(c, "loc", "vmaf", tmp_path / "ab.csv", out)
    side = json.loads((tmp_path / "fig.json").read_text())
    assert side["series"] == [] and "no finite vmaf values" in side["note"]
    assert "metrics config key" in side["note"] and out[0].stat().st_size > 1000


# --- BD-rate: config -------------------------------------------------------------------------

def test_bd_rate_config(folder):
    c = validate(_cfg(folder))
    assert not BD.enabled(c) and RP.targets(c) + BD.targets(c) == [P.ENV_CSV]
    assert c["bd_rate"] == {"enabled": None, "anchor": None, "video_anchor": None, "method": "pchip", "min_overlap": 0,
                            "metrics": ["psnr_rgb", "ms_ssim_db", "vmaf", "map50_95"]}
    c = validate(_cfg(folder, bd_rate={"anchor": "webp"}))
    assert BD.enabled(c) and BD.targets(c) == ["results/bd_rate.csv"]
    assert not BD.enabled(validate(_cfg(folder, bd_rate={"anchor": "webp", "enabled": False})))


def test_anchor_not_in_study_is_a_parse_time_error(folder):
    with pytest.raises(RdflowError, match=r"bd_rate\.anchor is 'bpg', which is not a codec of this "
                                          r"study; codecs: jpeg, webp"):
        validate(_cfg(folder, bd_rate={"anchor": "bpg"}))
    with pytest.raises(RdflowError, match=r"bd_rate\.anchor: BD-rate is enabled but no anchor"):
        validate(_cfg(folder, bd_rate={"enabled": True}))
    with pytest.raises(RdflowError, match="bd_rate"):
        validate(_cfg(folder, bd_rate={"anchor": "webp", "method": "spline"}))
    validate(_cfg(folder, bd_rate={"anchor": "webp", "method": "cubic"}))  # VCEG-M33's cubic fit
    with pytest.raises(RdflowError, match="bd_rate"):
        validate(_cfg(folder, bd_rate={"anchor": "webp", "metrics": ["ssim"]}))


def test_bd_rate_inputs_follow_the_enabled_stages(folder, monkeypatch):
    import rdflow.study

    c = validate(_cfg(folder, bd_rate={"anchor": "webp"}, vmaf={"enabled": False}))
    made = {"results/machine_vision.csv"}
    monkeypatch.setattr(rdflow.study, "all_targets", lambda config: sorted(made))
    inp = BD.inputs(c, rdflow.study.all_targets(c))
    assert inp["image"] == ["results/image_rd_kodak_summary.csv", "results/image_rd_loc_summary.csv"]
    assert inp["video"] == [] and inp["vmaf"] == [] and inp["detection"] == []  # both disabled
    c["detection"] = {"enabled": True}
    c["vmaf"] = {"enabled": True}
    inp = BD.inputs(c, rdflow.study.all_targets(c))
    # enabled, but the VMAF stage has nothing to make: no vmaf.csv is asked for
    assert inp["detection"] == ["results/machine_vision.csv"] and inp["vmaf"] == []
    made.add("results/vmaf.csv")
    assert BD.inputs(c, rdflow.study.all_targets(c))["vmaf"] == ["results/vmaf.csv"]


# --- BD-rate: the study table ----------------------------------------------------------------

RATES = [0.2, 0.4, 0.8, 1.6, 3.2]


def _psnr(r, offset=30.0):
    return offset + 6.0 * np.log10(np.asarray(r) / 0.2)


def _summary(path, group_col, group, points):
    """points: codec -> (rates, psnr, quality ladder)."""
    rows = []
    for codec, (rates, psnr, qs) in points.items():
        for r, p, q in zip(rates, psnr, qs):
            rows.append({group_col: group, "codec": codec, "quality": q, "bpp": r, "psnr_rgb": p,
                         "ms_ssim": 1 - 10 ** (-p / 20), "ms_ssim_db": p / 2, "n_items": 2})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture
def study(tmp_path):
    r = np.asarray(RATES)
    qs = [10, 30, 50, 70, 90]
    img = _summary(tmp_path / "img.csv", "dataset", "loc", {
        "webp": (r, _psnr(r), qs),
        "jpeg": (r / 0.9, _psnr(r), qs),  # 11.1 % more bits at equal PSNR
        "few": (r[:3] * 0.8, _psnr(r[:3]), qs[:3]),
    })
    vid = _summary(tmp_path / "vid.csv", "sequence", "clip", {
        "webp": (r, _psnr(r), qs), "jpeg": (r * 0.8, _psnr(r), qs)})
    only = _summary(tmp_path / "vid2.csv", "sequence", "clip2", {"jpeg": (r, _psnr(r), qs)})
    return {"image": [img], "video": [vid, only], "tmp": tmp_path, "rates": r, "qs": qs}


def _config(**bd):
    return {"codecs": {"webp": {}, "jpeg": {}, "few": {}},
            "bd_rate": {"anchor": "webp", "metrics": ["psnr_rgb", "ms_ssim_db", "vmaf", "map50_95"],
                        "method": "pchip", **bd},
            "video": {"codecs": ["jpeg"]}}


def test_bd_study_table_values_and_reasons(study):
    t = BD.bd_rate_study(_config(), study["image"], study["video"])
    assert list(t.columns[:3]) == ["study", "dataset", "sequence"]
    img = t[t.study == "image"].set_index(["codec", "metric"])
    assert img.loc[("jpeg", "psnr_rgb"), "bd_rate_pct"] == pytest.approx(100 / 0.9 - 100, abs=1e-6)
    assert img.loc[("jpeg", "psnr_rgb"), "overlap_low"] == pytest.approx(30.0)
    assert img.loc[("jpeg", "psnr_rgb"), "bd_quality"] < 0
    assert img.loc[("jpeg", "ms_ssim_db"), "bd_rate_pct"] == pytest.approx(100 / 0.9 - 100, abs=1e-6)
    few = img.loc[("few", "psnr_rgb")]
    assert math.isnan(few.bd_rate_pct) and math.isnan(few.bd_quality)
    assert "fewer than 4 rate points: codec 'few' has 3" in few.reason
    # vmaf and map50_95 were not measured: no rows for them
    assert set(t.metric) == {"psnr_rgb", "ms_ssim_db"}
    vid = t[t.study == "video"]
    clip = vid[vid.sequence == "clip"].set_index("metric")
    assert clip.loc["psnr_rgb", "bd_rate_pct"] == pytest.approx(-20.0, abs=1e-6)
    assert clip.loc["psnr_rgb", "dataset"] != clip.loc["psnr_rgb", "dataset"]  # NaN
    missing = vid[vid.sequence == "clip2"]
    assert len(missing) == 2 and missing.bd_rate_pct.isna().all()
    assert missing.reason.str.contains(r"anchor 'webp' was not run on sequence 'clip2' \(it is not "
                                       r"in video.codecs\)").all()


def test_vmaf_and_map_are_joined_on_operating_points(study):
    r, qs, tmp = study["rates"], study["qs"], study["tmp"]
    vrows = []
    for codec, scale in (("webp", 1.0), ("jpeg", 1 / 0.9)):
        for q, v in zip(qs, np.linspace(40, 90, 5)):
            for image, jitter in (("a", -2.0), ("b", 2.0)):  # per-item rows are averaged
                vrows.append({"dataset": "loc", "codec": codec, "quality": q, "image": image,
                              "vmaf": v + jitter, "bpp": 99.0})
    pd.DataFrame(vrows).to_csv(tmp / "vmaf.csv", index=False)
    mrows = [{"dataset": "loc", "codec": codec, "quality": q, "map50_95": m, "map50": m + 0.1}
             for codec in ("webp", "jpeg") for q, m in zip(qs, [0.2, 0.3, 0.29, 0.4, 0.45])]
    pd.DataFrame(mrows).to_csv(tmp / "mv.csv", index=False)
    t = BD.bd_rate_study(_config(), study["image"], [], tmp / "vmaf.csv", tmp / "mv.csv")
    t = t.set_index(["codec", "metric"])
    # rates come from the RD summary (not the tables' bpp = 99), so jpeg is +11.1 % everywhere
    assert t.loc[("jpeg", "vmaf"), "bd_rate_pct"] == pytest.approx(100 / 0.9 - 100, abs=1e-6)
    assert t.loc[("jpeg", "vmaf"), "overlap_low"] == pytest.approx(40.0)
    row = t.loc[("jpeg", "map50_95")]
    assert row.monotone_fit and row.n_points == 4  # the dip at quality 50 is dominated
    assert row.bd_rate_pct == pytest.approx(100 / 0.9 - 100, abs=1e-6)
    assert "map50" not in t.index.get_level_values("metric")  # not in bd_rate.metrics
    assert list(dict.fromkeys(t.index.get_level_values("metric"))) == [
        "psnr_rgb", "ms_ssim_db", "vmaf", "map50_95"]


def test_map_per_ground_truth(study):
    """machine_vision.csv has one row per (group, codec, quality, gt): one BD row per gt."""
    tmp, qs = study["tmp"], study["qs"]
    rows = [{"source": "image", "dataset": "loc", "sequence": None, "codec": codec, "quality": q,
             "gt": gt, "bpp": 1.0, "map50_95": m + (0.1 if gt == "labels" else 0.0),
             "map50": m + 0.2}
            for codec in ("webp", "jpeg") for gt in ("pseudo", "labels")
            for q, m in zip(qs, [0.2, 0.3, 0.35, 0.4, 0.45])]
    pd.DataFrame(rows).to_csv(tmp / "mv.csv", index=False)
    cfg = _config(metrics=["psnr_rgb", "map50_95", "map50"])
    t = BD.bd_rate_study(cfg, study["image"], [], None, tmp / "mv.csv")
    img = t[t.dataset == "loc"]
    assert list(dict.fromkeys(img.metric)) == ["psnr_rgb", "map50_95@pseudo", "map50_95@labels",
                                                "map50@pseudo", "map50@labels"]
    row = img.set_index(["codec", "metric"]).loc[("jpeg", "map50_95@labels")]
    assert row.monotone_fit and row.bd_rate_pct == pytest.approx(100 / 0.9 - 100, abs=1e-6)


def test_per_image_map_values_are_refused(study):
    tmp = study["tmp"]
    pd.DataFrame([{"dataset": "loc", "codec": "webp", "quality": 10, "image": i, "map50_95": 0.3}
                  for i in "ab"]).to_csv(tmp / "mv.csv", index=False)
    with pytest.raises(RdflowError, match=r"mv.csv: several map50_95 values for dataset 'loc', "
                                          r"codec 'webp', quality 10"):
        BD.bd_rate_study(_config(), study["image"], [], None, tmp / "mv.csv")
    pd.DataFrame([{"dataset": "loc", "map50_95": 0.3}]).to_csv(tmp / "bad.csv", index=False)
    with pytest.raises(RdflowError, match="bad.csv has no codec or quality column"):
        BD.bd_rate_study(_config(), study["image"], [], None, tmp / "bad.csv")


def test_detection_only_dataset_uses_the_tables_own_bpp(study):
    tmp, r, qs = study["tmp"], study["rates"], study["qs"]
    rows = [{"dataset": "coco", "codec": codec, "quality": q, "bpp": b * s, "map50_95": m}
            for codec, s in (("webp", 1.0), ("jpeg", 0.5))
            for q, b, m in zip(qs, r, [0.1, 0.2, 0.3, 0.4, 0.5])]
    pd.DataFrame(rows).to_csv(tmp / "mv.csv", index=False)
    t = BD.bd_rate_study(_config(), study["image"], [], None, tmp / "mv.csv")
    coco = t[t.dataset == "coco"].set_index("codec")
    assert coco.loc["jpeg", "bd_rate_pct"] == pytest.approx(-50.0, abs=1e-6)


def test_write_bd_rate_csv_and_html(study):
    tmp = study["tmp"]
    t = BD.write_bd_rate(_config(), study["image"], study["video"], tmp / "bd.csv",
                         html=tmp / "bd.html")
    back = pd.read_csv(tmp / "bd.csv")
    assert len(back) == len(t) and "reason" in back
    html = (tmp / "bd.html").read_text()
    assert "BD-rate against webp" in html and "image dataset loc" in html
    assert "video sequence clip2" in html and "+11.11" in html
    assert "few, psnr_rgb: fewer than 4 rate points" in html
    empty = BD.write_bd_rate(_config(), [], [], tmp / "e.csv", html=tmp / "e.html")
    assert empty.empty and list(pd.read_csv(tmp / "e.csv").columns) == BD.LEAD + list(
        __import__("rdflow.metrics.bdrate", fromlist=["x"]).TABLE_COLUMNS)


# --- environment -----------------------------------------------------------------------------

def test_environment_record(tmp_path):
    info = RP.write_environment({"device": "cpu"}, tmp_path / "env.csv")
    for key in ("rdflow", "torch", "compressai", "snakemake", "numpy", "imageio-ffmpeg", "ffmpeg",
                "device", "cpu", "python"):
        assert info[key], key
    assert info["numpy"] == np.__version__ and info["device"] == "cpu"
    assert info["ffmpeg"].startswith("ffmpeg version")
    assert RP.read_environment(tmp_path / "env.csv") == info
    assert RP.read_environment(tmp_path / "none.csv") == {}


def test_study_table_on_published_kodak_curves(shared, tmp_path):
    """The study table over CompressAI's published Kodak results gives the published BD-rates
    against BPG 4:4:4 (cheng2020-anchor −18.8 %, bmshj2018-hyperprior +3.7 %, PSNR-RGB)."""
    from rdflow.reference import load_reference

    kodak = shared("reference", "compressai", "results", "image", "kodak")
    names = ["bpg_444_x265_ycbcr", "compressai-cheng2020-anchor_mse_cpu",
             "compressai-bmshj2018-hyperprior_mse_cpu"]
    ref = load_reference(kodak, names)
    ref["codec"] = ref["reference"]
    ref.insert(0, "dataset", "kodak")
    path = tmp_path / "image_rd_kodak_summary.csv"
    ref.to_csv(path, index=False)
    cfg = {"codecs": dict.fromkeys(names, {}),
           "bd_rate": {"anchor": "bpg_444_x265_ycbcr", "metrics": ["psnr_rgb"], "method": "pchip"}}
    t = BD.bd_rate_study(cfg, [path], []).set_index("codec")
    assert t.loc["compressai-cheng2020-anchor_mse_cpu", "bd_rate_pct"] == pytest.approx(-18.8, abs=0.3)
    assert t.loc["compressai-bmshj2018-hyperprior_mse_cpu", "bd_rate_pct"] == pytest.approx(3.7, abs=0.3)
    assert t.reason.isna().all()


def test_video_anchor_is_checked():
    from rdflow import RdflowError
    from rdflow.stages.bd_rate import check

    cfg = {"codecs": {"jpeg": {"kind": "jpeg"}, "webp": {"kind": "webp"}},
           "video_codecs": {"x265": {"kind": "x265"}},
           "bd_rate": {"anchor": "webp", "video_anchor": "x265"}}
    check(cfg)
    cfg["bd_rate"]["video_anchor"] = "vtm"
    with pytest.raises(RdflowError, match="bd_rate.video_anchor is 'vtm'"):
        check(cfg)


# --- a metric registered by a test module ------------------------------------------------------

@pytest.fixture
def ssim_test():
    """A coding-job metric registered here, and removed again afterwards."""
    from rdflow import metrics as M

    m = M.register(M.Metric("ssim_test", "SSIM-test", fn=lambda ref, rec: 1.0 - float(
        np.abs(ref.astype(float) - rec.astype(float)).mean()) / 255.0))
    yield m
    M.METRICS.pop("ssim_test")


def test_registered_metric_in_summary_bd_rate_and_figure(ssim_test, tmp_path):
    from rdflow import plots
    from rdflow.stages import aggregate as AG

    rows = [{"dataset": "loc", "codec": codec, "quality": q, "image": im, "bpp": b * s,
             "psnr_rgb": 30.0 + q, "ssim_test": 0.5 + 0.1 * i + 0.01 * j}
            for codec, s in (("webp", 1.0), ("jpeg", 1 / 0.9))
            for i, (q, b) in enumerate(zip([10, 30, 50, 70], RATES)) for j, im in enumerate("ab")]
    summary = AG.summarise(pd.DataFrame(rows))
    assert "ssim_test" in summary.columns
    assert summary.set_index(["codec", "quality"]).loc[("webp", 10), "ssim_test"] == pytest.approx(0.505)
    cfg = {"metrics": ["psnr_rgb", "ssim_test"], "datasets": {"loc": {}}}
    assert AG.figure_metrics(cfg) == ["psnr_rgb", "ssim_test"]
    assert "results/figures/image_rd_loc_ssim_test.png" in AG.targets(cfg)
    AG.check(cfg)
    path = tmp_path / "s.csv"
    summary.to_csv(path, index=False)
    by_default = BD.bd_rate_study({"codecs": {"webp": {}, "jpeg": {}}, "bd_rate": {"anchor": "webp"}},
                                  [path], [])
    named = {"codecs": {"webp": {}, "jpeg": {}}, "bd_rate": {"anchor": "webp", "metrics": ["ssim_test"]}}
    BD.check(named)
    for t in (by_default, BD.bd_rate_study(named, [path], [])):
        row = t.set_index(["codec", "metric"]).loc[("jpeg", "ssim_test")]
        assert row.bd_rate_pct == pytest.approx(100 / 0.9 - 100, abs=1e-6)
    png = tmp_path / "f.png"
    plots.rd_curves(summary, "ssim_test", [png])
    side = __import__("json").loads(plots.sidecar_path(png).read_text())
    assert side["ylabel"] == "SSIM-test" and {s["label"] for s in side["series"]} == {"jpeg", "webp"}
