"""Datasets: where images come from, how they are listed, fetched, verified and read.

Kinds (``datasets.<name>.kind`` in config.yaml):

- ``kodak``: the 24 Kodak images, downloaded from ``base_url`` with every file's SHA-256 pinned.
- ``local``: any folder of PNG/JPEG images (``path``), listed when the workflow starts.

Video kinds are added by :mod:`rdflow.video`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import RdflowError

log = logging.getLogger(__name__)

#: SHA-256 of the Kodak Lossless True Color Image Suite as served at r0k.us (pinned facts).
KODAK_SHA256 = {
    "kodim01": "a56e27cbf5f843c048b6af1d6e090760e9c92fadba88b7dee0205918a37523bd",
    "kodim02": "4f4b74a79237e311d72cad958237b5f7088d8bce1c82305ebefe1a70e3022dfd",
    "kodim03": "e25ca1ff2f0c0cb5fdfd5f9b0a0bb21ac4c3de3c84a67f35b09a85d3306249db",
    "kodim04": "e3b946107c5d3441c022f678d0c3caf1e224d81b1604ba840a4f88e562de61aa",
    "kodim05": "10349e963c5c813d327852f82c1795fa4148d69fedffc4c589bee458e3ac3d53",
    "kodim06": "363510303b715d4cbc384e1ce227e466b613a09e1b71ae985882bf8e7fbd9b18",
    "kodim07": "b77d3f006f42414bb242222e0482e750c0fb9e5ee8d4bed2f6f11c5605fe54a4",
    "kodim08": "ba23983c76b4832ee0e8af0592664756841a16779acd69f792e268fb6d13d6e7",
    "kodim09": "6a4361c2fc194feb4edaa9f9a4a0620fb9943e460ac7fdf037fb0f6dd6607a7d",
    "kodim10": "9dfb70f5867c29ff9ed6313683f19b3d867849e40fbc0c4c54a4a89df341cf23",
    "kodim11": "7936814b58b5387fce2e4e2488b4ec830dadd95fa9520f358ddb30990b50f2b6",
    "kodim12": "d78c37c2f04f23761ed2367dd77e2db584ddd4c3950833fecf89f199a8126980",
    "kodim13": "bc34a3ce58dea09dce1704c997171602de90cb34d0c8503a988b77f473d39b08",
    "kodim14": "55a94550ff18f3246c4074fd32b77b0c74447c26b6ad274d564d999c0450ba6e",
    "kodim15": "7538cbb80cb9103606c48b806eae57d56c885c7f90b9b3be70a41160f9cbb683",
    "kodim16": "a89c7268ccd4718ba424a99fc4643c572cf692ca6eae887185ceb4e9f11d2e54",
    "kodim17": "37afcc89fbdcb76d9518e04b2fc011027e2f4cd14b3b2f83cefd721641a47c5b",
    "kodim18": "1a9258c365988961d87a0598725b609139c303ad48a5aad6c503c3b1a87849aa",
    "kodim19": "b7450b264b1b0a411390d8931b112c27905a992520fc90569dc4b920aa32bbdc",
    "kodim20": "3b46c71e3b92a563820ba32936be8330c586c41f938efd94be938386aae4328a",
    "kodim21": "ac958597c82073f6bb65129c68f72b651db5b9efd82e11547d07350214bc268b",
    "kodim22": "1cee58eb1f2d9c7ebb254d208a03c783ce6cf2c4d8c2cf45e235dd23b4ce1b29",
    "kodim23": "e3111a2fd4da24af15d6459ef9eacfe54106b38e27b4a21821b75c3f5d2d5baf",
    "kodim24": "1071c68372cc5a01435c2c225a5cf7d4bb803846ec08bb6b3d6721b156d7cb96",
}
KODAK_BASE_URL = "http://r0k.us/graphics/kodak/kodak/"

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


@dataclass(frozen=True)
class Image:
    """An 8-bit RGB image as read for coding, and what was done to make it RGB."""

    rgb: np.ndarray  # HxWx3 uint8
    source_mode: str  # PIL mode of the file before conversion ("RGB", "L", "RGBA", ...)


def list_local_images(folder: str | os.PathLike, *, key: str = "path") -> dict[str, Path]:
    """Image id (file stem) -> path for every PNG/JPEG in ``folder`` (not recursive).

    Files with other suffixes are skipped with a warning; two files with the same stem are an
    error, since the stem names the image in every output path and CSV row.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise RdflowError(
            f"dataset folder {folder} (config key {key}) does not exist or is not a folder: "
            "point it at a folder of PNG/JPEG images"
        )
    images: dict[str, Path] = {}
    skipped = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file():
            continue
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            if not p.name.upper().startswith(("LICENSE", "README")):  # shipped beside images
                skipped.append(p.name)
            continue
        if p.stem in images:
            raise RdflowError(
                f"dataset folder {folder} holds two images named {p.stem!r} "
                f"({images[p.stem].name} and {p.name}): rename one, image ids must be unique"
            )
        images[p.stem] = p
    if skipped:
        log.warning("dataset folder %s: skipped %d non-image file(s): %s", folder, len(skipped),
                    ", ".join(skipped[:10]))
    if not images:
        raise RdflowError(
            f"dataset folder {folder} (config key {key}) holds no PNG/JPEG image"
        )
    return images


def read_image(path: str | os.PathLike) -> Image:
    """Read an image file as 8-bit RGB.

    Grayscale is replicated to three channels and an alpha channel is dropped (composited on
    nothing: the colour values are kept); the original mode is returned so it can be recorded.
    16-bit images are scaled to 8 bits. Unreadable files raise an error naming the file.
    """
    from PIL import Image as PILImage, UnidentifiedImageError

    path = Path(path)
    try:
        with PILImage.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                scale = 65535.0 if arr.max() > 255 else 255.0
                arr = np.clip(np.round(arr / scale * 255.0), 0, 255).astype(np.uint8)
                rgb = np.repeat(arr[..., None], 3, axis=2)
            else:
                rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise RdflowError(
            f"cannot read image {path}: {exc}. The file is corrupt or not an image: "
            "replace it or remove it from the dataset folder"
        ) from None
    if mode != "RGB":
        log.info("image %s: converted %s to RGB", path, mode)
    return Image(np.ascontiguousarray(rgb), mode)
