"""Stage ablation (preprocessing): derived ("variant") datasets and the figures that compare them.

A *variant* dataset (``datasets.<name>.kind: variant``) takes every image of another image
dataset (``of``: a ``kodak`` or ``local`` dataset) through one preprocessing step
(``preprocess``) and is then coded, measured, tabulated and plotted exactly like any dataset:
its images are ``resources/variants/<name>/<image>.png`` (rules ``preprocess_image__<name>_b<k>``,
one per batch of the coding jobs), its rows
``results/image/<name>/...``, its tables ``results/image_rd_<name>.csv``.

The ``ablation:`` config section is a shorthand: each of ``ablation.variants`` applied to each
of ``ablation.datasets`` becomes the variant dataset ``<dataset>-<variant>`` (added to
``datasets`` when the config is checked: :func:`check`). :func:`plot_ablation` draws, per base
dataset and metric (the curve column of each of the study's ``metrics``, from the registry),
every variant beside the baseline. Rules: workflow/rules/ablation.smk.

Steps (:data:`STEPS`; sizes are ``[width, height]`` in pixels):

* ``resize: [w, h]`` — Pillow LANCZOS resampling to exactly w×h (the aspect ratio is not kept);
* ``downscale: f`` — box average over f×f blocks (the exact mean, rounded half up), after
  cropping the right/bottom remainder so that both sides are multiples of f (output
  ``floor(W/f)×floor(H/f)``);
* ``center_crop: [w, h]`` — the centred w×h window (left/top offsets rounded down).

What the numbers mean: metrics of a variant compare the reconstruction with the *preprocessed*
image (not with the original), and bpp counts bits per pixel of the preprocessed image.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from .. import RdflowError, paths

log = logging.getLogger("rdflow.ablation")

SECTION = "ablation"
#: the preprocessing steps a variant may use (one per variant)
STEPS = ("resize", "downscale", "center_crop")
VARIANT_OF_KINDS = ("kodak", "local")


def _size_arg(value, where: str) -> tuple[int, int]:
    ok = (isinstance(value, (list, tuple)) and len(value) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value))
    if not ok:
        raise RdflowError(f"{where}: expected [width, height] (two positive integers), got {value!r}")
    return int(value[0]), int(value[1])


def check_step(step: dict, where: str) -> tuple[str, object]:
    """The (name, argument) of one preprocessing spec, checked; errors name ``where``."""
    if not isinstance(step, dict) or len(step) != 1:
        raise RdflowError(f"{where}: give exactly one preprocessing step, one of "
                          f"{', '.join(STEPS)} (e.g. resize: [192, 192]); got {step!r}")
    (name, arg), = step.items()
    if name not in STEPS:
        raise RdflowError(f"{where}: unknown preprocessing step {name!r}; known: {', '.join(STEPS)}")
    if name in ("resize", "center_crop"):
        return name, _size_arg(arg, f"{where}.{name}")
    if not isinstance(arg, int) or isinstance(arg, bool) or arg < 2:
        raise RdflowError(f"{where}.downscale: expected an integer factor >= 2, got {arg!r}")
    return name, int(arg)


def describe_step(step: dict) -> str:
    """``resize 192x192``, ``downscale /2``, ``center_crop 256x256``."""
    (name, arg), = step.items()
    if name == "downscale":
        return f"downscale /{arg}"
    return f"{name} {arg[0]}x{arg[1]}"


def apply_step(rgb: np.ndarray, step: dict, *, where: str = "preprocess") -> np.ndarray:
    """Apply one preprocessing step to an HxWx3 uint8 image; returns HxWx3 uint8."""
    from PIL import Image

    name, arg = check_step(step, where)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got {rgb.shape} {rgb.dtype}")
    h, w = rgb.shape[:2]
    if name == "resize":
        im = Image.fromarray(rgb).resize(arg, Image.Resampling.LANCZOS)
        return np.asarray(im, dtype=np.uint8)
    if name == "downscale":
        f = arg
        if w < f or h < f:
            raise RdflowError(f"{where}: cannot downscale a {w}x{h} image by {f}")
        hh, ww = h // f, w // f
        blocks = rgb[:hh * f, :ww * f].reshape(hh, f, ww, f, 3).mean(axis=(1, 3))
        return np.floor(blocks + 0.5).astype(np.uint8)  # exact box mean, rounded half up
    cw, ch = arg
    if cw > w or ch > h:
        raise RdflowError(f"{where}: center_crop {cw}x{ch} is larger than the {w}x{h} image; "
                          "choose a crop no larger than the smallest image of the dataset")
    top, left = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(rgb[top:top + ch, left:left + cw])


def preprocess_image(src: str | os.PathLike, dst: str | os.PathLike, step: dict, *,
                     where: str = "preprocess", sha256: str | None = None) -> tuple[int, int]:
    """Read ``src`` as 8-bit RGB, apply ``step``, write ``dst`` as PNG atomically.

    ``sha256``: when given, ``src`` is verified first. Returns the output (width, height).
    """
    from PIL import Image

    from ..io import atomic_path
    from ..sources.datasets import read_image

    if sha256:
        from ..download import verify

        verify(src, sha256, what=f"source image {Path(src).name}")
    img = read_image(src)
    out = apply_step(img.rgb, step, where=f"{where} ({Path(src).name})")
    with atomic_path(dst) as tmp:
        Image.fromarray(out).save(tmp, format="PNG")
    log.info("%s: %s %dx%d -> %dx%d (%s)", dst, describe_step(step), img.rgb.shape[1],
             img.rgb.shape[0], out.shape[1], out.shape[0], img.source_mode)
    return out.shape[1], out.shape[0]


def preprocess_images(srcs: list, dsts: list, step: dict, *, where: str = "preprocess",
                      sha256: list | None = None) -> list[tuple[int, int]]:
    """:func:`preprocess_image` for each (``srcs[i]``, ``dsts[i]``, ``sha256[i]``): one batch."""
    if len(srcs) != len(dsts) or sha256 is not None and len(sha256) != len(srcs):
        raise RdflowError(f"{where}: {len(srcs)} images, {len(dsts)} outputs and "
                          f"{len(sha256 or [])} digests do not pair up")
    digests = sha256 if sha256 is not None else [None] * len(srcs)
    return [preprocess_image(s, d, step, where=where, sha256=h)
            for s, d, h in zip(srcs, dsts, digests)]


def variant_name(dataset: str, variant: str) -> str:
    return f"{dataset}-{variant}"


def _section_bases(config: dict, datasets: dict, bases) -> list[str]:
    """The base datasets of the ``ablation`` section (default: every kodak/local dataset)."""
    if bases is None:
        bases = sorted(n for n, d in datasets.items() if d.get("kind") in VARIANT_OF_KINDS)
    for b in bases:
        if b not in datasets:
            raise RdflowError(f"ablation.datasets names {b!r}, which is not in datasets; "
                              f"image datasets: {', '.join(sorted(datasets)) or '(none)'}")
        if datasets[b].get("kind") not in VARIANT_OF_KINDS:
            raise RdflowError(f"ablation.datasets: {b!r} is a {datasets[b].get('kind')} "
                              f"dataset; variants apply to {' or '.join(VARIANT_OF_KINDS)} datasets")
    return bases


def _add_section_variants(config: dict, datasets: dict) -> None:
    """Each of ``ablation.variants`` applied to each base dataset, added to ``datasets``."""
    ab = config.get("ablation") or {}
    variants = ab.get("variants") or {}
    if not variants:
        return
    bases = _section_bases(config, datasets, ab.get("datasets"))
    for v, step in variants.items():
        check_step(step, f"ablation.variants.{v}")
        for b in bases:
            name = variant_name(b, v)
            entry = {"kind": "variant", "of": b, "preprocess": dict(step)}
            old = datasets.get(name)
            if old is not None and {k: old.get(k) for k in entry} != entry:
                raise RdflowError(
                    f"ablation.variants.{v} applied to dataset {b!r} makes dataset {name!r}, "
                    f"but datasets.{name} already exists: rename the variant or the dataset")
            if old is None:
                datasets[name] = entry


def _check_variant(datasets: dict, name: str, d: dict) -> None:
    where = f"datasets.{name}"
    of = d.get("of")
    if not of:
        raise RdflowError(f"{where}.of: a variant dataset needs of: <dataset> (the images it "
                          "preprocesses)")
    if of not in datasets:
        raise RdflowError(f"{where}.of names {of!r}, which is not in datasets; image datasets: "
                          f"{', '.join(sorted(datasets))}")
    if datasets[of].get("kind") not in VARIANT_OF_KINDS:
        raise RdflowError(f"{where}.of: {of!r} is a {datasets[of].get('kind')} dataset; a "
                          f"variant preprocesses a {' or '.join(VARIANT_OF_KINDS)} dataset")
    if d.get("images"):
        raise RdflowError(f"{where}.images: a variant codes every image of its dataset {of!r}; "
                          f"choose the subset with datasets.{of}.images")
    check_step(d.get("preprocess"), f"{where}.preprocess")


def expand(config: dict) -> None:
    """Add the variant datasets of the ``ablation`` section to ``datasets``, and check every
    variant dataset (:func:`check`: before any other stage reads the datasets).

    Idempotent (a config may be checked twice). Errors name the config key and the fix.
    """
    datasets = config.setdefault("datasets", {})
    if datasets is None:
        datasets = config["datasets"] = {}
    _add_section_variants(config, datasets)
    check(config)


def check(config: dict) -> None:
    """Every variant dataset (of the ``ablation`` section or written as a dataset): its base
    dataset and its preprocessing step."""
    datasets = config.get("datasets") or {}
    for name, d in datasets.items():
        if d.get("kind") == "variant":
            _check_variant(datasets, name, d)


def variant_label(config: dict, name: str) -> str:
    """The variant's short name: ``r192`` for dataset ``kodak-r192`` made from ``kodak``."""
    of = config["datasets"][name]["of"]
    return name[len(of) + 1:] if name.startswith(f"{of}-") else name


