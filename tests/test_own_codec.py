"""Your own learned codec (issue 15, item 1): ``kind: compressai_model`` names a CompressAI model
class of a module outside rdflow (tests/plugins/own_models/nets.py) and one checkpoint per
quality saved by the test; rdflow codes it end to end through the same bitstream path as the
zoo models, and the numbers equal CompressAI called directly (eval_model's own padding)."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import REPO
from rdflow import RdflowError
from rdflow.study import validate

PLUGINS = REPO / "tests" / "plugins"
MODEL = "own_models.nets:TinyHyperprior"


def save_checkpoint(path: Path, seed: int, N: int = 16, M: int = 24, **extra) -> Path:
    """A TinyHyperprior with seeded random weights (entropy coders updated), as a state dict."""
    import torch

    from own_models.nets import TinyHyperprior

    torch.manual_seed(seed)
    net = TinyHyperprior(N, M)
    net.update(force=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": net.state_dict(), **extra}, path)
    return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    import sys

    sys.path.insert(0, str(PLUGINS))
    folder = tmp_path_factory.mktemp("ckpts")
    for q, seed in ((1, 11), (2, 12)):
        save_checkpoint(folder / f"tiny-q{q}.pth.tar", seed)
    return folder


def entry(ckpts: Path, **over) -> dict:
    c = {"kind": "compressai_model", "model": MODEL, "python_path": str(PLUGINS),
         "checkpoint": str(ckpts / "tiny-q{quality}.pth.tar"), "qualities": [1, 2]}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def study(c: dict) -> dict:
    return {"device": "cpu", "codecs": {"mine": c, "jpeg": {"kind": "jpeg", "qualities": [50]}}}


def crop(n: int = 0, box=(64, 96, 64 + 200, 96 + 136)) -> np.ndarray:
    """A 200x136 crop of a shipped Kodak image: not a multiple of 64, so padding is exercised."""
    src = sorted((REPO / "workflow/resources/data/kodak").glob("*.png"))[n]
    return np.asarray(Image.open(src).convert("RGB").crop(box))


def direct(ckpt: Path, rgb: np.ndarray) -> tuple[int, np.ndarray]:
    """(payload bytes, reconstruction) of CompressAI itself: from_state_dict, update(force=True),
    eval_model's padding (compute_padding, min_div 64), compress, decompress, crop, round."""
    import torch
    import torch.nn.functional as F
    from compressai.ops import compute_padding

    from own_models.nets import TinyHyperprior

    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    net = TinyHyperprior.from_state_dict(state).eval()
    net.update(force=True)
    h, w = rgb.shape[:2]
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255.0
    pad, unpad = compute_padding(h, w, min_div=64)
    with torch.no_grad():
        out = net.compress(F.pad(x, pad, mode="constant", value=0))
        dec = net.decompress(out["strings"], out["shape"])
    x_hat = F.pad(dec["x_hat"], unpad)[0].mul(255).clamp(0, 255).round().byte().permute(1, 2, 0).numpy()
    return sum(len(s[0]) for s in out["strings"]), x_hat


# -- one item, against CompressAI directly ---------------------------------------------------------
def test_codes_like_compressai_itself(ckpts, tmp_path):
    from rdflow.stages.compress import image_job

    config = validate(study(entry(ckpts)))
    rgb = crop()
    png = tmp_path / "crop.png"
    Image.fromarray(rgb).save(png)
    for q in (1, 2):
        out = tmp_path / f"q{q}"
        row = image_job(config=config, dataset="d", image="crop", codec="mine", quality=q,
                        image_path=str(png), bitstream=str(out / "crop.bin"),
                        out_json=str(out / "crop.json"), recon=str(out / "crop.png"),
                        weights_path=str(ckpts / f"tiny-q{q}.pth.tar"))
        payload, x_hat = direct(ckpts / f"tiny-q{q}.pth.tar", rgb)
        size = (out / "crop.bin").stat().st_size
        assert row["bytes"] == size and size == payload + row["header_bytes"]
        assert row["bpp"] == pytest.approx(8 * size / (200 * 136), rel=1e-12)
        rec = np.asarray(Image.open(out / "crop.png"))
        assert np.array_equal(rec, x_hat)
        mse = np.mean((rgb.astype(np.float64) - x_hat.astype(np.float64)) ** 2)
        assert row["psnr_rgb"] == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-9)
        assert row["kind"] == "compressai_model" and row["architecture"] == MODEL
        assert row["weights"] == f"checkpoint(tiny-q{q}.pth.tar)"
        assert json.loads((out / "crop.json").read_text())["bpp"] == row["bpp"]


