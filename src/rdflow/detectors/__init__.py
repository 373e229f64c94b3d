"""Object detection on original and decoded frames, and its accuracy (rate-accuracy curves).

Backends (``detection.backend`` in config.yaml), one registry :data:`DETECTORS` (a backend is
one :class:`Detector` subclass registered with :func:`register`, plus its config entry):

- ``yolo`` (:mod:`.yolo`): an ultralytics YOLO model (``weights``: ``yolov8n.pt`` or a local
  ``.pt``), loaded once per job, run offline (``YOLO_OFFLINE=1``, ``YOLO_AUTOINSTALL=false``,
  settings kept in a folder the caller names, settings sync off).
- ``hog`` (:mod:`.hog`): OpenCV's HOG + linear SVM people detector; needs no weights and finds
  only class ``person`` (COCO class 0). Its scores are SVM margins, not probabilities.
- ``fastestdet`` (:mod:`.fastestdet`): FastestDet, a small COCO-80 detector whose ONNX weights
  ship with the workflow (workflow/resources/detectors/fastestdet/), run by OpenCV's dnn on the
  CPU.

Accuracy (:mod:`.evaluate`) is COCO-style box mAP computed by faster-coco-eval's
``COCOeval_faster`` against either

- pseudo ground truth: the detector's own output on the uncompressed frame (boxes scoring at
  least ``conf``), the usual practice in video coding for machines, or
- real labels (:mod:`.labels`): YOLO txt files (``class cx cy w h``, normalised) or a COCO json.

Beside mAP, :func:`evaluate` reports detections per frame and their mean confidence at the
operating threshold ``conf``, the proxies used by studies without labels.

Frames are keyed by a string id (an image stem, or a frame index as text). Heavy imports
(torch, ultralytics, cv2, faster_coco_eval) happen inside functions.
"""

from __future__ import annotations

from . import fastestdet, hog, yolo  # noqa: F401  (each registers its backend)
from .base import (DETECTORS, FORMAT, PERSON, Detections, Detector, build,  # noqa: F401
                   detect_frames, detector_class, read_detections, register, resolve_classes,
                   write_detections)
from .evaluate import evaluate  # noqa: F401
from .fastestdet import FastestDetDetector  # noqa: F401
from .hog import HogDetector  # noqa: F401
from .labels import (LABEL_FORMATS, label_format, pseudo_ground_truth,  # noqa: F401
                     read_coco_labels, read_labels, read_yolo_label_dir, read_yolo_labels)
from .yolo import YoloDetector  # noqa: F401
from .yolo_assets import (coco_names, import_ultralytics, random_yolo_weights,  # noqa: F401
                          resolve_weights, ultralytics_asset_url, ultralytics_env,
                          yolo_asset_url)
