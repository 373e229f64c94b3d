"""OpenCV's HOG + linear SVM people detector (backend ``hog``): needs no weights and finds only
class ``person`` (COCO class 0). Its scores are SVM margins, not probabilities."""

from __future__ import annotations

import numpy as np

from .. import RdflowError
from .base import PERSON, Detections, Detector, log, register


@register
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
    uses_opencv = True
    WINDOW = (64, 128)  # width, height of the detection window in pixels

    @classmethod
    def known_names(cls, settings: dict) -> dict[int, str]:
        return {PERSON: "person"}

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