def test_constructor_args_and_a_list_of_checkpoints(ckpts, tmp_path):
    """args builds the class (strict load_state_dict); checkpoint may list one file per quality."""
    from rdflow.codecs import codec_spec, build

    save_checkpoint(tmp_path / "wide.pt", seed=3, N=24, M=32)
    c = entry(ckpts, checkpoint=[str(ckpts / "tiny-q1.pth.tar"), str(tmp_path / "wide.pt")],
              args={"N": 24, "M": 32}, qualities=[1, 7])
    with pytest.raises(RdflowError, match=r"codecs\.mine\.checkpoint: .*tiny-q1\.pth\.tar does not "
                                          r"fit own_models\.nets:TinyHyperprior built with args"):
        build(codec_spec(validate(study(c)), "mine", 1, str(ckpts / "tiny-q1.pth.tar")))
    net = build(codec_spec(validate(study(c)), "mine", 7, str(tmp_path / "wide.pt"))).net
    assert net.g_a[0].weight.shape[0] == 24 and type(net).__name__ == "TinyHyperprior"
    from rdflow.codecs import weights_file

    assert weights_file(validate(study(c)), "mine", 7) == str(tmp_path / "wide.pt")


# -- bad input: config check -----------------------------------------------------------------------
@pytest.mark.parametrize("over, match", [
    ({"model": "own_models.nope:X"}, r"codecs\.mine\.model: cannot find module 'own_models\.nope'"),
    ({"model": "own_models.nets:Missing"}, r"codecs\.mine\.model: module own_models\.nets "
                                           r".* defines no 'Missing' at top level; it defines: NotACodec, TinyHyperprior"),
    ({"model": "TinyHyperprior"}, r"codecs\.mine\.model: 'TinyHyperprior' is not 'module:Class'"),
    ({"model": None}, r"codecs\.mine\.model is missing"),
    ({"python_path": "no/such/folder"}, r"codecs\.mine\.python_path: no/such/folder is not a folder"),
    ({"checkpoint": None}, r"codecs\.mine\.checkpoint is missing"),
    ({"checkpoint": "CK/tiny-q1.pth.tar"}, r"has no \{quality\} placeholder, so every quality of \[1, 2\]"),
    ({"checkpoint": "CK/tiny-q{quality}.pt"}, r"codecs\.mine\.checkpoint: the checkpoint of quality 1, "
                                              r".*tiny-q1\.pt, does not exist"),
    ({"checkpoint": ["CK/tiny-q1.pth.tar"]}, r"checkpoint lists 1 file\(s\) but qualities has 2"),
    ({"checkpoint_sha256": ["0" * 64]}, r"checkpoint_sha256 has 1 digest\(s\) but qualities has 2"),
    ({"args": 16}, r"config key codecs\.mine\.args: 16 is not of type .array., .object."),
    ({"weights": "random"}, r"codecs\.mine\.weights only applies to kind: learned"),
])
def test_bad_entries_are_refused_at_config_check(ckpts, over, match):
    over = {k: (v.replace("CK", str(ckpts)) if isinstance(v, str) else
                [x.replace("CK", str(ckpts)) for x in v] if isinstance(v, list) and k == "checkpoint" else v)
            for k, v in over.items()}
    c = entry(ckpts, **over)
    if over.get("model", "") is None:
        c.pop("model", None)
    if "checkpoint" in over and over["checkpoint"] is None:
        c.pop("checkpoint", None)
    with pytest.raises(RdflowError, match=match):
        validate(study(c))


def _job(tmp_path, config, ckpt):
    from rdflow.stages.compress import image_job

    png = tmp_path / "img.png"
    Image.fromarray(crop()).save(png)
    return image_job(config=config, dataset="d", image="img", codec="mine", quality=1,
                     image_path=str(png), bitstream=str(tmp_path / "o" / "b.bin"),
                     out_json=str(tmp_path / "o" / "r.json"), weights_path=str(ckpt))


