"""The ``detection`` config section: the backend's class, the detector's options, its weights.

What differs between backends is asked of the backend's class (:mod:`rdflow.detectors.base`);
nothing here imports ultralytics, torch or cv2.
"""

from __future__ import annotations

from pathlib import Path

from ... import RdflowError
from ...detectors import Detector, build, detector_class


def settings(config: dict) -> dict:
    return config.get("detection") or {}


def enabled(config: dict) -> bool:
    return bool(settings(config).get("enabled", False))


def labels(config: dict) -> dict:
    return settings(config).get("labels") or {}


def backend_class(config: dict) -> type[Detector]:
    """The class of ``detection.backend`` (RdflowError naming the known ones)."""
    return detector_class(settings(config).get("backend", "yolo"),
                          where="detection.backend: unknown backend")


def weights_path(config: dict) -> Path | None:
    """The weights file the detection jobs read (None for backends without weights)."""
    return backend_class(config).weights_path(settings(config))


def weights_url(config: dict, name: str) -> str:
    """Where the rule download_detection_weights fetches ``name`` from."""
    return backend_class(config).weights_url(name, settings(config))


def resolve_device(device: str, backend: str) -> str:
    """cpu or cuda for a detection job of ``backend`` (``auto``: cuda when torch sees a GPU)."""
    return detector_class(backend).resolve_device(device)


def auto_imgsz(config: dict, source: str | None, name: str | None) -> int:
    """``detection.imgsz: null``: the unit's own longer side (rounded up to a multiple of 32),
    at most 640 — small clips are not upscaled; 1080p is detected at YOLO's usual 640. Image
    datasets (sizes vary per image) use 640."""
    if source == "video" and name is not None:
        from ...sources.sequences import probe_sequence, sequences

        s = sequences(config).get(name) or {}
        w, h = s.get("width"), s.get("height")
        if not (w and h):
            seq = probe_sequence(config, name)
            w, h = seq.width, seq.height
        return int(min(640, -(-max(w, h) // 32) * 32))
    return 640


def detector_options(config: dict, source: str | None = None, name: str | None = None) -> dict:
    """``backend`` and the keyword options of :func:`rdflow.detectors.build`, as plain JSON
    (also the rules' ``params``, so changing a setting reruns detection), for one unit
    (``source`` video|image, ``name``) since the default image size follows the unit's size."""
    d = settings(config)
    cls = backend_class(config)
    opts: dict = {"backend": cls.backend, "max_det": int(d.get("max_det", 300)),
                  "classes": d.get("classes") or None}
    if d.get("imgsz"):
        opts["imgsz"] = int(d["imgsz"])  # refused by a backend whose input size is fixed
    elif cls.input_size is None:
        opts["imgsz"] = auto_imgsz(config, source, name)
    for key in ("conf", "map_conf", "iou"):
        if d.get(key) is not None:
            opts[key] = float(d[key])
    opts.update(cls.job_options(config))
    opts.update(d.get("options") or {})
    return opts


def gpu(config: dict) -> int:
    """The detection rules' ``gpu`` resource: 1 when the backend runs on a GPU here."""
    return int(backend_class(config).uses_gpu(detector_options(config)))


def build_detector(config: dict, *, device: str | None = None, source: str | None = None,
                   name: str | None = None) -> Detector:
    """The configured detector, not loaded (cheap: no model, no ultralytics import)."""
    opts = detector_options(config, source, name)
    backend = opts.pop("backend")
    if device is not None and "device" in opts:
        opts["device"] = device
    try:
        return build(backend, **opts)
    except RdflowError as exc:
        raise RdflowError(f"config section detection: {exc}") from None


def class_names_at_parse_time(config: dict) -> dict[int, str] | None:
    """The detector's class names when they are known without loading the model: HOG's,
    FastestDet's (the shipped coco.names), and those of ultralytics' COCO-trained assets
    (yolov8n.pt, yolo11s.pt, ...); else None."""
    return backend_class(config).known_names(settings(config))
