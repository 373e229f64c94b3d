"""Object detection on original and decoded frames, and its accuracy (rate-accuracy curves).

Backends (``detection.backend`` in config.yaml), one registry :data:`DETECTORS`:

- ``yolo``: an ultralytics YOLO model (``weights``: ``yolov8n.pt`` or a local ``.pt``), loaded
  once per job, run offline (``YOLO_OFFLINE=1``, ``YOLO_AUTOINSTALL=false``, settings kept in a
  folder the caller names, settings sync off).
- ``hog``: OpenCV's HOG + linear SVM people detector; needs no weights and finds only class
  ``person`` (COCO class 0). Its scores are SVM margins, not probabilities.
- ``fastestdet``: FastestDet, a small COCO-80 detector whose ONNX weights ship with the workflow
  (workflow/resources/detectors/fastestdet/), run by OpenCV's dnn on the CPU
  (:mod:`rdflow.fastestdet`).

Accuracy is COCO-style box mAP computed by faster-coco-eval's ``COCOeval_faster`` against either

- pseudo ground truth: the detector's own output on the uncompressed frame (boxes scoring at
  least ``conf``), the usual practice in video coding for machines, or
- real labels: YOLO txt files (``class cx cy w h``, normalised) or a COCO json.

Beside mAP, :func:`evaluate` reports detections per frame and their mean confidence at the
operating threshold ``conf``, the proxies used by studies without labels.

Frames are keyed by a string id (an image stem, or a frame index as text). Heavy imports
(torch, ultralytics, cv2, faster_coco_eval) happen inside functions.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from . import RdflowError
from . import fastestdet as fd
from .io import read_json, write_json

log = logging.getLogger(__name__)

FORMAT = "rdflow-detections/1"

#: The COCO person class id in the 80-class (YOLO) numbering.
PERSON = 0


# --------------------------------------------------------------------------------------------
# Detections
# --------------------------------------------------------------------------------------------


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


def _size_text(width: int, height: int) -> str:
    return f"{width}x{height}"


# --------------------------------------------------------------------------------------------
# Detectors
# --------------------------------------------------------------------------------------------


class Detector:
    """A detector: configured in ``__init__`` (cheap), loaded once by :meth:`load` (heavy), then
    :meth:`detect` per frame. ``names`` maps class id -> name; ``class_ids`` are the classes it
    reports (after the ``classes`` filter), the ones accuracy is computed over."""

    backend: str = ""
    #: scores are probabilities (thresholds must lie in [0, 1])
    probability_scores: bool = False

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
        """Boxes on one RGB uint8 HxWx3 frame, scoring at least ``map_conf``."""
        _check_rgb(rgb)
        self.load()
        det = self._detect(np.ascontiguousarray(rgb))
        keep = det.scores >= self.map_conf
        if self.class_filter is not None:
            keep &= np.isin(det.classes, self.class_ids)
        det = det.select(keep)
        order = np.argsort(-det.scores, kind="stable")[: self.max_det]
        return _reorder(det, order)

    def signature(self) -> dict:
        """What determines the output; stored with persisted detections to detect staleness."""
        return {"backend": self.backend, "conf": self.conf, "map_conf": self.map_conf,
                "iou": self.iou, "imgsz": self.imgsz, "classes": self.class_filter,
                "max_det": self.max_det}


def _reorder(det: Detections, order: np.ndarray) -> Detections:
    return Detections(det.boxes[order], det.scores[order], det.classes[order], det.width,
                      det.height, det.iscrowd[order])


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


def coco_names() -> dict[int, str]:
    """The 80 COCO class names in YOLO numbering (from the yaml ultralytics ships)."""
    import yaml

    spec = __import__("importlib.util").util.find_spec("ultralytics")
    if spec is None or spec.origin is None:
        raise RdflowError("ultralytics is not installed: pip install ultralytics-opencv-headless")
    path = Path(spec.origin).parent / "cfg" / "datasets" / "coco.yaml"
    with open(path) as fh:
        names = yaml.safe_load(fh)["names"]
    return {int(k): str(v) for k, v in names.items()}


# ---- ultralytics environment ----------------------------------------------------------------

#: The env vars that must be set before ``import ultralytics``.
def ultralytics_env(config_dir: str | os.PathLike) -> dict[str, str]:
    return {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false",
            "YOLO_CONFIG_DIR": str(Path(config_dir).resolve())}


def import_ultralytics(config_dir: str | os.PathLike):
    """Import ultralytics offline-safe, keeping its settings under ``config_dir``.

    Sets ``YOLO_OFFLINE=1``, ``YOLO_AUTOINSTALL=false`` and ``YOLO_CONFIG_DIR`` before the import,
    turns settings sync off, and undoes the thread limits the import imposes (it sets
    ``OMP_NUM_THREADS=1``, which torch then adopts if imported after it): torch keeps the thread
    count it had, or the one the caller set.
    """
    config_dir = Path(config_dir)
    config_dir.mkdir(parents=True, exist_ok=True)
    env = ultralytics_env(config_dir)
    already = "ultralytics" in sys.modules
    if already:
        stale = {k: v for k, v in env.items() if os.environ.get(k) != v}
        if stale:
            log.warning("ultralytics was imported before rdflow set %s; offline mode relies on "
                        "rdflow resolving the weights itself", ", ".join(stale))
    import torch  # first, so that its thread pool size is not taken from OMP_NUM_THREADS=1

    threads = torch.get_num_threads()
    omp = os.environ.get("OMP_NUM_THREADS")
    os.environ.update(env)
    import ultralytics
    from ultralytics.utils import SETTINGS

    if omp is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = omp
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if SETTINGS.get("sync", False):
        SETTINGS.update({"sync": False})
    return ultralytics


def ultralytics_asset_url(name: str) -> str:
    """The URL ultralytics would fetch a bare weights name from (its default assets release)."""
    import inspect

    from ultralytics.utils.downloads import attempt_download_asset

    params = inspect.signature(attempt_download_asset).parameters
    repo = params["repo"].default
    release = params["release"].default
    return f"https://github.com/{repo}/releases/download/{release}/{name}"


def resolve_weights(weights: str | os.PathLike, weights_dir: str | os.PathLike, *,
                    offline: bool = True, base_url: str | None = None) -> Path:
    """The local file for ``weights``: an existing path as given, else ``weights_dir/<name>``.

    When that file is missing: offline, an error names the path to place the file at and the
    URL ultralytics would fetch; online (``offline=False``), a bare ultralytics asset name is
    downloaded there (atomically, with retries) from ``base_url`` or ultralytics' release.
    """
    given = Path(weights)
    if given.is_file():
        return given
    if given.exists():
        raise RdflowError(f"YOLO weights {given} (detection.weights) is not a file")
    bare = given.name == str(weights)
    if not bare:
        raise RdflowError(
            f"YOLO weights file {given} (detection.weights) does not exist: fix the path, or "
            "give a bare ultralytics name such as yolov8n.pt to use the resources folder")
    target = Path(weights_dir) / given.name
    if target.is_file():
        return target
    url = (base_url.rstrip("/") + "/" + given.name) if base_url else ultralytics_asset_url(given.name)
    if offline:
        raise RdflowError(
            f"YOLO weights {given.name} (detection.weights) not found at {target}, and rdflow runs "
            f"ultralytics offline (YOLO_OFFLINE=1), so it will not download them. Download {url} "
            f"and place it at {target}, or set detection.weights to a local .pt file")
    from .download import fetch

    log.info("downloading YOLO weights %s to %s", url, target)
    return fetch(url, target)


class YoloDetector(Detector):
    """ultralytics YOLO (v8 and later) detection model from a ``.pt`` file."""

    backend = "yolo"
    probability_scores = True

    def __init__(self, weights: str = "yolov8n.pt", *, weights_dir: str | os.PathLike = "resources/weights",
                 config_dir: str | os.PathLike = "resources/ultralytics", offline: bool = True,
                 base_url: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.weights = str(weights)
        self.weights_dir = Path(weights_dir)
        self.config_dir = Path(config_dir)
        self.offline = offline
        self.base_url = base_url
        self.path: Path | None = None
        self.model = None

    def resolve(self) -> Path:
        """The local weights file (imports ultralytics offline-safe first; see resolve_weights)."""
        if self.path is None:
            import_ultralytics(self.config_dir)
            self.path = resolve_weights(self.weights, self.weights_dir, offline=self.offline,
                                        base_url=self.base_url)
        return self.path

    def _load(self) -> None:
        path = self.resolve()
        from ultralytics import YOLO

        try:
            model = YOLO(str(path))
            task = getattr(model, "task", None)
            names = dict(model.names)
        except Exception as exc:  # ultralytics raises TypeError/RuntimeError/... for bad files
            msg = str(exc).replace("ERROR ❌️ ", "").strip().splitlines()[0].rstrip(".")
            raise RdflowError(
                f"cannot load YOLO weights {path} (detection.weights): {msg}. The file is "
                "corrupt or not an ultralytics checkpoint: delete it and place a good copy there"
                f"{self._url_hint()}") from None
        if task != "detect":
            raise RdflowError(f"YOLO weights {path} (detection.weights) hold a {task!r} model, "
                              "not a detection model: use a detection checkpoint such as "
                              "yolov8n.pt")
        if names and all(str(v) == str(k) for k, v in names.items()) and len(names) == 80:
            names = coco_names()  # an unnamed 80-class model: COCO numbering
        self.names = {int(k): str(v) for k, v in names.items()}
        self.model = model

    def _url_hint(self) -> str:
        name = Path(self.weights).name
        try:
            from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES

            if name in GITHUB_ASSETS_NAMES:
                return f" (ultralytics serves {name} at {ultralytics_asset_url(name)})"
        except Exception:  # pragma: no cover - only for the hint
            pass
        return ""

    def _detect(self, rgb: np.ndarray) -> Detections:
        h, w = rgb.shape[:2]
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # ultralytics takes numpy frames as BGR
        res = self.model.predict(bgr, conf=self.map_conf, iou=self.iou, imgsz=self.imgsz,
                                 classes=self.class_ids if self.class_filter else None,
                                 max_det=self.max_det, device=self.device, verbose=False)[0]
        b = res.boxes
        return Detections(b.xyxy.cpu().numpy(), b.conf.cpu().numpy(),
                          b.cls.cpu().numpy().astype(np.int64), w, h)

    def signature(self) -> dict:
        sig = super().signature()
        from .download import sha256_file

        sig["weights"] = self.weights
        sig["weights_sha256"] = sha256_file(self.resolve())
        return sig


class HogDetector(Detector):
    """OpenCV's HOG + linear SVM pedestrian detector (Dalal-Triggs, 64x128 window).

    The frame is resized so that its longer side is ``imgsz`` (as YOLO does), windows whose SVM
    margin is at least ``map_conf`` are found by ``detectMultiScale`` over an image pyramid
    (``scale`` step, ``win_stride`` pixels), overlapping windows are merged by non-maximum
    suppression at ``iou``. Scores are SVM margins, not probabilities: ``conf`` (default 0, the
    SVM's decision boundary) is the operating point, ``map_conf`` (default -0.5) keeps the weaker
    windows that mAP integrates over.
    """

    backend = "hog"
    WINDOW = (64, 128)  # width, height of the detection window in pixels

    def __init__(self, *, win_stride: int = 8, scale: float = 1.05, conf: float = 0.0,
                 map_conf: float = -0.5, imgsz: int = 640, **kwargs):
        super().__init__(conf=conf, map_conf=map_conf, imgsz=imgsz, **kwargs)
        if self.imgsz < self.WINDOW[1]:
            raise RdflowError(f"detection.imgsz ({imgsz}) is below the HOG window height "
                              f"({self.WINDOW[1]} px): no person could be found; use 320 or more")
        self.win_stride = int(win_stride)
        self.scale = float(scale)
        self.hog = None

    def _load(self) -> None:
        import cv2

        hog = cv2.HOGDescriptor()
        hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.hog = hog
        self.names = {PERSON: "person"}

    def _detect(self, rgb: np.ndarray) -> Detections:
        import cv2

        h, w = rgb.shape[:2]
        f = self.imgsz / max(h, w)
        img = rgb[:, :, ::-1]
        if abs(f - 1.0) > 1e-9:
            img = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))),
                             interpolation=cv2.INTER_LINEAR if f > 1 else cv2.INTER_AREA)
        if img.shape[0] < self.WINDOW[1] or img.shape[1] < self.WINDOW[0]:
            # no window fits (and OpenCV 4.11 crashes on such images): nothing can be found
            log.debug("frame resized to %dx%d is smaller than the HOG window", img.shape[1],
                      img.shape[0])
            return Detections.empty(w, h)
        rects, weights = self.hog.detectMultiScale(
            np.ascontiguousarray(img), hitThreshold=self.map_conf,
            winStride=(self.win_stride, self.win_stride), padding=(8, 8), scale=self.scale,
            groupThreshold=0)
        rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(weights, dtype=np.float64).reshape(-1)
        if len(rects):
            # NMSBoxes wants non-negative scores; shifting them keeps their order
            keep = cv2.dnn.NMSBoxes(rects.tolist(), (scores - scores.min() + 1.0).tolist(), 0.0,
                                    self.iou)
            keep = np.asarray(keep, dtype=np.int64).reshape(-1)
            rects, scores = rects[keep], scores[keep]
        boxes = rects.copy()
        boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
        boxes /= f
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        return Detections(boxes, scores, np.full(len(boxes), PERSON), w, h)

    def signature(self) -> dict:
        sig = super().signature()
        sig.update(win_stride=self.win_stride, scale=self.scale)
        return sig


class FastestDetDetector(Detector):
    """FastestDet (:mod:`rdflow.fastestdet`) from its ONNX file, by OpenCV's dnn on the CPU.

    ``weights``: the shipped FastestDet.onnx by default (its SHA-256 checked when loaded), or
    another FastestDet ONNX export for the 80 COCO classes. The input is fixed at 352x352 (the
    frame is resized to it, no letterbox): ``imgsz`` must be None (or 352). Scores are
    probabilities, obj**0.6 * cls**0.4; defaults conf 0.55, map_conf 0.01, NMS IoU 0.4.
    """

    backend = "fastestdet"
    probability_scores = True

    def __init__(self, weights: str | None = None, *, conf: float = fd.CONF,
                 map_conf: float = fd.MAP_CONF, iou: float = fd.IOU, imgsz: int | None = None,
                 **kwargs):
        if imgsz is not None and int(imgsz) != fd.INPUT:
            raise RdflowError(f"detection.imgsz ({imgsz}) does not apply to fastestdet: its "
                              f"network input is fixed at {fd.INPUT}x{fd.INPUT} (every frame is "
                              "resized to it); leave imgsz unset (null)")
        super().__init__(conf=conf, map_conf=map_conf, iou=iou, imgsz=fd.INPUT, **kwargs)
        self.weights = str(weights or fd.DEFAULT_WEIGHTS)
        self.model: fd.FastestDet | None = None

    def _load(self) -> None:
        self.model = fd.FastestDet(self.weights)
        self.names = dict(self.model.names)

    def _detect(self, rgb: np.ndarray) -> Detections:
        boxes, scores, classes = self.model(rgb, self.map_conf, self.iou)
        return Detections(boxes, scores, classes, rgb.shape[1], rgb.shape[0])

    def signature(self) -> dict:
        sig = super().signature()
        sig["weights"] = self.weights
        sig["weights_sha256"] = (self.model.sha256 if self.model is not None
                                 else fd.sha256(fd.shipped_path(self.weights)))
        return sig


#: Detector backends by ``detection.backend``.
DETECTORS: dict[str, type[Detector]] = {"yolo": YoloDetector, "hog": HogDetector,
                                        "fastestdet": FastestDetDetector}


def build(backend: str, **options) -> Detector:
    """A (not yet loaded) detector of ``backend`` with ``options`` from config."""
    try:
        cls = DETECTORS[backend]
    except KeyError:
        raise RdflowError(f"unknown detection.backend {backend!r}; known: "
                          f"{', '.join(sorted(DETECTORS))}") from None
    try:
        return cls(**options)
    except TypeError as exc:
        raise RdflowError(f"bad options for detection backend {backend!r}: {exc}") from None


def detect_frames(detector: Detector, frames: Iterable[tuple[str, np.ndarray]]) -> dict[str, Detections]:
    """Run ``detector`` (loaded once) on ``(frame_id, rgb)`` pairs."""
    detector.load()
    return {str(fid): detector.detect(rgb) for fid, rgb in frames}


# --------------------------------------------------------------------------------------------
# Persistence
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------


def read_yolo_labels(path: str | os.PathLike, width: int, height: int) -> Detections:
    """One YOLO label file (``class cx cy w h`` per line, normalised to [0, 1]) for a frame of
    ``width`` x ``height`` pixels. A missing file means an image without objects."""
    path = Path(path)
    boxes, classes = [], []
    if path.exists():
        for no, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split()
            what = (f"label file {path} line {no} ({line.strip()[:60]!r}) must be "
                    "'class cx cy w h' (integer class, four numbers normalised to [0, 1])")
            if len(parts) != 5:
                raise RdflowError(f"{what}; it has {len(parts)} fields")
            try:
                c = int(parts[0])
                cx, cy, bw, bh = (float(v) for v in parts[1:])
            except ValueError:
                raise RdflowError(f"{what}; a field is not a number") from None
            vals = (cx, cy, bw, bh)
            if c < 0 or not all(math.isfinite(v) for v in vals) or bw < 0 or bh < 0 \
                    or any(v > 1 + 1e-6 or v < -1e-6 for v in vals):
                raise RdflowError(f"{what}; values out of range (pixel coordinates are not "
                                  "allowed here)")
            boxes.append([(cx - bw / 2) * width, (cy - bh / 2) * height,
                          (cx + bw / 2) * width, (cy + bh / 2) * height])
            classes.append(c)
    return Detections(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.ones(len(boxes)),
                      classes, width, height)


def read_yolo_label_dir(folder: str | os.PathLike,
                        sizes: Mapping[str, tuple[int, int]]) -> dict[str, Detections]:
    """Labels ``folder/<frame_id>.txt`` for each frame id in ``sizes`` (id -> (width, height)).

    A frame without a file has no objects (the YOLO convention), but a folder holding none of
    the files is an error (a wrong path would otherwise read as "nothing to detect")."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RdflowError(f"label folder {folder} does not exist: fix the labels path in config")
    found = [fid for fid in sizes if (folder / f"{fid}.txt").is_file()]
    if sizes and not found:
        some = ", ".join(list(sizes)[:3])
        raise RdflowError(f"label folder {folder} holds none of the label files expected for the "
                          f"frames ({some}, ...: <frame>.txt); fix the labels path in config")
    return {fid: read_yolo_labels(folder / f"{fid}.txt", w, h) for fid, (w, h) in sizes.items()}


def read_coco_labels(path: str | os.PathLike, sizes: Mapping[str, tuple[int, int]], *,
                     names: Mapping[int, str] | None = None) -> dict[str, Detections]:
    """Boxes of a COCO json (``images``, ``annotations`` with ``bbox`` xywh, ``categories``) for
    the frames in ``sizes`` (id -> (width, height)); an image is matched by its ``file_name``
    stem. With ``names`` (the detector's id -> name), categories are mapped to the detector's
    ids by name; annotations of categories the detector does not know are dropped with a
    warning. The image sizes in the json must match the frames'."""
    path = Path(path)
    try:
        doc = read_json(path)
    except FileNotFoundError:
        raise RdflowError(f"COCO label file {path} does not exist: fix the labels path") from None
    except ValueError as exc:
        raise RdflowError(f"COCO label file {path} is not valid JSON: {exc}") from None
    try:
        images = {int(im["id"]): im for im in doc["images"]}
        cats = {int(c["id"]): str(c["name"]) for c in doc["categories"]}
        anns = doc["annotations"]
    except (KeyError, TypeError, ValueError) as exc:
        raise RdflowError(f"COCO label file {path} lacks images/annotations/categories with ids "
                          f"and names ({type(exc).__name__}: {exc})") from None
    by_stem = {Path(str(im.get("file_name", im["id"]))).stem: iid for iid, im in images.items()}
    missing = [fid for fid in sizes if fid not in by_stem]
    if missing:
        raise RdflowError(f"COCO label file {path} has no image for frame(s) "
                          f"{', '.join(missing[:5])} (matched by file_name stem)")
    to_id: dict[int, int] = {}
    if names is not None:
        by_name = {v: k for k, v in names.items()}
        to_id = {cid: by_name[n] for cid, n in cats.items() if n in by_name}
    else:
        to_id = {cid: cid for cid in cats}
    wanted = {by_stem[fid]: fid for fid in sizes}
    per: dict[int, list] = {iid: [] for iid in wanted}
    dropped: dict[str, int] = {}
    for no, a in enumerate(anns):
        iid = int(a.get("image_id", -1))
        if iid not in per:
            continue
        cid = int(a.get("category_id", -1))
        bbox = a.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or cid not in cats:
            raise RdflowError(f"COCO label file {path}: annotation #{no} (id {a.get('id')}) needs "
                              "a known category_id and bbox [x, y, w, h]")
        if cid not in to_id:
            dropped[cats[cid]] = dropped.get(cats[cid], 0) + 1
            continue
        x, y, bw, bh = (float(v) for v in bbox)
        per[iid].append(([x, y, x + bw, y + bh], to_id[cid], bool(a.get("iscrowd", 0))))
    if dropped:
        log.warning("%s: dropped annotations of categories the detector does not know: %s", path,
                    ", ".join(f"{k} ({v})" for k, v in sorted(dropped.items())))
    out = {}
    for iid, fid in wanted.items():
        im = images[iid]
        w, h = sizes[fid]
        if "width" in im and "height" in im and (int(im["width"]), int(im["height"])) != (w, h):
            raise RdflowError(
                f"COCO label file {path}: image {im.get('file_name', iid)} is labelled at "
                f"{_size_text(im['width'], im['height'])} but the frame {fid} is "
                f"{_size_text(w, h)}; use labels made for these frames")
        rows = per[iid]
        out[fid] = Detections(np.asarray([r[0] for r in rows], dtype=np.float64).reshape(-1, 4),
                              np.ones(len(rows)), [r[1] for r in rows], w, h,
                              [r[2] for r in rows])
    return out


#: Label readers by ``format``: (path, sizes, names) -> {frame_id: Detections}.
LABEL_READERS = {
    "yolo": lambda path, sizes, names=None: read_yolo_label_dir(path, sizes),
    "coco": lambda path, sizes, names=None: read_coco_labels(path, sizes, names=names),
}


def read_labels(fmt: str, path: str | os.PathLike, sizes: Mapping[str, tuple[int, int]],
                names: Mapping[int, str] | None = None) -> dict[str, Detections]:
    try:
        reader = LABEL_READERS[fmt]
    except KeyError:
        raise RdflowError(f"unknown label format {fmt!r}; known: "
                          f"{', '.join(sorted(LABEL_READERS))}") from None
    return reader(path, sizes, names)


# --------------------------------------------------------------------------------------------
# Accuracy
# --------------------------------------------------------------------------------------------


def pseudo_ground_truth(original: Mapping[str, Detections], conf: float) -> dict[str, Detections]:
    """The detector's boxes on the uncompressed frames scoring at least ``conf``, as labels."""
    out = {}
    for fid, d in original.items():
        d = d.above(conf)
        out[fid] = Detections(d.boxes, np.ones(len(d)), d.classes, d.width, d.height)
    return out


def evaluate(ground_truth: Mapping[str, Detections], predictions: Mapping[str, Detections], *,
             conf: float = 0.25, class_ids: Iterable[int] | None = None,
             max_dets: int = 300) -> dict:
    """COCO-style box mAP of ``predictions`` against ``ground_truth`` (same frame ids and sizes).

    Returns ``map50`` (AP at IoU 0.5) and ``map50_95`` (AP averaged over IoU 0.50:0.05:0.95),
    each the mean over classes with ground truth (NaN when there is none); ``detections_per_frame``
    and ``mean_confidence`` of predictions scoring at least ``conf`` (the operating point; all
    predictions count towards mAP); ``n_frames``, ``n_gt``, ``n_pred``. With ``class_ids``, boxes
    of other classes are ignored on both sides (a person-only detector is not charged for cars).
    Up to ``max_dets`` highest-scoring predictions per frame count (COCO uses 100).
    """
    from faster_coco_eval import COCO, COCOeval_faster

    gt_ids, pr_ids = set(map(str, ground_truth)), set(map(str, predictions))
    if gt_ids != pr_ids:
        only_gt, only_pr = sorted(gt_ids - pr_ids), sorted(pr_ids - gt_ids)
        raise RdflowError(
            "ground truth and predictions cover different frames: "
            + (f"no predictions for {', '.join(only_gt[:5])}; " if only_gt else "")
            + (f"no ground truth for {', '.join(only_pr[:5])}" if only_pr else ""))
    if not gt_ids:
        raise RdflowError("evaluate() got no frames")
    keep_cls = None if class_ids is None else np.asarray(sorted(set(class_ids)), dtype=np.int64)

    images, anns, dets = [], [], []
    n_gt = n_pred = 0
    counts, conf_scores = [], []
    for i, fid in enumerate(sorted(gt_ids), start=1):
        g, p = ground_truth[fid], predictions[fid]
        if (g.width, g.height) != (p.width, p.height):
            raise RdflowError(
                f"frame {fid}: ground truth is for a {_size_text(g.width, g.height)} frame but "
                f"the predictions were made on a {_size_text(p.width, p.height)} frame; decoded "
                "frames must have the original size (check the codec's padding/cropping)")
        if keep_cls is not None:
            g = g.select(np.isin(g.classes, keep_cls))
            p = p.select(np.isin(p.classes, keep_cls))
        images.append({"id": i, "width": g.width, "height": g.height})
        for b, c, crowd in zip(g.boxes, g.classes, g.iscrowd):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(c) + 1,
                         "bbox": [float(b[0]), float(b[1]), float(w), float(h)],
                         "area": float(w * h), "iscrowd": int(crowd)})
        n_gt += int((~g.iscrowd).sum())
        for b, s, c in zip(p.boxes, p.scores, p.classes):
            dets.append({"image_id": i, "category_id": int(c) + 1, "score": float(s),
                         "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]})
        n_pred += len(p)
        op = p.above(conf)
        counts.append(len(op))
        conf_scores.extend(op.scores.tolist())

    cat_ids = sorted({a["category_id"] for a in anns} | {d["category_id"] for d in dets})
    map50 = map50_95 = float("nan")
    if n_gt:
        coco_gt = COCO({"images": images, "annotations": anns,
                        "categories": [{"id": c, "name": str(c - 1)} for c in cat_ids]})
        if dets:
            coco_dt = coco_gt.loadRes(dets)
            ev = COCOeval_faster(coco_gt, coco_dt, iouType="bbox", print_function=log.debug)
            ev.params.maxDets = [1, 10, int(max_dets)]
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            map50_95, map50 = (float(v) if v >= 0 else float("nan") for v in ev.stats[:2])
        else:
            map50 = map50_95 = 0.0  # objects to find and nothing found
    return {
        "map50": map50,
        "map50_95": map50_95,
        "detections_per_frame": float(np.mean(counts)),
        "mean_confidence": float(np.mean(conf_scores)) if conf_scores else float("nan"),
        "n_frames": len(images),
        "n_gt": n_gt,
        "n_pred": n_pred,
    }
