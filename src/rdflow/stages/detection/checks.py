"""Parse-time checks of the ``detection`` section (:func:`check`): the backend, its options and
weights, the class filter, and the label entries (read now when small enough)."""

from __future__ import annotations

import logging
from pathlib import Path

from ... import RdflowError
from ...detectors import label_format, resolve_classes
from .settings import (backend_class, build_detector, class_names_at_parse_time, enabled,
                       labels, settings)
from .units import units

log = logging.getLogger("rdflow.stages.detection")


def frame_sizes(config: dict, source: str, name: str) -> dict[str, tuple[int, int]] | None:
    """Frame id -> (width, height) where known without running a job (None otherwise)."""
    if source == "video":
        from ...sources.sequences import frames, probe_sequence, sequences

        s = sequences(config)[name]
        if s["source"] == "file":
            seq = probe_sequence(config, name)
            w, h = seq.width, seq.height
        else:
            w, h = s["width"], s["height"]
        return {str(f): (w, h) for f in frames(config, name)}
    d = config["datasets"][name]
    if d["kind"] != "local":
        return None
    from PIL import Image

    from ...config import dataset_images

    out = {}
    for image, path in dataset_images(config, name).items():
        try:
            with Image.open(path) as im:
                out[image] = im.size
        except OSError:
            return None  # the coding job reports the unreadable image
    return out


def label_source(config: dict, name: str) -> str:
    """video or image: which kind of unit ``detection.labels.<name>`` belongs to."""
    from ...sources.sequences import sequences

    in_video = name in sequences(config)
    in_image = name in (config.get("datasets") or {})
    if in_video and in_image:
        raise RdflowError(f"detection.labels.{name}: {name!r} is both a video sequence and an "
                          "image dataset; rename one of them")
    if not (in_video or in_image):
        known = sorted(set(sequences(config)) | set(config.get("datasets") or {}))
        raise RdflowError(f"detection.labels.{name}: {name!r} is neither a video sequence nor an "
                          f"image dataset; known: {', '.join(known) or 'none'}")
    return "video" if in_video else "image"


def check_labels(config: dict) -> None:
    """Label entries name a sequence/dataset, a known format and an existing path; files small
    enough are read now (malformed lines, sizes that do not match the frames)."""
    for name, spec in sorted(labels(config).items()):
        where = f"detection.labels.{name}"
        source = label_source(config, name)
        path = Path(str(spec.get("path")))
        fmt = label_format(spec.get("format"), where=f"{where}.format: unknown label format")
        fmt.check_path(path, where)
        if fmt.checked_in_jobs(path):
            log.info("%s: %s is large; checked by the evaluation jobs", where, path)
            continue
        sizes = frame_sizes(config, source, name)
        if sizes is None:
            continue
        try:
            fmt.read(path, sizes, class_names_at_parse_time(config))
        except RdflowError as exc:
            raise RdflowError(f"{where}: {exc}") from None


def check(config: dict) -> None:
    """Parse-time checks of the ``detection`` section (called by :func:`rdflow.config.check`)."""
    if not enabled(config):
        return
    d = settings(config)
    cls = backend_class(config)
    build_detector(config)  # thresholds, sizes, backend options
    names = cls.known_names(d)
    if names is not None and d.get("classes"):
        resolve_classes(d["classes"], names, backend=cls.backend)
    cls.check_weights(d)
    check_labels(config)
    if not units(config):
        raise RdflowError("detection.enabled is true but there is nothing to detect on: add "
                          "video.sequences, or detection.labels for an image dataset")
