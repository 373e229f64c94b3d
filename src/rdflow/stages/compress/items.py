"""Where the coding stage's items are: the study's batches and their folders.

The items of a dataset (its images) or sequence (its selected frames) are sorted and cut every
``batch_size``; the k-th batch of one (dataset | sequence, codec, quality) is one job, and its
outputs are two folders (``paths.IMAGE_BATCH`` / ``paths.FRAME_BATCH``): ``batch<k>`` with each
item's bitstream ``<item>.bin`` and row ``<item>.json``, and the archive ``batch<k>.recon.zip`` with each item's
reconstruction ``<item>.png`` (only when VMAF or detection reads them, or keep_reconstructions;
a reconstruction is named ``batch<k>.recon.zip/<item>.png``, which :func:`rdflow.io.read_png`
reads). Snakemake tracks the folder and the archive, so its cost per job does not grow with the
items in it; a deleted or invalidated folder reruns its batch only. ``medium`` is ``image`` (a dataset) or
``video`` (a sequence), as in detection's units.
"""

from __future__ import annotations

from pathlib import Path

from ... import RdflowError, paths
from ...config import codec_applies, dataset_images


def batch_size(config: dict) -> int:
    return int(config.get("batch_size") or 32)


def batches(items: list, size: int) -> list[list]:
    """``items`` cut into consecutive batches of ``size`` (the last one may be shorter)."""
    return [items[i:i + size] for i in range(0, len(items), size)]


def items(config: dict, medium: str, name: str) -> list:
    """The sorted items of a dataset (image names) or sequence (frame numbers)."""
    if medium == "video":
        from ...sources.sequences import frames

        return sorted(frames(config, name))
    return sorted(dataset_images(config, name))


def item_batches(config: dict, medium: str, name: str) -> list[list]:
    return batches(items(config, medium, name), batch_size(config))


def image_batches(config: dict, dataset: str) -> list[list[str]]:
    return item_batches(config, "image", dataset)


def frame_batches(config: dict, sequence: str) -> list[list[int]]:
    return item_batches(config, "video", sequence)


def image_codecs(config: dict, dataset: str) -> list[str]:
    return [c for c in sorted(config["codecs"]) if codec_applies(config, c, dataset)]


def sources_file(dataset: str, batch: int) -> str:
    """The list of one image batch's source files (rule image_batch_sources)."""
    return paths.IMAGE_BATCH_SOURCES.format(dataset=dataset, batch=batch)


def batch_folder(medium: str, name: str, codec: str, quality, batch: int) -> str:
    """The folder of one batch's bitstreams and rows."""
    if medium == "video":
        return paths.FRAME_BATCH.format(sequence=name, codec=codec, quality=quality, batch=batch)
    return paths.IMAGE_BATCH.format(dataset=name, codec=codec, quality=quality, batch=batch)


def recon_archive(medium: str, name: str, codec: str, quality, batch: int) -> str:
    """The archive of one batch's reconstructions."""
    return batch_folder(medium, name, codec, quality, batch) + paths.RECON_SUFFIX


def batch_folders(config: dict, medium: str, name: str, codec: str, quality) -> list[str]:
    """Every batch folder of one (dataset | sequence, codec, quality): the inputs that make a
    later job wait for (and rerun after) its coding jobs."""
    n = len(item_batches(config, medium, name))
    return [batch_folder(medium, name, codec, quality, b) for b in range(n)]


def recon_archives(config: dict, medium: str, name: str, codec: str, quality) -> list[str]:
    return [f + paths.RECON_SUFFIX for f in batch_folders(config, medium, name, codec, quality)]


def item_files(config: dict, medium: str, name: str, codec: str, quality, ext: str) -> list[str]:
    """One file per item of (dataset | sequence, codec, quality), in item order: ``json`` its
    row, ``bin`` its bitstream, ``png`` its reconstruction."""
    out = []
    for b, batch in enumerate(item_batches(config, medium, name)):
        folder = batch_folder(medium, name, codec, quality, b)
        if ext == "png":
            folder += paths.RECON_SUFFIX
        out += [f"{folder}/{i}.{ext}" for i in batch]
    return out


def missing_item(path: str | Path) -> RdflowError:
    """The error for an item file missing from its batch folder, with the fix."""
    folder = Path(path).parent
    return RdflowError(f"{path} is missing from its batch folder {folder} (deleted after the "
                       f"batch ran?): delete the folder {folder} and run snakemake again; it "
                       "recodes that batch only")


def point_codecs(config: dict, medium: str, name: str) -> list[str]:
    if medium == "video":
        from ...sources.sequences import video_codecs

        return list(video_codecs(config))
    return image_codecs(config, name)


def rows(config: dict, medium: str, name: str) -> list[str]:
    """Every item row of a dataset or sequence (per-item coding), codecs and qualities sorted."""
    return [r for c in point_codecs(config, medium, name) for q in config["codecs"][c]["qualities"]
            for r in item_files(config, medium, name, c, q, "json")]


def folders(config: dict, medium: str, name: str) -> list[str]:
    """Every batch folder of a dataset or sequence (the inputs of its tables)."""
    return [f for c in point_codecs(config, medium, name) for q in config["codecs"][c]["qualities"]
            for f in batch_folders(config, medium, name, c, q)]


def image_rows(config: dict, dataset: str) -> list[str]:
    return rows(config, "image", dataset)


def video_rows(config: dict, sequence: str) -> list[str]:
    return rows(config, "video", sequence)


def image_folders(config: dict, dataset: str) -> list[str]:
    return folders(config, "image", dataset)


def video_folders(config: dict, sequence: str) -> list[str]:
    return folders(config, "video", sequence)


def folders_of_study(config: dict) -> list[str]:
    """Every batch folder of the study."""
    from ...sources.sequences import sequences

    out = [f for d in sorted(config.get("datasets") or {}) for f in image_folders(config, d)]
    return out + [f for s in sorted(sequences(config)) for f in video_folders(config, s)]


def image_jobs(config: dict) -> list[tuple[str, str, int, int, list[str]]]:
    """(dataset, codec, quality, batch index, images) of every image coding job."""
    return [(d, c, int(q), b, images) for d in sorted(config.get("datasets") or {})
            for c in image_codecs(config, d) for q in config["codecs"][c]["qualities"]
            for b, images in enumerate(image_batches(config, d))]


def frame_jobs(config: dict) -> list[tuple[str, str, int, int, list[int]]]:
    """(sequence, codec, quality, batch index, frames) of every per-frame coding job."""
    from ...sources.sequences import sequences, video_codecs

    return [(s, c, int(q), b, frames) for s in sorted(sequences(config)) for c in video_codecs(config)
            for q in config["codecs"][c]["qualities"] for b, frames in enumerate(frame_batches(config, s))]
