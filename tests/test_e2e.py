"""End to end: the real `snakemake` on small studies, data and weights served over loopback."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from conftest import REPO, item_file

pytestmark = pytest.mark.e2e
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

COLUMNS = {"dataset", "codec", "quality", "image", "bpp", "psnr_rgb", "ms_ssim", "ms_ssim_db",
           "enc_s", "dec_s", "bytes", "header_bytes", "height", "width", "device", "threads",
           "weights", "source_mode", "encoder"}


def run_snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--profile", str(REPO / "profiles/default"),
           "--cores", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def save_random_checkpoint(path: Path, arch: str, quality: int, seed: int) -> None:
    import torch
    from compressai.zoo.image import cfgs, model_architectures

    torch.manual_seed(seed)
    net = model_architectures[arch](*cfgs[arch][quality])
    net.update(force=True)
    torch.save({"state_dict": net.state_dict()}, path)


def write_config(workdir: Path, cfg: dict) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))


def planned_jobs(workdir: Path, *targets: str) -> dict[str, int]:
    """Jobs a dry run would run, per rule (the "Job stats" table of `-n --quiet rules`). The
    coding rules of a study are one per (dataset | sequence, batch), named
    ``compress_image__<dataset>_<codec>_q<quality>_b<k>`` / ``compress_frame__...``: they count
    together under ``compress_image`` / ``compress_frame`` (jobs, i.e. batches)."""
    out = run_snakemake(workdir, *targets, "-n", "--quiet", "rules").stdout
    counts: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            rule = parts[0].split("__", 1)[0]
            counts[rule] = counts.get(rule, 0) + int(parts[1])
    return counts


def psnr_255(ref: np.ndarray, rec: np.ndarray) -> float:
    """PSNR over all samples, 8-bit peak: numpy float64, written here, not rdflow's."""
    mse = np.mean((ref.astype(np.float64) - rec.astype(np.float64)) ** 2)
    return 10 * math.log10(255.0**2 / mse)


def ms_ssim_reference(ref: np.ndarray, rec: np.ndarray) -> float:
    """pytorch-msssim on float NCHW tensors, data range 255 (what CompressAI's eval uses)."""
    import torch
    from pytorch_msssim import ms_ssim

    t = lambda a: torch.from_numpy(np.array(a)).permute(2, 0, 1)[None].float()  # noqa: E731
    return float(ms_ssim(t(ref), t(rec), data_range=255.0))


# ------------------------------------------------------------------ the Kodak study (module)
KODAK_IMAGES = ("kodim01", "kodim04")
KODAK_CODECS = {"fact": [1, 2], "jpeg": [30, 80], "webp": [50]}


@pytest.fixture(scope="module")
def kodak_study(tmp_path_factory):
    """Two real Kodak images and two learned checkpoints served over loopback; the study runs
    once and the tests below check its rows, bitstreams, figures and reruns."""
    from conftest import LoopbackServer, shared_path

    kodak = shared_path("data", "kodak")
    results = shared_path("reference", "compressai", "results")
    root = tmp_path_factory.mktemp("kodak")
    (root / "www").mkdir()
    server = LoopbackServer(root / "www")
    try:
        for name in KODAK_IMAGES:
            (server.root / f"{name}.png").write_bytes((kodak / f"{name}.png").read_bytes())
        for q in KODAK_CODECS["fact"]:
            save_random_checkpoint(server.root / f"fact-q{q}.pth.tar", "bmshj2018-factorized", q, seed=q)
        work = root / "study"
        write_config(work, {
            "device": "cpu",
            "datasets": {"kodak": {"kind": "kodak", "base_url": server.url, "images": list(KODAK_IMAGES)}},
            "codecs": {
                "fact": {"kind": "learned", "architecture": "bmshj2018-factorized",
                         "weights": "checkpoint", "checkpoint": server.url + "fact-q{quality}.pth.tar",
                         "qualities": KODAK_CODECS["fact"]},
                "jpeg": {"kind": "jpeg", "qualities": KODAK_CODECS["jpeg"]},
                "webp": {"kind": "webp", "qualities": KODAK_CODECS["webp"]},
            },
            "reference": {"compressai_results": str(results), "curves": ["jpeg", "webp"]},
        })
        run_snakemake(work)
        yield SimpleNamespace(work=work, kodak=kodak, results=results, www=root / "www",
                              df=pd.read_csv(work / "results/image_rd_kodak.csv",
                                             float_precision="round_trip"))  # exact floats
    finally:
        server.close()


