"""Accuracy: COCO-style box mAP (faster-coco-eval's ``COCOeval_faster``) and the proxies used by
studies without labels (detections per frame, their mean confidence)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

from .. import RdflowError
from .base import Detections, log, size_text


@dataclass
class _Coco:
    """The COCO documents of ground truth and predictions, and the operating-point counts."""

    images: list = field(default_factory=list)
    anns: list = field(default_factory=list)
    dets: list = field(default_factory=list)
    n_gt: int = 0
    n_pred: int = 0
    counts: list = field(default_factory=list)
    conf_scores: list = field(default_factory=list)

    def add(self, i: int, g: Detections, p: Detections, conf: float) -> None:
        self.images.append({"id": i, "width": g.width, "height": g.height})
        for b, c, crowd in zip(g.boxes, g.classes, g.iscrowd):
            w, h = b[2] - b[0], b[3] - b[1]
            self.anns.append({"id": len(self.anns) + 1, "image_id": i, "category_id": int(c) + 1,
                              "bbox": [float(b[0]), float(b[1]), float(w), float(h)],
                              "area": float(w * h), "iscrowd": int(crowd)})
        self.n_gt += int((~g.iscrowd).sum())
        for b, s, c in zip(p.boxes, p.scores, p.classes):
            self.dets.append({"image_id": i, "category_id": int(c) + 1, "score": float(s),
                              "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]),
                                       float(b[3] - b[1])]})
        self.n_pred += len(p)
        op = p.above(conf)
        self.counts.append(len(op))
        self.conf_scores.extend(op.scores.tolist())

    def map(self, max_dets: int) -> tuple[float, float]:
        """(mAP@0.5, mAP@0.5:0.95): NaN without ground truth, 0 when nothing was predicted."""
        from faster_coco_eval import COCO, COCOeval_faster

        if not self.n_gt:
            return float("nan"), float("nan")
        if not self.dets:
            return 0.0, 0.0  # objects to find and nothing found
        cat_ids = sorted({a["category_id"] for a in self.anns}
                         | {d["category_id"] for d in self.dets})
        coco_gt = COCO({"images": self.images, "annotations": self.anns,
                        "categories": [{"id": c, "name": str(c - 1)} for c in cat_ids]})
        coco_dt = coco_gt.loadRes(self.dets)
        ev = COCOeval_faster(coco_gt, coco_dt, iouType="bbox", print_function=log.debug)
        ev.params.maxDets = [1, 10, int(max_dets)]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        map50_95, map50 = (float(v) if v >= 0 else float("nan") for v in ev.stats[:2])
        return map50, map50_95


def _same_frames(ground_truth: Mapping, predictions: Mapping) -> list[str]:
    gt_ids, pr_ids = set(map(str, ground_truth)), set(map(str, predictions))
    if gt_ids != pr_ids:
        only_gt, only_pr = sorted(gt_ids - pr_ids), sorted(pr_ids - gt_ids)
        raise RdflowError(
            "ground truth and predictions cover different frames: "
            + (f"no predictions for {', '.join(only_gt[:5])}; " if only_gt else "")
            + (f"no ground truth for {', '.join(only_pr[:5])}" if only_pr else ""))
    if not gt_ids:
        raise RdflowError("evaluate() got no frames")
    return sorted(gt_ids)


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
    frames = _same_frames(ground_truth, predictions)
    keep_cls = None if class_ids is None else np.asarray(sorted(set(class_ids)), dtype=np.int64)
    coco = _Coco()
    for i, fid in enumerate(frames, start=1):
        g, p = ground_truth[fid], predictions[fid]
        if (g.width, g.height) != (p.width, p.height):
            raise RdflowError(
                f"frame {fid}: ground truth is for a {size_text(g.width, g.height)} frame but "
                f"the predictions were made on a {size_text(p.width, p.height)} frame; decoded "
                "frames must have the original size (check the codec's padding/cropping)")
        if keep_cls is not None:
            g = g.select(np.isin(g.classes, keep_cls))
            p = p.select(np.isin(p.classes, keep_cls))
        coco.add(i, g, p, conf)
    map50, map50_95 = coco.map(max_dets)
    return {
        "map50": map50,
        "map50_95": map50_95,
        "detections_per_frame": float(np.mean(coco.counts)),
        "mean_confidence": float(np.mean(coco.conf_scores)) if coco.conf_scores else float("nan"),
        "n_frames": len(coco.images),
        "n_gt": coco.n_gt,
        "n_pred": coco.n_pred,
    }