def test_bad_models_and_checkpoints_fail_the_job_with_no_row(ckpts, tmp_path):
    from rdflow.codecs.base import _CACHE

    _CACHE.clear() if hasattr(_CACHE, "clear") else None
    # not a CompressAI model: refused when imported by the job
    config = validate(study(entry(ckpts, model="own_models.nets:NotACodec")))
    with pytest.raises(RdflowError, match=r"NotACodec has no compress or decompress method"):
        _job(tmp_path, config, ckpts / "tiny-q1.pth.tar")
    # a zoo checkpoint (another class): does not fit
    import torch
    from compressai.zoo.image import cfgs, model_architectures

    zoo = model_architectures["bmshj2018-factorized"](*cfgs["bmshj2018-factorized"][1])
    torch.save(zoo.state_dict(), tmp_path / "zoo-q1.pt")
    c = entry(ckpts, checkpoint=str(tmp_path / "zoo-q{quality}.pt"), qualities=[1])
    with pytest.raises(RdflowError, match=r"zoo-q1\.pt does not fit own_models\.nets:TinyHyperprior.*"
                                          r"another class"):
        _job(tmp_path, validate(study(c)), tmp_path / "zoo-q1.pt")
    # a wrong digest: not loaded
    c = entry(ckpts, qualities=[1], checkpoint=str(ckpts / "tiny-q{quality}.pth.tar"),
              checkpoint_sha256=["0" * 64])
    with pytest.raises(RdflowError, match=r"has SHA-256 [0-9a-f]{64}, expected 0{64}"):
        _job(tmp_path, validate(study(c)), ckpts / "tiny-q1.pth.tar")
    # a pickle that runs code is refused (weights_only) and runs nothing
    marker = tmp_path / "ran"
    evil = tmp_path / "evil-q1.pt"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"state_dict": Payload()}, evil)
    c = entry(ckpts, qualities=[1], checkpoint=str(tmp_path / "evil-q{quality}.pt"))
    with pytest.raises(RdflowError, match=r"cannot load codecs\.mine\.checkpoint of quality 1"):
        _job(tmp_path, validate(study(c)), evil)
    assert not marker.exists()
    assert not (tmp_path / "o" / "r.json").exists()


def test_a_right_digest_is_accepted(ckpts, tmp_path):
    ck = ckpts / "tiny-q1.pth.tar"
    c = entry(ckpts, qualities=[1], checkpoint_sha256=[hashlib.sha256(ck.read_bytes()).hexdigest()])
    row = _job(tmp_path, validate(study(c)), ck)
    assert row["bpp"] > 0 and (tmp_path / "o" / "r.json").is_file()


# -- the workflow: rows, BD-rate, complexity (params, MACs) ---------------------------------------
@pytest.mark.e2e
def test_own_codec_through_the_workflow(ckpts, tmp_path):
    from test_e2e import run_snakemake, write_config

    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        Image.fromarray(crop(i)).save(images / f"crop{i}.png")
    cfg = {"device": "cpu", "metrics": ["psnr_rgb"],
           "datasets": {"crops": {"kind": "local", "path": str(images)}},
           "codecs": {"mine": entry(ckpts, python_path=str(PLUGINS)),
                      "jpeg": {"kind": "jpeg", "qualities": [10, 30, 60, 90]}},
           "vmaf": {"enabled": False}, "detection": {"enabled": False},
           "complexity": {"enabled": True, "codecs": ["mine"], "resolutions": ["128x128"],
                          "repeats": 1, "isolate": False},
           "bd_rate": {"anchor": "jpeg", "metrics": ["psnr_rgb"]}}
    write_config(tmp_path, cfg)
    run_snakemake(tmp_path)
    rd = pd.read_csv(tmp_path / "results/image_rd_crops.csv")
    mine = rd[rd.codec == "mine"]
    assert len(mine) == 4 and set(mine.kind) == {"compressai_model"}
    for r in mine.itertuples():
        rgb = np.asarray(Image.open(images / f"{r.image}.png"))
        payload, _ = direct(ckpts / f"tiny-q{r.quality}.pth.tar", rgb)
        assert r.bytes == payload + r.header_bytes
    cx = pd.read_csv(tmp_path / "results/complexity.csv")
    cx = cx[cx.codec == "mine"]
    from own_models.nets import TinyHyperprior

    params = sum(p.numel() for p in TinyHyperprior(16, 24).parameters())
    assert len(cx) >= 2 and (cx.params == params).all()
    assert (cx.enc_kmac_per_px > 0).all() and (cx.dec_kmac_per_px > 0).all()
    bd = pd.read_csv(tmp_path / "results/bd_rate.csv")
    assert "mine" in set(bd.codec)
