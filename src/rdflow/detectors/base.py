"""Detections, the Detector interface and its registry :data:`DETECTORS`, and persistence.

A backend is one class: a subclass of :class:`Detector` registered with :func:`register` under
its ``backend`` name (config ``detection.backend``). What the workflow needs to know about a
backend (its weights file and download, the options it takes from config, whether it runs
torch and may ask for a GPU, whose thread pool a job limits, the class names it knows without
loading a model) is asked of the class, through the class attributes and classmethods below;
their defaults fit a backend without weights that runs on the CPU.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Iterable, Mapping

import numpy as np

from .. import RdflowError
from ..io import read_json, write_json

log = logging.getLogger("rdflow.detectors")

FORMAT = "rdflow-detections/1"

#: The COCO person class id in the 80-class (YOLO) numbering.
PERSON = 0


@dataclass(frozen=True, eq=False)
class Detections:
    """Boxes found in (or labelled on) one frame.

    boxes: (N, 4) float64, ``x1 y1 x2 y2`` in pixels of the frame; scores: (N,) float64 (1.0 for
    labels); classes: (N,) int64 class ids in the detector's numbering; width, height: the
    frame's size; iscrowd: (N,) bool, COCO "crowd" regions (matched but never counted).
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    width: int
    height: int
    iscrowd: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self):
        boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        n = len(boxes)
        scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        classes = np.asarray(self.classes, dtype=np.int64).reshape(-1)
        crowd = (np.zeros(n, dtype=bool) if self.iscrowd is None
                 else np.asarray(self.iscrowd, dtype=bool).reshape(-1))
        if not (len(scores) == len(classes) == len(crowd) == n):
            raise ValueError(f"Detections: {n} boxes, {len(scores)} scores, {len(classes)} "
                             f"classes, {len(crowd)} crowd flags; they must agree")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "iscrowd", crowd)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls, width: int, height: int) -> "Detections":
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64), width, height)

    def select(self, mask: np.ndarray) -> "Detections":
        mask = np.asarray(mask, dtype=bool)
        return Detections(self.boxes[mask], self.scores[mask], self.classes[mask],
                          self.width, self.height, self.iscrowd[mask])

    def take(self, order: np.ndarray) -> "Detections":
        """The detections at the indices ``order``, in that order."""
        return Detections(self.boxes[order], self.scores[order], self.classes[order],
                          self.width, self.height, self.iscrowd[order])

    def above(self, conf: float) -> "Detections":
        """The detections scoring at least ``conf``."""
        return self.select(self.scores >= conf)

    def to_json(self) -> dict:
        d = {"width": self.width, "height": self.height,
             "boxes": [[round(float(v), 3) for v in b] for b in self.boxes],
             "scores": [float(s) for s in self.scores],
             "classes": [int(c) for c in self.classes]}
        if self.iscrowd.any():
            d["iscrowd"] = [bool(c) for c in self.iscrowd]
        return d

    @classmethod
    def from_json(cls, d: Mapping) -> "Detections":
        return cls(np.asarray(d["boxes"], dtype=np.float64).reshape(-1, 4), d["scores"],
                   d["classes"], d["width"], d["height"], d.get("iscrowd"))


def size_text(width: int, height: int) -> str:
    return f"{width}x{height}"


