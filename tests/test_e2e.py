"""End to end: the real `snakemake` on small studies, data and weights served over loopback."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from conftest import REPO

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


def planned_jobs(workdir: Path) -> dict[str, int]:
    out = run_snakemake(workdir, "-n", "--quiet", "rules").stdout
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts


def test_kodak_subset_study(shared, http_server, tmp_path):
    kodak = shared("data", "kodak")
    for name in ("kodim01", "kodim04"):
        (http_server.root / f"{name}.png").write_bytes((kodak / f"{name}.png").read_bytes())
    for q in (1, 2):
        save_random_checkpoint(http_server.root / f"fact-q{q}.pth.tar", "bmshj2018-factorized", q, seed=q)
    work = tmp_path / "study"
    write_config(work, {
        "device": "cpu",
        "datasets": {"kodak": {"kind": "kodak", "base_url": http_server.url,
                               "images": ["kodim01", "kodim04"]}},
        "codecs": {
            "fact": {"kind": "learned", "architecture": "bmshj2018-factorized",
                     "weights": "checkpoint", "checkpoint": http_server.url + "fact-q{quality}.pth.tar",
                     "qualities": [1, 2]},
            "jpeg": {"kind": "jpeg", "qualities": [30, 80]},
            "webp": {"kind": "webp", "qualities": [50]},
        },
        "reference": {"compressai_results": str(shared("reference", "compressai", "results")),
                      "curves": ["jpeg", "webp"]},
    })
    run_snakemake(work)

    df = pd.read_csv(work / "results/image_rd_kodak.csv")
    assert COLUMNS <= set(df.columns)
    assert len(df) == 2 * (2 + 2 + 1)
    assert set(df.image) == {"kodim01", "kodim04"}
    # bpp counts every byte of the bitstream file
    for r in df.itertuples():
        f = work / f"results/image/kodak/{r.codec}/q{r.quality}/{r.image}.bin"
        assert f.stat().st_size == r.bytes
        assert r.bpp == pytest.approx(r.bytes * 8 / (r.height * r.width))
    sizes = df.set_index("image")[["height", "width"]].drop_duplicates()
    assert tuple(sizes.loc["kodim04"]) == (768, 512)
    # JPEG values: decoding the kept bitstream reproduces the recorded PSNR
    j = df[(df.codec == "jpeg") & (df.quality == 80) & (df.image == "kodim01")].iloc[0]
    rec = np.asarray(Image.open(work / "results/image/kodak/jpeg/q80/kodim01.bin").convert("RGB"))
    ref = np.asarray(Image.open(kodak / "kodim01.png").convert("RGB"))
    mse = np.mean((rec.astype(float) - ref.astype(float)) ** 2)
    assert j.psnr_rgb == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-9)
    assert 30 < j.psnr_rgb < 40 and 0.9 < j.ms_ssim < 1
    # higher JPEG quality costs more bits and gives more PSNR
    jj = df[df.codec == "jpeg"].groupby("quality")[["bpp", "psnr_rgb"]].mean()
    assert jj.loc[80, "bpp"] > jj.loc[30, "bpp"] and jj.loc[80, "psnr_rgb"] > jj.loc[30, "psnr_rgb"]
    # learned rows: random weights labelled as such? no: these are checkpoints, labelled checkpoint
    lr = df[df.codec == "fact"]
    assert set(lr.weights) == {"checkpoint"} and (lr.header_bytes > 0).all()
    assert (lr.enc_s > 0).all() and (lr.dec_s > 0).all() and set(lr.threads) == {1}

    summ = pd.read_csv(work / "results/image_rd_kodak_summary.csv")
    assert len(summ) == 5 and set(summ.n_items) == {2}
    for ext in ("png", "pdf"):
        for m in ("psnr_rgb", "ms_ssim_db"):
            assert (work / f"results/figures/image_rd_kodak_{m}.{ext}").stat().st_size > 1000
    for m in ("psnr_rgb", "ms_ssim_db"):  # what the figures show: a point per quality, published curves
        side = json.loads((work / f"results/figures/image_rd_kodak_{m}.json").read_text())
        own = {s["label"]: s for s in side["series"] if s["linestyle"] == "-"}
        published = {s["label"]: s for s in side["series"] if s["linestyle"] == "--"}
        assert {k: len(s["x"]) for k, s in own.items()} == {"fact": 2, "jpeg": 2, "webp": 1}
        assert len(published) == 2 and all(k.endswith(" (published)") for k in published)
        # a published curve in its study codec's colour
        assert sorted(s["color"] for s in published.values()) == sorted([own["jpeg"]["color"], own["webp"]["color"]])
    assert (df.process_rss_mb > 100).all()
    assert "coding kodak/kodim01" in (work / "logs/compress_image/kodak/fact/q1/kodim01.log").read_text()

    # nothing to redo; one more quality schedules exactly that work
    assert planned_jobs(work) == {}
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    cfg["codecs"]["jpeg"]["qualities"].append(95)
    write_config(work, cfg)
    plan = planned_jobs(work)
    assert plan["compress_image"] == 2 and plan["aggregate_image"] == 1


def test_local_study_with_random_weights(tmp_path):
    """Runs without ../shared: synthetic images of odd sizes, grayscale and RGBA among them."""
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
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
    df = pd.read_csv(work / "results/image_rd_mine.csv")
    assert len(df) == 6
    modes = df.drop_duplicates("image").set_index("image").source_mode.to_dict()
    assert modes == {"colour": "RGB", "gray_small": "L", "alpha": "RGBA"}
    assert set(df[df.codec == "hp"].weights) == {"random(seed=7)"}
    small = df[df.image == "gray_small"]
    assert small.ms_ssim.isna().all() and small.psnr_rgb.notna().all()  # MS-SSIM undefined < 161 px


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
    assert "bad.png" in proc.stdout + proc.stderr + (work / "logs/compress_image/mine/jpeg/q50/bad.log").read_text()
    assert not (work / "results/image/mine/jpeg/q50/bad.json").exists()
    assert not (work / "results/image/mine/jpeg/q50/bad.bin").exists()
    assert (work / "results/image/mine/jpeg/q50/good.json").exists()
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
