"""A pair's entry checked and its two files probed (see :mod:`rdflow.stages.pairs`).

:func:`resolve` turns one entry (``pairs.<name>`` of the study, or the command line's
arguments) into a :class:`Pair`: its kind (image or sequence), size, the frames to score and
the settings, after every check that can be made without scoring. Errors name the entry's key
(``where``), the files and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rdflow import RdflowError

#: files read as images (Pillow); ``.y4m`` is a Y4M sequence; anything else is raw 8-bit YUV
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".pnm", ".tif", ".tiff",
                  ".webp")
#: defaults of the keys of a pair entry (the schema states the same ones)
DEFAULTS = {"vmaf": True, "ms_ssim": True}
#: the RGB -> Y'CbCr 4:2:0 conversion of image pairs' psnr_y/u/v and VMAF: ffmpeg's default for
#: rgb24 -> yuv420p (BT.601, limited range, MPEG-2 siting)
IMAGE_YUV = {"matrix": "bt601", "range": "limited", "chroma_loc": "left"}
RAW_KEYS = ("width", "height", "pix_fmt", "fps")
SEQUENCE_KEYS = RAW_KEYS + ("frames",)
#: ``where`` of a pair given on the command line: its keys are named as options (--width)
CLI = "rdflow-score"


@dataclass(frozen=True)
class Pair:
    """One checked pair: ``kind`` ``image`` or ``sequence``; ``ref``/``dist``: the probed
    :class:`rdflow.sources.video.Sequence` of each side (sequences), else None; ``frames``:
    the frame indices scored (``[0]`` for images); ``yuv``: the RGB -> YUV conversion of image
    pairs; ``vmaf_model``: None when VMAF is off."""

    name: str
    kind: str
    reference: Path
    distorted: Path
    width: int
    height: int
    frames: tuple[int, ...]
    vmaf_model: str | None
    ms_ssim: bool
    yuv: dict
    ref: object = None
    dist: object = None


def key(where: str, name: str) -> str:
    """How errors name key ``name`` of the entry at ``where``: ``pairs.x.width``, or
    ``--width`` on the command line (``reference``/``distorted`` there: REF / DIST)."""
    if where != CLI:
        return f"{where}.{name}"
    return {"reference": "REF", "distorted": "DIST", "frames": "--first/--count/--stride",
            "frames.count": "--count"}.get(name, "--" + name.replace("_", "-"))


def medium(path) -> str:
    """``image``, ``y4m`` or ``raw`` by the file's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    return "y4m" if suffix == ".y4m" else "raw"


def _exists(where: str, role: str, path) -> Path:
    if not path:
        raise RdflowError(f"{key(where, role)} is required: the path of the {role} file")
    p = Path(path)
    if not p.is_file():
        raise RdflowError(f"{key(where, role)}: file {p} does not exist or is not a file; "
                          f"check the path (relative paths start from the working directory)")
    return p


def _refuse_keys(entry: dict, keys, where: str, why: str) -> None:
    given = [k for k in keys if entry.get(k) is not None]
    if given:
        raise RdflowError(f"{key(where, given[0])}: {why}; remove "
                          f"{', '.join(key(where, g) for g in given)}")


def _image_size(where: str, role: str, path: Path) -> tuple[int, int]:
    from rdflow.sources.datasets import check_header

    size = check_header(path)  # refuses one over max_pixels
    if size is None:
        raise RdflowError(f"{key(where, role)}: cannot read image {path} (corrupt, or not an "
                          f"image although its suffix is {path.suffix})")
    return size


def _image_pair(name, where, entry, ref: Path, dist: Path, vmaf_model) -> Pair:
    _refuse_keys(entry, SEQUENCE_KEYS, where,
                 "applies to sequence pairs (.y4m / raw .yuv) only; this is an image pair")
    rs, ds = _image_size(where, "reference", ref), _image_size(where, "distorted", dist)
    if rs != ds:
        raise RdflowError(f"{where}: reference {ref} is {rs[0]}x{rs[1]} but distorted {dist} is "
                          f"{ds[0]}x{ds[1]}; a pair must have one size")
    yuv = {k: entry.get(k) or v for k, v in IMAGE_YUV.items()}
    return Pair(name, "image", ref, dist, rs[0], rs[1], (0,), vmaf_model,
                bool(entry.get("ms_ssim", True)), yuv)