def test_kodak_rows_and_bitstream_sizes(kodak_study):
    df, work = kodak_study.df, kodak_study.work
    assert COLUMNS <= set(df.columns)
    assert sorted(zip(df.codec, df.quality, df.image)) == sorted(
        (c, q, i) for c, qs in KODAK_CODECS.items() for q in qs for i in KODAK_IMAGES)
    # bpp counts every byte of the bitstream file
    for r in df.itertuples():
        f = item_file(work, "image", "kodak", r.codec, r.quality, r.image, "bin")
        assert f.stat().st_size == r.bytes
        assert r.bpp == f.stat().st_size * 8 / (r.height * r.width)
    # the sizes Pillow reads from the served PNGs (kodim04 is the portrait one)
    sizes = {}
    for name in KODAK_IMAGES:
        with Image.open(kodak_study.kodak / f"{name}.png") as im:
            sizes[name] = im.size[::-1]
        assert set(zip(df[df.image == name].height, df[df.image == name].width)) == {sizes[name]}
    assert sizes == {"kodim01": (512, 768), "kodim04": (768, 512)}
    # higher JPEG quality costs more bits and gives more PSNR
    jj = df[df.codec == "jpeg"].groupby("quality")[["bpp", "psnr_rgb"]].mean()
    assert jj.loc[80, "bpp"] > jj.loc[30, "bpp"] and jj.loc[80, "psnr_rgb"] > jj.loc[30, "psnr_rgb"]
    assert set(df[df.codec == "fact"].threads) == {1} and (df.process_rss_mb > 100).all()
    summ = pd.read_csv(work / "results/image_rd_kodak_summary.csv")
    assert len(summ) == 5 and set(summ.n_items) == {2}
    # one job per (dataset, codec, quality) batch: its log names every item it coded
    log = (work / "logs/compress_image/kodak/fact/q1/b0.log").read_text()
    assert "coding 2 images of kodak with fact q1" in log
    assert "kodak/kodim01: bpp=" in log and "kodak/kodim04: bpp=" in log


def test_kodak_learned_rows_are_compressai_on_the_served_checkpoint(kodak_study):
    """CompressAI itself, on the checkpoint file the loopback server served: the same strings
    (at the end of the kept bitstream), the same bpp, the same PSNR and MS-SSIM."""
    import torch
    import torch.nn.functional as F
    from compressai.ops import compute_padding
    from compressai.zoo.image import model_architectures

    df, work = kodak_study.df, kodak_study.work
    lr = df[df.codec == "fact"]
    assert len(lr) == 4 and set(lr.weights) == {"checkpoint"}
    assert (lr.enc_s > 0).all() and (lr.dec_s > 0).all()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the coding job ran (threads == 1)
    try:
        for q in KODAK_CODECS["fact"]:
            state = torch.load(kodak_study.www / f"fact-q{q}.pth.tar", map_location="cpu")["state_dict"]
            net = model_architectures["bmshj2018-factorized"].from_state_dict(state).eval()
            net.update(force=True)
            for name in KODAK_IMAGES:
                row = lr[(lr.quality == q) & (lr.image == name)].iloc[0]
                rgb = np.asarray(Image.open(kodak_study.kodak / f"{name}.png").convert("RGB"))
                h, w = rgb.shape[:2]
                x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255
                pad, unpad = compute_padding(h, w, min_div=64)
                with torch.no_grad():
                    out = net.compress(F.pad(x, pad, mode="constant", value=0))
                    x_hat = F.pad(net.decompress(out["strings"], out["shape"])["x_hat"], unpad)
                rec = x_hat[0].mul(255).clamp(0, 255).round().byte().permute(1, 2, 0).numpy()
                strings = b"".join(s[0] for s in out["strings"])
                kept = (item_file(work, "image", "kodak", "fact", q, name, "bin")).read_bytes()
                assert kept.endswith(strings) and len(kept) == len(strings) + row.header_bytes, (q, name)
                assert row.header_bytes > 0
                assert row.bpp == (len(strings) + row.header_bytes) * 8 / (h * w), (q, name)
                assert row.psnr_rgb == pytest.approx(psnr_255(rgb, rec), abs=1e-6), (q, name)
                assert row.ms_ssim == pytest.approx(ms_ssim_reference(rgb, rec), abs=1e-5), (q, name)
    finally:
        torch.set_num_threads(threads)
    # two different checkpoints were served: the rows must differ (not one model used twice)
    a, b = (lr[lr.quality == q].sort_values("image").bpp.to_numpy() for q in KODAK_CODECS["fact"])
    assert not np.array_equal(a, b)


