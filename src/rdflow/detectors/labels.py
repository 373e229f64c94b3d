"""Ground truth: real labels (YOLO txt folders, COCO json) and pseudo ground truth.

A label format is one class registered in :data:`LABEL_FORMATS` under its config name
(``detection.labels.<name>.format``); it knows the kind of path it reads (a folder, a file),
whether that path is too large to read at parse time, and how to read it into
``{frame_id: Detections}`` for frames of known sizes.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import ClassVar, Mapping

import numpy as np

from .. import RdflowError
from ..io import read_json
from .base import Detections, log, size_text

#: Label files larger than this are checked in the evaluation jobs only, not at parse time.
PARSE_TIME_LABEL_BYTES = 32 * 2**20


def _yolo_line(path: Path, no: int, line: str, width: int, height: int) -> tuple[list, int]:
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
        raise RdflowError(f"{what}; values out of range (pixel coordinates are not allowed here)")
    return [(cx - bw / 2) * width, (cy - bh / 2) * height,
            (cx + bw / 2) * width, (cy + bh / 2) * height], c


def read_yolo_labels(path: str | os.PathLike, width: int, height: int) -> Detections:
    """One YOLO label file (``class cx cy w h`` per line, normalised to [0, 1]) for a frame of
    ``width`` x ``height`` pixels. A missing file means an image without objects."""
    path = Path(path)
    boxes, classes = [], []
    if path.exists():
        for no, line in enumerate(path.read_text().splitlines(), start=1):
            if line.strip():
                box, c = _yolo_line(path, no, line, width, height)
                boxes.append(box)
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


def _coco_doc(path: Path) -> tuple[dict, dict, list]:
    """images by id, category names by id, and the annotations of a COCO json."""
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
    return images, cats, anns


def _coco_boxes(path: Path, anns: list, cats: dict, to_id: dict, wanted: dict) -> dict[int, list]:
    """(box xyxy, detector class id, crowd) per wanted image id; annotations of categories the
    detector does not know are dropped with a warning."""
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
    return per


def read_coco_labels(path: str | os.PathLike, sizes: Mapping[str, tuple[int, int]], *,
                     names: Mapping[int, str] | None = None) -> dict[str, Detections]:
    """Boxes of a COCO json (``images``, ``annotations`` with ``bbox`` xywh, ``categories``) for
    the frames in ``sizes`` (id -> (width, height)); an image is matched by its ``file_name``
    stem. With ``names`` (the detector's id -> name), categories are mapped to the detector's
    ids by name; annotations of categories the detector does not know are dropped with a
    warning. The image sizes in the json must match the frames'."""
    path = Path(path)
    images, cats, anns = _coco_doc(path)
    by_stem = {Path(str(im.get("file_name", im["id"]))).stem: iid for iid, im in images.items()}
    missing = [fid for fid in sizes if fid not in by_stem]
    if missing:
        raise RdflowError(f"COCO label file {path} has no image for frame(s) "
                          f"{', '.join(missing[:5])} (matched by file_name stem)")
    if names is not None:
        by_name = {v: k for k, v in names.items()}
        to_id = {cid: by_name[n] for cid, n in cats.items() if n in by_name}
    else:
        to_id = {cid: cid for cid in cats}
    wanted = {by_stem[fid]: fid for fid in sizes}
    per = _coco_boxes(path, anns, cats, to_id, wanted)
    out = {}
    for iid, fid in wanted.items():
        im = images[iid]
        w, h = sizes[fid]
        if "width" in im and "height" in im and (int(im["width"]), int(im["height"])) != (w, h):
            raise RdflowError(
                f"COCO label file {path}: image {im.get('file_name', iid)} is labelled at "
                f"{size_text(im['width'], im['height'])} but the frame {fid} is "
                f"{size_text(w, h)}; use labels made for these frames")
        rows = per[iid]
        out[fid] = Detections(np.asarray([r[0] for r in rows], dtype=np.float64).reshape(-1, 4),
                              np.ones(len(rows)), [r[1] for r in rows], w, h,
                              [r[2] for r in rows])
    return out


class LabelFormat:
    """A label format: ``read(path, sizes, names)`` -> {frame_id: Detections}."""

    name: ClassVar[str] = ""

    @classmethod
    def check_path(cls, path: Path, where: str) -> None:
        """Refuse a path of the wrong kind (RdflowError naming ``where``, the config key)."""

    @classmethod
    def checked_in_jobs(cls, path: Path) -> bool:
        """The path is too large to read at parse time: the evaluation jobs check it."""
        return False

    @classmethod
    def read(cls, path, sizes: Mapping[str, tuple[int, int]],
             names: Mapping[int, str] | None = None) -> dict[str, Detections]:
        raise NotImplementedError


class YoloLabels(LabelFormat):
    """A folder of ``<frame>.txt`` files."""

    name = "yolo"

    @classmethod
    def check_path(cls, path: Path, where: str) -> None:
        if not path.is_dir():
            raise RdflowError(f"{where}.path: label folder {path} does not exist (YOLO labels are "
                              "a folder of <frame>.txt files)")

    @classmethod
    def read(cls, path, sizes, names=None):
        return read_yolo_label_dir(path, sizes)


class CocoLabels(LabelFormat):
    """One COCO json file."""

    name = "coco"

    @classmethod
    def check_path(cls, path: Path, where: str) -> None:
        if not path.is_file():
            raise RdflowError(f"{where}.path: COCO label file {path} does not exist")

    @classmethod
    def checked_in_jobs(cls, path: Path) -> bool:
        return path.stat().st_size > PARSE_TIME_LABEL_BYTES

    @classmethod
    def read(cls, path, sizes, names=None):
        return read_coco_labels(path, sizes, names=names)


#: Label formats by ``detection.labels.<name>.format``.
LABEL_FORMATS: dict[str, type[LabelFormat]] = {c.name: c for c in (YoloLabels, CocoLabels)}


def label_format(fmt: str, *, where: str = "unknown label format") -> type[LabelFormat]:
    try:
        return LABEL_FORMATS[fmt]
    except (KeyError, TypeError):
        raise RdflowError(f"{where} {fmt!r}; known: {', '.join(sorted(LABEL_FORMATS))}") from None


def read_labels(fmt: str, path: str | os.PathLike, sizes: Mapping[str, tuple[int, int]],
                names: Mapping[int, str] | None = None) -> dict[str, Detections]:
    return label_format(fmt).read(path, sizes, names)


def pseudo_ground_truth(original: Mapping[str, Detections], conf: float) -> dict[str, Detections]:
    """The detector's boxes on the uncompressed frames scoring at least ``conf``, as labels."""
    out = {}
    for fid, d in original.items():
        d = d.above(conf)
        out[fid] = Detections(d.boxes, np.ones(len(d)), d.classes, d.width, d.height)
    return out
