"""The complexity stage (rdflow.stages.complexity, workflow/rules/complexity.smk): config,
targets, the per-codec job, the gathered table and figures, results/benchmarks.csv, and end to
end through snakemake."""

from __future__ import annotations

import copy
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import REPO
from rdflow import RdflowError
from rdflow.stages import complexity as cplx
from rdflow.codecs.pillow import Jpeg
from test_profiling import COMPLEXITY_COLUMNS

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
FACT = {"kind": "learned", "architecture": "bmshj2018-factorized", "weights": "random", "qualities": [1]}


def base_config(tmp_path, **complexity) -> dict:
    imgs = tmp_path / "imgs"
    imgs.mkdir(exist_ok=True)
    yy, xx = np.mgrid[0:80, 0:96]
    rgb = np.dstack([(128 + 90 * np.sin(xx / (5.0 + k)) * np.cos(yy / 7.0)).astype(np.uint8) for k in range(3)])
    Image.fromarray(rgb).save(imgs / "b.png")
    Image.fromarray(rgb[::-1]).save(imgs / "a.png")
    return {"device": "cpu",
            "datasets": {"mine": {"kind": "local", "path": str(imgs)}},
            "codecs": {"jpeg": {"kind": "jpeg", "qualities": [80, 30, 50]}, "fact": dict(FACT)},
            "complexity": dict(complexity)}


def validated(cfg: dict) -> dict:
    import rdflow.study

    return rdflow.study.validate(copy.deepcopy(cfg), SCHEMA)