def test_kodak_classical_rows_are_pillow_decodes_of_the_kept_bitstreams(kodak_study):
    df, work = kodak_study.df, kodak_study.work
    rows = df[df.codec.isin(["jpeg", "webp"])]
    assert len(rows) == 6
    magic = {"jpeg": lambda d: d[:3] == b"\xff\xd8\xff", "webp": lambda d: d[:4] == b"RIFF" and d[8:12] == b"WEBP"}
    for r in rows.itertuples():
        path = item_file(work, "image", "kodak", r.codec, r.quality, r.image, "bin")
        assert magic[r.codec](path.read_bytes()), path
        with Image.open(path) as im:
            assert im.format == r.codec.upper()
            rec = np.asarray(im.convert("RGB"))
        ref = np.asarray(Image.open(kodak_study.kodak / f"{r.image}.png").convert("RGB"))
        assert r.psnr_rgb == pytest.approx(psnr_255(ref, rec), abs=1e-9), r
        ms = ms_ssim_reference(ref, rec)
        assert r.ms_ssim == pytest.approx(ms, abs=1e-5), r
        assert r.ms_ssim_db == pytest.approx(-10 * math.log10(1 - ms), abs=1e-3), r
        assert r.header_bytes == 0
    j = rows[(rows.codec == "jpeg") & (rows.quality == 80)]
    assert (j.psnr_rgb > 30).all() and (j.psnr_rgb < 40).all() and (j.ms_ssim > 0.9).all()


def test_kodak_figures_show_the_rows_and_the_published_curves(kodak_study):
    df, work = kodak_study.df, kodak_study.work
    for ext in ("png", "pdf"):
        for m in ("psnr_rgb", "ms_ssim_db"):
            assert (work / f"results/figures/image_rd_kodak_{m}.{ext}").stat().st_size > 1000
    published = {c: json.loads((kodak_study.results / f"image/kodak/{c}.json").read_text())
                 for c in ("jpeg", "webp")}
    for m in ("psnr_rgb", "ms_ssim_db"):
        side = json.loads((work / f"results/figures/image_rd_kodak_{m}.json").read_text())
        own = {s["label"]: s for s in side["series"] if s["linestyle"] == "-"}
        pub = {s["label"]: s for s in side["series"] if s["linestyle"] == "--"}
        # one point per quality at the mean over the two images of the per-image rows
        assert set(own) == {"fact", "jpeg", "webp"}, list(own)
        for codec, s in own.items():
            g = df[df.codec == codec].groupby("quality")
            want_x = g.bpp.mean()
            want_y = g.psnr_rgb.mean() if m == "psnr_rgb" else \
                g.ms_ssim.mean().map(lambda v: -10 * math.log10(1 - v))
            assert len(s["x"]) == len(KODAK_CODECS[codec]), codec
            got = sorted(zip(s["x"], s["y"]))
            want = sorted(zip(want_x, want_y))
            np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-9, err_msg=codec)
        # CompressAI's published Kodak curves of the configured codecs, dashed, in the study
        # codec's colour, with the published numbers
        assert set(pub) == {"JPEG (published)", "WebP (published)"}, list(pub)  # their "name"s
        for codec, ref in published.items():
            s, res = pub[f"{ref['name']} (published)"], ref["results"]
            assert s["color"] == own[codec]["color"]
            ys = res["psnr-rgb"] if m == "psnr_rgb" else [-10 * math.log10(1 - v) for v in res["ms-ssim-rgb"]]
            np.testing.assert_allclose(sorted(zip(s["x"], s["y"])), sorted(zip(res["bpp"], ys)),
                                       rtol=1e-6, err_msg=codec)


