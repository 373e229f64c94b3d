"""ultralytics without surprises: imported offline with its settings in a folder rdflow names,
weights resolved (and downloaded) by rdflow, COCO's class names read from the package's yaml,
and random YOLO weights for tests and benchmarks.

Nothing here imports ultralytics or torch at import time; :func:`coco_names`,
:func:`yolo_asset_url` and :func:`sniff_weights` never do (they run at parse time, in the
Snakemake process).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import sys
from pathlib import Path

from .. import RdflowError, paths

log = logging.getLogger("rdflow.detectors")

#: ultralytics asset names of COCO-trained detection models (their class names are known at
#: parse time without loading the model): yolov8n.pt, yolov5su.pt, yolo11n.pt, yolo26x.pt, ...
COCO_ASSET = re.compile(r"^yolo(?:v\d+|\d+)[nsmlxbct]u?6?u?\.pt$")


def coco_names() -> dict[int, str]:
    """The 80 COCO class names in YOLO numbering (from the yaml ultralytics ships)."""
    import yaml

    spec = importlib.util.find_spec("ultralytics")
    if spec is None or spec.origin is None:
        raise RdflowError("ultralytics is not installed: pip install ultralytics-opencv-headless")
    path = Path(spec.origin).parent / "cfg" / "datasets" / "coco.yaml"
    with open(path) as fh:  # libyaml's loader when present: the pure-Python one takes ~35 ms
        names = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))["names"]
    return {int(k): str(v) for k, v in names.items()}


def ultralytics_env(config_dir: str | os.PathLike) -> dict[str, str]:
    """The env vars that must be set before ``import ultralytics``."""
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
    if "ultralytics" in sys.modules:
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


def yolo_asset_url(name: str, base_url: str | None = None) -> str:
    """Where a bare ultralytics weights name is downloaded from: ``base_url`` + name, or the
    release ultralytics itself would use, read from its source text (importing ultralytics
    would change the thread settings of the Snakemake process)."""
    if base_url:
        return base_url.rstrip("/") + "/" + name
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
    if given.name != str(weights):
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
    from ..download import fetch

    log.info("downloading YOLO weights %s to %s", url, target)
    return fetch(url, target)


def sniff_weights(path: Path) -> None:
    """A cheap parse-time check that a .pt file can be a torch checkpoint (zip or pickle)."""
    import zipfile

    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(2)
    if size == 0 or not (zipfile.is_zipfile(path) or head[:1] == b"\x80"):
        raise RdflowError(
            f"YOLO weights {path} (detection.weights) is not a PyTorch checkpoint ({size} bytes: "
            "empty, truncated or corrupt download): delete it and place a good copy there"
            + (f" ({yolo_asset_url(path.name)})" if COCO_ASSET.match(path.name) else ""))


def random_yolo_weights(path: str, *, arch: str = "yolov8n.yaml", seed: int = 0,
                        person_logit: float = 4.0, sparse: bool = False,
                        config_dir: str = paths.ULTRALYTICS_DIR) -> Path:
    """Save a randomly initialised ultralytics detection model that reports class 0 (person):
    the YOLO plumbing can be tested and timed without downloading weights. Imports ultralytics:
    call it in its own process.

    Default: the class head is biased so that every anchor scores sigmoid(``person_logit``),
    so a frame yields ``max_det`` boxes. ``sparse``: a detection profile closer to a trained
    model's, for benchmarks: box regression zeroed (every anchor predicts the same large box,
    which non-maximum suppression thins to a sparse grid), confident scores on the coarsest scale
    (``person_logit``), weak ones (0.018) on the middle scale, none on the finest. On a 320x240
    frame at imgsz 320 that gives 16 boxes above 0.25 and 72 above 0.001."""
    from ..io import atomic_path

    import_ultralytics(config_dir)
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
