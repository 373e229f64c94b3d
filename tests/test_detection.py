"""Detection library: COCO mAP against hand-checked boxes, label readers, persistence, the HOG
and FastestDet detectors on real frames, and the YOLO plumbing with a random yolov8n built here
(no download)."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest

from rdflow import RdflowError
from rdflow import detectors as det
from rdflow.detectors import Detections

D = Detections


def frame(boxes, scores=None, classes=None, w=200, h=200, crowd=None):
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    n = len(boxes)
    return D(boxes, np.ones(n) if scores is None else scores,
             np.zeros(n, int) if classes is None else classes, w, h, crowd)


SQUARE = [0, 0, 100, 100]


# ---- mAP against hand-computed values -----------------------------------------------------

def test_perfect_boxes_give_map_one():
    gt = {"a": frame([SQUARE, [120, 120, 180, 190]], classes=[0, 2])}
    pr = {"a": frame([SQUARE, [120, 120, 180, 190]], [0.9, 0.8], [0, 2])}
    r = det.evaluate(gt, pr)
    assert r["map50"] == pytest.approx(1.0) and r["map50_95"] == pytest.approx(1.0)
    assert r["n_frames"] == 1 and r["n_gt"] == 2 and r["n_pred"] == 2


def test_shifted_box_passes_low_iou_thresholds_only():
    # shift by 20 px: IoU = 80*100 / (120*100) = 2/3, so it matches at IoU 0.50, 0.55, 0.60, 0.65
    # and misses at 0.70 ... 0.95: AP50 = 1, AP50:95 = 4/10
    gt = {"a": frame([SQUARE])}
    pr = {"a": frame([[20, 0, 120, 100]], [0.9])}
    r = det.evaluate(gt, pr)
    assert r["map50"] == pytest.approx(1.0)
    assert r["map50_95"] == pytest.approx(0.4)


def test_missing_box_halves_recall():
    # 2 objects, 1 found with precision 1: COCO's 101-point interpolated AP is 51/101
    gt = {"a": frame([SQUARE, [100, 100, 150, 190]])}
    pr = {"a": frame([SQUARE], [0.9])}
    r = det.evaluate(gt, pr)
    assert r["map50"] == pytest.approx(51 / 101)
    assert r["map50_95"] == pytest.approx(51 / 101)


def test_extra_low_score_box_costs_nothing_but_high_score_one_does():
    gt = {"a": frame([SQUARE])}
    fp = [120, 120, 180, 180]
    low = det.evaluate(gt, {"a": frame([SQUARE, fp], [0.9, 0.1])})
    assert low["map50"] == pytest.approx(1.0) and low["map50_95"] == pytest.approx(1.0)
    # the false positive ranked first: precision 1/2 at recall 1, interpolated over all recalls
    high = det.evaluate(gt, {"a": frame([SQUARE, fp], [0.5, 0.9])})
    assert high["map50"] == pytest.approx(0.5) and high["map50_95"] == pytest.approx(0.5)


def test_map_is_the_mean_over_classes_and_class_ids_restrict_it():
    gt = {"a": frame([SQUARE, [120, 120, 180, 190]], classes=[0, 1])}
    pr = {"a": frame([SQUARE], [0.9], [0])}  # class 1 never found
    assert det.evaluate(gt, pr)["map50"] == pytest.approx(0.5)
    only0 = det.evaluate(gt, pr, class_ids=[0])
    assert only0["map50"] == pytest.approx(1.0) and only0["n_gt"] == 1


def test_frames_pool_and_crowd_regions_are_not_false_positives():
    gt = {"a": frame([SQUARE]), "b": frame([[50, 50, 150, 150], [0, 0, 40, 40]], crowd=[False, True])}
    pr = {"a": frame([SQUARE], [0.8]), "b": frame([[50, 50, 150, 150], [0, 0, 40, 40]], [0.7, 0.95])}
    r = det.evaluate(gt, pr)
    assert r["map50"] == pytest.approx(1.0)
    assert r["n_gt"] == 2


def test_no_predictions_score_zero_and_no_ground_truth_is_nan():
    gt = {"a": frame([SQUARE])}
    r = det.evaluate(gt, {"a": D.empty(200, 200)})
    assert r["map50"] == 0.0 and r["map50_95"] == 0.0
    assert r["detections_per_frame"] == 0.0 and math.isnan(r["mean_confidence"])
    r = det.evaluate({"a": D.empty(200, 200)}, {"a": frame([SQUARE], [0.9])})
    assert math.isnan(r["map50"]) and math.isnan(r["map50_95"]) and r["n_gt"] == 0


def test_detections_per_frame_and_mean_confidence_use_the_operating_threshold():
    gt = {"a": frame([SQUARE]), "b": frame([SQUARE])}
    pr = {"a": frame([SQUARE, [0, 0, 50, 50], [0, 0, 10, 10]], [0.9, 0.3, 0.01]),
          "b": frame([SQUARE], [0.6])}
    r = det.evaluate(gt, pr, conf=0.25)
    assert r["detections_per_frame"] == pytest.approx(1.5)  # (2 + 1) / 2 frames
    assert r["mean_confidence"] == pytest.approx((0.9 + 0.3 + 0.6) / 3)
    assert r["n_pred"] == 4 and r["n_frames"] == 2


def test_pseudo_ground_truth_keeps_confident_boxes_and_self_scores_one():
    orig = {"a": frame([SQUARE, [120, 120, 180, 180], [10, 150, 60, 190]], [0.9, 0.4, 0.1], [0, 3, 0])}
    pgt = det.pseudo_ground_truth(orig, 0.25)
    assert len(pgt["a"]) == 2 and np.all(pgt["a"].scores == 1.0)
    assert pgt["a"].classes.tolist() == [0, 3]
    r = det.evaluate(pgt, orig, conf=0.25)  # undistorted frame: the low-score box ranks last
    assert r["map50"] == pytest.approx(1.0) and r["map50_95"] == pytest.approx(1.0)


def test_evaluate_refuses_mismatched_frames_and_sizes():
    with pytest.raises(RdflowError, match=r"no predictions for b"):
        det.evaluate({"a": frame([SQUARE]), "b": frame([SQUARE])}, {"a": frame([SQUARE])})
    with pytest.raises(RdflowError, match=r"no ground truth for c"):
        det.evaluate({"a": frame([SQUARE])}, {"a": frame([SQUARE]), "c": frame([SQUARE])})
    with pytest.raises(RdflowError) as ei:
        det.evaluate({"a": frame([SQUARE], w=320, h=240)}, {"a": frame([SQUARE], w=320, h=256)})
    assert "320x240" in str(ei.value) and "320x256" in str(ei.value)
    with pytest.raises(RdflowError, match="no frames"):
        det.evaluate({}, {})


# ---- labels --------------------------------------------------------------------------------

def test_yolo_labels_are_converted_to_pixels(tmp_path):
    p = tmp_path / "im.txt"
    p.write_text("0 0.5 0.5 0.25 0.5\n\n17 0.1 0.2 0.2 0.2\n")
    d = det.read_yolo_labels(p, 400, 200)
    assert d.classes.tolist() == [0, 17]
    np.testing.assert_allclose(d.boxes, [[150, 50, 250, 150], [0, 20, 80, 60]])
    assert (d.width, d.height) == (400, 200)
    assert len(det.read_yolo_labels(tmp_path / "absent.txt", 400, 200)) == 0


@pytest.mark.parametrize("line,why", [
    ("0 0.5 0.5 0.25", "4 fields"),
    ("0 0.5 0.5 0.25 0.5 0.1", "6 fields"),
    ("person 0.5 0.5 0.2 0.2", "not a number"),
    ("0 0.5 0.5 nan 0.2", "out of range"),
    ("0 120 80 40 40", "out of range"),
    ("-1 0.5 0.5 0.2 0.2", "out of range"),
])
def test_malformed_yolo_label_names_file_and_line(tmp_path, line, why):
    p = tmp_path / "im.txt"
    p.write_text("0 0.5 0.5 0.2 0.2\n" + line + "\n")
    with pytest.raises(RdflowError) as ei:
        det.read_yolo_labels(p, 64, 64)
    msg = str(ei.value)
    assert str(p) in msg and "line 2" in msg and why in msg


def test_yolo_label_dir_reads_per_frame_and_refuses_a_folder_without_any(tmp_path):
    (tmp_path / "f1.txt").write_text("2 0.5 0.5 1 1\n")
    out = det.read_yolo_label_dir(tmp_path, {"f1": (10, 20), "f2": (10, 20)})
    assert len(out["f1"]) == 1 and len(out["f2"]) == 0
    with pytest.raises(RdflowError, match="holds none of the label files"):
        det.read_yolo_label_dir(tmp_path, {"x": (10, 20)})
    with pytest.raises(RdflowError, match="does not exist"):
        det.read_yolo_label_dir(tmp_path / "nope", {"x": (10, 20)})


def _coco(tmp_path, width=320, height=240):
    doc = {
        "images": [{"id": 7, "file_name": "dir/im1.jpg", "width": width, "height": height},
                   {"id": 9, "file_name": "im2.jpg", "width": width, "height": height}],
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"},
                       {"id": 88, "name": "teddy bear"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "bbox": [10, 20, 30, 40], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 3, "bbox": [0, 0, 5, 5], "iscrowd": 1},
            {"id": 3, "image_id": 9, "category_id": 88, "bbox": [1, 1, 2, 2]},
        ],
    }
    p = tmp_path / "labels.json"
    p.write_text(json.dumps(doc))
    return p


def test_coco_labels_map_categories_by_name(tmp_path, caplog):
    p = _coco(tmp_path)
    names = {0: "person", 1: "bicycle", 2: "car"}
    out = det.read_coco_labels(p, {"im1": (320, 240), "im2": (320, 240)}, names=names)
    np.testing.assert_allclose(out["im1"].boxes, [[10, 20, 40, 60], [0, 0, 5, 5]])
    assert out["im1"].classes.tolist() == [0, 2] and out["im1"].iscrowd.tolist() == [False, True]
    assert len(out["im2"]) == 0 and "teddy bear (1)" in caplog.text  # unknown to the detector
    raw = det.read_labels("coco", p, {"im2": (320, 240)})  # without names: COCO ids kept
    assert raw["im2"].classes.tolist() == [88]


def test_coco_label_size_mismatch_names_both_sizes(tmp_path):
    p = _coco(tmp_path, 640, 480)
    with pytest.raises(RdflowError) as ei:
        det.read_coco_labels(p, {"im1": (320, 240)})
    assert "640x480" in str(ei.value) and "320x240" in str(ei.value) and str(p) in str(ei.value)


def test_coco_label_errors(tmp_path):
    p = _coco(tmp_path)
    with pytest.raises(RdflowError, match="no image for frame.*im3"):
        det.read_coco_labels(p, {"im3": (320, 240)})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(RdflowError, match="not valid JSON"):
        det.read_coco_labels(bad, {"im1": (320, 240)})
    bad.write_text(json.dumps({"images": []}))
    with pytest.raises(RdflowError, match="lacks images/annotations/categories"):
        det.read_coco_labels(bad, {"im1": (320, 240)})
    with pytest.raises(RdflowError, match="does not exist"):
        det.read_coco_labels(tmp_path / "none.json", {"im1": (320, 240)})
    with pytest.raises(RdflowError, match="unknown label format 'voc'; known: coco, yolo"):
        det.read_labels("voc", p, {"im1": (320, 240)})


# ---- persistence, registry, inputs ---------------------------------------------------------

def test_detections_round_trip_and_stale_files_are_refused(tmp_path):
    hog = det.build("hog", imgsz=320)
    dets = {"0": frame([[1.5, 2, 30, 40.25]], [0.7], [0], 320, 240), "1": D.empty(320, 240)}
    path = tmp_path / "out" / "orig.json"
    det.write_detections(path, dets, hog)
    back = det.read_detections(path, expect=hog.signature())
    assert list(back) == ["0", "1"]
    np.testing.assert_allclose(back["0"].boxes, dets["0"].boxes)
    assert back["0"].scores.tolist() == [0.7] and (back["1"].width, back["1"].height) == (320, 240)
    assert not list(path.parent.glob("*.part"))  # written atomically, nothing left beside it
    with pytest.raises(RdflowError, match=r"other detector settings \(imgsz"):
        det.read_detections(path, expect=det.build("hog", imgsz=640).signature())
    (tmp_path / "x.json").write_text("[]")
    with pytest.raises(RdflowError, match="not an rdflow detections file"):
        det.read_detections(tmp_path / "x.json")
    with pytest.raises(RdflowError, match="does not exist"):
        det.read_detections(tmp_path / "none.json")


def test_registry_and_bad_options():
    assert set(det.DETECTORS) == {"yolo", "hog", "fastestdet"}
    with pytest.raises(RdflowError, match="unknown detection.backend 'ssd'; known: fastestdet, "
                                          "hog, yolo"):
        det.build("ssd")
    with pytest.raises(RdflowError, match="bad options for detection backend 'hog'"):
        det.build("hog", wieghts="x.pt")
    with pytest.raises(RdflowError, match="map_conf"):
        det.build("yolo", conf=0.2, map_conf=0.5)
    with pytest.raises(RdflowError, match="detection.iou"):
        det.build("hog", iou=0)


def test_hog_refuses_non_rgb_frames_and_unknown_classes():
    hog = det.build("hog")
    with pytest.raises(RdflowError, match="RGB uint8 HxWx3.*float"):
        hog.detect(np.zeros((64, 64, 3), dtype=np.float32))
    with pytest.raises(RdflowError, match="uint8 array of shape \\(64, 64\\)"):
        hog.detect(np.zeros((64, 64), dtype=np.uint8))
    with pytest.raises(RdflowError) as ei:
        det.build("hog", classes=["car"]).load()
    assert "'car'" in str(ei.value) and "valid names: person" in str(ei.value)


# ---- HOG on real frames ----------------------------------------------------------------------

def _read_rgb(path):
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_hog_on_coco8_with_real_labels(shared):
    root = shared("data", "coco8")
    hog = det.build("hog").load()
    gt, pred = {}, {}
    for img in sorted(root.glob("images/*/*.jpg")):
        rgb = _read_rgb(img)
        h, w = rgb.shape[:2]
        gt[img.stem] = det.read_yolo_labels(root / "labels" / img.parent.name / f"{img.stem}.txt", w, h)
        pred[img.stem] = hog.detect(rgb)
    assert len(gt) == 8
    with_people = [k for k, g in gt.items() if (g.classes == det.PERSON).any()]
    assert len(with_people) >= 2
    assert sum(len(pred[k]) for k in with_people) >= 1  # it does find people
    for p in pred.values():
        assert set(p.classes.tolist()) <= {det.PERSON}
        assert np.all(p.boxes[:, 2] > p.boxes[:, 0]) and np.all(p.boxes[:, 3] > p.boxes[:, 1])
        assert np.all(p.boxes[:, [0, 2]] <= p.width) and np.all(p.boxes[:, [1, 3]] <= p.height)
        assert np.all(np.diff(p.scores) <= 0)  # best first
    r = det.evaluate(gt, pred, conf=hog.conf, class_ids=hog.class_ids)
    # HOG's upright-pedestrian windows overlap none of coco8's 10 labelled people (seated, small,
    # cropped) at IoU 0.5: a real 0 (there is ground truth, so not NaN)
    assert r["map50"] == 0.0 and r["map50_95"] == 0.0
    assert r["n_gt"] == sum(int((g.classes == 0).sum()) for g in gt.values())  # persons only
    assert r["n_frames"] == 8


def _cisco_frame(shared, index=0):
    import cv2

    path = shared("data", "video", "CiscoVT2people_320x192_12fps.yuv")
    w, h = 320, 192
    size = w * h * 3 // 2
    with open(path, "rb") as fh:
        fh.seek(index * size)
        i420 = np.frombuffer(fh.read(size), dtype=np.uint8).reshape(h * 3 // 2, w)
    return cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)  # BT.601 limited range


def test_hog_on_a_video_frame_and_its_degraded_copy(shared):
    import cv2

    rgb = _cisco_frame(shared, 4)
    hog = det.build("hog").load()
    orig = hog.detect(rgb)
    assert len(orig.above(hog.conf)) >= 1  # two people sit in the frame
    assert (orig.width, orig.height) == (320, 192)
    ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 5])
    degraded = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
    dec = hog.detect(np.ascontiguousarray(degraded))
    pgt = det.pseudo_ground_truth({"4": orig}, hog.conf)
    same = det.evaluate(pgt, {"4": orig}, conf=hog.conf)
    assert same["map50"] == pytest.approx(1.0) and same["map50_95"] == pytest.approx(1.0)
    r = det.evaluate(pgt, {"4": dec}, conf=hog.conf)
    # JPEG quality 5 costs accuracy (measured: mAP@0.5 0.33) but the main person is still found
    assert 0.0 < r["map50"] < 1.0 and r["map50_95"] < r["map50"]


def test_detect_frames_loads_the_detector_once(monkeypatch):
    hog = det.build("hog", imgsz=160)
    calls = []
    real = det.HogDetector._load
    monkeypatch.setattr(det.HogDetector, "_load", lambda self: (calls.append(1), real(self)))
    frames = [(str(i), np.full((144, 160, 3), 40 * i, np.uint8)) for i in range(3)]
    out = det.detect_frames(hog, frames)
    assert list(out) == ["0", "1", "2"] and len(calls) == 1
    assert (out["2"].width, out["2"].height) == (160, 144)


def test_hog_frames_smaller_than_its_window_have_no_detections():
    # OpenCV 4.11's detectMultiScale segfaults on an image shorter than ~112 px
    hog = det.build("hog", imgsz=320)
    d = hog.detect(np.full((60, 320, 3), 90, np.uint8))  # 320 wide: not resized, 60 < 128 high
    assert len(d) == 0 and (d.width, d.height) == (320, 60)
    with pytest.raises(RdflowError, match="below the HOG window height"):
        det.build("hog", imgsz=100)


# ---- FastestDet (shipped ONNX weights, OpenCV dnn) ---------------------------------------------

CAR, TRUCK = 2, 7  # COCO-80 ids in YOLO order


@pytest.fixture(scope="module")
def fastestdet():
    import cv2

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # the machine is shared; detection jobs set it to their own threads
    yield det.build("fastestdet").load()
    cv2.setNumThreads(threads)


def _clip_frame(shared, name, width, height, index, matrix):
    from rdflow.sources.video import probe_raw, read_frame
    from rdflow.metrics.yuv import yuv420_to_rgb

    seq = probe_raw(shared("data", "video", name), width, height, matrix=matrix)
    return yuv420_to_rgb(*read_frame(seq, index), matrix=matrix)


def _cars(shared, index=0):
    return _clip_frame(shared, "cars_320x240.i420", 320, 240, index, "bt709")


def _two_people(shared, index=0):
    return _clip_frame(shared, "CiscoVT2people_320x192_12fps.yuv", 320, 192, index, "bt601")


def _jpeg(rgb, quality):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return _read_rgb(io.BytesIO(buf.getvalue()))


def _iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h)


def test_fastestdet_names_and_defaults_without_loading():
    from rdflow.detectors import fastestdet as fd

    f = det.build("fastestdet")
    assert f.model is None and (f.conf, f.map_conf, f.iou, f.imgsz) == (0.55, 0.01, 0.4, 352)
    names = fd.names()
    assert len(names) == 80 and names[0] == "person" and names[CAR] == "car"
    assert names[TRUCK] == "truck" and names[79] == "toothbrush"
    assert names == det.coco_names()  # COCO's spelling (coco.names says motorbike, sofa, ...)
    assert fd.sha256(fd.default_weights()) == fd.SHA256  # the shipped file is the pinned one
    with pytest.raises(RdflowError, match=r"imgsz \(640\) does not apply to fastestdet"):
        det.build("fastestdet", imgsz=640)
    with pytest.raises(RdflowError, match="0 <= map_conf <= conf <= 1 for fastestdet"):
        det.build("fastestdet", conf=1.5)


def test_fastestdet_decoding_and_class_wise_nms_of_a_hand_made_output():
    from rdflow.detectors import fastestdet as fd

    out = np.zeros((1, 85, 22, 22), np.float32)
    out[0, 0], out[0, 5:] = 0.01, 1 / 80  # background: score 0.01**0.6 * 0.0125**0.4 = 0.011
    # three cells of row 11: centre offset tanh(tx) = 0.5, size sigmoid(0) = half the frame
    for gx, cls, obj in ((5, CAR, 0.9), (6, CAR, 0.85), (7, TRUCK, 0.8)):
        out[0, 0, 11, gx], out[0, 5 + cls, 11, gx] = obj, 0.8
        out[0, 1, 11, gx] = np.arctanh(0.5)
    boxes, scores, classes = fd.decode(out, 440, 220, min_score=0.5)
    assert classes.tolist() == [CAR, CAR, TRUCK]
    np.testing.assert_allclose(scores, [o ** 0.6 * 0.8 ** 0.4 for o in (0.9, 0.85, 0.8)], rtol=1e-6)
    # centre x (5 + 0.5) / 22 * 440 = 110, y 11 / 22 * 220 = 110; half sizes 110 and 55
    np.testing.assert_allclose(boxes, [[0, 55, 220, 165], [20, 55, 240, 165], [40, 55, 260, 165]],
                               atol=1e-4)
    # the second car overlaps the first at IoU 0.83: dropped; the truck is another class: kept
    assert fd.nms(boxes, scores, classes, 0.4).tolist() == [0, 2]
    assert fd.nms(boxes, scores, classes, 0.9).tolist() == [0, 1, 2]
    out[0, 1, 11, 5] = np.arctanh(-0.9)  # centre x (5 - 0.9) / 22 * 440 = 82: clipped at 0
    assert fd.decode(out, 440, 220, 0.5)[0][0].tolist() == pytest.approx([0, 55, 192, 165])


def test_fastestdet_finds_the_cars_on_the_highway_clip(shared, fastestdet):
    d = fastestdet.detect(_cars(shared))
    op = d.above(fastestdet.conf)
    assert (d.width, d.height) == (320, 240)
    # measured on frame 0: 6 cars (0.61-0.81), the red SUV also as a truck (0.78), and one
    # small false "person" (0.59) by its wing mirror
    assert int((op.classes == CAR).sum()) >= 4
    # decoding puts the boxes where the cars are: the Audi in the middle (checked by eye)
    cars = op.boxes[op.classes == CAR]
    assert max(_iou(b, [95, 98, 203, 220]) for b in cars) > 0.8
    # every box lies inside the frame (the network's own boxes reach past the left edge)
    b = d.boxes
    assert np.all(b[:, :2] >= 0) and np.all(b[:, 2] <= 320) and np.all(b[:, 3] <= 240)
    assert np.all(b[:, 2] > b[:, 0]) and np.all(b[:, 3] > b[:, 1])
    # the weak boxes mAP integrates over are kept too, best first
    assert len(d) > 3 * len(op) and d.scores.min() >= fastestdet.map_conf
    assert np.all(np.diff(d.scores) <= 0)


def test_fastestdet_finds_the_two_people(shared, fastestdet):
    d = fastestdet.detect(_two_people(shared)).above(fastestdet.conf)
    assert [fastestdet.names[c] for c in d.classes] == ["person", "person"]  # nothing else
    centres = sorted((d.boxes[:, 0] + d.boxes[:, 2]) / 2)
    assert centres[0] < 100 and centres[1] > 200  # the man on the left, the woman on the right
    assert np.all(d.scores > 0.85)  # measured 0.91 and 0.90
    only = det.build("fastestdet", classes=["car"]).load()  # the classes filter
    assert only.class_ids == [CAR] and len(only.detect(_two_people(shared)).above(0.3)) == 0


def test_fastestdet_accuracy_falls_when_the_frame_is_degraded(shared, fastestdet):
    rgb = _cars(shared)
    orig = fastestdet.detect(rgb)
    pgt = det.pseudo_ground_truth({"0": orig}, fastestdet.conf)
    mild, heavy = fastestdet.detect(_jpeg(rgb, 90)), fastestdet.detect(_jpeg(rgb, 2))
    r_mild = det.evaluate(pgt, {"0": mild}, conf=fastestdet.conf)
    r_heavy = det.evaluate(pgt, {"0": heavy}, conf=fastestdet.conf)
    # measured: mAP@0.5 1.0 at quality 90, 0.24 at quality 2
    assert r_heavy["map50"] < r_mild["map50"] and r_mild["map50"] > 0.9
    assert r_heavy["map50_95"] < r_mild["map50_95"]

    def n_cars(d):
        return int((d.above(fastestdet.conf).classes == CAR).sum())

    assert n_cars(heavy) < n_cars(orig)  # measured 0 against 6


def test_fastestdet_refuses_a_changed_shipped_weights_file(tmp_path, monkeypatch):
    from rdflow.detectors import fastestdet as fd

    data = bytearray(fd.default_weights().read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte of the weights: the file still loads
    # a working directory with its own copy of the shipped path: that copy is the default
    bad = tmp_path / fd.DEFAULT_WEIGHTS
    bad.parent.mkdir(parents=True)
    bad.write_bytes(bytes(data))
    monkeypatch.chdir(tmp_path)
    assert fd.default_weights().resolve() == bad.resolve()
    with pytest.raises(RdflowError) as ei:
        det.build("fastestdet").load()
    msg = str(ei.value)
    assert f"FastestDet weights {fd.DEFAULT_WEIGHTS} have SHA-256 {fd.sha256(bad)}, not " \
           f"{fd.SHA256}" in msg
    assert "corrupt or was replaced" in msg and "git checkout -- " in msg
    # the same bytes named by detection.weights are someone's own model: not pinned
    own = tmp_path / "mine.onnx"
    own.write_bytes(bytes(data))
    f = det.build("fastestdet", weights=str(own)).load()
    assert f.signature()["weights_sha256"] == fd.sha256(own)
    (tmp_path / "junk.onnx").write_bytes(b"not a model" * 50)
    with pytest.raises(RdflowError, match=r"cannot load FastestDet weights junk\.onnx"):
        det.build("fastestdet", weights="junk.onnx").load()
    with pytest.raises(RdflowError, match=r"nope\.onnx \(detection.weights\) do not exist"):
        det.build("fastestdet", weights="nope.onnx").load()


# ---- YOLO plumbing (random yolov8n, offline) ---------------------------------------------------

@pytest.fixture(scope="module")
def yolo_env(tmp_path_factory):
    """ultralytics imported offline with its settings in a temp folder; a random yolov8n whose
    class head is biased so that it reports class 0 (person) everywhere, saved as a .pt."""
    root = tmp_path_factory.mktemp("yolo")
    cfg = root / "ultralytics"
    det.import_ultralytics(cfg)
    import torch
    from ultralytics import YOLO

    torch.manual_seed(0)
    model = YOLO("yolov8n.yaml")  # the architecture yaml ships with ultralytics
    head = model.model.model[-1]
    with torch.no_grad():
        for branch in head.cv3:  # per-scale class branches; last layer is a 1x1 conv
            branch[-1].bias.fill_(-10.0)
            branch[-1].bias[0] = 4.0
    weights = root / "random_yolov8n.pt"
    model.save(weights)
    cls = YOLO("yolov8n-cls.yaml")
    cls_weights = root / "random_cls.pt"
    cls.save(cls_weights)
    return {"root": root, "cfg": cfg, "weights": weights, "cls_weights": cls_weights}


def test_import_ultralytics_is_offline_and_keeps_threads(yolo_env):
    import torch
    from ultralytics.utils import ONLINE, SETTINGS

    assert os.environ["YOLO_OFFLINE"] == "1" and os.environ["YOLO_AUTOINSTALL"] == "false"
    assert os.environ["YOLO_CONFIG_DIR"] == str(yolo_env["cfg"].resolve())
    assert ONLINE is False and SETTINGS["sync"] is False
    assert (yolo_env["cfg"] / "Ultralytics" / "settings.json").is_file()
    assert torch.get_num_threads() >= min(2, os.cpu_count() or 1)


def test_yolo_detects_with_random_weights(yolo_env):
    y = det.build("yolo", weights=str(yolo_env["weights"]), config_dir=yolo_env["cfg"],
                  weights_dir=yolo_env["root"] / "w", max_det=50)
    rgb = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    d = y.detect(rgb)
    model = y.model
    assert 0 < len(d) <= 50 and (d.width, d.height) == (320, 240)
    assert set(d.classes.tolist()) == {0} and np.all(d.scores >= y.map_conf)
    assert np.all(d.boxes >= -1e-3) and np.all(d.boxes[:, [0, 2]] <= 320 + 1e-3)
    assert np.all(d.boxes[:, [1, 3]] <= 240 + 1e-3)
    y.detect(rgb)
    assert y.model is model  # loaded once
    assert y.names[0] == "person" and len(y.names) == 80  # unnamed 80-class model: COCO names
    sig = y.signature()
    assert sig["weights_sha256"] and sig["backend"] == "yolo"
    pgt = det.pseudo_ground_truth({"0": d}, y.conf)
    assert det.evaluate(pgt, {"0": d}, conf=y.conf)["map50"] == pytest.approx(1.0)


def test_yolo_classes_filter(yolo_env):
    kw = dict(config_dir=yolo_env["cfg"], weights=str(yolo_env["weights"]), max_det=20)
    rgb = np.full((240, 320, 3), 128, np.uint8)
    cars = det.build("yolo", classes=["car", "bus"], **kw)
    assert len(cars.detect(rgb)) == 0 and cars.class_ids == [2, 5]
    assert len(det.build("yolo", classes=["person"], **kw).detect(rgb)) > 0
    with pytest.raises(RdflowError) as ei:
        det.build("yolo", classes=["person", "unicorn"], **kw).load()
    assert "'unicorn'" in str(ei.value) and "valid names: person, bicycle, car" in str(ei.value)


def test_yolo_missing_weights_offline_says_where_and_what_url(yolo_env, tmp_path):
    y = det.build("yolo", weights="yolov8n.pt", config_dir=yolo_env["cfg"], weights_dir=tmp_path / "w")
    with pytest.raises(RdflowError) as ei:
        y.load()
    msg = str(ei.value)
    assert str(tmp_path / "w" / "yolov8n.pt") in msg
    assert re.search(r"https://github\.com/ultralytics/assets/releases/download/v[\d.]+/yolov8n\.pt", msg)
    assert not (tmp_path / "w" / "yolov8n.pt").exists()
    with pytest.raises(RdflowError, match=r"nope/x\.pt .*does not exist"):
        det.build("yolo", weights=str(tmp_path / "nope" / "x.pt"), config_dir=yolo_env["cfg"]).load()


def test_yolo_bare_name_downloads_when_online_allowed(yolo_env, tmp_path, http_server):
    (http_server.root / "yolov8n.pt").write_bytes(yolo_env["weights"].read_bytes())
    y = det.build("yolo", weights="yolov8n.pt", config_dir=yolo_env["cfg"],
                  weights_dir=tmp_path / "w", offline=False, base_url=http_server.url)
    y.load()
    assert (tmp_path / "w" / "yolov8n.pt").is_file() and http_server.hits == ["yolov8n.pt"]
    assert y.names[0] == "person"
    # present now: a second detector uses the file, offline, without asking the server
    det.build("yolo", weights="yolov8n.pt", config_dir=yolo_env["cfg"],
              weights_dir=tmp_path / "w").load()
    assert http_server.hits == ["yolov8n.pt"]


@pytest.mark.parametrize("kind", ["garbage", "empty", "truncated", "state_dict"])
def test_yolo_corrupt_weights_name_the_file(yolo_env, tmp_path, kind):
    import torch

    bad = tmp_path / f"{kind}.pt"
    if kind == "garbage":
        bad.write_bytes(b"this is not a checkpoint" * 10)
    elif kind == "empty":
        bad.write_bytes(b"")
    elif kind == "truncated":
        bad.write_bytes(yolo_env["weights"].read_bytes()[:200_000])
    else:
        torch.save({"weights": torch.zeros(3)}, bad)
    with pytest.raises(RdflowError) as ei:
        det.build("yolo", weights=str(bad), config_dir=yolo_env["cfg"]).load()
    assert f"cannot load YOLO weights {bad}" in str(ei.value)


def test_yolo_refuses_a_non_detection_model(yolo_env):
    with pytest.raises(RdflowError, match="'classify' model, not a detection model"):
        det.build("yolo", weights=str(yolo_env["cls_weights"]), config_dir=yolo_env["cfg"]).load()