# -- config, targets ----------------------------------------------------------------------------
def test_import_is_cheap():
    code = ("import sys, rdflow.stages.complexity, rdflow.study; "
            "print(sorted(m for m in ('torch', 'pandas', 'matplotlib', 'compressai') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_defaults_and_targets(tmp_path):
    cfg = validated(base_config(tmp_path))
    st = cfg["complexity"]
    # the documented defaults, written out here (the schema fills them in)
    assert st == {"enabled": False, "codecs": None, "qualities": "ends",
                  "resolutions": ["256x256", "512x512", "768x512", "1920x1080"], "devices": None,
                  "repeats": 3, "warmup": 1, "split_repeats": 1, "macs": True, "threads": 1,
                  "isolate": True, "image": None, "memory_limit_mb": None}
    assert cplx.DEFAULTS == st  # and the module's own table agrees with the schema
    # off by default: only the benchmark table (it gathers whatever the other stages benchmarked)
    assert cplx.targets(cfg) == ["results/benchmarks.csv"]
    from rdflow.study import all_targets

    assert "results/benchmarks.csv" in all_targets(cfg)
    assert "results/benchmarks.csv" not in cplx.benchmark_inputs(all_targets(cfg))
    assert "results/image_rd_mine.csv" in cplx.benchmark_inputs(all_targets(cfg))

    cfg = validated(base_config(tmp_path, enabled=True))
    assert cplx.targets(cfg) == [
        "results/benchmarks.csv", "results/complexity.csv",
        "results/figures/complexity_bpp_time.png", "results/figures/complexity_bpp_time.pdf",
        "results/figures/complexity_resolution.png", "results/figures/complexity_resolution.pdf"]
    assert cplx.codec_names(cfg) == ["fact", "jpeg"]
    assert cplx.qualities(cfg, "jpeg") == [30, 80]  # ends of the ladder
    assert cplx.qualities(cfg, "fact") == [1]
    cfg["complexity"]["qualities"] = "all"
    assert cplx.qualities(cfg, "jpeg") == [30, 50, 80]
    cfg["complexity"]["codecs"] = ["jpeg"]
    assert cplx.codec_names(cfg) == ["jpeg"]


def test_devices_and_gpus(tmp_path):
    cfg = validated(base_config(tmp_path, enabled=True, devices=["cpu", "cuda"]))
    assert cplx.devices(cfg, "fact") == ["cpu", "cuda"] and cplx.gpus(cfg, "fact") == 1
    assert cplx.devices(cfg, "jpeg") == ["cpu"] and cplx.gpus(cfg, "jpeg") == 0  # classical: CPU
    cfg = validated(base_config(tmp_path, enabled=True))
    assert cplx.devices(cfg, "fact") == ["cpu"] and cplx.gpus(cfg, "fact") == 0  # top-level device
    cfg["device"] = "auto"
    assert cplx.devices(cfg, "fact") == ["auto"] and cplx.gpus(cfg, "fact") == 1


def test_image_choice_and_weights(tmp_path):
    cfg = validated(base_config(tmp_path, enabled=True))
    assert cplx.image_choice(cfg) == ("mine", "a")  # first image of the first dataset
    cfg["complexity"]["image"] = "synthetic"
    assert cplx.image_choice(cfg) is None
    cfg["complexity"]["image"] = "x/y.png"
    assert cplx.image_choice(cfg) == "x/y.png"
    cfg["complexity"]["image"] = None
    cfg["datasets"] = {}
    assert cplx.image_choice(cfg) is None
    cfg["datasets"] = {"k": {"kind": "kodak", "images": ["kodim05", "kodim02"]}}
    assert cplx.image_choice(cfg) == ("k", "kodim02")
    # the coding jobs' weights files, for the measured qualities only
    assert cplx.weights_inputs(cfg, "fact") == {} and cplx.weights_inputs(cfg, "jpeg") == {}
    cfg["codecs"]["hp"] = {"kind": "learned", "architecture": "bmshj2018-hyperprior",
                           "weights": "pretrained", "metric": "mse", "qualities": [1, 4, 8]}
    assert cplx.weights_inputs(cfg, "hp") == {
        "q1": "resources/weights/zoo/bmshj2018-hyperprior/mse/q1.pth.tar",
        "q8": "resources/weights/zoo/bmshj2018-hyperprior/mse/q8.pth.tar"}


@pytest.mark.parametrize("section, message", [
    ({"codecs": ["nope"]}, r"complexity.codecs names \[.nope.\], which are not under codecs; known: fact, jpeg"),
    ({"codecs": []}, "complexity.codecs is an empty list"),
    ({"resolutions": ["640x"]}, r"complexity.resolutions\[0\]: '640x' is not a resolution"),
    ({"resolutions": [0]}, r"complexity.resolutions\[0\]"),
    ({"resolutions": ["64x64", [64, 64]]}, "lists a resolution twice"),
    ({"resolutions": []}, r"config key complexity.resolutions: \[\] should be non-empty"),  # schema: minItems
    ({"devices": ["gpu"]}, r"config key complexity.devices.0: 'gpu' does not match"),  # schema: pattern
    ({"devices": ["cpu", "cpu"]}, "lists a device twice"),
    ({"repeats": 0}, r"config key complexity.repeats: 0 is less than the minimum of 1"),
    ({"qualities": "some"}, r"config key complexity.qualities: 'some'"),
    ({"memory_limit_mb": 500, "isolate": False}, "complexity.memory_limit_mb needs complexity.isolate: true"),
    ({"memory_limit_mb": 0}, r"config key complexity.memory_limit_mb: 0 is less than or equal to the minimum of 0"),
    ({"enabled": True, "image": "/nonexistent/pic.png"}, "complexity.image: /nonexistent/pic.png does not exist"),
    ({"speed": "fast"}, r"config key complexity.speed is not known under complexity"),  # unknown key
])
def test_bad_config_is_refused(tmp_path, section, message):
    with pytest.raises(RdflowError, match=message):
        validated(base_config(tmp_path, **section))


# -- the per-codec job --------------------------------------------------------------------------
def test_codec_job_failed_resolution_goes_on(tmp_path, monkeypatch):
    orig = Jpeg.encode

    def encode(self, rgb):
        if rgb.shape[1] == 128:
            raise MemoryError("cannot allocate 9 GiB")
        return orig(self, rgb)

    monkeypatch.setattr(Jpeg, "encode", encode)
    cfg = validated(base_config(tmp_path, enabled=True, isolate=False, repeats=2,
                                resolutions=["64x48", "128x128", 32]))
    out = tmp_path / "results/complexity/jpeg.csv"
    rows = cplx.codec_job(config=cfg, codec="jpeg", out_csv=out, image_path=tmp_path / "imgs/a.png")
    assert [(r["quality"], r["width"], r["status"]) for r in rows] == [
        (30, 64, "ok"), (30, 128, "failed"), (30, 32, "ok"), (80, 64, "ok"), (80, 128, "failed"), (80, 32, "ok")]
    df = pd.read_csv(out)
    assert list(df.columns) == COMPLEXITY_COLUMNS and len(df) == 6
    bad = df[df.status == "failed"]
    assert bad.error.str.contains("MemoryError: cannot allocate 9 GiB").all() and bad.enc_s_median.isna().all()
    ok = df[df.status == "ok"]
    assert (ok.source == "a.png").all() and (ok.threads == 1).all() and (ok.device == "cpu").all()
    assert ok.kind.eq("jpeg").all() and ok.enc_kmac_per_px.isna().all() and ok.params.isna().all()
    # more JPEG quality costs more bits on the same image and size
    by = ok.set_index(["quality", "width"]).bpp
    assert by[(80, 64)] > by[(30, 64)]


def test_codec_job_learned_and_cuda(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = validated(base_config(tmp_path, enabled=True, isolate=False, repeats=1, split_repeats=1,
                                resolutions=[64], devices=["auto", "cpu"]))
    out = tmp_path / "fact.csv"
    (row,) = cplx.codec_job(config=cfg, codec="fact", out_csv=out)  # auto -> cpu, once
    assert row["status"] == "ok", row["error"]
    assert row["device"] == "cpu" and row["source"] == "synthetic" and row["threads"] == 1
    assert row["enc_kmac_per_px"] > 40 and row["dec_kmac_per_px"] > 40 and row["params"] > 0
    assert row["enc_network_s"] > 0 and row["enc_entropy_s"] >= 0
    # CUDA asked for but absent: a clear error naming the key, no table
    cfg["complexity"]["devices"] = ["cpu", "cuda"]
    with pytest.raises(RdflowError, match="complexity.devices lists 'cuda' but torch sees no CUDA device"):
        cplx.codec_job(config=cfg, codec="fact", out_csv=tmp_path / "f2.csv")
    cfg["complexity"]["devices"] = None
    cfg["device"] = "cuda"
    with pytest.raises(RdflowError, match="config key device is 'cuda' but torch sees no CUDA device"):
        cplx.codec_job(config=cfg, codec="fact", out_csv=tmp_path / "f2.csv")
    assert not (tmp_path / "f2.csv").exists()
    # a classical codec ignores the device: it runs on the CPU
    cfg["complexity"]["resolutions"] = [32]
    (j,) = cplx.codec_job(config=cfg, codec="jpeg", out_csv=tmp_path / "j.csv")[:1]
    assert j["device"] == "cpu" and j["status"] == "ok"


def test_table_and_figures(tmp_path):
    cfg = validated(base_config(tmp_path, enabled=True, isolate=False, repeats=2, resolutions=[32, "64x48"]))
    a, b = tmp_path / "jpeg.csv", tmp_path / "jpeg_gpu.csv"
    rows = cplx.codec_job(config=cfg, codec="jpeg", out_csv=a)
    # the same codec as if measured on a second device: one curve per (codec, device)
    other = [dict(r, device="cuda:1") for r in rows]
    cplx.write_complexity_csv(other, b)
    table = cplx.write_table([a, b], tmp_path / "results/complexity.csv")
    assert len(table) == 8 and list(pd.read_csv(tmp_path / "results/complexity.csv").columns) == COMPLEXITY_COLUMNS
    outs = [tmp_path / "results/figures" / p.split("/")[-1] for p in cplx.FIGURES]
    written = cplx.plot(tmp_path / "results/complexity.csv", outs)
    assert sorted(written) == sorted(outs) and all(p.stat().st_size > 1000 for p in outs)
    import json

    res = json.loads((tmp_path / "results/figures/complexity_resolution.json").read_text())
    # one curve per (codec, device) at its median quality, each through both resolutions
    qs = sorted({r["quality"] for r in rows})
    q = qs[len(qs) // 2]
    assert sorted((s["label"], len(s["x"])) for s in res["series"] if s["panel"] == 0) == [
        (f"jpeg (cpu) q{q}", 2), (f"jpeg (cuda:1) q{q}", 2)]
    assert all("MP" in t for t in res["panels"][0]["xticklabels"])
    with pytest.raises(RdflowError, match="lacks complexity columns"):
        pd.DataFrame({"codec": ["x"]}).to_csv(tmp_path / "bad.csv", index=False)
        cplx.write_table([a, tmp_path / "bad.csv"], tmp_path / "t.csv")


# -- results/benchmarks.csv ---------------------------------------------------------------------
def _write_benchmark(path, seconds: float, rss: float, extended: bool = False):
    from snakemake.benchmark import BenchmarkRecord, write_benchmark_records

    rec = BenchmarkRecord(running_time=seconds, max_rss=rss, max_vms=2 * rss, max_uss=rss, max_pss=rss,
                          io_in=1.0, io_out=2.0, cpu_usage=seconds, cpu_time=seconds * 0.9)
    # as Snakemake's executor sets them for the extended format (the constructor wraps them in tuples)
    rec.jobid, rec.rule_name, rec.wildcards, rec.params = 3, "r", {"codec": "x"}, {}
    rec.threads, rec.resources, rec.input, rec.data_collected = 2, {}, [], True
    path.parent.mkdir(parents=True, exist_ok=True)
    write_benchmark_records([rec], str(path), extended)


def test_benchmark_table(tmp_path):
    patterns = {"complexity_codec": "benchmarks/complexity/{codec}.tsv",
                "compress_sequence": "benchmarks/compress_sequence/{sequence}/{codec}/q{quality,\\d+}.tsv"}
    _write_benchmark(tmp_path / "benchmarks/complexity/fact.tsv", 12.5, 950.0)
    _write_benchmark(tmp_path / "benchmarks/compress_sequence/synth/x264/q27.tsv", 3.25, 120.0, extended=True)
    _write_benchmark(tmp_path / "benchmarks/old_rule/a/b.tsv", 1.0, 10.0)  # no rule writes this any more
    out = tmp_path / "results/benchmarks.csv"
    t = cplx.gather_benchmarks(out, patterns, root=tmp_path)
    df = pd.read_csv(out)
    assert list(df.columns[:6]) == cplx.BENCHMARK_KEYS
    assert {"s", "max_rss", "cpu_time", "codec", "sequence", "quality"} <= set(df.columns)
    assert len(df) == len(t) == 3
    r = df.set_index("path")
    c = r.loc["benchmarks/complexity/fact.tsv"]
    assert c["rule"] == "complexity_codec" and c["wildcards"] == "codec=fact" and c["codec"] == "fact"
    assert c["s"] == 12.5 and c["max_rss"] == 950.0 and c["cpu_time"] == pytest.approx(11.25, abs=0.01)
    assert bool(c["in_workflow"])
    s = r.loc["benchmarks/compress_sequence/synth/x264/q27.tsv"]
    assert s["rule"] == "compress_sequence" and s["wildcards"] == "sequence=synth,codec=x264,quality=27"
    assert s["quality"] == 27 and s["s"] == 3.25
    o = r.loc["benchmarks/old_rule/a/b.tsv"]
    assert o["rule"] == "old_rule" and not bool(o["in_workflow"]) and o["wildcards"] == "a/b"
    # no benchmark files yet: the header alone
    empty = cplx.gather_benchmarks(tmp_path / "e.csv", patterns, root=tmp_path / "nothing")
    assert empty.empty and {"rule", "s", "max_rss", "cpu_time"} <= set(pd.read_csv(tmp_path / "e.csv").columns)


@pytest.mark.parametrize("content", ["", "not\ta\nbenchmark\tfile\n", b"\xff\xfe\x00garbage"])
def test_benchmark_table_refuses_foreign_files(tmp_path, content):
    p = tmp_path / "benchmarks/x/y.tsv"
    p.parent.mkdir(parents=True)
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(RdflowError, match="benchmarks/x/y.tsv is not a Snakemake benchmark file"):
        cplx.gather_benchmarks(tmp_path / "out.csv", {}, root=tmp_path)
    assert not (tmp_path / "out.csv").exists()


# -- end to end ---------------------------------------------------------------------------------
@pytest.mark.e2e
def test_complexity_study_through_snakemake(tmp_path):
    import torch
    from test_e2e import planned_jobs, run_snakemake, write_config

    work = tmp_path / "study"
    cfg = base_config(tmp_path, enabled=True, repeats=2, resolutions=["64x64", "128x96", "2048x2048"],
                      memory_limit_mb=1500)  # 2048x2048 needs more for the learned codec: a failed row
    cfg["codecs"]["jpeg"]["qualities"] = [30, 80]
    write_config(work, cfg)
    plan = planned_jobs(work)
    assert plan["complexity_codec"] == 2 and plan["complexity_table"] == 1
    assert plan["plot_complexity"] == 1 and plan["gather_benchmarks"] == 1
    # one core: rdflow.coding.process_memory can read a half-imported torch when a classical
    # and a learned coding job start side by side (reported to the lead; not this stage's code)
    run_snakemake(work, "--cores", "1")

    df = pd.read_csv(work / "results/complexity.csv")
    assert list(df.columns) == COMPLEXITY_COLUMNS and len(df) == 2 * 3 + 1 * 3
    assert set(zip(df.codec, df.quality)) == {("jpeg", 30), ("jpeg", 80), ("fact", 1)}
    assert (df.source == "a.png").all() and (df.repeats == 2).all() and (df.device == "cpu").all()
    ok = df[df.status == "ok"]
    fact, jpeg = ok[ok.codec == "fact"], ok[ok.codec == "jpeg"]
    assert sorted(fact.width) == [64, 128] and len(jpeg) == 6  # JPEG fits in the limit at 2048x2048
    assert (fact.enc_kmac_per_px > 0).all() and (fact.dec_kmac_per_px > 0).all() and (fact.params > 0).all()
    assert jpeg.enc_kmac_per_px.isna().all() and jpeg.params.isna().all() and (jpeg.threads == 1).all()
    assert (ok.enc_s_median > 0).all() and (ok.dec_s_median > 0).all() and (ok.max_rss_mb > 0).all()
    (bad,) = df[df.status == "failed"].itertuples()
    assert bad.codec == "fact" and bad.width == 2048 and "memory_limit_mb=1500" in bad.error
    assert "allocate" in bad.error and math.isnan(bad.enc_s_median)
    for f in cplx.FIGURES:
        assert (work / f).stat().st_size > 1000, f
    import json

    res = json.loads((work / "results/figures/complexity_resolution.json").read_text())
    # each codec at its median quality through its successful resolutions; megapixel ticks
    assert {s["label"]: len(s["x"]) for s in res["series"] if s["panel"] == 0} == {"fact q1": 2, "jpeg q80": 3}
    assert res["panels"][0]["xticklabels"] == ["64x64\n0.0041 MP", "128x96\n0.012 MP", "2048x2048\n4.19 MP"]
    bpp = json.loads((work / "results/figures/complexity_bpp_time.json").read_text())
    assert bpp["title"].startswith("Rate vs coding time at 128x96")  # the largest size all succeeded at
    assert {s["label"]: len(s["x"]) for s in bpp["series"] if s["panel"] == 0} == {"fact": 1, "jpeg": 2}

    b = pd.read_csv(work / "results/benchmarks.csv")
    cb = b[b.rule == "complexity_codec"].set_index("codec")
    assert sorted(cb.index) == ["fact", "jpeg"] and cb["in_workflow"].all()
    assert (cb.s > 0).all() and (cb.max_rss > 0).all() and (cb.cpu_time > 0).all()
    log = (work / "logs/complexity/fact.log").read_text()
    assert "complexity of fact" in log and "2048x2048 on cpu failed" in log
    assert planned_jobs(work) == {}

    # devices: [cuda]. Without a GPU the job stops with a message naming the key and leaves no
    # table; with one, the learned codec is measured on it (GPU peak memory included)
    cfg["complexity"].update(devices=["cuda"], resolutions=["64x64"], memory_limit_mb=None)
    write_config(work, cfg)
    proc = run_snakemake(work, "results/complexity/fact.csv", check=False)
    log = (work / "logs/complexity/fact.log").read_text()
    if not torch.cuda.is_available():
        assert proc.returncode != 0
        assert "complexity.devices lists 'cuda' but torch sees no CUDA device" in proc.stdout + proc.stderr + log
        assert not (work / "results/complexity/fact.csv").exists()  # no stale table passes for new
        return
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    fact = pd.read_csv(work / "results/complexity/fact.csv")
    assert list(fact.columns) == COMPLEXITY_COLUMNS and len(fact) == 1
    (row,) = fact.itertuples()
    assert row.status == "ok", row.error
    assert str(row.device).startswith("cuda") and row.width == 64 and row.height == 64
    assert row.max_vram_alloc_mb > 0 and row.max_vram_reserved_mb >= row.max_vram_alloc_mb
    assert row.enc_s_median > 0 and row.dec_s_median > 0 and row.bpp > 0
