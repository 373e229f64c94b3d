"""rdflow-eval (issue 15, item 6): a folder of checkpoints of one architecture evaluated on Kodak
in one line, against JPEG and the published curves, with CompressAI's results JSON. The
checkpoints are made here (random init, torch.save(net.state_dict())); the numbers are compared
with the workflow's own rows and with CompressAI's eval_model run on the same files."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO

ARCH = "bmshj2018-hyperprior"
IMAGES = ("kodim01", "kodim02")
PUBLISHED = "compressai-bmshj2018-hyperprior_mse_cpu"


def save_checkpoint(path: Path, factory, quality: int, seed: int) -> Path:
    import torch

    torch.manual_seed(seed)
    net = factory(quality=quality, pretrained=False)
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """The CLI run once, end to end, from a fresh working directory (default output folder)."""
    from compressai.zoo import bmshj2018_hyperprior
    from conftest import shared_path

    kodak = shared_path("data", "kodak")
    root = tmp_path_factory.mktemp("evaluate")
    (root / "ckpts").mkdir()
    ckpts = [save_checkpoint(root / "ckpts" / f"hp-q{q}.pth.tar", bmshj2018_hyperprior, q, seed=10 + q)
             for q in (1, 2)]
    cmd = [sys.executable, "-m", "rdflow.evaluate", ARCH, str(root / "ckpts"), "--name", "mine",
           "--kodak-url", kodak.as_uri() + "/", "--images", *IMAGES, "--cores", "2",
           "--device", "cpu", "--anchor-qualities", "10,30,60,90"]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-6000:]
    work = root / "results/eval/mine"
    return root, work, ckpts, kodak, proc


def test_cli_prints_where_the_json_csv_and_bd_table_are(evaluated):
    _, work, _, _, proc = evaluated
    for rel in ("results/compressai/kodak/mine.json", "results/compressai/kodak/jpeg.json",
                "results/image_rd_kodak.csv", "results/image_rd_kodak_summary.csv",
                "results/bd_rate.csv", "results/figures/image_rd_kodak_psnr_rgb.png"):
        assert (work / rel).is_file(), rel
        assert str(work / rel) in proc.stdout, rel
    assert f"python -m compressai.utils.plot -f {work / 'results/compressai/kodak/mine.json'}" in proc.stdout
    bd = pd.read_csv(work / "results/bd_rate.csv")
    assert set(zip(bd.codec, bd.anchor, bd.metric)) == {("mine", "jpeg", "psnr_rgb"), ("mine", "jpeg", "ms_ssim_db")}


def test_study_file_names_the_checkpoints_per_quality_and_the_published_curves(evaluated):
    _, work, ckpts, _, _ = evaluated
    study = yaml.safe_load((work / "study.yaml").read_text())
    assert study["datasets"] == {"kodak": {"kind": "kodak", "base_url": evaluated[3].as_uri() + "/",
                                           "images": list(IMAGES)}}
    mine = study["codecs"]["mine"]
    assert mine["kind"] == "learned" and mine["weights"] == "checkpoint" and mine["architecture"] == ARCH
    assert mine["qualities"] == [1, 2] and mine["checkpoint"] == [str(p.resolve()) for p in ckpts]
    assert mine["checkpoint_sha256"] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in ckpts]
    assert study["bd_rate"]["anchor"] == "jpeg" and study["codecs"]["jpeg"]["qualities"] == [10, 30, 60, 90]
    assert study["reference"]["curves"][0] == PUBLISHED
    # the figure shows the architecture's published curve, dashed
    fig = json.loads((work / "results/figures/image_rd_kodak_psnr_rgb.json").read_text())
    assert f"{ARCH} (published)" in {s["label"] for s in fig["series"]}


def test_json_equals_the_rows_the_workflow_computed(evaluated):
    _, work, _, _, _ = evaluated
    rows = pd.read_csv(work / "results/image_rd_kodak.csv", float_precision="round_trip")
    for codec in ("mine", "jpeg"):
        res = json.loads((work / f"results/compressai/kodak/{codec}.json").read_text())["results"]
        mine = rows[rows.codec == codec]
        assert sorted(res["quality"]) == sorted(mine.quality.unique())
        for i, q in enumerate(res["quality"]):
            r = mine[mine.quality == q]
            assert len(r) == len(IMAGES)
            assert res["bpp"][i] == pytest.approx(sum(r.bpp) / len(r), rel=1e-12)
            assert res["psnr-rgb"][i] == pytest.approx(sum(r.psnr_rgb) / len(r), rel=1e-12)
            assert res["ms-ssim-rgb"][i] == pytest.approx(sum(r.ms_ssim) / len(r), rel=1e-12)


def test_numbers_equal_compressai_eval_model_on_the_same_checkpoints(evaluated, tmp_path):
    """CompressAI's own eval_model (load_checkpoint + eval_model) on the same files and images:
    the same PSNR and MS-SSIM; the same bits once rdflow's container header is taken off."""
    from compressai.utils.eval_model.__main__ import eval_model, load_checkpoint

    _, work, ckpts, kodak, _ = evaluated
    for name in IMAGES:
        (tmp_path / f"{name}.png").write_bytes((kodak / f"{name}.png").read_bytes())
    files = sorted(tmp_path.glob("*.png"))
    rows = pd.read_csv(work / "results/image_rd_kodak.csv")
    res = json.loads((work / "results/compressai/kodak/mine.json").read_text())["results"]
    for q, path in zip((1, 2), ckpts):
        net = load_checkpoint(ARCH, False, str(path))
        theirs = eval_model(net, "", str(tmp_path), files, architecture=ARCH, half=False, per_image=False)
        i = res["quality"].index(q)
        assert res["psnr-rgb"][i] == pytest.approx(theirs["psnr-rgb"], rel=1e-6)
        assert res["ms-ssim-rgb"][i] == pytest.approx(theirs["ms-ssim-rgb"], rel=1e-5)
        r = rows[(rows.codec == "mine") & (rows.quality == q)]
        strings_bpp = ((r.bytes - r.header_bytes) * 8 / (r.height * r.width)).mean()
        assert strings_bpp == pytest.approx(theirs["bpp"], rel=1e-12)
        assert res["bpp"][i] > theirs["bpp"]  # rdflow counts the whole file


