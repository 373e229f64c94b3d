"""ultralytics YOLO (v8 and later) detection models (backend ``yolo``).

``weights``: a bare ultralytics name (``yolov8n.pt``, looked up in ``resources/weights``, and
downloaded there with ``detection.offline: false``) or a local ``.pt``. The model is loaded once
per detector and run offline (:func:`rdflow.detectors.yolo_assets.import_ultralytics`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import RdflowError, paths
from .base import Detections, Detector, register
from .yolo_assets import (COCO_ASSET, coco_names, import_ultralytics, resolve_weights,
                          sniff_weights, ultralytics_asset_url, yolo_asset_url)

DEFAULT_WEIGHTS = "yolov8n.pt"


def _given(settings: dict) -> str:
    return str(settings.get("weights") or DEFAULT_WEIGHTS)


@register
class YoloDetector(Detector):
    """ultralytics YOLO (v8 and later) detection model from a ``.pt`` file."""

    backend = "yolo"
    probability_scores = True
    uses_torch = True

    # -- what the workflow asks of the backend -------------------------------------------
    @classmethod
    def weights_path(cls, settings: dict) -> Path:
        """``detection.weights`` as given when that file exists or when it names a folder; a
        bare name (``yolov8n.pt``) is looked up in ``resources/weights``."""
        w = _given(settings)
        p = Path(w)
        if p.is_file() or p.name != w:
            return p
        return Path(paths.DETECTOR_WEIGHTS) / w

    @classmethod
    def job_options(cls, config: dict) -> dict:
        d = config.get("detection") or {}
        return {"weights": str(cls.weights_path(d)), "weights_dir": paths.DETECTOR_WEIGHTS,
                "config_dir": paths.ULTRALYTICS_DIR, "offline": bool(d.get("offline", True)),
                "base_url": d.get("base_url"),
                "device": d.get("device") or config.get("device", "auto")}

    @classmethod
    def check_weights(cls, settings: dict) -> None:
        """The file looks like a checkpoint, or a bare name will be downloaded (online)."""
        path, given = cls.weights_path(settings), _given(settings)
        if path.is_file():
            sniff_weights(path)
            return
        if path.exists():
            raise RdflowError(f"YOLO weights {path} (detection.weights) is not a file")
        if Path(given).name != given:
            raise RdflowError(f"YOLO weights file {given} (detection.weights) does not exist: fix "
                              "the path, or give a bare ultralytics name such as yolov8n.pt to use "
                              f"{paths.DETECTOR_WEIGHTS}/")
        if settings.get("offline", True):
            url = yolo_asset_url(given, settings.get("base_url"))
            raise RdflowError(
                f"YOLO weights {given} (detection.weights) not found at {path}, and "
                f"detection.offline is true, so rdflow will not download them. Download {url} "
                f"and place it at {path}, set detection.weights to a local .pt file, or set "
                "detection.offline: false")

    @classmethod
    def downloads(cls, settings: dict) -> list[str]:
        """A bare weights name with detection.offline: false (rule download_detection_weights)."""
        w = cls.weights_path(settings)
        bare = f"{paths.DETECTOR_WEIGHTS}/{_given(settings)}"
        if settings.get("offline", True) or w.as_posix() != bare:
            return []
        return [w.as_posix()]

    @classmethod
    def weights_url(cls, name: str, settings: dict) -> str:
        return yolo_asset_url(name, settings.get("base_url"))

    @classmethod
    def known_names(cls, settings: dict) -> dict[int, str] | None:
        """COCO's names for ultralytics' COCO-trained assets (yolov8n.pt, yolo11s.pt, ...)."""
        return coco_names() if COCO_ASSET.match(Path(_given(settings)).name) else None

    # -- the detector ------------------------------------------------------------------------
    def __init__(self, weights: str = DEFAULT_WEIGHTS, *,
                 weights_dir: str | os.PathLike = paths.DETECTOR_WEIGHTS,
                 config_dir: str | os.PathLike = paths.ULTRALYTICS_DIR, offline: bool = True,
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
        from ..download import sha256_file

        sig = super().signature()
        sig["weights"] = self.weights
        sig["weights_sha256"] = sha256_file(self.resolve())
        return sig
