"""Stage detection (machine vision): detection on original and decoded frames, rate-accuracy
rows and figures.

The config section ``detection:`` (workflow/schemas/config.schema.yaml) switches it on. For every
video sequence, and for every image dataset that has labels (``detection.labels``), the
detector (:mod:`rdflow.detectors`: YOLO, OpenCV HOG or FastestDet) runs

- once on the uncompressed frames (rule ``detect_original``), and
- once per (codec, quality) on the decoded frames (``detect_decoded``; the 8-bit RGB
  reconstructions the coding jobs left as temp() PNGs, or, for a sequence codec
  (``video_codecs``: x264, x265, ...), the decoded frames its compress_sequence job wrote,
  converted to RGB with the sequence's matrix, range and siting as the original frames are),

each job loading the detector once and writing per-frame detections (JSON; :func:`detect`, in
a detection worker process). :func:`evaluate` then computes, per (sequence|dataset, codec,
quality), COCO mAP@0.5 and mAP@0.5:0.95 (with faster-coco-eval) against

- ``gt = pseudo``: the detector's own confident boxes on the uncompressed frame, and
- ``gt = labels``: real labels (YOLO txt folder or COCO json) when configured,

beside the proxies detections-per-frame and mean confidence, the mean bpp of the coded frames,
and the same accuracy of the uncompressed frames (``uncompressed_*``: the ceiling). Rows are
gathered by :func:`table` in ``results/machine_vision.csv``; :func:`figures` shows mAP and the
proxy versus bpp.

Nothing in this package imports ultralytics, torch or cv2 at import time, and nothing that runs
at parse time imports ultralytics at all.

Frame ids: a video frame is its 0-based index in the file (``"12"``), an image its file stem.
Video labels are therefore ``<index>.txt`` (YOLO) or COCO images whose ``file_name`` stem is the
index.
"""

from __future__ import annotations

from ...lazy import lazy_exports
from .checks import check, check_labels, frame_sizes, label_source  # noqa: F401
from .settings import (auto_imgsz, backend_class, build_detector,  # noqa: F401
                       class_names_at_parse_time, detector_options, enabled, gpu, labels,
                       resolve_device, settings, weights_path, weights_url)
from .units import (FIGURES, SOURCES, decoded_paths, detections_path, downloads,  # noqa: F401
                    evaluation_path, evaluation_paths, figure_paths, frame_ids, image_source_paths,
                    item_paths, original_inputs, points, rate_inputs, rate_rows, sequence_coded,
                    targets, unit_names, units, weights_inputs)

#: what the jobs run, imported when a job first asks (parsing the rules plans only)
__getattr__, __dir__ = lazy_exports(__name__, globals(), {
    ".jobs": ("POOL", "decoded_frames", "detect", "detect_job", "evaluate", "original_frames"),
    ".plots": ("plot_unit",),
    ".tables": ("LEADING", "gather", "table"),
})

SECTION = "detection"
