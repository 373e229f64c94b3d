"""The machine-vision stage: parse-time checks, evaluation rows, tables and figures, the shipped
FastestDet through the job glue, and the real snakemake with the HOG detector (a shared clip,
coco8 with real labels) and with a random YOLO."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest

from rdflow import RdflowError
from rdflow import detectors as det
from rdflow.stages import detection as mv
from rdflow.study import validate
from test_e2e import planned_jobs, run_snakemake, write_config
from test_video_workflow import make_raw

PY = sys.executable


def study(tmp_path, detection=None, *, n=3, extra=None):
    """A validated config: a synthetic 64x48 clip, JPEG at two qualities, HOG detection on."""
    raw = tmp_path / "synth.yuv"
    if not raw.exists():
        make_raw(raw, n=n)
    cfg = {"device": "cpu",
           "codecs": {"jpeg": {"kind": "jpeg", "qualities": [30, 80]}},
           "vmaf": {"enabled": False},
           "video": {"frames": {"count": n},
                     "sequences": {"synth": {"source": "file", "path": str(raw), "width": 64,
                                             "height": 48}}},
           "detection": {"enabled": True, "backend": "hog", **(detection or {})}}
    cfg.update(extra or {})
    return cfg


def checked(cfg):
    return validate(cfg)


# ---- targets and parse-time checks -----------------------------------------------------------


def test_targets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = checked(study(tmp_path))
    t = mv.targets(cfg)
    assert t[0] == "results/machine_vision.csv"
    assert "results/figures/machine_vision_video_synth_map.png" in t
    assert "results/figures/machine_vision_video_synth_proxy.pdf" in t
    assert sorted(p for p in t if p.endswith("_eval.json")) == [
        "results/detection/video/synth/jpeg/q30_eval.json",
        "results/detection/video/synth/jpeg/q80_eval.json"]
    # the rule waits for the batches' recon folders; the job reads one PNG per frame there
    assert mv.decoded_paths(cfg, "video", "synth", "jpeg", 30) == [
        "results/video/synth/jpeg/q30/batch0.recon.zip"]
    assert mv.item_paths(cfg, "video", "synth", "jpeg", 30, "png") == {
        str(i): f"results/video/synth/jpeg/q30/batch0.recon.zip/{i}.png" for i in range(3)}
    assert mv.rate_inputs(cfg, "video", "synth", "jpeg", 30) == ["results/video/synth/jpeg/q30/batch0"]
    assert mv.rate_rows(cfg, "video", "synth", "jpeg", 30) == [
        f"results/video/synth/jpeg/q30/batch0/{i}.json" for i in range(3)]
    # image datasets only with labels
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(b"")
    cfg = study(tmp_path, extra={"datasets": {"d": {"kind": "local", "path": str(tmp_path / "imgs")}}})
    assert mv.units(cfg) == [("video", "synth")]
    cfg["detection"]["labels"] = {"d": {"format": "yolo", "path": "x"}}
    assert mv.units(cfg) == [("video", "synth"), ("image", "d")]
    assert mv.evaluation_paths(cfg)[-1] == "results/detection/image/d/jpeg/q80_eval.json"
    cfg["detection"]["enabled"] = False
    assert mv.targets(cfg) == []


def test_defaults_and_options(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = checked(study(tmp_path, {"options": {"win_stride": 4}}))
    o = mv.detector_options(cfg)
    assert o == {"backend": "hog", "imgsz": 640, "max_det": 300, "classes": None, "win_stride": 4}
    # the default image size follows the sequence: its longer side, multiple of 32, at most 640
    from rdflow.sources.sequences import probe_sequence

    seq = probe_sequence(cfg, "synth")
    want = min(640, -(-max(seq.width, seq.height) // 32) * 32)
    assert mv.detector_options(cfg, "video", "synth")["imgsz"] == want
    assert mv.auto_imgsz({"video": {"sequences": {"uhd": {"source": "uvg", "width": 1920,
                                                          "height": 1080}}}}, "video", "uhd") == 640
    assert mv.auto_imgsz({"video": {"sequences": {"s": {"source": "file", "width": 320,
                                                        "height": 240}}}}, "video", "s") == 320
    d = mv.build_detector(cfg)
    assert (d.conf, d.map_conf, d.win_stride) == (0.0, -0.5, 4)  # the backend's own defaults
    (tmp_path / "resources/weights").mkdir(parents=True)
    (tmp_path / "resources/weights/yolov8n.pt").write_bytes(_zip_bytes())
    cfg = checked(study(tmp_path, {"backend": "yolo", "conf": 0.3}))
    o = mv.detector_options(cfg)
    assert o["weights"] == "resources/weights/yolov8n.pt" and o["offline"] is True
    assert o["device"] == "cpu" and o["conf"] == 0.3 and o["config_dir"] == "resources/ultralytics"


def _zip_bytes():
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", b"x")
    return buf.getvalue()


def test_missing_weights_offline_says_where_and_what_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RdflowError) as ei:
        checked(study(tmp_path, {"backend": "yolo"}))
    msg = str(ei.value)
    assert "resources/weights/yolov8n.pt" in msg and "detection.offline" in msg
    assert "https://github.com/ultralytics/assets/releases/download/v" in msg
    assert msg.rstrip().endswith("or set detection.offline: false")
    with pytest.raises(RdflowError, match=r"models/mine\.pt \(detection.weights\) does not exist"):
        checked(study(tmp_path, {"backend": "yolo", "weights": "models/mine.pt"}))
    # online: the download rule fetches it, from a mirror when given
    cfg = checked(study(tmp_path, {"backend": "yolo", "offline": False, "base_url": "http://m/"}))
    assert mv.weights_path(cfg).as_posix() == "resources/weights/yolov8n.pt"
    assert det.yolo_asset_url("yolov8n.pt", "http://m/") == "http://m/yolov8n.pt"
    assert mv.downloads(cfg) == ["resources/weights/yolov8n.pt"]
    cfg["detection"]["offline"] = True
    assert mv.downloads(cfg) == []


@pytest.mark.parametrize("kind", ["empty", "garbage", "truncated"])
def test_corrupt_weights_are_refused_at_start(tmp_path, monkeypatch, kind):
    monkeypatch.chdir(tmp_path)
    w = tmp_path / "resources/weights/yolov8n.pt"
    w.parent.mkdir(parents=True)
    w.write_bytes({"empty": b"", "garbage": b"<html>rate limited</html>" * 40,
                   "truncated": _zip_bytes()[:-30]}[kind])
    with pytest.raises(RdflowError) as ei:
        checked(study(tmp_path, {"backend": "yolo"}))
    assert f"YOLO weights {w.relative_to(tmp_path)} (detection.weights) is not a PyTorch " \
           "checkpoint" in str(ei.value)
    assert "place a good copy there" in str(ei.value)


def test_unknown_class_names_are_refused_at_start_without_ultralytics(tmp_path):
    # HOG knows person only; ultralytics' COCO assets are checked against COCO's names, read
    # from the package's yaml without importing ultralytics (a subprocess proves it)
    code = f"""
