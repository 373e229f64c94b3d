"""FastestDet: a small COCO-80 detector that ships with the workflow, run by OpenCV's dnn module.

FastestDet (Xuehao Ma, 2022, BSD-3-Clause: workflow/resources/detectors/fastestdet/LICENSE.md)
is a ~250k-parameter single-scale anchor-free detector. ``workflow/resources/detectors/
fastestdet/`` holds its ONNX export (``FastestDet.onnx``, SHA-256 :data:`SHA256`) and the
class names (``coco.names``: the 80 COCO classes in YOLO order, person = 0). The backend
``fastestdet`` (:class:`FastestDetDetector`) wraps :class:`FastestDet`. Six of the file's names
are Darknet spellings (motorbike, aeroplane, sofa, pottedplant, diningtable, tvmonitor):
:func:`names` gives COCO's (motorcycle, airplane, couch, ...), the names ultralytics uses.

What the shipped network computes, as measured on the shared clips:

- input ``1x3x352x352`` float32 in [0, 1], channels in **BGR** order: the authors train on
  ``cv2.imread`` images, and on the shared cars clip BGR input finds more cars with higher
  scores (frame 0, score >= 0.55: six cars at 0.61-0.81 against four at 0.63-0.73) and, over
  its 30 frames at score >= 0.5, none of the 22 parking meters, 10 phones and 10 suitcases
  that RGB input reports. The frame is resized to 352x352 without letterbox (bilinear, as in
  the authors' training), so boxes are relative to the whole frame.
- output ``1x85x22x22``: channel 0 objectness and channels 5-84 the class scores are already
  probabilities (a sigmoid and a softmax are part of the graph: objectness lies in (0, 1),
  the class scores of a cell sum to 1), channels 1-4 are raw box terms tx, ty, tw, th.

Decoding (:func:`decode`), per cell (gy, gx) of the G x G grid, all cells at once: class =
argmax of the class scores, score = obj**0.6 * cls**0.4 (the authors' weighting), centre
((tanh(tx) + gx) / G, (tanh(ty) + gy) / G) and size (sigmoid(tw), sigmoid(th)) as fractions
of the frame; boxes are clipped to the frame, then class-wise non-maximum suppression.

Nothing here imports cv2 at import time.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from .. import RdflowError
from .base import Detections, Detector, register

#: The shipped files, relative to the repository (resolved by :func:`rdflow.paths.shipped`).
FOLDER = "workflow/resources/detectors/fastestdet"
DEFAULT_WEIGHTS = f"{FOLDER}/FastestDet.onnx"
NAMES_FILE = f"{FOLDER}/coco.names"
SHA256 = "31cb14c017fce347cb4c846ec62fdf00d76bb3beecdf4be21e7116ac67feb880"
#: coco.names spells six classes the Darknet/VOC way; rdflow uses COCO's (and ultralytics')
#: names, so that COCO json labels map by name and ``classes`` means the same for every backend.
COCO_SPELLING = {"motorbike": "motorcycle", "aeroplane": "airplane", "sofa": "couch",
                 "pottedplant": "potted plant", "diningtable": "dining table", "tvmonitor": "tv"}
#: The network's fixed input size (square).
INPUT = 352
#: Defaults of the backend (see the schema's detection.conf / map_conf / iou).
CONF = 0.55
MAP_CONF = 0.01
IOU = 0.4


def shipped_path(path: str | os.PathLike) -> Path:
    from ..paths import shipped

    return Path(shipped(str(path)))


def default_weights() -> Path:
    """The shipped ONNX file (beside the Snakefile unless the working directory has a copy)."""
    return shipped_path(DEFAULT_WEIGHTS)


def is_default(path: str | os.PathLike) -> bool:
    return shipped_path(path).resolve() == default_weights().resolve()


@functools.lru_cache(maxsize=1)
def _names() -> tuple[str, ...]:
    path = shipped_path(NAMES_FILE)
    try:
        lines = [ln.strip() for ln in path.read_text().splitlines()]
    except OSError as exc:
        raise RdflowError(f"FastestDet class names {path} cannot be read ({exc.strerror}): "
                          f"restore {NAMES_FILE} from the repository") from None
    names = tuple(COCO_SPELLING.get(ln, ln) for ln in lines if ln)
    if len(names) != 80:
        raise RdflowError(f"FastestDet class names {path} hold {len(names)} names, not the 80 "
                          f"COCO classes: restore {NAMES_FILE} from the repository")
    return names


def names() -> dict[int, str]:
    """Class id -> name: the 80 COCO classes in YOLO numbering and COCO's spelling
    (``{0: 'person', 2: 'car', 3: 'motorcycle'}``), read from the shipped ``coco.names`` (no
    model is loaded)."""
    return dict(enumerate(_names()))


def sha256(path: str | os.PathLike) -> str:
    from ..download import sha256_file

    return sha256_file(path)


def check_default(path: Path, digest: str) -> None:
    """Refuse a default weights file whose SHA-256 is not the shipped one's."""
    if digest != SHA256:
        raise RdflowError(
            f"FastestDet weights {path} have SHA-256 {digest}, not {SHA256} (the FastestDet.onnx "
            f"shipped with rdflow, 998169 bytes): the file is corrupt or was replaced. Restore "
            f"it from the repository (git checkout -- {DEFAULT_WEIGHTS}), or set "
            "detection.weights to another FastestDet ONNX file")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for large |x|