def variants_of(config: dict, dataset: str) -> list[str]:
    """Variant datasets whose ``of`` is ``dataset``, sorted by name."""
    return sorted(n for n, d in (config.get("datasets") or {}).items()
                  if d.get("kind") == "variant" and d.get("of") == dataset)


def base_of(config: dict, variant: str) -> str:
    """The dataset whose images a variant dataset preprocesses."""
    return config["datasets"][variant]["of"]


def members(config: dict, dataset: str) -> list[str]:
    """The baseline dataset and its variants, in this order (the ablation table's inputs)."""
    return [dataset] + variants_of(config, dataset)


def ablation_metrics(config: dict) -> list[str]:
    """The metric columns of the ablation figures: those of an image dataset's RD figures."""
    from .aggregate import figure_metrics

    return figure_metrics(config)


def targets(config: dict) -> list[str]:
    """The ablation table and figures of every dataset that has at least one variant."""
    out = []
    for dataset, d in sorted((config.get("datasets") or {}).items()):
        if d.get("kind") == "variant" or not variants_of(config, dataset):
            continue
        out.append(paths.ABLATION_CSV.format(dataset=dataset))
        for m in ablation_metrics(config):
            out += paths.figure_files(paths.ABLATION_FIGURE, dataset=dataset, metric=m)
    return out