def test_kodak_rerun_plans_exactly_the_new_work(kodak_study):
    work = kodak_study.work
    assert planned_jobs(work) == {}  # nothing to redo
    before = (work / "config.yaml").read_text()
    cfg = yaml.safe_load(before)
    cfg["codecs"]["jpeg"]["qualities"].append(95)
    write_config(work, cfg)
    try:  # one more quality schedules exactly that work
        plan = planned_jobs(work)
    finally:
        (work / "config.yaml").write_text(before)
    # one batch job (both images at the new quality), then the table
    assert plan["compress_image"] == 1 and plan["aggregate_image"] == 1
    # a deleted batch folder is redone (that batch only) with the tables that use it
    row = item_file(work, "image", "kodak", "jpeg", 30, "kodim04", "json")
    folder, kept = row.parent, row.parent.with_name("kept")
    folder.rename(kept)
    try:
        plan = planned_jobs(work)
    finally:
        kept.rename(folder)
    assert plan["compress_image"] == 1 and plan["aggregate_image"] == 1
    # an item deleted from its folder: the table's job names the file and the fix
    data = row.read_bytes()
    row.unlink()
    try:
        proc = run_snakemake(work, "--forcerun", "aggregate_image", check=False)
    finally:
        row.write_bytes(data)
    assert proc.returncode != 0
    assert f"{row.relative_to(work)} is missing from its batch folder" in proc.stdout + proc.stderr
    assert f"delete the folder {folder.relative_to(work)}" in proc.stdout + proc.stderr


