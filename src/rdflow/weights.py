"""Where a learned codec's weights come from, and fetching them.

- ``pretrained``: CompressAI zoo files. The URL's file name is CompressAI's own
  (``compressai.zoo.image.model_urls``, not copied here); its base can be replaced with
  ``weights.base_url``. The SHA-256 prefix in the zoo file name is checked.
- ``checkpoint``: a local path, or an http(s) URL fetched into ``resources/weights/checkpoints``.
- ``random``: no file.
"""

from __future__ import annotations

from pathlib import Path

from . import RdflowError

ZOO_DIR = "resources/weights/zoo"
CKPT_DIR = "resources/weights/checkpoints"


def is_url(s: str) -> bool:
    return "://" in s


def weights_file(config: dict, codec: str, quality: int | str) -> str | None:
    """The weights file a coding job of (codec, quality) reads, or None (classical, random)."""
    c = config["codecs"][codec]
    if c["kind"] != "learned":
        return None
    w = c.get("weights", "pretrained")
    if w == "random":
        return None
    if w == "pretrained":
        return f"{ZOO_DIR}/{c['architecture']}/{c.get('metric', 'mse')}/q{quality}.pth.tar"
    src = c["checkpoint"].format(quality=quality)
    if is_url(src):
        return f"{CKPT_DIR}/{codec}/q{quality}.pth.tar"
    return src


def zoo_source_url(architecture: str, metric: str, quality: int, base_url: str | None) -> tuple[str, str | None]:
    """(URL, SHA-256 prefix) of a zoo file, with the base replaced when ``base_url`` is set."""
    from .codecs.learned import zoo_hash_prefix, zoo_url

    url = zoo_url(architecture, metric, int(quality))
    name = url.rsplit("/", 1)[1]
    if base_url:
        url = base_url.rstrip("/") + "/" + name
    return url, zoo_hash_prefix(name)


def fetch_zoo(architecture: str, metric: str, quality: int, dest: str, base_url: str | None) -> Path:
    from .download import fetch

    url, prefix = zoo_source_url(architecture, metric, quality, base_url)
    return fetch(url, dest, sha256_prefix=prefix)


def fetch_checkpoint(config: dict, codec: str, quality: int, dest: str) -> Path:
    from .download import fetch

    src = config["codecs"][codec]["checkpoint"].format(quality=quality)
    if not is_url(src):
        raise RdflowError(f"codecs.{codec}.checkpoint {src} is a local path, nothing to fetch")
    return fetch(src, dest)
