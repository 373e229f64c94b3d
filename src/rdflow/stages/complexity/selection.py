"""What the ``complexity:`` section asks for: codecs, qualities, devices, the image, the rule's
inputs and params, and the checks of the section at parse time (:func:`check`)."""

from __future__ import annotations

import re
from pathlib import Path

from ... import RdflowError
from ...measure.images import parse_resolution

#: the ``complexity:`` section's defaults (the schema holds the same values and their meaning)
DEFAULTS = {
    "enabled": False,
    "codecs": None,
    "qualities": "ends",
    "resolutions": ["256x256", "512x512", "768x512", "1920x1080"],
    "devices": None,
    "repeats": 3,
    "warmup": 1,
    "split_repeats": 1,
    "macs": True,
    "threads": 1,
    "isolate": True,
    "image": None,
    "memory_limit_mb": None,
}
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def settings(config: dict) -> dict:
    """The ``complexity:`` section with defaults filled in."""
    out = dict(DEFAULTS)
    out.update(config.get("complexity") or {})
    return out


def enabled(config: dict) -> bool:
    return bool(settings(config)["enabled"])


def codec_names(config: dict) -> list[str]:
    """The codecs measured (names under ``codecs``; not those whose results were made
    elsewhere: nothing runs here to measure), sorted."""
    only = settings(config)["codecs"]
    names = [n for n in sorted(config.get("codecs") or {}) if codec_class(config, n).codes_here]
    return names if only is None else [n for n in names if n in set(only)]


def qualities(config: dict, codec: str) -> list[int]:
    """The qualities of ``codec`` measured: its lowest and highest (``ends``) or all of them."""
    qs = sorted(int(q) for q in config["codecs"][codec]["qualities"])
    if settings(config)["qualities"] == "all":
        return qs
    return sorted({qs[0], qs[-1]})


def codec_class(config: dict, codec: str):
    """The class of ``codecs.<codec>``'s kind (importing rdflow.codecs registers every kind)."""
    from ...codecs.base import codec_class as of_kind

    return of_kind(config["codecs"][codec]["kind"], where=f"codecs.{codec}.kind")


def devices(config: dict, codec: str) -> list[str]:
    """The devices ``codec`` is measured on as configured (``auto`` not yet resolved).
    Codecs without a torch network run on the CPU whatever is configured: one device, ``cpu``."""
    if not codec_class(config, codec).uses_torch:
        return ["cpu"]
    devs = settings(config)["devices"]
    return list(devs) if devs else [str(config.get("device", "auto"))]


def gpus(config: dict, codec: str) -> int:
    """GPUs the codec's job asks for (resources: gpu): 1 when a torch codec may use one."""
    cls, entry = codec_class(config, codec), config["codecs"][codec]
    return int(any(cls.uses_gpu(entry, d) for d in devices(config, codec)))


def image_choice(config: dict) -> tuple[str, str] | str | None:
    """The image measured: ``(dataset, image)`` (the first image of the first downloaded or
    local dataset, when ``complexity.image`` is null), a file path, or None (synthetic)."""
    img = settings(config)["image"]
    if img == "synthetic":
        return None
    if img:
        return str(img)
    from ...config import dataset_images

    for name, d in sorted((config.get("datasets") or {}).items()):
        if d.get("kind") in ("kodak", "local"):
            images = sorted(dataset_images(config, name))
            if images:
                return name, images[0]
    return None


def weights_inputs(config: dict, codec: str) -> dict[str, str]:
    """``{"q<quality>": weights file}`` for the measured qualities of a codec that reads a
    file (the same files the coding jobs read: the codec class's ``weights_file``); empty for
    random and classical."""
    cls, entry = codec_class(config, codec), config["codecs"][codec]
    out = {}
    for q in qualities(config, codec):
        w = cls.weights_file(config, codec, entry, q)
        if w:
            out[f"q{q}"] = w
    return out


def job_params(config: dict, codec: str) -> dict:
    """What a codec's complexity job measures, as the rule's params: a change (codec options,
    qualities, resolutions, devices, repeats, ...) makes Snakemake run the job again."""
    st = settings(config)
    c = {k: v for k, v in config["codecs"][codec].items() if k != "qualities"}
    return {"codec": c, "qualities": qualities(config, codec), "devices": devices(config, codec),
            **{k: v for k, v in st.items() if k not in ("enabled", "codecs", "qualities", "devices")}}