def preprocess(rgb: np.ndarray) -> np.ndarray:
    """The network's input blob (1x3x352x352 float32, BGR, [0, 1]) for an RGB uint8 frame."""
    import cv2

    small = cv2.resize(rgb, (INPUT, INPUT), interpolation=cv2.INTER_LINEAR)
    return small[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) * np.float32(1 / 255)


def decode(out: np.ndarray, width: int, height: int, min_score: float = 0.0
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (N x 4, x1 y1 x2 y2 pixels of a ``width`` x ``height`` frame, clipped to it), scores
    and class ids of the cells of a ``1 x (5 + classes) x G x G`` output scoring at least
    ``min_score``; before non-maximum suppression, one box per cell."""
    out = np.asarray(out)
    if out.ndim != 4 or out.shape[0] != 1 or out.shape[1] < 6:
        raise RdflowError(f"FastestDet output has shape {out.shape}, not 1 x (5 + classes) x "
                          "rows x columns")
    p = out[0].astype(np.float64)
    rows, cols = p.shape[1:]
    cls = p[5:]
    classes = cls.argmax(axis=0)
    cls_score = np.take_along_axis(cls, classes[None], axis=0)[0]
    scores = np.clip(p[0], 0, 1) ** 0.6 * np.clip(cls_score, 0, 1) ** 0.4
    gy, gx = np.indices((rows, cols))
    cx = (np.tanh(p[1]) + gx) / cols * width
    cy = (np.tanh(p[2]) + gy) / rows * height
    half_w = _sigmoid(p[3]) * width / 2
    half_h = _sigmoid(p[4]) * height / 2
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1).reshape(-1, 4)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    scores, classes = scores.reshape(-1), classes.reshape(-1).astype(np.int64)
    keep = (scores >= min_score) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return boxes[keep], scores[keep], classes[keep]


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by class-wise greedy non-maximum suppression (a box is dropped when it
    overlaps a higher-scoring box of its class with IoU above ``iou``), best first."""
    if not len(boxes):
        return np.zeros(0, dtype=np.int64)
    import cv2

    xywh = boxes.copy()
    xywh[:, 2:] -= xywh[:, :2]
    # scores are >= 0 and OpenCV keeps those strictly above the threshold: keep them all
    keep = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.tolist(), classes.tolist(), -1.0,
                                   float(iou))
    keep = np.asarray(keep, dtype=np.int64).reshape(-1)
    return keep[np.argsort(-scores[keep], kind="stable")]