def _probe(where: str, role: str, path: Path, entry: dict):
    from rdflow.sources.video import probe

    if medium(path) == "raw":
        for k in ("width", "height"):
            if not entry.get(k):
                raise RdflowError(
                    f"{key(where, k)}: {role} {path} is raw YUV (no header), so the pair needs "
                    f"its frame size: set {key(where, 'width')} and {key(where, 'height')} (and "
                    f"{key(where, 'pix_fmt')} if it is not yuv420p)")
    pix_fmt = entry.get("pix_fmt") or "yuv420p"
    return probe(path, width=entry.get("width"), height=entry.get("height"),
                 pix_fmt="yuv420p" if pix_fmt == "i420" else pix_fmt, fps=entry.get("fps"),
                 where=where, name=path.stem)


def _selection(where: str, entry: dict, ref, dist) -> list[int]:
    from rdflow.sources.video import select_frames

    sel = entry.get("frames") or {}
    if ref.n_frames != dist.n_frames and sel.get("count") is None:
        raise RdflowError(f"{where}: reference {ref.path} has {ref.n_frames} frames but "
                          f"distorted {dist.path} has {dist.n_frames}; a pair must have the same "
                          f"frame count (or set {key(where, 'frames.count')} to score the first "
                          f"frames of both)")
    n = min(ref.n_frames, dist.n_frames)
    try:
        return select_frames(n, sel.get("first"), sel.get("count"), sel.get("stride") or 1,
                             source=f"{ref.path} and {dist.path}")
    except RdflowError as e:
        raise RdflowError(f"{key(where, 'frames')}: {e}") from None


def _sequence_pair(name, where, entry, ref_path: Path, dist_path: Path, vmaf_model) -> Pair:
    from rdflow.metrics.vmaf import MIN_SIDE

    _refuse_keys(entry, IMAGE_YUV, where, "applies to image pairs only (a sequence pair is "
                 "compared in its own YUV planes, no colour conversion)")
    if medium(ref_path) == medium(dist_path) == "y4m":
        _refuse_keys(entry, RAW_KEYS, where, "applies to raw .yuv files only; .y4m files state "
                     "their frame size, pixel format and rate in their header")
    ref = _probe(where, "reference", ref_path, entry)
    dist = _probe(where, "distorted", dist_path, entry)
    if (ref.width, ref.height) != (dist.width, dist.height):
        raise RdflowError(f"{where}: reference {ref_path} is {ref.width}x{ref.height} but "
                          f"distorted {dist_path} is {dist.width}x{dist.height}; a pair must "
                          f"have one frame size")
    frames = _selection(where, entry, ref, dist)
    if vmaf_model and min(ref.width, ref.height) < MIN_SIDE:
        raise RdflowError(f"{where}: frames of {ref.width}x{ref.height} are too small for "
                          f"libvmaf (under {MIN_SIDE} px); switch VMAF off for this pair "
                          f"({'--no-vmaf' if where == CLI else where + '.vmaf: false'})")
    return Pair(name, "sequence", ref_path, dist_path, ref.width, ref.height, tuple(frames),
                vmaf_model, bool(entry.get("ms_ssim", True)), {}, ref, dist)


def resolve(name: str, entry: dict, *, vmaf_model: str, where: str | None = None) -> Pair:
    """The checked :class:`Pair` of one entry (``reference``, ``distorted`` and the optional
    keys of ``pairs.<name>``); ``vmaf_model``: the libvmaf model used when the entry's
    ``vmaf`` is on (checked to load); ``where``: the key named in errors."""
    where = where or f"pairs.{name}"
    ref = _exists(where, "reference", entry.get("reference"))
    dist = _exists(where, "distorted", entry.get("distorted"))
    model = vmaf_model if entry.get("vmaf", True) else None
    if model:
        from rdflow.metrics.vmaf import check_model

        check_model(model)
    kinds = {medium(ref) == "image", medium(dist) == "image"}
    if len(kinds) == 2:
        raise RdflowError(f"{where}: reference {ref} and distorted {dist} are not both images "
                          f"nor both sequences (.y4m / raw .yuv); a pair compares like with like")
    if kinds == {True}:
        return _image_pair(name, where, entry, ref, dist, model)
    return _sequence_pair(name, where, entry, ref, dist, model)