def ablation_table(config: dict, dataset: str, summaries: dict[str, str | os.PathLike]):
    """One table of the baseline's and its variants' summaries (``summaries``: dataset name ->
    summary CSV) with columns ``variant`` (``baseline`` or the variant's name) and
    ``preprocess`` (e.g. ``resize 192x192``) in front."""
    import pandas as pd

    parts = []
    for name, path in summaries.items():
        df = pd.read_csv(path)
        d = config["datasets"][name]
        if name == dataset:
            label, pre = "baseline", "none"
        else:
            label, pre = variant_label(config, name), describe_step(d["preprocess"])
        df.insert(0, "preprocess", pre)
        df.insert(0, "variant", label)
        parts.append(df)
    if not parts:
        raise RdflowError(f"no summaries given for the ablation of dataset {dataset!r}")
    return pd.concat(parts, ignore_index=True)


def write_ablation_table(config: dict, dataset: str, summaries: dict, out_csv) -> None:
    """Rule ablation_table."""
    from ..io import write_csv

    write_csv(out_csv, ablation_table(config, dataset, summaries))


def _empty_figure(df, metric: str, title: str, table_csv, paths_) -> None:
    """The figure of a table without any finite ``metric`` value: it says why."""
    from matplotlib.figure import Figure

    from ..plots import axis_label, missing_reason, note_empty, save

    why = missing_reason(df, metric)
    if metric not in df.columns:
        why += "; the metric must be listed in the metrics config key"
    log.warning("the ablation table %s has no finite %s values (%s)", table_csv, metric, why)
    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.subplots()
    ax.set_xlabel(axis_label("bpp"))
    ax.set_ylabel(axis_label(metric))
    note_empty(ax, f"no finite {metric} values: {why}")
    fig.suptitle(title, fontsize=10)
    save(fig, paths_)


