"""What the stage runs on: units (video sequences, labelled image datasets), their operating
points and frames, and every path its rules read and write (patterns: :mod:`rdflow.paths`)."""

from __future__ import annotations

from ... import paths
from .settings import backend_class, enabled, labels, settings, weights_path

SOURCES = ("video", "image")
FIGURES = ("map", "proxy")


def units(config: dict) -> list[tuple[str, str]]:
    """(source, name) pairs detection runs on: every video sequence, and image datasets with
    labels."""
    from ...sources.sequences import sequences

    out = [("video", s) for s in sorted(sequences(config))]
    lab = labels(config)
    out += [("image", d) for d in sorted(config.get("datasets") or {}) if d in lab]
    return out


def unit_names(config: dict) -> list[str]:
    """The units' names (the rules' ``mvname`` wildcard); none when the stage is off."""
    return sorted({n for _, n in units(config)}) if enabled(config) else []


def points(config: dict, source: str, name: str) -> list[tuple[str, int]]:
    """(codec, quality) operating points of a unit: for a sequence, the image codecs that code
    its frames one by one (``video.codecs``), then the sequence codecs (``video_codecs``) that
    apply to it."""
    if source == "video":
        from ...sources.sequences import video_codecs
        from ..video_codecs import points as sequence_points

        own = [(c, int(q)) for c in video_codecs(config) for q in config["codecs"][c]["qualities"]]
        return own + [(c, q) for s, c, q in sequence_points(config) if s == name]
    from ...config import codec_applies

    codecs = [c for c in sorted(config["codecs"]) if codec_applies(config, c, name)]
    return [(c, int(q)) for c in codecs for q in config["codecs"][c]["qualities"]]


def sequence_coded(config: dict, source: str, codec: str) -> bool:
    """Whether ``codec`` codes a video unit as one bitstream (a ``video_codecs`` entry): its
    decoded frames and rows are then one file each, written by its compress_sequence job."""
    from ..video_codecs import is_sequence_codec

    return source == "video" and is_sequence_codec(config, codec)


def frame_ids(config: dict, source: str, name: str) -> list[str]:
    if source == "video":
        from ...sources.sequences import frames

        return [str(f) for f in frames(config, name)]
    from ...config import dataset_images

    return list(dataset_images(config, name))


def detections_path(source: str, name: str, codec: str | None = None,
                    quality: int | None = None) -> str:
    if codec is None:
        return paths.DETECTIONS_ORIGINAL.format(mvsource=source, mvname=name)
    return paths.DETECTIONS_DECODED.format(mvsource=source, mvname=name, codec=codec,
                                           quality=quality)


def evaluation_path(source: str, name: str, codec: str, quality: int) -> str:
    return paths.DETECTION_EVALUATION.format(mvsource=source, mvname=name, codec=codec,
                                             quality=quality)


def figure_paths(source: str, name: str, figure: str) -> list[str]:
    stem = paths.DETECTION_FIGURE.format(mvsource=source, mvname=name, figure=figure)
    return [f"{stem}.{ext}" for ext in ("png", "pdf")]


def item_paths(config: dict, source: str, name: str, codec: str, quality, ext: str) -> dict:
    """Frame/image id -> a coding job's file for it: ``png`` its reconstruction, ``json`` its
    row (in the batch folders of :mod:`rdflow.stages.compress`)."""
    from ..compress import item_files
    from ..compress.items import items

    files = item_files(config, source, name, codec, quality, ext)
    return {str(i): f for i, f in zip(items(config, source, name), files)}


def decoded_paths(config: dict, source: str, name: str, codec: str, quality) -> list[str]:
    """The temp() reconstructions of the coding jobs (inputs of ``detect_decoded``, which keeps
    them until it ran): the batches' recon folders, or a sequence codec's one file of decoded
    frames."""
    if sequence_coded(config, source, codec):
        from ..video_codecs import recon_path

        return [recon_path(name, codec, quality)]
    from ..compress import recon_archives

    return recon_archives(config, source, name, codec, quality)


def rate_inputs(config: dict, source: str, name: str, codec: str, quality) -> list[str]:
    """What ``evaluate_detection`` waits for to read the rows of :func:`rate_rows`: the batch
    folders, or a sequence codec's one list of frame rows."""
    if sequence_coded(config, source, codec):
        return rate_rows(config, source, name, codec, quality)
    from ..compress import batch_folders

    return batch_folders(config, source, name, codec, quality)


def rate_rows(config: dict, source: str, name: str, codec: str, quality) -> list[str]:
    """The coding jobs' JSON rows (for bpp): one per frame/image, or a sequence codec's one
    list of frame rows."""
    if sequence_coded(config, source, codec):
        return [paths.SEQUENCE_ROWS.format(sequence=name, codec=codec, quality=quality)]
    files = item_paths(config, source, name, codec, quality, "json")
    return [files[f] for f in frame_ids(config, source, name)]


def image_source_paths(config: dict, dataset: str) -> dict[str, str]:
    """Image id -> the file the coding job read (downloaded copy for kodak datasets)."""
    from ...config import dataset_images
    from ..download import image_input

    return {i: str(image_input(config, dataset, i)) for i in dataset_images(config, dataset)}


def original_inputs(config: dict, source: str, name: str) -> list[str]:
    """What ``detect_original`` reads: the sequence file and its probe, or the images."""
    if source == "video":
        from ...sources.sequences import sequence_path

        return [sequence_path(config, name), paths.SEQUENCE_PROBE.format(sequence=name)]
    return list(image_source_paths(config, name).values())


def evaluation_paths(config: dict) -> list[str]:
    return [evaluation_path(s, n, c, q) for s, n in units(config) for c, q in points(config, s, n)]


def targets(config: dict) -> list[str]:
    """Final targets of the stage ([] when detection.enabled is false): the CSV, the figures, and
    every evaluation row (a deleted one is redone, with the CSV)."""
    if not enabled(config):
        return []
    out = [paths.DETECTION_CSV]
    for s, n in units(config):
        for fig in FIGURES:
            out += figure_paths(s, n, fig)
    return out + evaluation_paths(config)


def downloads(config: dict) -> list[str]:
    """What the stage fetches from the network: the backend's weights when it downloads them
    (a bare YOLO weights name with detection.offline: false; rule download_detection_weights)."""
    if not enabled(config):
        return []
    return backend_class(config).downloads(settings(config))


def weights_inputs(config: dict) -> list[str]:
    """The weights file as an input of the detection rules ([] for a backend without one)."""
    w = weights_path(config)
    return [str(w)] if w is not None else []
