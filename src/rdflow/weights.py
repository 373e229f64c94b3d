"""Where a learned codec's weights come from, and fetching them.

- ``pretrained``: CompressAI zoo files. The URL's file name is CompressAI's own
  (``compressai.zoo.image.model_urls``, not copied here); its base can be replaced with
  ``weights.base_url``. The SHA-256 prefix in the zoo file name is checked.
- ``checkpoint``: a local path, or an http(s) URL fetched into ``resources/weights/checkpoints``
  (checked against ``checkpoint_sha256``, one digest per quality, when given).
- ``trained``: a model of the train stage (``train.<model>``: resources/trained/<model>/), else
  one shipped with the workflow (workflow/resources/models/<model>/, the quickstart's).
- ``random``: no file.
"""

from __future__ import annotations

from pathlib import Path

from . import RdflowError

from .paths import CHECKPOINT, ZOO_WEIGHTS


def is_url(s: str) -> bool:
    return "://" in s


def learned_weights_file(config: dict, codec: str, c: dict, quality: int | str) -> str | None:
    """The weights file a coding job of a learned codec (``codecs.<codec>`` = ``c``) reads at
    ``quality``, or None (random weights)."""
    w = c.get("weights", "pretrained")
    if w == "random":
        return None
    if w == "pretrained":
        return ZOO_WEIGHTS.format(architecture=c["architecture"], metric=c.get("metric", "mse"),
                                  quality=quality)
    if w == "trained":
        return trained_file(config, c.get("model"), quality, where=f"codecs.{codec}")
    src = checkpoint_source(c, quality)
    if is_url(src):
        return CHECKPOINT.format(codec=codec, quality=quality)
    return src


def checkpoint_source(c: dict, quality: int | str) -> str:
    """The path or URL of a codec entry's checkpoint at ``quality``: ``checkpoint`` is a
    template with ``{quality}`` or a list of one path/URL per quality, in the order of
    ``qualities``."""
    ck = c["checkpoint"]
    if isinstance(ck, list):
        return ck[[int(q) for q in c["qualities"]].index(int(quality))]
    return ck.replace("{quality}", str(quality))


def check_checkpoints(c: dict, where: str) -> None:
    """``checkpoint`` names one file per quality: a list as long as ``qualities``, or a template
    with ``{quality}`` when there is more than one quality; local files exist."""
    ck, qualities = c.get("checkpoint"), list(c["qualities"])
    if isinstance(ck, list):
        if len(ck) != len(qualities):
            raise RdflowError(f"{where}.checkpoint lists {len(ck)} file(s) but qualities has "
                              f"{len(qualities)} ({qualities}): give one checkpoint per quality, in "
                              "the order of qualities")
    elif "{quality}" not in ck and len(qualities) > 1:
        raise RdflowError(f"{where}.checkpoint {ck!r} has no {{quality}} placeholder, so every "
                          f"quality of {qualities} would load the same file: write the template "
                          "with {quality} (e.g. ckpt/model-q{quality}.pth.tar) or list one file per "
                          "quality")
    for q in qualities:
        src = checkpoint_source(c, q)
        if not is_url(src) and not Path(src).is_file():
            raise RdflowError(f"{where}.checkpoint: the checkpoint of quality {q}, {src}, does not "
                              f"exist (working directory {Path.cwd()}); fix the path or the template")


def trained_file(config: dict, model: str | None, quality: int | str, *, where: str) -> str:
    """The model file of ``weights: trained``: made by the train stage, or shipped."""
    from .paths import MODELS, TRAINED_MODEL, shipped_model

    if not model:
        raise RdflowError(f"{where}.model: weights is 'trained' but no model is named; set model: "
                          "<name of a train recipe> (or quickstart, the shipped model)")
    if model in (config.get("train") or {}):
        return TRAINED_MODEL.format(name=model, quality=quality)
    path = shipped_model(model, quality)
    if path.is_file():
        return str(path)
    have = sorted(p.name for p in MODELS.iterdir() if p.is_dir()) if MODELS.is_dir() else []
    raise RdflowError(
        f"{where}.model: no trained model {model!r} for quality {quality}: there is no train.{model} "
        f"recipe in the config and no shipped file {path}. Add a train.{model} section (see the "
        f"schema), or name a shipped model ({', '.join(have) or 'none'})")


def zoo_url(architecture: str, metric: str, quality: int) -> str:
    """The CompressAI zoo URL of pretrained weights (read from compressai, not copied)."""
    from .runtime import import_stack

    import_stack()
    from compressai.zoo.image import model_urls

    try:
        return model_urls[architecture][metric][quality]
    except KeyError:
        raise RdflowError(
            f"CompressAI publishes no pretrained weights for {architecture} metric={metric} "
            f"quality={quality}: use weights: checkpoint or weights: random"
        ) from None


def zoo_filename(architecture: str, metric: str, quality: int) -> str:
    return zoo_url(architecture, metric, quality).rsplit("/", 1)[1]


def zoo_hash_prefix(filename: str) -> str | None:
    """The SHA-256 prefix a torch-hub style file name carries (``name-<sha256 prefix>.ext``)."""
    import re

    m = re.search(r"-([a-f0-9]{6,})\.", filename)
    return m.group(1) if m else None


def zoo_source_url(architecture: str, metric: str, quality: int, base_url: str | None) -> tuple[str, str | None]:
    """(URL, SHA-256 prefix) of a zoo file, with the base replaced when ``base_url`` is set."""
    url = zoo_url(architecture, metric, int(quality))
    name = url.rsplit("/", 1)[1]
    if base_url:
        url = base_url.rstrip("/") + "/" + name
    return url, zoo_hash_prefix(name)


def fetch_zoo(architecture: str, metric: str, quality: int, dest: str, base_url: str | None) -> Path:
    from .download import fetch
    from .runtime import import_stack

    import_stack()

    url, prefix = zoo_source_url(architecture, metric, quality, base_url)
    return fetch(url, dest, sha256_prefix=prefix)


def fetch_checkpoint(config: dict, codec: str, quality: int, dest: str) -> Path:
    """Download a checkpoint URL; with ``codecs.<codec>.checkpoint_sha256`` its digest is checked.

    The file is only ever loaded with ``torch.load(weights_only=True)``
    (:func:`load_torch_file`), so a hostile pickle cannot run code either way.
    """
    from .download import check_scheme, checkpoint_sha256, fetch

    src = checkpoint_source(config["codecs"][codec], quality)
    if not is_url(src):
        raise RdflowError(f"codecs.{codec}.checkpoint {src} is a local path, nothing to fetch")
    check_scheme(src, f"codecs.{codec}.checkpoint")
    return fetch(src, dest, sha256=checkpoint_sha256(config, codec, quality))


def load_torch_file(path: str | Path, *, what: str, fix: str):
    """``torch.load(weights_only=True)``: tensors and plain containers only, never code."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RdflowError(f"cannot load {what} {path}: {first[:300]}. {fix}") from None
