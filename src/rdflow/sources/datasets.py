"""Datasets: where images come from, how they are listed, fetched, verified and read.

Kinds (``datasets.<name>.kind`` in config.yaml):

- ``kodak``: the 24 Kodak images, downloaded from ``base_url`` with every file's SHA-256 pinned.
- ``local``: any folder of PNG/JPEG images (``path``), listed when the workflow starts.

Video sequences are :mod:`rdflow.sources.sequences`'s.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import RdflowError

log = logging.getLogger("rdflow.datasets")

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
#: Pillow format names of lossy-coded image files (MPO: a camera's multi-picture JPEG)
LOSSY_FORMATS = frozenset({"JPEG", "MPO"})

#: default of the config key ``max_pixels``: admits 8K (7680x4320 = 33.2 Mpixel) frames
MAX_PIXELS_DEFAULT = 40_000_000
_max_pixels = MAX_PIXELS_DEFAULT


def set_max_pixels(n: int | None) -> int:
    """Set the largest image rdflow decodes (config key ``max_pixels``; None: the default).

    Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``) is set to the same value, so
    both checks agree. Returns the previous value.
    """
    from PIL import Image as PILImage

    global _max_pixels
    old = _max_pixels
    _max_pixels = int(n) if n else MAX_PIXELS_DEFAULT
    PILImage.MAX_IMAGE_PIXELS = _max_pixels
    return old


def max_pixels() -> int:
    return _max_pixels


def _too_large(path, pixels: int, size: tuple[int, int] | None = None) -> RdflowError:
    dims = f"{size[0]}x{size[1]} = " if size else ""
    return RdflowError(
        f"image {path} is {dims}{pixels} pixels, more than max_pixels = {_max_pixels}: refused "
        f"before decoding (as 8-bit RGB it would take {pixels * 3 / 1e9:.2f} GB, more for the "
        f"metrics). If the image is genuine, raise the config key max_pixels "
        f"(e.g. max_pixels: {pixels}); otherwise remove it from the dataset"
    )


def _bomb_error(path, exc: BaseException) -> RdflowError:
    """Pillow's DecompressionBombError/-Warning as rdflow's error."""
    import re

    from PIL import Image as PILImage

    m = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = int(m.group(1)) if m else None
    if pixels is not None and pixels > _max_pixels:
        return _too_large(path, pixels)
    return RdflowError(
        f"image {path}: Pillow refused it as a possible decompression bomb ({exc}). Its limit "
        f"Image.MAX_IMAGE_PIXELS = {PILImage.MAX_IMAGE_PIXELS} is below rdflow's max_pixels = "
        f"{_max_pixels} (something in this process lowered it); if the image is genuine, set the "
        f"config key max_pixels (which sets both) to at least {pixels or 'its pixel count'}"
    )


def check_header(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) from the image's header (nothing decoded); refuses one over max_pixels.

    Returns None when the header cannot be read (the coding job reports that, naming the file).
    """
    return _header(path)[0]


def _header(path) -> tuple[tuple[int, int] | None, str | None]:
    """(size, Pillow format) from the header, as :func:`check_header` (None, None: unreadable)."""
    import warnings

    from PIL import Image as PILImage

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(path) as im:
                size, fmt = im.size, im.format
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise _bomb_error(path, exc) from None
    except Exception:  # noqa: BLE001 - unreadable: left to read_image's message
        return None, None
    if size[0] * size[1] > _max_pixels:
        raise _too_large(path, size[0] * size[1], size)
    return size, fmt


def warn_lossy_sources(dataset: str, formats: dict[str, str | None]) -> list[str]:
    """One warning for a dataset whose files (name -> Pillow format) include lossy-coded ones;
    returns their names."""
    lossy = sorted(n for n, f in formats.items() if f in LOSSY_FORMATS)
    if lossy:
        log.warning(
            "dataset %s: %d of %d image(s) are lossy-coded files (JPEG), e.g. %s: their coding "
            "artefacts are part of the reference every codec is measured against (a codec close "
            "to the source's own JPEG can show a PSNR spike); rows carry source_format and "
            "source_lossy, summaries n_lossy_sources. Use lossless (PNG) sources for RD curves",
            dataset, len(lossy), len(formats), ", ".join(lossy[:5]))
    return lossy


def check_images(config: dict) -> None:
    """Config check: apply ``max_pixels``, and read the header (only) of every image of the
    local datasets, so an oversized one stops the workflow at start, naming the file."""
    set_max_pixels(config.get("max_pixels"))
    for name, d in (config.get("datasets") or {}).items():
        if (d or {}).get("kind") != "local" or not d.get("path") or not Path(d["path"]).is_dir():
            continue  # a missing folder is reported by the dataset's own check
        subset = set(d.get("images") or [])
        formats = {}
        for p in sorted(Path(d["path"]).iterdir()):  # as list_local_images, without its warnings
            if (p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
                    and (not subset or p.stem in subset)):
                formats[p.name] = _header(p)[1]
        warn_lossy_sources(name, formats)


@dataclass(frozen=True)
class Image:
    """An 8-bit RGB image as read for coding, and what was done to make it RGB."""

    rgb: np.ndarray  # HxWx3 uint8
    source_mode: str  # PIL mode of the file before conversion ("RGB", "L", "RGBA", ...)
    format: str | None = None  # Pillow's format of the file ("PNG", "JPEG", ...)

    @property
    def lossy(self) -> bool:
        """Whether the file is itself lossy-coded (JPEG): :data:`LOSSY_FORMATS`."""
        return self.format in LOSSY_FORMATS


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
    16-bit images are scaled to 8 bits. The file's format is kept too; a lossy-coded file
    (JPEG) is logged as a warning naming it. Unreadable files raise an error naming the file. An
    image of more than ``max_pixels`` pixels (config key; :func:`set_max_pixels`) is refused
    from its header, before anything is decoded; Pillow's decompression-bomb error and warning
    become the same RdflowError.
    """
    import warnings

    from PIL import Image as PILImage, UnidentifiedImageError

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            im = PILImage.open(path)  # reads the header only
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise _bomb_error(path, exc) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise RdflowError(
            f"cannot read image {path}: {exc}. The file is corrupt or not an image: "
            "replace it or remove it from the dataset folder"
        ) from None
    try:
        with im:
            if im.size[0] * im.size[1] > _max_pixels:
                raise _too_large(path, im.size[0] * im.size[1], im.size)
            im.load()
            mode, fmt = im.mode, im.format
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
    if fmt in LOSSY_FORMATS:
        log.warning("image %s is a lossy-coded %s file: its artefacts are part of the reference "
                    "the codec is measured against (row column source_lossy)", path, fmt)
    return Image(np.ascontiguousarray(rgb), mode, fmt)