# ------------------------------------------------------------------ local study, random weights
def test_local_study_with_random_weights(tmp_path):
    """Runs without ../shared: synthetic images of odd sizes, grayscale and RGBA among them."""
    import struct

    import torch
    import torch.nn.functional as F
    from compressai.ops import compute_padding
    from compressai.zoo.image import cfgs, model_architectures

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    yy, xx = np.mgrid[0:200, 0:170]
    base = (120 + 80 * np.sin(xx / 9.0) * np.cos(yy / 11.0)).astype(np.uint8)
    Image.fromarray(np.dstack([base, base[::-1], base[:, ::-1]])).save(imgs / "colour.png")
    Image.fromarray(base[:50, :40]).save(imgs / "gray_small.png")
    Image.fromarray(np.dstack([base, base, base, base])).save(imgs / "alpha.png")
    (imgs / "notes.txt").write_text("not an image")
    work = tmp_path / "study"
    write_config(work, {
        "device": "auto",
        "datasets": {"mine": {"kind": "local", "path": str(imgs)}},
        "codecs": {"hp": {"kind": "learned", "architecture": "bmshj2018-hyperprior",
                          "weights": "random", "seed": 7, "qualities": [3]},
                   "jpeg": {"kind": "jpeg", "qualities": [75]}},
    })
    run_snakemake(work)
    df = pd.read_csv(work / "results/image_rd_mine.csv", float_precision="round_trip")
    assert sorted(zip(df.codec, df.image)) == sorted(
        (c, i) for c in ("hp", "jpeg") for i in ("alpha", "colour", "gray_small"))
    modes = df.drop_duplicates("image").set_index("image").source_mode.to_dict()
    assert modes == {"colour": "RGB", "gray_small": "L", "alpha": "RGBA"}
    hp = df[df.codec == "hp"]
    assert set(hp.weights) == {"random(seed=7)"}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert set(hp.device) == {device} and set(df[df.codec == "jpeg"].device) == {"cpu"}
    sizes = {"colour": (200, 170), "alpha": (200, 170), "gray_small": (50, 40)}
    for r in df.itertuples():
        data = (item_file(work, "image", "mine", r.codec, r.quality, r.image, "bin")).read_bytes()
        assert (r.height, r.width) == sizes[r.image] and r.bytes == len(data)
        assert r.bpp == len(data) * 8 / (r.height * r.width)
    # the seed is honoured: a hyperprior built by CompressAI under torch.manual_seed(7) decodes
    # the kept bitstreams (rdflow's container: >HHHHB sizes, string count, lengths) to the
    # recorded PSNR; another seed's model does not
    def model(seed):
        torch.manual_seed(seed)
        net = model_architectures["bmshj2018-hyperprior"](*cfgs["bmshj2018-hyperprior"][3]).eval()
        net.update(force=True)
        return net

    net7, net8 = model(7).to(device), model(8).to(device)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the coding job ran
    for r in hp[hp.image != "gray_small"].itertuples():
        data = (item_file(work, "image", "mine", "hp", 3, r.image, "bin")).read_bytes()
        h, w, lh, lw, n = struct.unpack_from(">HHHHB", data)
        lens = struct.unpack_from(f">{n - 1}I", data, 9)
        off = 9 + 4 * (n - 1)
        strings = []
        for ln in (*lens, len(data) - off - sum(lens)):
            strings.append(data[off:off + ln])
            off += ln
        assert (h, w) == (r.height, r.width) and n == 2 and r.header_bytes == 9 + 4 * (n - 1)
        src = np.asarray(Image.open(imgs / f"{r.image}.png").convert("RGB"))
        x = torch.from_numpy(src.copy()).permute(2, 0, 1)[None].float().to(device) / 255
        pad, unpad = compute_padding(h, w, min_div=64)
        with torch.no_grad():
            rec = F.pad(net7.decompress([[s] for s in strings], [lh, lw])["x_hat"], unpad)
            again = net7.compress(F.pad(x, pad))
            other = net8.compress(F.pad(x, pad))
        rec = rec[0].mul(255).clamp(0, 255).round().byte().permute(1, 2, 0).cpu().numpy()
        assert r.psnr_rgb == pytest.approx(psnr_255(src, rec), abs=1e-6)
        assert list(again["shape"]) == [lh, lw] == [-(-h // 64), -(-w // 64)]  # z: stride 64
        if device == "cpu":  # re-encoding gives the kept strings again (bit-exact on the CPU)
            assert [s[0] for s in again["strings"]] == strings
        assert [s[0] for s in other["strings"]] != strings
    torch.set_num_threads(threads)
    small = df[df.image == "gray_small"]
    assert small.ms_ssim.isna().all() and small.psnr_rgb.notna().all()  # MS-SSIM undefined < 161 px


# ------------------------------------------------------------------ image_study / video_study
def test_image_study_and_video_study_targets_plan_only_their_half(tmp_path):
    """`snakemake image_study` plans the image datasets' jobs and no video job; `video_study`
    the reverse (a dry run of each on a study with both)."""
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i, name in enumerate(("a", "b")):
        Image.new("RGB", (48, 32), (10 * i, 20, 30)).save(imgs / f"{name}.png")
    raw = tmp_path / "synth_32x16.yuv"
    raw.write_bytes(bytes(range(256)) * 3 * 4)  # 4 frames of 32x16 I420 (768 bytes each)
    work = tmp_path / "study"
    write_config(work, {
        "device": "cpu", "vmaf": {"enabled": False},
        "datasets": {"mine": {"kind": "local", "path": str(imgs)}},
        "codecs": {"jpeg": {"kind": "jpeg", "qualities": [40, 80]}},
        "video": {"frames": {"count": 3},
                  "sequences": {"synth": {"source": "file", "path": str(raw), "width": 32, "height": 16}}},
    })
    image = planned_jobs(work, "image_study")
    video = planned_jobs(work, "video_study")
    # the batch's images listed once; 2 qualities x one batch (both images); a figure per
    # metric (psnr_rgb, ms_ssim_db)
    assert image == {"image_batch_sources": 1, "compress_image": 2, "aggregate_image": 1,
                     "plot_image_rd": 2, "image_study": 1}
    # 2 qualities x one batch (the 3 frames); a figure per metric (psnr_y, psnr_rgb, ms_ssim_db)
    assert video == {"probe_sequence": 1, "compress_frame": 2, "aggregate_video": 1,
                     "plot_video_rd": 3, "video_study": 1}
    # the default target plans both halves
    everything = planned_jobs(work)
    assert everything["compress_image"] == 2 and everything["compress_frame"] == 2


def test_failed_job_leaves_no_row(tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(imgs / "good.png")
    (imgs / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    work = tmp_path / "study"
    write_config(work, {"datasets": {"mine": {"kind": "local", "path": str(imgs)}},
                        "codecs": {"jpeg": {"kind": "jpeg", "qualities": [50]}}})
    proc = run_snakemake(work, "--keep-going", check=False)
    assert proc.returncode != 0
    assert "bad.png" in proc.stdout + proc.stderr + (work / "logs/compress_image/mine/jpeg/q50/b0.log").read_text()
    out = work / "results/image/mine/jpeg/q50"
    # the failed batch job leaves none of its items: no batch folder (Snakemake removes a failed
    # job's outputs) and no half-written one (the job removes its .partial folder); good.png, in
    # the same batch, is coded again with it once bad.png is fixed
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []
    assert not (work / "results/image_rd_mine.csv").exists()
    Image.new("RGB", (64, 64), (9, 8, 7)).save(imgs / "bad.png")
    run_snakemake(work)
    assert sorted(p.name for p in out.iterdir()) == ["batch0"]
    assert sorted(p.name for p in (out / "batch0").glob("*.json")) == ["bad.json", "good.json"]
    assert len(pd.read_csv(work / "results/image_rd_mine.csv")) == 2


def test_failed_item_in_batches_of_one_leaves_the_others(tmp_path):
    """batch_size: 1 isolates every item in its own job: a bad image fails only itself."""
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(imgs / "good.png")
    (imgs / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    work = tmp_path / "study"
    write_config(work, {"batch_size": 1, "datasets": {"mine": {"kind": "local", "path": str(imgs)}},
                        "codecs": {"jpeg": {"kind": "jpeg", "qualities": [50]}}})
    proc = run_snakemake(work, "--keep-going", check=False)
    assert proc.returncode != 0
    out = work / "results/image/mine/jpeg/q50"
    # bad sorts first: batch0 failed and left nothing, batch1 (good) is complete (with its
    # reconstruction for VMAF, which has not run)
    assert sorted(p.name for p in out.iterdir()) == ["batch1", "batch1.recon.zip"]
    assert sorted(p.name for p in (out / "batch1").iterdir() if p.suffix) == ["good.bin", "good.json"]
    assert not (work / "results/image_rd_mine.csv").exists()


def test_bad_config_fails_before_work(tmp_path):
    work = tmp_path / "study"
    write_config(work, {"datasets": {"k": {"kind": "kodak"}},
                        "codecs": {"c": {"kind": "learned", "architecture": "cheng2020-anchor",
                                         "qualities": [7]}}})
    proc = run_snakemake(work, "-n", check=False)
    assert proc.returncode != 0
    assert "codecs.c.qualities: [7] out of range for cheng2020-anchor; allowed values are 1–6" in proc.stderr + proc.stdout


def test_pretrained_weights_with_wrong_hash_is_refused(http_server, tmp_path):
    """A file served under a zoo name whose hash prefix does not match is never used."""
    from rdflow.codecs.learned import zoo_filename

    name = zoo_filename("bmshj2018-factorized", "mse", 1)
    save_random_checkpoint(http_server.root / name, "bmshj2018-factorized", 1, seed=0)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(imgs / "a.png")
    work = tmp_path / "study"
    write_config(work, {"datasets": {"mine": {"kind": "local", "path": str(imgs)}},
                        "weights": {"base_url": http_server.url},
                        "codecs": {"f": {"kind": "learned", "architecture": "bmshj2018-factorized",
                                         "qualities": [1]}}})
    proc = run_snakemake(work, check=False)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "checksum mismatch" in text and http_server.url + name in text
    assert not list((work / "resources/weights").rglob("*.pth.tar"))
