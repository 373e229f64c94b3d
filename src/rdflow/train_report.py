"""The trained models a study codes with (``weights: trained``) and their training curves:
``results/train_<model>.csv`` and ``results/figures/train_<model>.{png,pdf}`` in the report
(the train stage itself is :mod:`rdflow.train`)."""

from __future__ import annotations

from pathlib import Path

from .train import info_path


def used_models(config: dict) -> list[str]:
    """The trained models the study's codecs code with (``weights: trained``)."""
    return sorted({c["model"] for c in (config.get("codecs") or {}).values()
                   if c.get("kind") == "learned" and c.get("weights") == "trained" and c.get("model")})


def info_files(config: dict, model: str) -> list[str]:
    """The recipe-and-curve JSON of each quality of a model: made in this run, or shipped."""
    from .paths import MODELS

    qualities = sorted({q for c in config["codecs"].values() if c.get("model") == model for q in c["qualities"]})
    if model in (config.get("train") or {}):
        return [info_path(model, q) for q in qualities]
    return [str(MODELS / model / f"q{q}.json") for q in qualities]


def train_targets(config: dict) -> list[str]:
    out = []
    for m in used_models(config):
        out += [f"results/train_{m}.csv"] + [f"results/figures/train_{m}.{e}" for e in ("png", "pdf")]
    return out


def write_training_table(model: str, infos: list[str], out_csv: str, paths: list[str]) -> None:
    """One row per (quality, logged step) of the loss curves, and a figure of them."""
    import json

    import pandas as pd

    from . import plots
    from .io import write_csv

    rows = []
    for p in infos:
        info = json.loads(Path(p).read_text())
        for r in info["curve"]:
            rows.append({"model": model, "quality": info["quality"], "lambda": info["lambda"],
                         "architecture": info["recipe"]["architecture"], "N": info["recipe"].get("N"),
                         "M": info["recipe"].get("M"), "steps": info["steps"], "train_s": info["train_s"],
                         "init_model": Path(info["init_model"]).name if info.get("init_model") else None,
                         "train_images": len(info["train_images"]), **r})
    table = pd.DataFrame(rows)
    write_csv(out_csv, table)
    from matplotlib.figure import Figure

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
    plots.save(fig, paths)