class FastestDet:
    """The network, loaded once from ``weights`` (the shipped file by default, whose SHA-256
    is checked); ``model(rgb, min_score, iou)`` gives one frame's boxes, scores and classes."""

    def __init__(self, weights: str | os.PathLike = DEFAULT_WEIGHTS):
        import cv2

        self.path = shipped_path(weights)
        if not self.path.is_file():
            raise RdflowError(
                f"FastestDet weights {self.path} (detection.weights) do not exist: "
                + (f"restore {DEFAULT_WEIGHTS} from the repository" if is_default(self.path)
                   else "fix the path, or leave detection.weights unset for the shipped file"))
        self.sha256 = sha256(self.path)
        if is_default(self.path):
            check_default(self.path, self.sha256)
        self.names = names()
        try:
            net = cv2.dnn.readNetFromONNX(str(self.path))
            net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
            net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
            net.setInput(np.zeros((1, 3, INPUT, INPUT), np.float32))
            shape = net.forward().shape
        except cv2.error as exc:
            msg = str(exc).strip().splitlines()[-1][:200]
            raise RdflowError(f"cannot load FastestDet weights {self.path} (detection.weights) "
                              f"with OpenCV's dnn: {msg}. The file is corrupt or not an ONNX "
                              "model") from None
        if len(shape) != 4 or shape[:2] != (1, 5 + len(self.names)):
            raise RdflowError(
                f"FastestDet weights {self.path} (detection.weights) give an output of shape "
                f"{tuple(shape)} for a {INPUT}x{INPUT} input, not 1 x {5 + len(self.names)} x "
                "rows x columns: not a FastestDet model for the 80 COCO classes")
        self.net = net

    def __call__(self, rgb: np.ndarray, min_score: float, iou: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        h, w = rgb.shape[:2]
        self.net.setInput(preprocess(rgb))
        boxes, scores, classes = decode(self.net.forward(), w, h, min_score)
        keep = nms(boxes, scores, classes, iou)
        return boxes[keep], scores[keep], classes[keep]


@register
class FastestDetDetector(Detector):
    """FastestDet (:class:`FastestDet`) from its ONNX file, by OpenCV's dnn on the CPU.

    ``weights``: the shipped FastestDet.onnx by default (its SHA-256 checked when loaded), or
    another FastestDet ONNX export for the 80 COCO classes. The input is fixed at 352x352 (the
    frame is resized to it, no letterbox): ``imgsz`` must be None (or 352). Scores are
    probabilities, obj**0.6 * cls**0.4; defaults conf 0.55, map_conf 0.01, NMS IoU 0.4.
    """

    backend = "fastestdet"
    probability_scores = True
    uses_opencv = True
    input_size = INPUT

    @classmethod
    def weights_path(cls, settings: dict) -> Path:
        """``detection.weights`` as given, else the shipped FastestDet.onnx."""
        return shipped_path(settings["weights"]) if settings.get("weights") else default_weights()

    @classmethod
    def job_options(cls, config: dict) -> dict:
        return {"weights": str(cls.weights_path(config.get("detection") or {}))}

    @classmethod
    def check_weights(cls, settings: dict) -> None:
        """The file exists (it is loaded, and the shipped file's hash checked, by the jobs)."""
        path = cls.weights_path(settings)
        if path.is_file():
            return
        if is_default(path):
            raise RdflowError(f"the FastestDet weights shipped with rdflow ({path}) are missing: "
                              f"restore {DEFAULT_WEIGHTS} from the repository")
        raise RdflowError(f"FastestDet weights {settings.get('weights')} (detection.weights) "
                          f"{'is not a file' if path.exists() else 'does not exist'}: fix the "
                          "path, or leave detection.weights unset for the shipped FastestDet.onnx")

    @classmethod
    def known_names(cls, settings: dict) -> dict[int, str]:
        return names()

    def __init__(self, weights: str | None = None, *, conf: float = CONF,
                 map_conf: float = MAP_CONF, iou: float = IOU, imgsz: int | None = None,
                 **kwargs):
        if imgsz is not None and int(imgsz) != INPUT:
            raise RdflowError(f"detection.imgsz ({imgsz}) does not apply to fastestdet: its "
                              f"network input is fixed at {INPUT}x{INPUT} (every frame is "
                              "resized to it); leave imgsz unset (null)")
        super().__init__(conf=conf, map_conf=map_conf, iou=iou, imgsz=INPUT, **kwargs)
        self.weights = str(weights or DEFAULT_WEIGHTS)
        self.model: FastestDet | None = None

    def _load(self) -> None:
        self.model = FastestDet(self.weights)
        self.names = dict(self.model.names)

    def _detect(self, rgb: np.ndarray) -> Detections:
        boxes, scores, classes = self.model(rgb, self.map_conf, self.iou)
        return Detections(boxes, scores, classes, rgb.shape[1], rgb.shape[0])

    def signature(self) -> dict:
        sig = super().signature()
        sig["weights"] = self.weights
        sig["weights_sha256"] = (self.model.sha256 if self.model is not None
                                 else sha256(shipped_path(self.weights)))
        return sig
