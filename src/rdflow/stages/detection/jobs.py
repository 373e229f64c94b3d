"""The stage's jobs: detection on a unit's original or decoded frames, and their evaluation.

The detector never runs in the Snakemake process: importing ultralytics sets torch's thread
count and ``OMP_NUM_THREADS`` to 1 process-wide, which would slow down every in-process coding
job. Detection jobs (threads of the Snakemake process, like the coding jobs) hand their frames
to a detection worker process (:data:`POOL`, :mod:`rdflow.worker`) that serves job after job,
so torch/ultralytics are imported and the model is loaded once per worker and run, not once
per job. A worker that dies fails only the job it served; the next job starts a fresh one.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from ... import RdflowError
from ... import detectors as det
from ...runtime import Cache
from ...worker import Pool, WorkerDied
from .checks import label_source
from .settings import build_detector, detector_options, labels, resolve_device, weights_path
from ..video_codecs import recon_frames
from .units import decoded_paths, frame_ids, image_source_paths, item_paths, sequence_coded

log = logging.getLogger("rdflow.stages.detection")

#: the detection worker processes of this process (each job takes one and gives it back)
POOL = Pool("detection")
#: loaded detectors, by settings (a worker serves many jobs)
LOADED = Cache(maxsize=4)
#: accuracy of the uncompressed frames, the same for every (codec, quality) of a unit
UNCOMPRESSED = Cache(maxsize=1024)


def original_frames(config: dict, source: str, name: str) -> Iterator[tuple[str, np.ndarray]]:
    """(frame id, RGB) of the uncompressed frames, converted as the coding jobs convert them."""
    if source == "video":
        from ...metrics.yuv import yuv420_to_rgb
        from ...sources.sequences import frames, probe_sequence
        from ...sources.video import iter_frames

        seq = probe_sequence(config, name)
        for i, planes in iter_frames(seq, frames(config, name)):
            yield str(i), yuv420_to_rgb(*planes, matrix=seq.matrix, range=seq.range,
                                        chroma_loc=seq.chroma_loc)
        return
    from ...sources.datasets import read_image

    for image, path in image_source_paths(config, name).items():
        yield image, read_image(path).rgb


def decoded_frames(config: dict, source: str, name: str, codec: str,
                   quality) -> Iterator[tuple[str, np.ndarray]]:
    """(frame id, RGB) of the decoded frames: the coding jobs' reconstruction PNGs, or a
    sequence codec's decoded frames converted to RGB as its rows' psnr_rgb saw them (4:2:0
    planes with the sequence's matrix, range and siting, as :func:`original_frames`)."""
    from ...io import read_pngs

    if sequence_coded(config, source, codec):
        path = Path(decoded_paths(config, source, name, codec, quality)[0])
        if not path.is_file():
            raise RdflowError(f"decoded frames {path} are missing: the compress_sequence job's "
                              "reconstruction is a temp() file; rerun with snakemake so it is "
                              "made again")
        for f, rgb in recon_frames(config, name, codec, path, as_="rgb"):
            yield str(f), rgb
        return
    files = item_paths(config, source, name, codec, quality, "png")
    ids = frame_ids(config, source, name)
    rgbs = read_pngs((files[f] for f in ids), what="decoded frame",  # each archive opened once
                     missing="the coding job's reconstruction is a temp() file; rerun with "
                             "snakemake so it is made again")
    yield from zip(ids, rgbs)


def _loaded_detector(config: dict, device: str, threads: int, source: str | None = None,
                     name: str | None = None):
    """The configured detector, loaded once per process and settings; returns (detector,
    seconds spent loading it now)."""
    opts = detector_options(config, source, name)
    cls = det.detector_class(opts["backend"])
    w = weights_path(config)
    stamp = (w.stat().st_mtime_ns, w.stat().st_size) if w is not None and w.is_file() else None
    key = json.dumps([opts, device, stamp], sort_keys=True, default=str)
    cls.set_threads(threads, loaded=False)
    t0 = time.perf_counter()
    detector = LOADED.get(key, lambda: build_detector(config, device=device, source=source,
                                                         name=name).load())
    load_s = time.perf_counter() - t0
    cls.set_threads(threads, loaded=True)
    return detector, load_s


def detect_job(config: dict, *, source: str, name: str, out: str, codec: str | None = None,
               quality: int | None = None, threads: int = 1) -> dict:
    """Run the configured detector over a unit's original frames (``codec`` None) or its
    decoded frames of one (codec, quality); write per-frame detections (atomic JSON).

    This imports ultralytics (YOLO), which changes process-wide thread settings: the workflow
    calls it through :func:`detect`, in a detection worker process (which imports the study's
    plugins first: a plugin's detector is registered there too)."""
    from ...config import load_plugins

    load_plugins(config)
    opts = detector_options(config, source, name)
    device = resolve_device(str(opts.get("device", "cpu")), opts["backend"])
    detector, load_s = _loaded_detector(config, device, threads, source, name)
    frames = (original_frames(config, source, name) if codec is None
              else decoded_frames(config, source, name, codec, quality))
    t0 = time.perf_counter()
    found = det.detect_frames(detector, frames)
    detect_s = time.perf_counter() - t0
    det.write_detections(out, found, detector)
    n = sum(len(d.above(detector.conf)) for d in found.values())
    log.info("%s %s %s: %d frames, %d detections at conf %.3g; load %.2f s, detect %.2f s "
             "(%.1f ms/frame, %s, %d threads, pid %d)", source, name,
             "original" if codec is None else f"{codec} q{quality}", len(found), n,
             detector.conf, load_s, detect_s, 1000 * detect_s / max(1, len(found)), device,
             threads, os.getpid())
    return {"frames": len(found), "load_s": load_s, "detect_s": detect_s}


def detect(config: dict, *, source: str, name: str, out: str, codec: str | None = None,
           quality: int | None = None, threads: int = 1, isolate: bool = True) -> dict:
    """:func:`detect_job` in a detection worker process (``isolate``, the workflow's way), or
    in this process. The worker's log lines are logged here (into the job's log)."""
    kwargs = dict(config=config, source=source, name=name, out=str(out), codec=codec,
                  quality=None if quality is None else int(quality), threads=int(threads))
    if not isolate:
        return detect_job(**kwargs)
    try:
        return POOL.call("rdflow.stages.detection.jobs:detect_job", **kwargs)
    except WorkerDied as exc:
        raise RdflowError(f"{exc} while detecting on {source} {name}; its error is printed "
                          "above (stderr)") from None


# ---- evaluation ------------------------------------------------------------------------------


def _read_doc(path) -> dict:
    from ...io import read_json

    try:
        return read_json(path)
    except (OSError, ValueError) as exc:
        raise RdflowError(f"cannot read detections {path} ({exc}); delete it and rerun") from None


def _mean_rate(paths: list[str]) -> dict:
    from ...io import read_json

    # one row per JSON file, or a list of frame rows (a sequence codec's)
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        from ..compress import missing_item

        raise missing_item(missing[0])
    rows = [r for p in paths for r in (lambda x: x if isinstance(x, list) else [x])(read_json(p))]
    if not rows:
        raise RdflowError("no coded frames to take the rate from")
    out = {"bpp": float(np.mean([r["bpp"] for r in rows]))}
    for key in ("psnr_rgb", "ms_ssim"):
        vals = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        if len(vals) == len(rows):
            out[key] = float(np.mean(vals))
    return out


def _uncompressed(original: str, gt_name: str, spec, compute) -> dict:
    """The accuracy of the uncompressed frames: the same for every (codec, quality) of a unit,
    so computed once per run (evaluation jobs run in threads of one process)."""
    st = os.stat(original)
    lab = Path(str(spec["path"])) if gt_name == "labels" and spec else None
    key = json.dumps([os.path.abspath(original), st.st_mtime_ns, st.st_size, gt_name,
                      json.dumps(spec, sort_keys=True, default=str),
                      lab.stat().st_mtime_ns if lab is not None and lab.exists() else None])
    return UNCOMPRESSED.get(key, compute)


def _class_text(names: dict[int, str], class_ids) -> str:
    """The classes accuracy is computed over, as text for the CSV."""
    if class_ids is None or not names:
        return "all"
    if len(class_ids) > 10:
        return f"all {len(class_ids)}" if len(class_ids) == len(names) else f"{len(class_ids)} classes"
    return ",".join(names[c] for c in class_ids)


def _truths(config: dict, source: str, name: str, orig: dict, names: dict, conf: float) -> list:
    """(gt name, ground truth) pairs: pseudo ground truth, and the labels when configured."""
    truths = [("pseudo", det.pseudo_ground_truth(orig, conf))]
    spec = labels(config).get(name)
    if spec and label_source(config, name) == source:
        sizes = {fid: (o.width, o.height) for fid, o in orig.items()}
        try:
            truths.append(("labels", det.read_labels(spec["format"], spec["path"], sizes,
                                                      names or None)))
        except RdflowError as exc:
            raise RdflowError(f"detection.labels.{name}: {exc}") from None
    return truths


def _check_sizes(decoded: str, orig: dict, dec: dict) -> None:
    for fid, d in dec.items():
        o = orig.get(fid)
        if o is not None and (o.width, o.height) != (d.width, d.height):
            raise RdflowError(f"{decoded}: frame {fid} is {d.width}x{d.height} but the original "
                              f"is {o.width}x{o.height}; the codec changed the frame size")


def _row(unit: dict, gt_name: str, rate: dict, r: dict, u: dict, sig: dict, classes: str) -> dict:
    return {**unit, "gt": gt_name, **rate,
            "map50": r["map50"], "map50_95": r["map50_95"],
            "detections_per_frame": r["detections_per_frame"],
            "mean_confidence": r["mean_confidence"],
            "uncompressed_map50": u["map50"], "uncompressed_map50_95": u["map50_95"],
            "uncompressed_detections_per_frame": u["detections_per_frame"],
            "n_frames": r["n_frames"], "n_gt": r["n_gt"], "n_pred": r["n_pred"],
            "backend": sig.get("backend", ""), "conf": float(sig.get("conf", 0.25)),
            "map_conf": sig.get("map_conf"), "iou": sig.get("iou"), "imgsz": sig.get("imgsz"),
            "weights": Path(str(sig["weights"])).name if sig.get("weights") else None,
            "classes": classes}


def evaluate(config: dict, *, source: str, name: str, codec: str, quality: int,
             original: str, decoded: str, rate_rows: list[str], out: str) -> list[dict]:
    """Accuracy rows of one (unit, codec, quality): against pseudo ground truth and, when
    configured, real labels. Writes them as a JSON list to ``out``."""
    from ...io import write_json

    odoc = _read_doc(original)
    sig = odoc.get("detector") or {}
    orig = det.read_detections(original)
    dec = det.read_detections(decoded, expect=sig)
    names = {int(k): str(v) for k, v in (odoc.get("names") or {}).items()}
    backend = sig.get("backend", "")
    class_ids = det.resolve_classes(sig.get("classes"), names, backend=backend) if names else None
    conf, max_det = float(sig.get("conf", 0.25)), int(sig.get("max_det", 300))
    _check_sizes(decoded, orig, dec)
    truths = _truths(config, source, name, orig, names, conf)
    rate = _mean_rate(rate_rows)
    unit = {"source": source, "sequence" if source == "video" else "dataset": name,
            "codec": codec, "quality": int(quality)}
    spec = labels(config).get(name)
    rows = []
    for gt_name, gt in truths:
        r = det.evaluate(gt, dec, conf=conf, class_ids=class_ids, max_dets=max_det)
        u = _uncompressed(original, gt_name, spec, lambda: det.evaluate(
            gt, orig, conf=conf, class_ids=class_ids, max_dets=max_det))
        rows.append(_row(unit, gt_name, rate, r, u, sig, _class_text(names, class_ids)))
        log.info("%s %s q%s gt=%s: bpp %.4f map50 %.4f map50_95 %.4f det/frame %.2f", name,
                 codec, quality, gt_name, rate["bpp"], r["map50"], r["map50_95"],
                 r["detections_per_frame"])
    write_json(out, rows)
    return rows