class Detector:
    """A detector: configured in ``__init__`` (cheap), loaded once by :meth:`load` (heavy), then
    :meth:`detect` per frame. ``names`` maps class id -> name; ``class_ids`` are the classes it
    reports (after the ``classes`` filter), the ones accuracy is computed over."""

    backend: ClassVar[str] = ""
    #: scores are probabilities (thresholds must lie in [0, 1])
    probability_scores: ClassVar[bool] = False
    #: runs a torch network: torch's threads, and a GPU job unless its device is cpu
    uses_torch: ClassVar[bool] = False
    #: runs in OpenCV: a job limits OpenCV's thread pool before the detector loads
    uses_opencv: ClassVar[bool] = False
    #: the network's fixed (square) input size; None: ``imgsz`` follows the unit's frames
    input_size: ClassVar[int | None] = None

    # -- what the workflow asks of a backend (``settings``: the config section detection) --
    @classmethod
    def job_options(cls, config: dict) -> dict:
        """Backend options taken from config (beside the thresholds every backend takes)."""
        return {}

    @classmethod
    def weights_path(cls, settings: dict) -> Path | None:
        """The weights file the detection jobs read (an input of the rules), or None."""
        return None

    @classmethod
    def check_weights(cls, settings: dict) -> None:
        """Refuse, at parse time, weights the jobs could not load (RdflowError naming the key)."""

    @classmethod
    def downloads(cls, settings: dict) -> list[str]:
        """Files the backend fetches from the network (the ``download`` target)."""
        return []

    @classmethod
    def weights_url(cls, name: str, settings: dict) -> str:
        """Where the weights file ``name`` of :meth:`downloads` is fetched from."""
        raise RdflowError(f"detection backend {cls.backend} downloads no weights ({name})")

    @classmethod
    def known_names(cls, settings: dict) -> dict[int, str] | None:
        """Class id -> name when known without loading the model, else None."""
        return None

    @classmethod
    def resolve_device(cls, device: str) -> str:
        """cpu or cuda for a detection job (``auto``: cuda when torch sees a GPU); backends
        without torch run on the CPU."""
        if not cls.uses_torch:
            return "cpu"
        if device == "auto":
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise RdflowError(f"detection runs on {device} (detection.device / device) but "
                                  "torch sees no GPU here: set detection.device: cpu")
        return device

    @classmethod
    def uses_gpu(cls, options: dict) -> bool:
        """Whether a job with these options asks the scheduler for a GPU (``resources: gpu``)."""
        return cls.uses_torch and options.get("device", "cpu") != "cpu"

    @classmethod
    def set_threads(cls, threads: int, *, loaded: bool) -> None:
        """Limit the libraries the backend runs in to a job's ``threads``: OpenCV's pool before
        the detector is loaded, torch's after (called both times)."""
        n = max(1, int(threads))
        if cls.uses_opencv and not loaded:
            import cv2

            cv2.setNumThreads(n)
        if cls.uses_torch and loaded:
            import torch

            torch.set_num_threads(n)

    # -- the detector itself -----------------------------------------------------------------
    def __init__(self, *, conf: float = 0.25, map_conf: float = 0.001, iou: float = 0.7,
                 imgsz: int = 640, classes: list[str] | None = None, max_det: int = 300,
                 device: str = "cpu"):
        if self.probability_scores and not 0.0 <= map_conf <= conf <= 1.0:
            raise RdflowError(f"detection.map_conf ({map_conf}) and detection.conf ({conf}) must "
                              f"satisfy 0 <= map_conf <= conf <= 1 for {self.backend}")
        if map_conf > conf:
            raise RdflowError(f"detection.map_conf ({map_conf}) must not exceed detection.conf "
                              f"({conf}): mAP needs the low-scoring boxes too")
        if not 0.0 < iou <= 1.0:
            raise RdflowError(f"detection.iou ({iou}) must be in (0, 1]")
        if int(imgsz) < 32:
            raise RdflowError(f"detection.imgsz ({imgsz}) must be at least 32 pixels")
        self.conf = float(conf)
        self.map_conf = float(map_conf)
        self.iou = float(iou)
        self.imgsz = int(imgsz)
        self.class_filter = list(classes) if classes else None
        self.max_det = int(max_det)
        self.device = device
        self._loaded = False
        self.names: dict[int, str] = {}
        self.class_ids: list[int] = []

    # subclasses implement these two
    def _load(self) -> None:
        raise NotImplementedError

    def _detect(self, rgb: np.ndarray) -> Detections:
        raise NotImplementedError

    def load(self) -> "Detector":
        """Load the model (once); resolves the ``classes`` filter against the model's names."""
        if not self._loaded:
            self._load()
            self.class_ids = resolve_classes(self.class_filter, self.names, backend=self.backend)
            self._loaded = True
        return self

    def detect(self, rgb: np.ndarray) -> Detections:
        """Boxes on one RGB uint8 HxWx3 frame, scoring at least ``map_conf``, best first."""
        _check_rgb(rgb)
        self.load()
        det = self._detect(np.ascontiguousarray(rgb))
        keep = det.scores >= self.map_conf
        if self.class_filter is not None:
            keep &= np.isin(det.classes, self.class_ids)
        det = det.select(keep)
        return det.take(np.argsort(-det.scores, kind="stable")[: self.max_det])

    def signature(self) -> dict:
        """What determines the output; stored with persisted detections to detect staleness."""
        return {"backend": self.backend, "conf": self.conf, "map_conf": self.map_conf,
                "iou": self.iou, "imgsz": self.imgsz, "classes": self.class_filter,
                "max_det": self.max_det}