import sys, os
os.chdir({str(tmp_path)!r})
sys.path.insert(0, {os.path.dirname(__file__)!r})
from test_machine_vision import study, checked, _zip_bytes
from rdflow import RdflowError
import pathlib
tmp = pathlib.Path({str(tmp_path)!r})
msgs = []
for det in ({{"classes": ["person", "car"]}},
            {{"backend": "yolo", "classes": ["person", "unicorn"]}},
            {{"backend": "fastestdet", "classes": ["person", "cars"]}}):
    try:
        checked(study(tmp, det))
    except RdflowError as e:
        msgs.append(str(e))
    (tmp / "resources/weights").mkdir(parents=True, exist_ok=True)
    (tmp / "resources/weights/yolov8n.pt").write_bytes(_zip_bytes())
checked(study(tmp, {{"backend": "yolo", "classes": ["person", "car"]}}))
checked(study(tmp, {{"backend": "fastestdet", "classes": ["person", "car"]}}))
print("ULTRALYTICS" if {{"ultralytics", "torch", "cv2"}} & set(sys.modules) else "CLEAN")
print("\\n".join(msgs))
"""
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0] == "CLEAN"
    text = "\n".join(lines[1:])
    assert "detection.classes names 'car' unknown to the hog model; valid names: person" in text
    assert "'unicorn' unknown to the yolo model; valid names: person, bicycle, car" in text
    assert "'cars' unknown to the fastestdet model; valid names: person, bicycle, car, " \
           "motorcycle, airplane" in text and "toothbrush" in text


def test_bad_backend_thresholds_and_nothing_to_detect(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RdflowError, match=r"detection.backend: unknown backend 'ssd'; known: "
                                          r"fastestdet, hog, yolo"):
        checked(study(tmp_path, {"backend": "ssd"}))
    with pytest.raises(RdflowError, match="detection.backend: unknown backend 'ssd'; known: "
                                          "fastestdet, hog, yolo"):
        mv.check({"detection": {"enabled": True, "backend": "ssd"}})  # unvalidated config
    with pytest.raises(RdflowError, match=r"detection.map_conf \(0.5\) must not exceed"):
        checked(study(tmp_path, {"conf": 0.1, "map_conf": 0.5}))
    with pytest.raises(RdflowError, match="bad options for detection backend 'hog'"):
        checked(study(tmp_path, {"options": {"winstride": 4}}))
    cfg = study(tmp_path)
    cfg["video"]["sequences"] = {}
    with pytest.raises(RdflowError, match="nothing to detect on"):
        checked(cfg)
    with pytest.raises(RdflowError, match="detection.labels.synth.format: 'voc' is not one of"):
        checked(study(tmp_path, {"labels": {"synth": {"format": "voc", "path": "x"}}}))


def test_fastestdet_is_checked_at_start_and_runs_through_the_job_glue(tmp_path, monkeypatch):
    import cv2

    from rdflow.detectors import fastestdet as fd

    monkeypatch.chdir(tmp_path)
    cfg = checked(study(tmp_path, {"backend": "fastestdet"}))
    o = mv.detector_options(cfg, "video", "synth")
    assert o == {"backend": "fastestdet", "max_det": 300, "classes": None,
                 "weights": str(fd.default_weights())}  # no imgsz: the input is fixed
    assert mv.weights_path(cfg) == fd.default_weights() and mv.downloads(cfg) == []
    assert mv.resolve_device("cuda", "fastestdet") == "cpu"
    assert mv.class_names_at_parse_time(cfg)[2] == "car"
    d = mv.build_detector(cfg)
    assert (d.conf, d.map_conf, d.iou) == (0.55, 0.01, 0.4)
    with pytest.raises(RdflowError) as ei:
        checked(study(tmp_path, {"backend": "fastestdet", "classes": ["person", "cars"]}))
    assert "'cars' unknown to the fastestdet model; valid names: person, bicycle, car," in \
        str(ei.value)
    with pytest.raises(RdflowError, match=r"imgsz \(320\) does not apply to fastestdet"):
        checked(study(tmp_path, {"backend": "fastestdet", "imgsz": 320}))
    with pytest.raises(RdflowError, match=r"FastestDet weights m/x\.onnx \(detection.weights\) "
                                          "does not exist"):
        checked(study(tmp_path, {"backend": "fastestdet", "weights": "m/x.onnx"}))
    # the job: detections with the weights' hash, cv2 limited to the job's threads
    cv2.setNumThreads(2)
    r = mv.detect(cfg, source="video", name="synth", out="o.json", threads=1, isolate=False)
    doc = json.loads((tmp_path / "o.json").read_text())
    assert r["frames"] == 3 and sorted(doc["frames"]) == ["0", "1", "2"]
    assert doc["detector"]["backend"] == "fastestdet" and doc["detector"]["imgsz"] == 352
    assert doc["detector"]["weights_sha256"] == fd.SHA256 and len(doc["names"]) == 80
    assert cv2.getNumThreads() == 1


def test_label_entries_are_checked_at_start(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lab = tmp_path / "labels"
    lab.mkdir()
    (lab / "0.txt").write_text("0 0.5 0.5 0.25 0.5\n")
    (lab / "1.txt").write_text("0 0.5 0.5 0.25 0.5\n0 0.5 0.5 0.25\n")
    with pytest.raises(RdflowError) as ei:
        checked(study(tmp_path, {"labels": {"synth": {"format": "yolo", "path": str(lab)}}}))
    msg = str(ei.value)
    assert msg.startswith("detection.labels.synth: label file") and f"{lab / '1.txt'} line 2" in msg
    (lab / "1.txt").write_text("0 0.5 0.5 0.25 0.5\n")
    checked(study(tmp_path, {"labels": {"synth": {"format": "yolo", "path": str(lab)}}}))
    with pytest.raises(RdflowError, match="'nope' is neither a video sequence nor an image "
                                          "dataset; known: synth"):
        checked(study(tmp_path, {"labels": {"nope": {"format": "yolo", "path": str(lab)}}}))
    with pytest.raises(RdflowError, match="label folder .*missing does not exist"):
        checked(study(tmp_path, {"labels": {"synth": {"format": "yolo",
                                                      "path": str(tmp_path / "missing")}}}))
    # a COCO json labelled at another size than the frames (64x48)
    coco = _coco_json(tmp_path / "c.json", {"0": (320, 240), "1": (320, 240), "2": (320, 240)})
    with pytest.raises(RdflowError) as ei:
        checked(study(tmp_path, {"labels": {"synth": {"format": "coco", "path": str(coco)}}}))
    assert "labelled at 320x240 but the frame 0 is 64x48" in str(ei.value)
    coco = _coco_json(tmp_path / "c.json", {"0": (64, 48), "1": (64, 48), "2": (64, 48)})
    checked(study(tmp_path, {"labels": {"synth": {"format": "coco", "path": str(coco)}}}))


def _coco_json(path, sizes, boxes=None):
    images = [{"id": i + 1, "file_name": f"{fid}.png", "width": w, "height": h}
              for i, (fid, (w, h)) in enumerate(sizes.items())]
    anns = [{"id": k + 1, "image_id": 1 + list(sizes).index(fid), "category_id": 1, "bbox": b,
             "iscrowd": 0} for k, (fid, b) in enumerate(boxes or [])]
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": 1, "name": "person"}]}))
    return path


# ---- evaluation, table, figures --------------------------------------------------------------


def _dets(boxes, scores, w=64, h=48):
    return det.Detections(np.asarray(boxes, float).reshape(-1, 4), scores,
                          [0] * len(scores), w, h)


def _write_unit(tmp_path, decoded, *, bpp=(0.5, 1.5)):
    """Original detections (two confident people and a weak box per frame), the decoded ones,
    and two frames' coding rows."""
    hog = det.build("hog").load()
    orig = {"0": _dets([[5, 5, 20, 40], [30, 4, 50, 44], [0, 0, 10, 10]], [1.2, 0.8, -0.3]),
            "1": _dets([[6, 5, 21, 40]], [1.0])}
    det.write_detections(tmp_path / "orig.json", orig, hog)
    det.write_detections(tmp_path / "dec.json", decoded, hog)
    rows = []
    for i, b in enumerate(bpp):
        p = tmp_path / f"row{i}.json"
        p.write_text(json.dumps({"bpp": b, "psnr_rgb": 30.0 + i}))
        rows.append(str(p))
    return rows