def _codec_panel(ax, part, codec: str, metric: str, variants: list[str], colours: dict,
                 pre: dict) -> None:
    """One codec's panel: the baseline (black, solid) and each variant."""
    from ..plots import axis_label, finite_rows, missing_reason, note_empty, robust_limits

    drawn = 0
    for v in variants:
        g = finite_rows(part[part["variant"] == v], ["bpp", metric], f"ablation {codec} {v}")
        g = g.sort_values("bpp")
        if g.empty:
            continue
        style = dict(color="black", lw=1.8) if v == "baseline" else dict(color=colours[v], lw=1.2)
        label = "baseline" if v == "baseline" else f"{v} ({pre[v]})"
        ax.plot(g["bpp"], g[metric], marker="o", ms=3, label=label, **style)
        drawn += 1
    ax.set_title(codec, fontsize=9)
    ax.set_xlabel(axis_label("bpp"))
    ax.set_ylabel(axis_label(metric))
    ax.grid(True, alpha=0.3)
    if drawn:
        robust_limits(ax)
        ax.legend(fontsize=7)
    else:
        note_empty(ax, f"no finite {metric} values: {missing_reason(part, metric, 'variant')}")


def plot_ablation(config: dict, dataset: str, metric: str, table_csv, paths_) -> None:
    """Rule plot_ablation. One panel per codec: the baseline (black, solid) and each variant,
    ``metric`` vs bpp. Non-finite points are left out, isolated extreme points are left outside
    the axes (:func:`rdflow.plots.robust_limits`); a panel (or the whole figure, when the table
    has no finite ``metric`` value, e.g. a metric not in the ``metrics`` config key) says why it
    is empty."""
    import math

    import pandas as pd
    from matplotlib.figure import Figure

    from ..plots import axis_label, save

    df = pd.read_csv(table_csv)
    title = (f"{dataset}: preprocessing ablation, {axis_label(metric)} vs rate "
             "(each variant measured against its own preprocessed images)")
    values = pd.to_numeric(df[metric], errors="coerce") if metric in df.columns else None
    if values is None or not values.map(math.isfinite).any():
        _empty_figure(df, metric, title, table_csv, paths_)
        return
    codecs = sorted(df["codec"].unique())
    variants = ["baseline"] + sorted(v for v in df["variant"].unique() if v != "baseline")
    ncol = min(3, len(codecs))
    nrow = math.ceil(len(codecs) / ncol)
    fig = Figure(figsize=(4.2 * ncol, 3.4 * nrow + 0.6), layout="constrained")
    axes = fig.subplots(nrow, ncol, squeeze=False)
    colours = {v: f"C{i}" for i, v in enumerate(variants[1:])}
    pre = dict(zip(df["variant"], df["preprocess"]))
    for ax, codec in zip(axes.flat, codecs):
        _codec_panel(ax, df[df["codec"] == codec], codec, metric, variants, colours, pre)
    for ax in list(axes.flat)[len(codecs):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    save(fig, paths_)
