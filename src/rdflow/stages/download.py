"""Stage download: the datasets' images and every file the study fetches from the network.

Fetching is rdflow.download (verified, atomic, http/https/file only); the rules are localrules
(compute nodes often have no internet). ``downloads`` here lists the datasets' own files; the
study's ``download`` target is every stage's ``downloads`` together (rdflow.study).
"""

from __future__ import annotations

from .. import RdflowError, paths
from ..config import dataset_images
from ..download import check_urls
from ..sources.datasets import KODAK_SHA256

SECTION = "datasets"


def check(config: dict) -> None:
    """Dataset entries (local folders, Kodak image ids) and every URL in the config."""
    for name, d in (config.get("datasets") or {}).items():
        where = f"datasets.{name}"
        if d["kind"] == "local" and not d.get("path"):
            raise RdflowError(f"{where}.path: a local dataset needs the folder of its images")
        if d["kind"] == "kodak":
            unknown = [i for i in d.get("images", []) or [] if i not in KODAK_SHA256]
            if unknown:
                raise RdflowError(f"{where}.images: {unknown} are not Kodak images (kodim01 … kodim24)")
    check_urls(config)


def targets(config: dict) -> list[str]:
    return []


def downloads(config: dict) -> list[str]:
    out = []
    for dataset, d in sorted((config.get("datasets") or {}).items()):
        if d["kind"] == "kodak":
            out += [paths.KODAK_IMAGE.format(dataset=dataset, image=i) for i in dataset_images(config, dataset)]
    return out


def image_input(config: dict, dataset: str, image: str) -> str:
    """The file a coding job reads: the downloaded copy, a variant's preprocessed copy, or the
    local dataset's own file."""
    d = config["datasets"][dataset]
    if d["kind"] == "kodak":
        return paths.KODAK_IMAGE.format(dataset=dataset, image=image)
    if d["kind"] == "variant":  # made by rule preprocess_image (stages/ablation.py)
        return paths.VARIANT_IMAGE.format(dataset=dataset, image=image)
    return dataset_images(config, dataset)[image]


def image_sha256(config: dict, dataset: str, image: str) -> str | None:
    return KODAK_SHA256[image] if config["datasets"][dataset]["kind"] == "kodak" else None
