"""Stage train: the ``train.<name>`` recipes (one model per quality, :mod:`rdflow.training`), and
the training table and figure of each trained model the study codes with (``weights: trained``):
``results/train_<model>.csv`` and ``results/figures/train_<model>.{png,pdf}`` in the report.

Rules: workflow/rules/train.smk (``train_model`` runs :func:`train_job` in a process of its
own, ``scripts/train.py``; ``train_quickstart`` trains the shipped model again from its recipe).
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import RdflowError, paths
from ..training import info_path, train_quality, training_images

SECTION = "train"
QUICKSTART = "quickstart"


# -- recipes and config checks (no torch) ------------------------------------------------------
def quickstart_recipe() -> dict:
    """The shipped model's recipe (workflow/resources/models/quickstart/recipe.yaml), with the
    schema's defaults filled in."""
    import yaml

    from ..config import apply_kind_defaults, fill_defaults, load_schema

    with open(paths.MODELS / QUICKSTART / "recipe.yaml") as fh:
        wrapper = {"train": {QUICKSTART: yaml.safe_load(fh)}}
    fill_defaults(wrapper, load_schema())
    apply_kind_defaults(wrapper)
    return wrapper["train"][QUICKSTART]


def recipes(config: dict) -> dict[str, dict]:
    """Every recipe the workflow can train: the config's, and the quickstart model's recipe
    (target ``train_quickstart``) unless the config has its own ``train.quickstart``."""
    out = dict(config.get("train") or {})
    if QUICKSTART not in out:
        out[QUICKSTART] = quickstart_recipe()
    return out


def check(config: dict) -> None:
    """Parse-time checks of every ``train.<name>`` recipe."""
    from ..codecs.learned import ARCH_QUALITIES
    from ..sources.datasets import KODAK_SHA256

    for name, t in (config.get("train") or {}).items():
        where = f"train.{name}"
        if t["architecture"] not in ARCH_QUALITIES:
            raise RdflowError(f"{where}.architecture: unknown architecture {t['architecture']!r}; "
                              f"known: {', '.join(sorted(ARCH_QUALITIES))}")
        qualities, lambdas = t["qualities"], t["lambdas"]
        if len(qualities) != len(lambdas):
            raise RdflowError(
                f"{where}.lambdas has {len(lambdas)} values but {where}.qualities has "
                f"{len(qualities)}: give one λ per quality (in the same order)")
        init = t.get("init_from")
        if init is not None and init not in qualities:
            raise RdflowError(f"{where}.init_from: quality {init} is not in {where}.qualities {qualities}")
        if bool(t.get("images")) == bool(t.get("kodak")):
            raise RdflowError(f"{where}: give either images (a folder of training images) or kodak "
                              "(Kodak image ids to download), not both and not neither")
        bad = [i for i in t.get("kodak") or [] if i not in KODAK_SHA256]
        if bad:
            raise RdflowError(f"{where}.kodak: {bad} are not Kodak images (kodim01 … kodim24)")
        if t.get("images"):
            training_images(t, where=where, folder=t["images"])


# -- the trained models a study codes with -------------------------------------------------------
def used_models(config: dict) -> list[str]:
    """The trained models the study's codecs code with (asked of each codec's class:
    :meth:`rdflow.codecs.base.Codec.trained_model`)."""
    from ..codecs import codec_class

    out = set()
    for name, c in (config.get("codecs") or {}).items():
        model = codec_class(c.get("kind"), where=f"codecs.{name}.kind").trained_model(c)
        if model:
            out.add(model)
    return sorted(out)


def info_files(config: dict, model: str) -> list[str]:
    """The recipe-and-curve JSON of each quality of a model: made in this run, or shipped."""
    from ..codecs import codec_class

    qualities = sorted({q for c in config["codecs"].values()
                        if codec_class(c.get("kind")).trained_model(c) == model
                        for q in c["qualities"]})
    if model in (config.get("train") or {}):
        return [info_path(model, q) for q in qualities]
    return [str(paths.MODELS / model / f"q{q}.json") for q in qualities]


def targets(config: dict) -> list[str]:
    out = []
    for m in used_models(config):
        out += [paths.TRAIN_CSV.format(model=m)] + paths.figure_files(paths.TRAIN_FIGURE, model=m)
    return out


# -- jobs -----------------------------------------------------------------------------------------
def train_job(recipe: dict, name: str, quality: int, *, out_model: str, out_info: str,
              init_model: str | None, device: str, threads: int | None) -> dict:
    """Rule train_model (through scripts/train.py): train one quality of ``train.<name>``."""
    return train_quality(recipe, name, quality, out_model=out_model, out_info=out_info,
                         init_model=init_model, device=device, threads=threads)


def training_rows(model: str, infos: list[str]) -> list[dict]:
    """One row per (quality, logged step) of the loss curves in the info JSONs ``infos``."""
    rows = []
    for p in infos:
        info = json.loads(Path(p).read_text())
        for r in info["curve"]:
            rows.append({"model": model, "quality": info["quality"], "lambda": info["lambda"],
                         "architecture": info["recipe"]["architecture"], "N": info["recipe"].get("N"),
                         "M": info["recipe"].get("M"), "steps": info["steps"], "train_s": info["train_s"],
                         "init_model": Path(info["init_model"]).name if info.get("init_model") else None,
                         "train_images": len(info["train_images"]), **r})
    return rows


def write_training_table(model: str, infos: list[str], out_csv: str, paths_: list[str]) -> None:
    """Rule training_table: the loss curves as a table, and a figure of them."""
    import pandas as pd
    from matplotlib.figure import Figure

    from .. import plots
    from ..io import write_csv

    table = pd.DataFrame(training_rows(model, infos))
    write_csv(out_csv, table)
    fig = Figure(figsize=(9.6, 3.6), layout="constrained")
    axes = fig.subplots(1, 3)
    for (q, g), colour in zip(table.groupby("quality"), ("C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7")):
        label = f"q{q} (λ={g['lambda'].iloc[0]:g})"
        for ax, col in zip(axes, ("loss", "bpp", "psnr")):
            ax.plot(g["step"], g[col], lw=1.0, color=colour, label=label)
    for ax, name in zip(axes, ("loss (λ·255²·MSE + bpp)", "rate of the training crops [bpp]",
                               "PSNR of the training crops [dB]")):
        ax.set_xlabel("step")
        ax.set_title(name, fontsize=9)
        ax.grid(True, alpha=0.3)
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"training of {model}", fontsize=10)
    plots.save(fig, paths_)