def _check_rgb(rgb) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 \
            or rgb.shape[2] != 3:
        desc = (f"{rgb.dtype} array of shape {rgb.shape}" if isinstance(rgb, np.ndarray)
                else type(rgb).__name__)
        raise RdflowError(f"detectors take an RGB uint8 HxWx3 frame, got a {desc}")


def resolve_classes(wanted: list[str] | None, names: Mapping[int, str], *,
                    backend: str = "") -> list[int]:
    """Class ids for the names in ``wanted`` (all of ``names`` when None); unknown names are an
    error that lists the valid ones."""
    if not wanted:
        return sorted(names)
    by_name = {v: k for k, v in names.items()}
    unknown = [w for w in wanted if w not in by_name]
    if unknown:
        valid = ", ".join(names[k] for k in sorted(names))
        raise RdflowError(
            f"detection.classes names {', '.join(map(repr, unknown))} unknown to the "
            f"{backend or 'detector'} model; valid names: {valid}")
    return sorted(by_name[w] for w in wanted)


#: Detector backends by ``detection.backend``.
DETECTORS: dict[str, type[Detector]] = {}


def register(cls: type[Detector]) -> type[Detector]:
    """Class decorator: make ``cls`` the backend ``cls.backend``."""
    if not cls.backend:
        raise ValueError(f"{cls.__name__} has no backend name")
    DETECTORS[cls.backend] = cls
    return cls


def detector_class(backend: str, *, where: str = "unknown detection.backend") -> type[Detector]:
    try:
        return DETECTORS[backend]
    except KeyError:
        raise RdflowError(f"{where} {backend!r}; known: {', '.join(sorted(DETECTORS))}") from None


def build(backend: str, **options) -> Detector:
    """A (not yet loaded) detector of ``backend`` with ``options`` from config."""
    cls = detector_class(backend)
    try:
        return cls(**options)
    except TypeError as exc:
        raise RdflowError(f"bad options for detection backend {backend!r}: {exc}") from None


def detect_frames(detector: Detector, frames: Iterable[tuple[str, np.ndarray]]) -> dict[str, Detections]:
    """Run ``detector`` (loaded once) on ``(frame_id, rgb)`` pairs."""
    detector.load()
    return {str(fid): detector.detect(rgb) for fid, rgb in frames}


# ---- persistence -----------------------------------------------------------------------------


def write_detections(path: str | os.PathLike, detections: Mapping[str, Detections],
                     detector: Detector | dict | None = None) -> None:
    """Write per-frame detections (atomic JSON), with the detector's signature and class names."""
    meta: dict = {}
    if isinstance(detector, Detector):
        meta = {"detector": detector.signature(), "names": {str(k): v for k, v in detector.names.items()}}
    elif detector:
        meta = {"detector": dict(detector)}
    write_json(path, {"format": FORMAT, **meta,
                      "frames": {str(k): d.to_json() for k, d in detections.items()}})


def read_detections(path: str | os.PathLike, *, expect: Mapping | None = None) -> dict[str, Detections]:
    """Read :func:`write_detections` output; with ``expect`` (a detector signature), refuse a file
    written with other detector settings."""
    path = Path(path)
    try:
        doc = read_json(path)
    except FileNotFoundError:
        raise RdflowError(f"detections file {path} does not exist") from None
    except ValueError as exc:
        raise RdflowError(f"detections file {path} is not valid JSON ({exc}); delete it and "
                          "rerun") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise RdflowError(f"{path} is not an rdflow detections file (format {FORMAT}); delete "
                          "it and rerun")
    if expect is not None:
        stored = doc.get("detector", {})
        diff = sorted(k for k in set(stored) | set(expect) if stored.get(k) != expect.get(k))
        if diff:
            raise RdflowError(
                f"detections in {path} were made with other detector settings ({', '.join(diff)}"
                f": {[stored.get(k) for k in diff]} vs now {[expect.get(k) for k in diff]}); "
                "delete the file and rerun")
    return {k: Detections.from_json(v) for k, v in doc["frames"].items()}
