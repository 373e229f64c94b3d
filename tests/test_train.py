"""The train stage: a tiny CompressAI model trained for a few steps, resumed after a kill,
coded through `weights: trained`, and every bad input refused with its key or file."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import REPO, item_file
from rdflow import RdflowError
from rdflow.study import validate

RECIPE = {"architecture": "bmshj2018-factorized", "N": 16, "M": 16, "qualities": [1, 2],
          "lambdas": [0.01, 0.05], "steps": 6, "batch_size": 2, "crop": 32, "checkpoint_every": 3,
          "log_every": 2, "lr": 1e-3}


def images(folder: Path, n: int = 3, size=(48, 40)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        y, x = np.mgrid[0:size[1], 0:size[0]]
        base = np.stack([x * 4 + i * 20, y * 5, (x + y) * 2], axis=-1) % 256
        noisy = np.clip(base + rng.integers(-10, 10, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"img{i}.png")
    return folder


def study(tmp_path: Path, **recipe) -> dict:
    t = {**RECIPE, "images": str(images(tmp_path / "train")), **recipe}
    return {"datasets": {"d": {"kind": "local", "path": str(images(tmp_path / "eval", 1, (64, 64)))}},
            "codecs": {"mine": {"kind": "learned", "architecture": "bmshj2018-factorized",
                                "weights": "trained", "model": "tiny", "qualities": [1, 2]}},
            "train": {"tiny": t}, "complexity": {"enabled": False}, "device": "cpu"}


def test_recipe_checks(tmp_path):
    cfg = validate(study(tmp_path))
    assert cfg["train"]["tiny"]["finetune_steps"] is None      # schema defaults filled
    with pytest.raises(RdflowError, match=r"train.tiny.lambdas has 1 values but train.tiny.qualities has 2"):
        validate(study(tmp_path, lambdas=[0.01]))
    bad = study(tmp_path)
    bad["train"]["tiny"]["lambdaz"] = [1]
    with pytest.raises(RdflowError, match="did you mean `lambdas`"):
        validate(bad)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RdflowError, match="holds no PNG/JPEG image"):
        validate(study(tmp_path, images=str(empty)))
    with pytest.raises(RdflowError, match="init_from: quality 3 is not in"):
        validate(study(tmp_path, init_from=3))


def test_trained_codec_without_a_model_is_refused(tmp_path):
    cfg = study(tmp_path)
    del cfg["train"]
    cfg["codecs"]["mine"]["model"] = "nonesuch"
    with pytest.raises(RdflowError, match=r"codecs.mine.model: no trained model 'nonesuch'.*Add a train.nonesuch"):
        validate(cfg)
    cfg["codecs"]["mine"]["qualities"] = [1, 5]
    cfg["train"] = study(tmp_path)["train"]
    cfg["codecs"]["mine"]["model"] = "tiny"
    with pytest.raises(RdflowError, match=r"qualities: \[5\] are not trained by train.tiny"):
        validate(cfg)


def test_small_images_are_refused(tmp_path):
    from rdflow.training import train_quality

    cfg = validate(study(tmp_path, crop=64))
    with pytest.raises(RdflowError, match=r"img0.png is 48x40, smaller than the 64 px crop"):
        train_quality(cfg["train"]["tiny"], "tiny", 1, out_model=str(tmp_path / "m.pth.tar"),
                      out_info=str(tmp_path / "m.json"), state=str(tmp_path / "s.pt"), device="cpu")


def _train(cfg, tmp_path, name, **kw):
    from rdflow.training import train_quality

    d = tmp_path / name
    return train_quality(copy.deepcopy(cfg["train"]["tiny"]), "tiny", 1, out_model=str(d / "q1.pth.tar"),
                         out_info=str(d / "q1.json"), state=str(d / "q1.state.pt"), device="cpu",
                         threads=1, **kw), d


def test_a_killed_training_resumes_to_the_same_model(tmp_path, monkeypatch):
    import torch

    from rdflow import training as train

    cfg = validate(study(tmp_path))
    full, d_full = _train(cfg, tmp_path, "full")
    assert [r["step"] for r in full["curve"]] == [2, 4, 6]
    assert not (d_full / "q1.state.pt").exists()            # removed once the model is written

    real = train.CropSampler.batch

    def dies_at_step_4(self, seed, step, size):
        if step == 4:
            raise KeyboardInterrupt("killed")
        return real(self, seed, step, size)

    monkeypatch.setattr(train.CropSampler, "batch", dies_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        _train(cfg, tmp_path, "killed")
    d = tmp_path / "killed"
    assert (d / "q1.state.pt").is_file() and not (d / "q1.pth.tar").exists()
    assert torch.load(d / "q1.state.pt", weights_only=True)["step"] == 3
    monkeypatch.setattr(train.CropSampler, "batch", real)
    resumed, _ = _train(cfg, tmp_path, "killed")
    assert [r["step"] for r in resumed["curve"]] == [2, 4, 6]
    a = torch.load(d_full / "q1.pth.tar", weights_only=True)
    b = torch.load(d / "q1.pth.tar", weights_only=True)
    assert a.keys() == b.keys()
    diffs = {k: float((a[k].float() - b[k].float()).abs().max()) for k in a
             if a[k].is_floating_point() and a[k].numel()}
    assert max(diffs.values()) < 1e-4, sorted(diffs.items(), key=lambda kv: -kv[1])[:3]
    np.testing.assert_allclose([r["loss"] for r in resumed["curve"]][1:],
                               [r["loss"] for r in full["curve"]][1:], rtol=1e-4)


def test_a_corrupt_checkpoint_names_the_file(tmp_path):
    cfg = validate(study(tmp_path))
    d = tmp_path / "bad"
    d.mkdir()
    (d / "q1.state.pt").write_bytes(b"\x80\x02 not a checkpoint")
    with pytest.raises(RdflowError, match=r"cannot load training checkpoint .*q1.state.pt.*Delete"):
        _train(cfg, tmp_path, "bad")
    assert not (d / "q1.pth.tar").exists()


def test_a_checkpoint_that_runs_code_is_refused(tmp_path):
    import pickle

    from rdflow.weights import load_torch_file

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    p = tmp_path / "evil.pth.tar"
    p.write_bytes(pickle.dumps({"model": Evil()}))
    with pytest.raises(RdflowError, match="cannot load weights"):
        load_torch_file(p, what="weights", fix="fix it")
    assert not marker.exists()


@pytest.mark.e2e
def test_train_then_code_through_snakemake(tmp_path):
    cfg = study(tmp_path)
    cfg["train"]["tiny"]["init_from"] = 1
    cfg["train"]["tiny"]["finetune_steps"] = 2
    work = tmp_path / "work"
    work.mkdir()
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [str(Path(sys.executable).with_name("snakemake")), "-s", str(REPO / "Snakefile"), "-d", str(work),
           "--configfile", str(work / "config.yaml"), "--cores", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    info = {q: json.loads((work / f"resources/trained/tiny/q{q}.json").read_text()) for q in (1, 2)}
    assert info[1]["steps"] == 6 and info[2]["steps"] == 2          # q2 fine-tuned from q1
    assert info[2]["init_model"].endswith("resources/trained/tiny/q1.pth.tar")
    assert info[1]["lambda"] == 0.01 and info[2]["lambda"] == 0.05
    assert len(info[1]["curve"]) == 3 and all(np.isfinite(r["loss"]) for r in info[1]["curve"])
    rows = [json.loads((item_file(work, "image", "d", "mine", q, "img0", "json")).read_text()) for q in (1, 2)]
    assert {r["weights"] for r in rows} == {"trained(tiny)"}
    assert all(r["bytes"] > 0 and np.isfinite(r["psnr_rgb"]) for r in rows)
