"""Machine-vision stage: detection on original and decoded frames, rate-accuracy rows and figures.

The config section ``detection:`` (workflow/schemas/config.schema.yaml) switches it on. For every
video sequence, and for every image dataset that has labels (``detection.labels``), the
detector (:mod:`rdflow.detection`: YOLO, OpenCV HOG or FastestDet) runs

- once on the uncompressed frames (``detect_original``), and
- once per (codec, quality) on the decoded frames (``detect_decoded``; the 8-bit RGB
  reconstructions the coding jobs left as temp() PNGs),

each job loading the detector once and writing per-frame detections (JSON). ``evaluate_detection``
then computes, per (sequence|dataset, codec, quality), COCO mAP@0.5 and mAP@0.5:0.95 (with
faster-coco-eval) against

- ``gt = pseudo``: the detector's own confident boxes on the uncompressed frame, and
- ``gt = labels``: real labels (YOLO txt folder or COCO json) when configured,

beside the proxies detections-per-frame and mean confidence, the mean bpp of the coded frames,
and the same accuracy of the uncompressed frames (``uncompressed_*``: the ceiling). Rows are
gathered in ``results/machine_vision.csv``; figures show mAP and the proxy versus bpp.

The detector never runs in the Snakemake process: importing ultralytics sets torch's thread
count and ``OMP_NUM_THREADS`` to 1 process-wide, which would slow down every in-process coding
job. Detection jobs hand their frames to a detection worker process (:func:`detect`) that serves
job after job, so the model is loaded once per worker. Nothing in this module imports
ultralytics, torch or cv2 at import time, and nothing that runs at parse time imports
ultralytics at all.

Frame ids: a video frame is its 0-based index in the file (``"12"``), an image its file stem.
Video labels are therefore ``<index>.txt`` (YOLO) or COCO images whose ``file_name`` stem is the
index.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from . import RdflowError

log = logging.getLogger("rdflow.machine_vision")

#: Where bare YOLO weights names (``yolov8n.pt``) are looked up, and ultralytics' settings folder.
WEIGHTS_DIR = "resources/weights"
ULTRALYTICS_DIR = "resources/ultralytics"
ROOT = "results/detection"
CSV = "results/machine_vision.csv"
SOURCES = ("video", "image")
FIGURES = ("map", "proxy")
#: COCO label files larger than this are checked in the evaluation jobs only, not at parse time.
PARSE_TIME_LABEL_BYTES = 32 * 2**20
#: ultralytics asset names of COCO-trained detection models (their class names are known at
#: parse time without loading the model): yolov8n.pt, yolov5su.pt, yolo11n.pt, yolo26x.pt, ...
_COCO_ASSET = re.compile(r"^yolo(?:v\d+|\d+)[nsmlxbct]u?6?u?\.pt$")

LEADING = ["source", "sequence", "dataset", "codec", "quality", "gt", "bpp", "map50", "map50_95",
           "detections_per_frame", "mean_confidence", "uncompressed_map50",
           "uncompressed_map50_95", "uncompressed_detections_per_frame", "n_frames", "n_gt",
           "n_pred"]


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


def settings(config: dict) -> dict:
    return config.get("detection") or {}


def enabled(config: dict) -> bool:
    return bool(settings(config).get("enabled", False))


def labels(config: dict) -> dict:
    return settings(config).get("labels") or {}


def weights_path(config: dict) -> Path | None:
    """The weights file the detection jobs read (None for backends without weights).

    yolo: ``detection.weights`` is used as given when that file exists or when it names a
    folder; a bare name (``yolov8n.pt``) is looked up in ``resources/weights``. fastestdet:
    ``detection.weights`` as given, else the shipped FastestDet.onnx."""
    d = settings(config)
    backend = d.get("backend", "yolo")
    if backend == "fastestdet":
        from . import fastestdet as fd

        return fd.shipped_path(d["weights"]) if d.get("weights") else fd.default_weights()
    if backend != "yolo":
        return None
    w = str(d.get("weights") or "yolov8n.pt")
    p = Path(w)
    if p.is_file() or p.name != w:
        return p
    return Path(WEIGHTS_DIR) / w


def yolo_asset_url(name: str, base_url: str | None = None) -> str:
    """Where a bare ultralytics weights name is downloaded from: ``base_url`` + name, or the
    release ultralytics itself would use, read from its source text (importing ultralytics
    would change the thread settings of the Snakemake process)."""
    if base_url:
        return base_url.rstrip("/") + "/" + name
    import importlib.util

    spec = importlib.util.find_spec("ultralytics")
    if spec is not None and spec.submodule_search_locations:
        src = Path(list(spec.submodule_search_locations)[0]) / "utils" / "downloads.py"
        try:
            text = src.read_text()
        except OSError:
            text = ""
        m = re.search(r'def attempt_download_asset\(.*?repo:\s*str\s*=\s*"([^"]+)"'
                      r'.*?release:\s*str\s*=\s*"([^"]+)"', text, re.S)
        if m:
            return f"https://github.com/{m[1]}/releases/download/{m[2]}/{name}"
    return f"https://github.com/ultralytics/assets/releases/latest/download/{name}"


def resolve_device(device: str, backend: str) -> str:
    """cpu or cuda for a detection job (``auto``: cuda when torch sees a GPU)."""
    if backend != "yolo":
        return "cpu"  # HOG and FastestDet run in OpenCV on the CPU
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise RdflowError(f"detection runs on {device} (detection.device / device) but torch "
                              "sees no GPU here: set detection.device: cpu")
    return device


def auto_imgsz(config: dict, source: str | None, name: str | None) -> int:
    """``detection.imgsz: null``: the unit's own longer side (rounded up to a multiple of 32),
    at most 640 — small clips are not upscaled; 1080p is detected at YOLO's usual 640. Image
    datasets (sizes vary per image) use 640."""
    if source == "video" and name is not None:
        from .sequences import probe_sequence, sequences

        s = sequences(config).get(name) or {}
        w, h = s.get("width"), s.get("height")
        if not (w and h):
            seq = probe_sequence(config, name)
            w, h = seq.width, seq.height
        return int(min(640, -(-max(w, h) // 32) * 32))
    return 640


def detector_options(config: dict, source: str | None = None, name: str | None = None) -> dict:
    """``backend`` and the keyword options of :func:`rdflow.detection.build`, as plain JSON
    (also the rules' ``params``, so changing a setting reruns detection), for one unit
    (``source`` video|image, ``name``) since the default image size follows the unit's size."""
    d = settings(config)
    backend = d.get("backend", "yolo")
    opts: dict = {"backend": backend, "max_det": int(d.get("max_det", 300)),
                  "classes": d.get("classes") or None}
    if backend != "fastestdet":  # its input size is fixed: an imgsz given is refused by it
        opts["imgsz"] = int(d["imgsz"]) if d.get("imgsz") else auto_imgsz(config, source, name)
    elif d.get("imgsz"):
        opts["imgsz"] = int(d["imgsz"])
    for key in ("conf", "map_conf", "iou"):
        if d.get(key) is not None:
            opts[key] = float(d[key])
    if backend == "yolo":
        opts.update(weights=str(weights_path(config)), weights_dir=WEIGHTS_DIR,
                    config_dir=ULTRALYTICS_DIR, offline=bool(d.get("offline", True)),
                    base_url=d.get("base_url"),
                    device=d.get("device") or config.get("device", "auto"))
    elif backend == "fastestdet":
        opts["weights"] = str(weights_path(config))
    opts.update(d.get("options") or {})
    return opts


def build_detector(config: dict, *, device: str | None = None, source: str | None = None,
                   name: str | None = None):
    """The configured detector, not loaded (cheap: no model, no ultralytics import)."""
    from . import detection as det

    opts = detector_options(config, source, name)
    backend = opts.pop("backend")
    if backend not in det.DETECTORS:
        raise RdflowError(f"detection.backend: unknown backend {backend!r}; known: "
                          f"{', '.join(sorted(det.DETECTORS))}")
    if device is not None and "device" in opts:
        opts["device"] = device
    try:
        return det.build(backend, **opts)
    except RdflowError as exc:
        raise RdflowError(f"config section detection: {exc}") from None


def class_names_at_parse_time(config: dict) -> dict[int, str] | None:
    """The detector's class names when they are known without loading the model: HOG's,
    FastestDet's (the shipped coco.names), and those of ultralytics' COCO-trained assets
    (yolov8n.pt, yolo11s.pt, ...); else None."""
    from . import detection as det

    d = settings(config)
    backend = d.get("backend", "yolo")
    if backend == "hog":
        return {det.PERSON: "person"}
    if backend == "fastestdet":
        return det.fd.names()
    if backend == "yolo":
        w = str(d.get("weights") or "yolov8n.pt")
        if _COCO_ASSET.match(Path(w).name):
            return det.coco_names()
    return None


def _sniff_weights(path: Path) -> None:
    """A cheap parse-time check that a .pt file can be a torch checkpoint (zip or pickle)."""
    import zipfile

    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(2)
    if size == 0 or not (zipfile.is_zipfile(path) or head[:1] == b"\x80"):
        raise RdflowError(
            f"YOLO weights {path} (detection.weights) is not a PyTorch checkpoint ({size} bytes: "
            "empty, truncated or corrupt download): delete it and place a good copy there"
            + (f" ({yolo_asset_url(path.name)})" if _COCO_ASSET.match(path.name) else ""))


def check_weights(config: dict) -> None:
    d = settings(config)
    path = weights_path(config)
    if path is None:
        return
    if d.get("backend") == "fastestdet":  # loaded (and the shipped file's hash checked) by jobs
        from . import fastestdet as fd

        if path.is_file():
            return
        if fd.is_default(path):
            raise RdflowError(f"the FastestDet weights shipped with rdflow ({path}) are missing: "
                              f"restore {fd.DEFAULT_WEIGHTS} from the repository")
        raise RdflowError(f"FastestDet weights {d.get('weights')} (detection.weights) "
                          f"{'is not a file' if path.exists() else 'does not exist'}: fix the "
                          "path, or leave detection.weights unset for the shipped FastestDet.onnx")
    given = str(d.get("weights") or "yolov8n.pt")
    if path.is_file():
        _sniff_weights(path)
        return
    if path.exists():
        raise RdflowError(f"YOLO weights {path} (detection.weights) is not a file")
    if Path(given).name != given:
        raise RdflowError(f"YOLO weights file {given} (detection.weights) does not exist: fix "
                          "the path, or give a bare ultralytics name such as yolov8n.pt to use "
                          f"{WEIGHTS_DIR}/")
    if d.get("offline", True):
        url = yolo_asset_url(given, d.get("base_url"))
        raise RdflowError(
            f"YOLO weights {given} (detection.weights) not found at {path}, and detection.offline "
            f"is true, so rdflow will not download them. Download {url} and place it at {path}, "
            "set detection.weights to a local .pt file, or set detection.offline: false")


def frame_sizes(config: dict, source: str, name: str) -> dict[str, tuple[int, int]] | None:
    """Frame id -> (width, height) where known without running a job (None otherwise)."""
    if source == "video":
        from .sequences import frames, probe_sequence, sequences

        s = sequences(config)[name]
        if s["source"] == "file":
            seq = probe_sequence(config, name)
            w, h = seq.width, seq.height
        else:
            w, h = s["width"], s["height"]
        return {str(f): (w, h) for f in frames(config, name)}
    d = config["datasets"][name]
    if d["kind"] != "local":
        return None
    from PIL import Image

    from .config import dataset_images

    out = {}
    for image, path in dataset_images(config, name).items():
        try:
            with Image.open(path) as im:
                out[image] = im.size
        except OSError:
            return None  # the coding job reports the unreadable image
    return out


def label_source(config: dict, name: str) -> str:
    """video or image: which kind of unit ``detection.labels.<name>`` belongs to."""
    from .sequences import sequences

    in_video = name in sequences(config)
    in_image = name in (config.get("datasets") or {})
    if in_video and in_image:
        raise RdflowError(f"detection.labels.{name}: {name!r} is both a video sequence and an "
                          "image dataset; rename one of them")
    if not (in_video or in_image):
        known = sorted(set(sequences(config)) | set(config.get("datasets") or {}))
        raise RdflowError(f"detection.labels.{name}: {name!r} is neither a video sequence nor an "
                          f"image dataset; known: {', '.join(known) or 'none'}")
    return "video" if in_video else "image"


def check_labels(config: dict) -> None:
    """Label entries name a sequence/dataset, a known format and an existing path; files small
    enough are read now (malformed lines, sizes that do not match the frames)."""
    from . import detection as det

    for name, spec in sorted(labels(config).items()):
        where = f"detection.labels.{name}"
        source = label_source(config, name)
        fmt, path = spec.get("format"), Path(str(spec.get("path")))
        if fmt not in det.LABEL_READERS:
            raise RdflowError(f"{where}.format: unknown label format {fmt!r}; known: "
                              f"{', '.join(sorted(det.LABEL_READERS))}")
        if fmt == "yolo" and not path.is_dir():
            raise RdflowError(f"{where}.path: label folder {path} does not exist (YOLO labels are "
                              "a folder of <frame>.txt files)")
        if fmt == "coco" and not path.is_file():
            raise RdflowError(f"{where}.path: COCO label file {path} does not exist")
        if fmt == "coco" and path.stat().st_size > PARSE_TIME_LABEL_BYTES:
            log.info("%s: %s is large; checked by the evaluation jobs", where, path)
            continue
        sizes = frame_sizes(config, source, name)
        if sizes is None:
            continue
        try:
            det.read_labels(fmt, path, sizes, names=class_names_at_parse_time(config))
        except RdflowError as exc:
            raise RdflowError(f"{where}: {exc}") from None


def check(config: dict) -> None:
    """Parse-time checks of the ``detection`` section (called by :func:`rdflow.config.check`)."""
    from . import detection as det

    if not enabled(config):
        return
    d = settings(config)
    backend = d.get("backend", "yolo")
    if backend not in det.DETECTORS:
        raise RdflowError(f"detection.backend: unknown backend {backend!r}; known: "
                          f"{', '.join(sorted(det.DETECTORS))}")
    build_detector(config)  # thresholds, sizes, backend options
    names = class_names_at_parse_time(config)
    if names is not None and d.get("classes"):
        det.resolve_classes(d["classes"], names, backend=backend)
    check_weights(config)
    check_labels(config)
    if not units(config):
        raise RdflowError("detection.enabled is true but there is nothing to detect on: add "
                          "video.sequences, or detection.labels for an image dataset")


# --------------------------------------------------------------------------------------------
# What runs: units, points, paths, targets
# --------------------------------------------------------------------------------------------


def units(config: dict) -> list[tuple[str, str]]:
    """(source, name) pairs detection runs on: every video sequence, and image datasets with
    labels."""
    from .sequences import sequences

    out = [("video", s) for s in sorted(sequences(config))]
    lab = labels(config)
    out += [("image", d) for d in sorted(config.get("datasets") or {}) if d in lab]
    return out


def points(config: dict, source: str, name: str) -> list[tuple[str, int]]:
    """(codec, quality) operating points of a unit."""
    if source == "video":
        from .sequences import video_codecs

        codecs = video_codecs(config)
    else:
        from .config import codec_applies

        codecs = [c for c in sorted(config["codecs"]) if codec_applies(config, c, name)]
    return [(c, int(q)) for c in codecs for q in config["codecs"][c]["qualities"]]


def frame_ids(config: dict, source: str, name: str) -> list[str]:
    if source == "video":
        from .sequences import frames

        return [str(f) for f in frames(config, name)]
    from .config import dataset_images

    return list(dataset_images(config, name))


def detections_path(source: str, name: str, codec: str | None = None,
                    quality: int | None = None) -> str:
    if codec is None:
        return f"{ROOT}/{source}/{name}/original.json"
    return f"{ROOT}/{source}/{name}/{codec}/q{quality}.json"


def evaluation_path(source: str, name: str, codec: str, quality: int) -> str:
    return f"{ROOT}/{source}/{name}/{codec}/q{quality}_eval.json"


def figure_paths(source: str, name: str, figure: str) -> list[str]:
    return [f"results/figures/machine_vision_{source}_{name}_{figure}.{ext}" for ext in ("png", "pdf")]


def _item_dir(source: str, name: str, codec: str, quality) -> str:
    return f"results/{source}/{name}/{codec}/q{quality}"


def decoded_paths(config: dict, source: str, name: str, codec: str, quality) -> list[str]:
    """The temp() reconstruction PNGs of the coding jobs (inputs of ``detect_decoded``)."""
    return [f"{_item_dir(source, name, codec, quality)}/{f}.png" for f in frame_ids(config, source, name)]


def rate_rows(config: dict, source: str, name: str, codec: str, quality) -> list[str]:
    """The coding jobs' JSON rows (for bpp)."""
    return [f"{_item_dir(source, name, codec, quality)}/{f}.json" for f in frame_ids(config, source, name)]


def image_source_paths(config: dict, dataset: str) -> dict[str, str]:
    """Image id -> the file the coding job read (downloaded copy for kodak datasets)."""
    from .config import dataset_images

    d = config["datasets"][dataset]
    images = dataset_images(config, dataset)
    if d["kind"] == "kodak":
        return {i: f"resources/datasets/{dataset}/{i}.png" for i in images}
    if d["kind"] == "variant":  # preprocessed copies (rdflow.ablation, rule preprocess_image)
        return {i: f"resources/variants/{dataset}/{i}.png" for i in images}
    return {i: str(p) for i, p in images.items()}


def original_inputs(config: dict, source: str, name: str) -> list[str]:
    """What ``detect_original`` reads: the sequence file and its probe, or the images."""
    if source == "video":
        from .sequences import sequence_path

        return [sequence_path(config, name), f"results/video/{name}/sequence.json"]
    return list(image_source_paths(config, name).values())


def evaluation_paths(config: dict) -> list[str]:
    return [evaluation_path(s, n, c, q) for s, n in units(config) for c, q in points(config, s, n)]


def machine_vision_targets(config: dict) -> list[str]:
    """Final targets of the stage ([] when detection.enabled is false): the CSV, the figures, and
    every evaluation row (a deleted one is redone, with the CSV)."""
    if not enabled(config):
        return []
    out = [CSV]
    for s, n in units(config):
        for fig in FIGURES:
            out += figure_paths(s, n, fig)
    return out + evaluation_paths(config)


def download_targets(config: dict) -> list[str]:
    """What the stage fetches from the network: a bare YOLO weights name with
    detection.offline: false (rule download_detection_weights)."""
    if not enabled(config):
        return []
    d = settings(config)
    if d.get("backend", "yolo") != "yolo":
        return []  # hog needs no weights; fastestdet's ship with the workflow
    w = weights_path(config)
    given = str(d.get("weights") or "yolov8n.pt")
    if w is None or d.get("offline", True) or w.as_posix() != f"{WEIGHTS_DIR}/{given}":
        return []
    return [w.as_posix()]


# --------------------------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------------------------


def original_frames(config: dict, source: str, name: str) -> Iterator[tuple[str, np.ndarray]]:
    """(frame id, RGB) of the uncompressed frames, converted as the coding jobs convert them."""
    if source == "video":
        from .sequences import frames, probe_sequence
        from .video import iter_frames
        from .yuv import yuv420_to_rgb

        seq = probe_sequence(config, name)
        for i, planes in iter_frames(seq, frames(config, name)):
            yield str(i), yuv420_to_rgb(*planes, matrix=seq.matrix, range=seq.range,
                                        chroma_loc=seq.chroma_loc)
        return
    from .datasets import read_image

    for image, path in image_source_paths(config, name).items():
        yield image, read_image(path).rgb


def decoded_frames(config: dict, source: str, name: str, codec: str,
                   quality) -> Iterator[tuple[str, np.ndarray]]:
    from .coding import read_png

    base = _item_dir(source, name, codec, quality)
    for f in frame_ids(config, source, name):
        path = Path(f"{base}/{f}.png")
        if not path.is_file():
            raise RdflowError(f"decoded frame {path} is missing: the coding job's reconstruction "
                              "is a temp() file; rerun with snakemake so it is made again")
        yield f, read_png(path)


_DETECTORS: dict[str, object] = {}
_DETECTORS_LOCK = threading.Lock()


def _loaded_detector(config: dict, device: str, threads: int, source: str | None = None,
                     name: str | None = None):
    """The configured detector, loaded once per process and settings (the detection worker
    serves many jobs); returns (detector, seconds spent loading it now)."""
    opts = detector_options(config, source, name)
    w = weights_path(config)
    stamp = (w.stat().st_mtime_ns, w.stat().st_size) if w is not None and w.is_file() else None
    key = json.dumps([opts, device, stamp], sort_keys=True, default=str)
    if opts["backend"] != "yolo":  # OpenCV (HOG, FastestDet's dnn): before it loads and runs
        import cv2

        cv2.setNumThreads(max(1, int(threads)))
    t0 = time.perf_counter()
    with _DETECTORS_LOCK:
        detector = _DETECTORS.get(key)
        if detector is None:
            detector = build_detector(config, device=device, source=source, name=name)
            detector.load()
            if len(_DETECTORS) >= 4:
                _DETECTORS.pop(next(iter(_DETECTORS)))
            _DETECTORS[key] = detector
    load_s = time.perf_counter() - t0
    if opts["backend"] == "yolo":
        import torch

        torch.set_num_threads(max(1, int(threads)))
    return detector, load_s


def detect_job(config: dict, *, source: str, name: str, out: str, codec: str | None = None,
               quality: int | None = None, threads: int = 1) -> dict:
    """Run the configured detector over a unit's original frames (``codec`` None) or its
    decoded frames of one (codec, quality); write per-frame detections (atomic JSON).

    This imports ultralytics (YOLO), which changes process-wide thread settings: the workflow
    calls it through :func:`detect`, in a detection worker process."""
    from . import detection as det

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


# ---- detection worker processes --------------------------------------------------------------
# Detection jobs are run: jobs in threads of the Snakemake process, like the coding jobs, but
# the detector itself runs in a worker process: importing ultralytics sets torch's thread
# count and OMP_NUM_THREADS to 1 process-wide, which must not happen to the Snakemake process.
# Workers are plain subprocesses (python -c) that take pickled requests on stdin and answer on
# stdout (their fd 1 goes to stderr, so stray prints cannot corrupt the protocol). A job takes
# an idle worker or starts one and gives it back when done, so torch/ultralytics are imported
# and the model is loaded once per worker and run, not once per job. A worker that dies fails
# only the job it served; the next job starts a fresh one.


class _WorkerDied(Exception):
    pass


def _worker_main() -> None:
    import pickle
    import traceback

    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    proto_in = sys.stdin.buffer
    lines: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record):
            lines.append(self.format(record))

    handler = _Collect(logging.INFO)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    root = logging.getLogger("rdflow")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    while True:
        try:
            kind, kwargs = pickle.load(proto_in)
        except EOFError:
            return
        if kind != "detect":
            return
        lines.clear()
        try:
            reply = ("ok", detect_job(**kwargs), list(lines))
        except RdflowError as exc:
            reply = ("user-error", str(exc), list(lines))
        except BaseException as exc:  # noqa: BLE001  reported by the job that sent the request
            reply = ("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}", list(lines))
        proto_out.write(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
        proto_out.flush()


class _Worker:
    def __init__(self):
        import subprocess

        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from rdflow.machine_vision import _worker_main; _worker_main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)

    def call(self, kwargs: dict):
        import pickle

        try:
            pickle.dump(("detect", kwargs), self.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self.proc.stdin.flush()
            return pickle.load(self.proc.stdout)
        except (EOFError, BrokenPipeError, pickle.UnpicklingError):
            try:
                rc = self.proc.wait(timeout=30)
            except Exception:  # noqa: BLE001
                self.proc.kill()
                rc = self.proc.wait()
            raise _WorkerDied(f"exit code {rc}" if rc >= 0 else f"killed by signal {-rc}") from None

    def close(self) -> None:
        from .runtime import close_worker

        close_worker(self.proc, timeout=30)


_IDLE: list[_Worker] = []
_IDLE_LOCK = threading.Lock()


@atexit.register
def _close_workers() -> None:
    with _IDLE_LOCK:
        workers, _IDLE[:] = list(_IDLE), []
    for w in workers:
        w.close()


def detect(config: dict, *, source: str, name: str, out: str, codec: str | None = None,
           quality: int | None = None, threads: int = 1, isolate: bool = True) -> dict:
    """:func:`detect_job` in a detection worker process (``isolate``, the workflow's way), or
    in this process. The worker's log lines are logged here (into the job's log)."""
    kwargs = dict(config=config, source=source, name=name, out=str(out), codec=codec,
                  quality=None if quality is None else int(quality), threads=int(threads))
    if not isolate:
        return detect_job(**kwargs)
    with _IDLE_LOCK:
        worker = _IDLE.pop() if _IDLE else None
    if worker is None:
        worker = _Worker()
        log.info("started detection worker process %d", worker.proc.pid)
    try:
        status, payload, lines = worker.call(kwargs)
    except _WorkerDied as exc:
        worker.close()
        raise RdflowError(f"the detection worker process died ({exc}) while detecting on "
                          f"{source} {name}; its error is printed above (stderr)") from None
    except BaseException:
        worker.close()
        raise
    with _IDLE_LOCK:
        _IDLE.append(worker)
    for line in lines:
        log.info("worker %d: %s", worker.proc.pid, line)
    if status == "user-error":
        raise RdflowError(payload)
    if status == "error":
        raise RuntimeError(f"detection worker process {worker.proc.pid} failed: {payload}")
    return payload


def _read_doc(path) -> dict:
    from .io import read_json

    try:
        return read_json(path)
    except (OSError, ValueError) as exc:
        raise RdflowError(f"cannot read detections {path} ({exc}); delete it and rerun") from None


def _mean_rate(paths: list[str]) -> dict:
    from .io import read_json

    rows = [read_json(p) for p in paths]
    if not rows:
        raise RdflowError("no coded frames to take the rate from")
    out = {"bpp": float(np.mean([r["bpp"] for r in rows]))}
    for key in ("psnr_rgb", "ms_ssim"):
        vals = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        if len(vals) == len(rows):
            out[key] = float(np.mean(vals))
    return out


_UNCOMPRESSED: dict = {}
_UNCOMPRESSED_LOCK = threading.Lock()


def _uncompressed(original: str, gt_name: str, spec, compute) -> dict:
    """The accuracy of the uncompressed frames: the same for every (codec, quality) of a unit,
    so computed once per run (evaluation jobs run in threads of one process)."""
    st = os.stat(original)
    lab = Path(str(spec["path"])) if gt_name == "labels" and spec else None
    key = (os.path.abspath(original), st.st_mtime_ns, st.st_size, gt_name,
           json.dumps(spec, sort_keys=True, default=str),
           lab.stat().st_mtime_ns if lab is not None and lab.exists() else None)
    with _UNCOMPRESSED_LOCK:
        hit = _UNCOMPRESSED.get(key)
    if hit is None:
        hit = compute()
        with _UNCOMPRESSED_LOCK:
            _UNCOMPRESSED[key] = hit
    return hit


def evaluate_job(config: dict, *, source: str, name: str, codec: str, quality: int,
                 original: str, decoded: str, rate_rows: list[str], out: str) -> list[dict]:
    """Accuracy rows of one (unit, codec, quality): against pseudo ground truth and, when
    configured, real labels. Writes them as a JSON list to ``out``."""
    from . import detection as det
    from .io import write_json

    odoc = _read_doc(original)
    sig = odoc.get("detector") or {}
    orig = det.read_detections(original)
    dec = det.read_detections(decoded, expect=sig)
    names = {int(k): str(v) for k, v in (odoc.get("names") or {}).items()}
    backend = sig.get("backend", "")
    class_ids = det.resolve_classes(sig.get("classes"), names, backend=backend) if names else None
    conf = float(sig.get("conf", 0.25))
    max_det = int(sig.get("max_det", 300))
    for fid, d in dec.items():
        o = orig.get(fid)
        if o is not None and (o.width, o.height) != (d.width, d.height):
            raise RdflowError(f"{decoded}: frame {fid} is {d.width}x{d.height} but the original "
                              f"is {o.width}x{o.height}; the codec changed the frame size")
    truths = [("pseudo", det.pseudo_ground_truth(orig, conf))]
    spec = labels(config).get(name)
    if spec and label_source(config, name) == source:
        sizes = {fid: (o.width, o.height) for fid, o in orig.items()}
        try:
            truths.append(("labels", det.read_labels(spec["format"], spec["path"], sizes,
                                                      names or None)))
        except RdflowError as exc:
            raise RdflowError(f"detection.labels.{name}: {exc}") from None
    rate = _mean_rate(rate_rows)
    key = "sequence" if source == "video" else "dataset"
    rows = []
    for gt_name, gt in truths:
        r = det.evaluate(gt, dec, conf=conf, class_ids=class_ids, max_dets=max_det)
        u = _uncompressed(original, gt_name, spec, lambda: det.evaluate(
            gt, orig, conf=conf, class_ids=class_ids, max_dets=max_det))
        row = {"source": source, key: name, "codec": codec, "quality": int(quality),
               "gt": gt_name, **rate,
               "map50": r["map50"], "map50_95": r["map50_95"],
               "detections_per_frame": r["detections_per_frame"],
               "mean_confidence": r["mean_confidence"],
               "uncompressed_map50": u["map50"], "uncompressed_map50_95": u["map50_95"],
               "uncompressed_detections_per_frame": u["detections_per_frame"],
               "n_frames": r["n_frames"], "n_gt": r["n_gt"], "n_pred": r["n_pred"],
               "backend": backend, "conf": conf, "map_conf": sig.get("map_conf"),
               "iou": sig.get("iou"), "imgsz": sig.get("imgsz"),
               "weights": Path(str(sig["weights"])).name if sig.get("weights") else None,
               "classes": _class_text(names, class_ids)}
        rows.append(row)
        log.info("%s %s q%s gt=%s: bpp %.4f map50 %.4f map50_95 %.4f det/frame %.2f", name,
                 codec, quality, gt_name, rate["bpp"], r["map50"], r["map50_95"],
                 r["detections_per_frame"])
    write_json(out, rows)
    return rows


def _class_text(names: dict[int, str], class_ids) -> str:
    """The classes accuracy is computed over, as text for the CSV."""
    if class_ids is None or not names:
        return "all"
    if len(class_ids) > 10:
        return f"all {len(class_ids)}" if len(class_ids) == len(names) else f"{len(class_ids)} classes"
    return ",".join(names[c] for c in class_ids)


def gather(paths: list[str]):
    """All evaluation rows as one DataFrame, leading columns first, sorted."""
    import pandas as pd

    from .io import read_json

    rows = [r for p in paths for r in read_json(p)]
    if not rows:
        raise RdflowError("no machine-vision rows to gather")
    df = pd.DataFrame(rows)
    for col in ("sequence", "dataset"):
        if col not in df:
            df[col] = None
    df = df.sort_values(["source", "sequence", "dataset", "gt", "codec", "quality"],
                        kind="stable", na_position="first").reset_index(drop=True)
    lead = [c for c in LEADING if c in df.columns]
    return df[lead + sorted(c for c in df.columns if c not in lead)]


def write_table(paths: list[str], csv_path: str):
    from .io import write_csv

    df = gather(paths)
    write_csv(csv_path, df)
    return df


def _unit_rows(df, source: str, name: str):
    key = "sequence" if source == "video" else "dataset"
    return df[(df["source"] == source) & (df[key] == name)]


def plot_unit(csv_path: str, source: str, name: str, map_paths: list[str],
              proxy_paths: list[str], codecs=None) -> None:
    """Two figures of one sequence/dataset: mAP versus bpp (one panel per metric and ground
    truth, all codecs), and detections per frame versus bpp; the uncompressed frames' value is
    the dashed grey line. Codec colours: :func:`rdflow.plots.codec_colours` of ``codecs`` (the
    run's codec names; default those of the table). Non-finite points are left out; a panel
    without any finite value (e.g. every mAP NaN) says why."""
    import pandas as pd
    from matplotlib.figure import Figure

    from .plots import LABELS, codec_colours, save

    df = _unit_rows(pd.read_csv(csv_path), source, name)
    if df.empty:
        raise RdflowError(f"{csv_path} has no rows for {source} {name}")
    colours = codec_colours(list(codecs or []) + [str(c) for c in df["codec"].unique()])
    backend = str(df["backend"].iloc[0])
    truths = [g for g in ("labels", "pseudo") if (df["gt"] == g).any()]
    metrics = ["map50", "map50_95"]
    fig = Figure(figsize=(5.2 * len(metrics), 3.9 * len(truths)), layout="constrained")
    axes = fig.subplots(len(truths), len(metrics), squeeze=False)
    for i, gt in enumerate(truths):
        sub = df[df["gt"] == gt]
        for j, m in enumerate(metrics):
            ax = axes[i][j]
            what = "labels" if gt == "labels" else "pseudo ground truth"
            ax.set_title(f"{LABELS.get(m, m)} vs {what}", fontsize=9)
            ax.set_xlabel(LABELS["bpp"])
            ax.set_ylabel(LABELS.get(m, m))
            ax.set_ylim(-0.02, 1.02)  # mAP is a fraction: panels and figures compare at a glance
            ax.grid(True, alpha=0.3)
            col = f"uncompressed_{m}"
            ref = sub[col].dropna() if col in sub else sub[m].iloc[:0]
            if len(ref):
                ax.axhline(float(ref.iloc[0]), color="0.4", ls="--", lw=1.0, label="uncompressed")
            _curves(ax, sub, m, colours, y_limits=False)
    fig.suptitle(f"{name}: detection accuracy vs rate ({backend})")
    save(fig, map_paths)

    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.subplots()
    sub = df[df["gt"] == "pseudo"]
    conf = sub["conf"].iloc[0] if "conf" in sub and len(sub) else math.nan
    ax.set_title(f"{name}: detections per frame (score >= {conf:g}) vs rate ({backend})",
                 fontsize=9)
    ax.set_xlabel(LABELS["bpp"])
    ax.set_ylabel("Detections per frame")
    ax.grid(True, alpha=0.3)
    col = "uncompressed_detections_per_frame"
    ref = sub[col].dropna() if col in sub else sub.iloc[:0]
    if len(ref):
        ax.axhline(float(ref.iloc[0]), color="0.4", ls="--", lw=1.0, label="uncompressed")
    _curves(ax, sub, "detections_per_frame", colours)
    save(fig, proxy_paths)


def _curves(ax, df, y: str, colours: dict, *, y_limits: bool = True) -> None:
    """One line per codec of its finite (bpp, y) points, then robust limits and the legend, or
    the empty-panel note when no codec has a finite value."""
    from .plots import finite_rows, missing_reason, note_empty, robust_limits

    drawn = 0
    for codec, g in df.groupby("codec", sort=True):
        g = finite_rows(g, ["bpp", y], f"{ax.get_title()}: {codec}") if y in g else g.iloc[:0]
        g = g.sort_values("bpp")
        if g.empty:
            continue
        ax.plot(g["bpp"], g[y], marker="o", ms=3.5, lw=1.4, label=str(codec),
                color=colours.get(str(codec)))
        drawn += 1
    if drawn:
        robust_limits(ax, y=y_limits)
        ax.legend(fontsize=7)
    else:
        note_empty(ax, f"no finite {y} values: {missing_reason(df, y)}")


# --------------------------------------------------------------------------------------------
# Random YOLO weights (tests and benchmarks)
# --------------------------------------------------------------------------------------------


def random_yolo_weights(path: str, *, arch: str = "yolov8n.yaml", seed: int = 0,
                        person_logit: float = 4.0, sparse: bool = False,
                        config_dir: str = ULTRALYTICS_DIR) -> Path:
    """Save a randomly initialised ultralytics detection model that reports class 0 (person):
    the YOLO plumbing can be tested and timed without downloading weights. Imports ultralytics:
    call it in its own process.

    Default: the class head is biased so that every anchor scores sigmoid(``person_logit``),
    so a frame yields ``max_det`` boxes. ``sparse``: a detection profile closer to a trained
    model's, for benchmarks: box regression zeroed (every anchor predicts the same large box,
    which non-maximum suppression thins to a sparse grid), confident scores on the coarsest scale
    (``person_logit``), weak ones (0.018) on the middle scale, none on the finest. On a 320x240
    frame at imgsz 320 that gives 16 boxes above 0.25 and 72 above 0.001."""
    from . import detection as det
    from .io import atomic_path

    det.import_ultralytics(config_dir)
    import torch
    from ultralytics import YOLO

    torch.manual_seed(seed)
    model = YOLO(arch)
    head = model.model.model[-1]
    n = len(head.cv3)
    with torch.no_grad():
        for i, (cls, box) in enumerate(zip(head.cv3, head.cv2)):  # per scale, finest first
            cls[-1].bias.fill_(-10.0)  # the last layer of each branch is a 1x1 conv
            cls[-1].bias[0] = person_logit
            if sparse:
                cls[-1].bias[0] = person_logit if i == n - 1 else (-4.0 if i == n - 2 else -10.0)
                box[-1].weight.zero_()
                box[-1].bias.zero_()
    path = Path(path)
    with atomic_path(path) as tmp:
        model.save(tmp)
    return path