# -- checks ----------------------------------------------------------------------------------
def check(config: dict) -> None:
    """Semantic checks of the ``complexity:`` section at parse time (the schema did the types)."""
    st = settings(config)
    _check_codecs(st, sorted(config.get("codecs") or {}))
    elsewhere = [c for c in st["codecs"] or [] if c in (config.get("codecs") or {})
                 and not codec_class(config, c).codes_here]
    if elsewhere and st["enabled"]:
        raise RdflowError(f"complexity.codecs names {elsewhere}, whose results were made outside "
                          "rdflow (nothing runs here to time or measure): leave them out")
    if st["qualities"] not in ("ends", "all"):
        raise RdflowError(f"complexity.qualities: {st['qualities']!r}; use ends (lowest and highest "
                          "of each codec) or all")
    _check_resolutions(st["resolutions"])
    _check_devices(st["devices"])
    _check_counts(st)
    _check_memory_limit(st)
    img = st["image"]
    if st["enabled"] and img not in (None, "synthetic") and not Path(img).is_file():
        raise RdflowError(f"complexity.image: {img} does not exist; give an existing image file, "
                          "null (the first image of the first dataset) or synthetic")


def _check_codecs(st: dict, known: list[str]) -> None:
    if st["codecs"] is None:
        return
    if not st["codecs"]:
        raise RdflowError("complexity.codecs is an empty list: name codecs from codecs "
                          f"({', '.join(known)}), leave it out (null) for all, or set "
                          "complexity.enabled: false")
    unknown = [c for c in st["codecs"] if c not in known]
    if unknown:
        raise RdflowError(f"complexity.codecs names {unknown}, which are not under codecs; "
                          f"known: {', '.join(known)}")


def _check_resolutions(resolutions) -> None:
    if not resolutions:
        raise RdflowError("complexity.resolutions is empty: list at least one, e.g. [\"512x512\"]")
    sizes = [parse_resolution(r, where=f"complexity.resolutions[{i}]") for i, r in enumerate(resolutions)]
    if len(set(sizes)) != len(sizes):
        raise RdflowError(f"complexity.resolutions lists a resolution twice: {resolutions}")


def _check_devices(devs) -> None:
    if devs is None:
        return
    bad = [d for d in devs if not isinstance(d, str) or not _DEVICE.match(d)]
    if bad or not devs:
        raise RdflowError(f"complexity.devices: {bad or devs} not understood; list auto, cpu, "
                          "cuda or cuda:N (or leave it out: the study's device)")
    if len(set(devs)) != len(devs):
        raise RdflowError(f"complexity.devices lists a device twice: {devs}")


def _check_counts(st: dict) -> None:
    for key, lo in (("repeats", 1), ("warmup", 0), ("threads", 1), ("split_repeats", 0)):
        v = st[key]
        if v is None and key in ("threads", "split_repeats"):
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise RdflowError(f"complexity.{key} must be an integer >= {lo}, got {v!r}")


def _check_memory_limit(st: dict) -> None:
    lim = st["memory_limit_mb"]
    if lim is None:
        return
    if isinstance(lim, bool) or not isinstance(lim, (int, float)) or lim <= 0:
        raise RdflowError(f"complexity.memory_limit_mb must be a positive number of MiB, got {lim!r}")
    if not st["isolate"]:
        raise RdflowError("complexity.memory_limit_mb needs complexity.isolate: true (the limit "
                          "applies to the child process that measures)")


# -- devices, resolved where the job runs ----------------------------------------------------
def _check_cuda(devs: list[str], configured: bool) -> None:
    if not any(d.startswith("cuda") for d in devs):
        return
    import torch

    if not torch.cuda.is_available():
        key = "complexity.devices lists" if configured else "config key device is"
        raise RdflowError(f"{key} {[d for d in devs if d.startswith('cuda')][0]!r} but torch sees no "
                          "CUDA device on this machine: use auto (the GPU when there is one, else "
                          "the CPU) or cpu")


def resolved_devices(config: dict, codec: str) -> list[str]:
    """:func:`devices` with ``auto`` resolved here (cuda when torch sees a GPU, else cpu),
    duplicates dropped; RdflowError when CUDA is asked for but absent."""
    devs = devices(config, codec)
    if not codec_class(config, codec).uses_torch:
        return devs
    _check_cuda(devs, configured=settings(config)["devices"] is not None)
    from ...codecs.learned import resolve_device

    out: list[str] = []
    for d in devs:
        r = resolve_device(d)
        if r not in out:
            out.append(r)
    return out