def test_evaluate_job_against_pseudo_ground_truth_and_labels(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lab = tmp_path / "labels"
    lab.mkdir()
    # frame 0: one of the two people labelled; frame 1: the person, at the detected box
    (lab / "0.txt").write_text(f"0 {12.5 / 64} {22.5 / 48} {15 / 64} {35 / 48}\n")
    (lab / "1.txt").write_text(f"0 {13.5 / 64} {22.5 / 48} {15 / 64} {35 / 48}\n")
    cfg = checked(study(tmp_path, {"labels": {"synth": {"format": "yolo", "path": str(lab)}}},
                        n=2))
    # decoded: frame 0 keeps the first person only, frame 1 unchanged
    decoded = {"0": _dets([[5, 5, 20, 40]], [1.1]), "1": _dets([[6, 5, 21, 40]], [0.9])}
    rows = _write_unit(tmp_path, decoded)
    out = mv.evaluate(cfg, source="video", name="synth", codec="jpeg", quality=30,
                          original=str(tmp_path / "orig.json"), decoded=str(tmp_path / "dec.json"),
                          rate_rows=rows, out=str(tmp_path / "eval.json"))
    assert json.loads((tmp_path / "eval.json").read_text()) == out
    pseudo, labels = out
    assert pseudo["gt"] == "pseudo" and labels["gt"] == "labels"
    for r in out:
        assert r["sequence"] == "synth" and r["source"] == "video" and r["quality"] == 30
        assert r["bpp"] == pytest.approx(1.0) and r["psnr_rgb"] == pytest.approx(30.5)
        assert r["backend"] == "hog" and r["conf"] == 0.0 and r["classes"] == "person"
        assert r["detections_per_frame"] == 1.0 and r["mean_confidence"] == pytest.approx(1.0)
        assert r["n_frames"] == 2
    # pseudo GT: 3 confident people (the -0.3 box is below conf); 2 of them found
    assert pseudo["n_gt"] == 3 and pseudo["map50"] == pytest.approx(2 / 3, abs=0.01)
    assert pseudo["uncompressed_map50"] == 1.0 and pseudo["uncompressed_map50_95"] == 1.0
    assert pseudo["uncompressed_detections_per_frame"] == 1.5
    # labels: both labelled people found exactly by the decoded frames
    assert labels["n_gt"] == 2 and labels["map50"] == 1.0 and labels["map50_95"] == 1.0
    # uncompressed: the unlabelled person is a false positive, but it scores below both labelled
    # ones, so precision is 1 up to full recall
    assert labels["uncompressed_map50"] == 1.0 and labels["uncompressed_map50_95"] == 1.0


def test_evaluate_job_of_a_sequence_codec_reads_its_row_list(tmp_path, monkeypatch):
    """A sequence codec's rate comes from its one JSON list of frame rows (its mean bpp is the
    file's bits per pixel), its unit's rows name it like any codec."""
    monkeypatch.chdir(tmp_path)
    cfg = checked(study(tmp_path, n=2, extra={
        "video_codecs": {"avc": {"kind": "x264", "qualities": [30]}}}))
    assert ("avc", 30) in mv.points(cfg, "video", "synth")
    _write_unit(tmp_path, {"0": _dets([[5, 5, 20, 40]], [1.1]), "1": _dets([[6, 5, 21, 40]], [0.9])})
    (seq_rows,) = mv.rate_rows(cfg, "video", "synth", "avc", 30)
    os.makedirs(os.path.dirname(seq_rows))
    with open(seq_rows, "w") as fh:
        json.dump([{"frame": 0, "bpp": 0.30, "psnr_rgb": 33.0},
                   {"frame": 1, "bpp": 0.10, "psnr_rgb": 31.0}], fh)
    (r,) = mv.evaluate(cfg, source="video", name="synth", codec="avc", quality=30,
                       original=str(tmp_path / "orig.json"), decoded=str(tmp_path / "dec.json"),
                       rate_rows=[seq_rows], out=str(tmp_path / "eval.json"))
    assert r["codec"] == "avc" and r["bpp"] == pytest.approx(0.20) and r["psnr_rgb"] == 32.0
    assert r["map50"] == pytest.approx(2 / 3, abs=0.01)


def test_evaluate_job_refuses_mixed_settings_and_resized_labels(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    coco = _coco_json(tmp_path / "c.json", {"0": (64, 48), "1": (64, 48)}, [("0", [5, 5, 15, 35])])
    cfg = checked(study(tmp_path, {"labels": {"synth": {"format": "coco", "path": str(coco)}}}, n=2))
    decoded = {"0": _dets([[5, 5, 20, 40]], [1.1]), "1": _dets([], [])}
    rows = _write_unit(tmp_path, decoded)
    kw = dict(source="video", name="synth", codec="jpeg", quality=30,
              original=str(tmp_path / "orig.json"), decoded=str(tmp_path / "dec.json"),
              rate_rows=rows, out=str(tmp_path / "eval.json"))
    out = mv.evaluate(cfg, **kw)
    assert out[1]["gt"] == "labels" and out[1]["n_gt"] == 1 and out[1]["map50"] == 1.0
    # the label file changed after the start: sizes checked again in the job
    _coco_json(coco, {"0": (128, 96), "1": (128, 96)})
    with pytest.raises(RdflowError, match="detection.labels.synth: .*labelled at 128x96 but the "
                                          "frame 0 is 64x48"):
        mv.evaluate(cfg, **kw)
    # decoded detections made with other settings than the original ones
    other = det.build("hog", conf=0.5).load()
    det.write_detections(tmp_path / "dec.json", decoded, other)
    with pytest.raises(RdflowError, match="other detector settings"):
        mv.evaluate(cfg, **kw)
    assert json.loads((tmp_path / "eval.json").read_text()) == out  # failed jobs wrote nothing


def test_table_and_figures(tmp_path):
    paths = []
    for codec, pts in (("jpeg", [(0.3, 0.4), (1.2, 0.9)]), ("hp", [(0.2, 0.5), (0.8, 0.95)])):
        for q, (bpp, m) in enumerate(pts):
            p = tmp_path / f"{codec}{q}.json"
            rows = [{"source": "video", "sequence": "s", "codec": codec, "quality": q, "gt": g,
                     "bpp": bpp, "map50": m, "map50_95": m / 2, "detections_per_frame": 3 * m,
                     "mean_confidence": 0.5, "uncompressed_map50": 1.0,
                     "uncompressed_map50_95": 1.0 if g == "pseudo" else 0.6,
                     "uncompressed_detections_per_frame": 3.0, "backend": "hog", "conf": 0.0}
                    for g in ("pseudo", "labels")]
            p.write_text(json.dumps(rows))
            paths.append(str(p))
    img = tmp_path / "img.json"
    img.write_text(json.dumps([{"source": "image", "dataset": "coco8", "codec": "jpeg",
                                "quality": 1, "gt": "labels", "bpp": 1.0, "map50": 0.3,
                                "map50_95": 0.1, "detections_per_frame": 1.0,
                                "uncompressed_map50": 0.4, "backend": "hog", "conf": 0.0}]))
    paths.append(str(img))
    df = mv.table(paths, tmp_path / "mv.csv")
    back = pd.read_csv(tmp_path / "mv.csv")
    assert len(back) == 9 and list(back.columns[:8]) == ["source", "sequence", "dataset", "codec",
                                                         "quality", "gt", "bpp", "map50"]
    assert list(back.source) == ["image"] + ["video"] * 8  # sorted, images first
    assert len(df) == 9
    outs = {k: [tmp_path / f"{k}.png", tmp_path / f"{k}.pdf"] for k in ("map", "proxy")}
    mv.plot_unit(tmp_path / "mv.csv", "video", "s", outs["map"], outs["proxy"])
    for p in outs["map"] + outs["proxy"]:
        assert p.stat().st_size > 5000
    side = json.loads((tmp_path / "map.json").read_text())
    assert side["note"] is None and len(side["panels"]) == 4  # (labels, pseudo) x (map50, map50_95)
    for panel in side["panels"]:  # each codec with its 2 qualities, and the uncompressed line
        curves = {s["label"]: s for s in panel["series"] if s.get("kind") != "hline"}
        assert {k: len(s["x"]) for k, s in curves.items()} == {"hp": 2, "jpeg": 2}
        assert [s["label"] for s in panel["series"] if s.get("kind") == "hline"] == ["uncompressed"]
    m50 = [s for s in side["panels"][0]["series"] if s["label"] == "jpeg"][0]
    assert m50["x"] == [0.3, 1.2] and m50["y"] == [0.4, 0.9]
    proxy = json.loads((tmp_path / "proxy.json").read_text())
    assert {s["label"]: s["y"] for s in proxy["series"]} == {
        "uncompressed": [3.0, 3.0], "hp": [1.5, pytest.approx(2.85)], "jpeg": [pytest.approx(1.2), 2.7]}
    from PIL import Image

    with Image.open(outs["map"][0]) as im:  # 2 rows (labels, pseudo) x 2 columns of panels
        w, h = im.size
    assert h > 0.9 * w * (2 * 3.9) / (2 * 5.2)
    with pytest.raises(RdflowError, match="no rows for video other"):
        mv.plot_unit(tmp_path / "mv.csv", "video", "other", outs["map"], outs["proxy"])


# ---- detection worker processes ---------------------------------------------------------------


def test_detect_runs_in_a_reused_worker_and_survives_its_death(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = checked(study(tmp_path, {"imgsz": 256}))
    mv.POOL.close()
    r = mv.detect(cfg, source="video", name="synth", out=str(tmp_path / "o.json"))
    assert r["frames"] == 3 and len(mv.POOL._idle) == 1
    pid = mv.POOL._idle[0].proc.pid
    assert pid != os.getpid()
    found = det.read_detections(tmp_path / "o.json")
    assert sorted(found) == ["0", "1", "2"] and (found["0"].width, found["0"].height) == (64, 48)
    # the same result in this process, and the worker is reused (model loaded once)
    same = mv.detect(cfg, source="video", name="synth", out=str(tmp_path / "p.json"), isolate=False)
    assert same["frames"] == 3
    r2 = mv.detect(cfg, source="video", name="synth", out=str(tmp_path / "q.json"))
    assert mv.POOL._idle[0].proc.pid == pid and r2["load_s"] < r["load_s"]
    assert json.loads((tmp_path / "q.json").read_text()) == json.loads((tmp_path / "o.json").read_text())
    # a user error in the worker is a user error here, and the worker stays
    with pytest.raises(RdflowError, match=r"decoded frame results/video/synth/jpeg/q30/batch0.recon.zip/0.png is "
                                          "missing"):
        mv.detect(cfg, source="video", name="synth", codec="jpeg", quality=30,
                  out=str(tmp_path / "d.json"))
    assert mv.POOL._idle[0].proc.pid == pid and not (tmp_path / "d.json").exists()
    # a worker that died fails the job that meets it; the next job starts a fresh one
    os.kill(pid, 9)
    mv.POOL._idle[0].proc.wait()
    with pytest.raises(RdflowError, match=r"detection worker process was killed by SIGKILL "
                                          r".*while detecting on video synth"):
        mv.detect(cfg, source="video", name="synth", out=str(tmp_path / "e.json"))
    assert not mv.POOL._idle
    mv.detect(cfg, source="video", name="synth", out=str(tmp_path / "e.json"))
    assert mv.POOL._idle[0].proc.pid != pid
    mv.POOL.close()
    assert not mv.POOL._idle


def test_yolo_stays_out_of_the_calling_process(tmp_path):
    """The workflow's detection jobs run in the Snakemake process: ultralytics (and torch) must
    only ever be imported by the worker."""
    made = subprocess.run(
        [PY, "-c", "import sys; from rdflow.detectors import random_yolo_weights as r; "
                   "r(sys.argv[1], config_dir=sys.argv[2])",
         str(tmp_path / "resources/weights/yolov8n.pt"), str(tmp_path / "ucfg")],
        capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr[-3000:]
    code = f"""
import logging, os, sys
os.chdir({str(tmp_path)!r})
sys.path.insert(0, {os.path.dirname(__file__)!r})
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
from test_machine_vision import study, checked
import pathlib
from rdflow.stages import detection as mv
cfg = checked(study(pathlib.Path({str(tmp_path)!r}), {{"backend": "yolo", "imgsz": 64, "max_det": 5}}))
a = mv.detect(cfg, source="video", name="synth", out="a.json", threads=1)
b = mv.detect(cfg, source="video", name="synth", out="b.json", threads=1)
print("MODULES", "ultralytics" in sys.modules, "torch" in sys.modules, os.environ.get("OMP_NUM_THREADS"))
print("LOAD", a["load_s"] > 0.5, b["load_s"] < 0.05)
"""
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "MODULES False False None" in out.stdout
    assert "LOAD True True" in out.stdout  # the model is loaded once per worker
    assert out.stdout.count("started detection worker process") == 1
    assert "synth original: 3 frames, 15 detections" in out.stdout


# ---- end to end ------------------------------------------------------------------------------

pytest_e2e = pytest.mark.e2e


@pytest_e2e
def test_hog_study_on_a_shared_clip_and_coco8_with_labels(shared, tmp_path):
    clip = shared("data", "video", "CiscoVT2people_320x192_12fps.yuv")
    coco8 = shared("data", "coco8")
    work = tmp_path / "study"
    cfg = {"device": "cpu",
           "codecs": {"jpeg": {"kind": "jpeg", "qualities": [5, 60]},
                      "webp": {"kind": "webp", "qualities": [50]}},
           "vmaf": {"enabled": False},
           "datasets": {"coco8": {"kind": "local", "path": str(coco8 / "images" / "val")}},
           "video": {"frames": {"count": 5, "stride": 2},  # frames 0, 2, 4, 6, 8
                     "sequences": {"people": {"source": "file", "path": str(clip), "width": 320,
                                              "height": 192, "matrix": "bt601"}}},
           "detection": {"enabled": True, "backend": "hog",
                         "labels": {"coco8": {"format": "yolo",
                                              "path": str(coco8 / "labels" / "val")}}}}
    write_config(work, cfg)
    plan = planned_jobs(work)
    # one original per unit; one decoded + evaluation per (unit, codec, quality)
    assert plan["detect_original"] == 2
    assert plan["detect_decoded"] == plan["evaluate_detection"] == 3 + 3
    assert plan["aggregate_machine_vision"] == 1 and plan["plot_machine_vision"] == 2
    run_snakemake(work)

    df = pd.read_csv(work / "results/machine_vision.csv")
    video = df[df.source == "video"]
    assert len(video) == 3 and set(video["gt"]) == {"pseudo"} and set(video.sequence) == {"people"}
    assert set(zip(video.codec, video.quality)) == {("jpeg", 5), ("jpeg", 60), ("webp", 50)}
    assert (video.n_frames == 5).all() and set(video.backend) == {"hog"}
    assert (video.uncompressed_map50 == 1.0).all() and (video.uncompressed_detections_per_frame >= 1).all()
    # measured mAP@0.5: jpeg q60 1.0, webp 50 0.96, jpeg q5 0.34; HOG still finds someone
    assert (video.map50 > 0).all() and (video.map50 < video.uncompressed_map50).any()
    # the rate is the mean over the coded frames of the video rows
    rd = pd.read_csv(work / "results/video_rd_people.csv")
    for r in video.itertuples():
        assert r.bpp == pytest.approx(rd[(rd.codec == r.codec) & (rd.quality == r.quality)].bpp.mean())
    j = video[video.codec == "jpeg"].set_index("quality")
    assert j.loc[60, "map50"] > j.loc[5, "map50"] and j.loc[60, "bpp"] > j.loc[5, "bpp"]

    images = df[df.source == "image"]
    assert len(images) == 6 and set(images.dataset) == {"coco8"} and set(images["gt"]) == {"pseudo", "labels"}
    lab = images[images["gt"] == "labels"]
    # coco8/val labels 3 images with 1 + 6 + 3 people; HOG evaluates persons only
    assert set(lab.n_gt) == {10} and (lab.n_frames == 4).all()
    # HOG (upright pedestrians) finds none of coco8's seated/small people at IoU 0.5: a real 0
    assert (lab.uncompressed_map50 == 0.0).all() and (lab.map50 == 0.0).all()
    assert (images[images["gt"] == "pseudo"].uncompressed_map50 == 1.0).all()

    for unit in ("video_people", "image_coco8"):
        for fig in ("map", "proxy"):
            for ext in ("png", "pdf"):
                assert (work / f"results/figures/machine_vision_{unit}_{fig}.{ext}").stat().st_size > 5000
        # what the figures show: every codec, a point per quality, in every panel
        for fig in ("map", "proxy"):
            side = json.loads((work / f"results/figures/machine_vision_{unit}_{fig}.json").read_text())
            for p in side["panels"]:
                assert {s["label"]: len(s["x"]) for s in p["series"] if s.get("kind") != "hline"} == {
                    "jpeg": 2, "webp": 1}, (unit, fig, p["title"])
    orig = json.loads((work / "results/detection/video/people/original.json").read_text())
    assert sorted(orig["frames"], key=int) == ["0", "2", "4", "6", "8"]
    assert orig["detector"]["backend"] == "hog" and orig["names"] == {"0": "person"}
    assert "people jpeg q5: 5 frames" in (work / "logs/detect_decoded/video/people/jpeg/q5.log").read_text()
    # decoded frames are temp(): gone once detection ran
    assert not list((work / "results/video").rglob("*.recon.zip"))
    assert not list((work / "results/image").rglob("*.recon.zip"))
    assert planned_jobs(work) == {}

    # a detection setting changed: detection and evaluation again, not the coding
    cfg["detection"]["options"] = {"win_stride": 16}
    write_config(work, cfg)
    plan = planned_jobs(work)
    assert plan["detect_original"] == 2 and plan["detect_decoded"] == plan["evaluate_detection"] == 6
    # the decoded frames are temp(): detecting on them again codes them again (one batch job
    # per codec point: the 5 frames, the 4 images)
    assert plan["compress_frame"] == 3 and plan["compress_image"] == 3


@pytest_e2e
def test_yolo_plumbing_with_a_random_model(tmp_path, http_server):
    work = tmp_path / "study"
    raw = tmp_path / "synth.yuv"
    make_raw(raw, w=96, h=64, n=2)
    cfg = {"device": "cpu", "codecs": {"jpeg": {"kind": "jpeg", "qualities": [50]}},
           "vmaf": {"enabled": False},
           "video": {"frames": {"count": 2},
                     "sequences": {"synth": {"source": "file", "path": str(raw), "width": 96,
                                             "height": 64}}},
           "detection": {"enabled": True, "backend": "yolo", "imgsz": 96, "max_det": 20}}
    write_config(work, cfg)
    # weights missing while offline: stops at start, says where to put the file
    proc = run_snakemake(work, "-n", check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "resources/weights/yolov8n.pt" in text
    assert "https://github.com/ultralytics/assets/releases/download/" in text

    # online, a bare name is fetched by `snakemake download` (from a mirror here)
    served = http_server.root / "yolov8n.pt"
    made = subprocess.run(
        [PY, "-c", "import sys; from rdflow.detectors import random_yolo_weights as r; "
                   f"r(sys.argv[1], config_dir=sys.argv[2])", str(served), str(tmp_path / "ucfg")],
        capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr[-3000:]
    cfg["detection"].update(offline=False, base_url=http_server.url)
    write_config(work, cfg)
    run_snakemake(work, "download")
    weights = work / "resources/weights/yolov8n.pt"
    assert weights.read_bytes() == served.read_bytes() and http_server.hits == ["yolov8n.pt"]
    assert not (work / "results").exists()  # download fetches, nothing else

    cfg["detection"].update(offline=True, base_url=None)
    write_config(work, cfg)
    run_snakemake(work)
    df = pd.read_csv(work / "results/machine_vision.csv")
    assert len(df) == 1 and df["gt"].iloc[0] == "pseudo" and df.backend.iloc[0] == "yolo"
    r = df.iloc[0]
    assert r.weights == "yolov8n.pt" and r.conf == 0.25 and r.map_conf == 0.001 and r.imgsz == 96
    # the biased head reports people everywhere: max_det boxes per frame, all above conf
    assert r.detections_per_frame == 20 and r.uncompressed_detections_per_frame == 20
    assert r.n_gt == r.n_pred == 2 * 20 and r.uncompressed_map50 == 1.0  # 2 frames x max_det
    orig = json.loads((work / "results/detection/video/synth/original.json").read_text())
    assert orig["names"]["0"] == "person" and len(orig["names"]) == 80
    assert sorted(orig["frames"]) == ["0", "1"]
    from rdflow.download import sha256_file

    assert orig["detector"]["weights_sha256"] == sha256_file(weights)
    log = (work / "logs/detect_original/video/synth.log").read_text()
    assert "synth original: 2 frames" in log and "cpu, 1 threads" in log
    # ultralytics kept its settings inside resources/, offline
    settings = json.loads((work / "resources/ultralytics/Ultralytics/settings.json").read_text())
    assert settings["sync"] is False

    # corrupt weights: refused at start with the file named
    weights.write_bytes(weights.read_bytes()[: 100_000])
    proc = run_snakemake(work, "-n", check=False)
    assert proc.returncode != 0
    assert "resources/weights/yolov8n.pt (detection.weights) is not a PyTorch checkpoint" in (
        proc.stdout + proc.stderr)