# ---------------------------------------------------------------- names, qualities, bad input
def test_qualities_from_names():
    from rdflow.evaluate import assign_qualities, quality_of

    assert [quality_of(n) for n in ("hp-q3.pth.tar", "model_quality-4.pth", "quality_5.pt",
                                    "Q7.ckpt", "run2_quality6.pth", "seq12.pth", "best.pth")] == [
        3, 4, 5, 7, 6, None, None]
    pairs, note = assign_qualities([Path("b_q2.pt"), Path("a_q1.pt")], 1, 8)
    assert pairs == [(1, Path("a_q1.pt")), (2, Path("b_q2.pt"))] and note == ""
    # no quality in a name: 1..n in natural sort order, and the note says which got which
    pairs, note = assign_qualities([Path("ckpt10.pt"), Path("ckpt2.pt"), Path("ckpt9.pt")], 1, 8)
    assert [p.name for _, p in pairs] == ["ckpt2.pt", "ckpt9.pt", "ckpt10.pt"]
    assert "ckpt10.pt has no q<N>" in note and "q1=ckpt2.pt, q2=ckpt9.pt, q3=ckpt10.pt" in note
    _, note = assign_qualities([Path("a_q1.pt"), Path("b_q1.pt")], 1, 8)
    assert "two names give quality 1" in note
    _, note = assign_qualities([Path("a_q9.pt")], 1, 6)
    assert "quality 9 is outside 1..6" in note


def _main(capsys, *argv):
    from rdflow.evaluate import main

    rc = main(list(argv))
    return rc, capsys.readouterr().err


def test_no_checkpoints_found(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not a checkpoint")
    rc, err = _main(capsys, ARCH, str(tmp_path / "empty"), "-o", str(tmp_path / "out"))
    assert rc == 2 and f"no checkpoints found in {tmp_path / 'empty'}" in err and ".pth.tar" in err
    rc, err = _main(capsys, ARCH, str(tmp_path / "missing.pth.tar"))
    assert rc == 2 and f"checkpoint {tmp_path / 'missing.pth.tar'} does not exist" in err
    assert not (tmp_path / "out").exists()


def test_unknown_architecture(tmp_path, capsys):
    rc, err = _main(capsys, "foo2020", str(tmp_path))
    assert rc == 2 and "unknown architecture 'foo2020'" in err and "cheng2020-anchor" in err


def test_checkpoint_of_another_architecture_or_not_a_checkpoint(tmp_path, capsys):
    from compressai.zoo import bmshj2018_factorized

    other = save_checkpoint(tmp_path / "fact-q1.pth.tar", bmshj2018_factorized, 1, seed=0)
    rc, err = _main(capsys, ARCH, str(other), "-o", str(tmp_path / "out"))
    assert rc == 2 and f"checkpoint {other} does not fit architecture {ARCH}" in err
    assert "Missing key(s)" in err and "it loads as bmshj2018-factorized" in err
    junk = tmp_path / "junk-q1.pth"
    junk.write_bytes(b"not a torch file")
    rc, err = _main(capsys, ARCH, str(junk))
    assert rc == 2 and f"cannot load checkpoint (quality 1) {junk}" in err
    assert not (tmp_path / "out").exists()


def test_no_run_writes_the_study_and_prints_the_command(tmp_path, capsys):
    from compressai.zoo import bmshj2018_hyperprior

    (tmp_path / "c").mkdir()
    a = save_checkpoint(tmp_path / "c" / "epoch10.pth.tar", bmshj2018_hyperprior, 1, seed=1)
    b = save_checkpoint(tmp_path / "c" / "epoch9.pth.tar", bmshj2018_hyperprior, 1, seed=2)
    (tmp_path / "imgs").mkdir()
    rc, err = _main(capsys, ARCH, str(tmp_path / "c"), "--dataset", str(tmp_path / "imgs"),
                    "-o", str(tmp_path / "out"), "--no-run", "--no-reference", "--", "-n")
    assert rc == 0 and "qualities not read from the names" in err
    study = yaml.safe_load((tmp_path / "out/study.yaml").read_text())
    assert study["codecs"][f"{ARCH}-mse"]["checkpoint"] == [str(b), str(a)]  # natural order
    assert study["datasets"] == {"imgs": {"kind": "local", "path": str(tmp_path / "imgs")}}
    assert "reference" not in study
    assert f"--configfile {tmp_path / 'out/study.yaml'}" in err and err.rstrip().endswith("-n")


def test_console_script_entry_point():
    import importlib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, func = scripts["rdflow-eval"].split(":")
    assert callable(getattr(importlib.import_module(module), func))
