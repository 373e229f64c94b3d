"""Stage decode: the video sources. UVG archives are downloaded and extracted; every sequence is
probed once (size, frame count, the frame selection checked) before its frames are coded.

Frames are read at their offset and converted YUV 4:2:0 -> RGB inside the coding jobs
(rdflow.sources.video.read_frame, rdflow.metrics.yuv.yuv420_to_rgb): no per-frame copy of the
source is stored. The logic is rdflow.sources; this module is the config check and the rules'
job entry points (workflow/rules/decode.smk).
"""

from __future__ import annotations

from pathlib import Path

from .. import RdflowError, paths
from ..sources.sequences import (
    download, extract, frame_selection, frames, probe_sequence, sequences, video_codecs,
)

SECTION = "video"


def check(config: dict) -> None:
    """``max_pixels`` applied and local images' headers read (image and video inputs); then
    ``video.codecs`` and every ``video.sequences`` entry, its frames selected now (local files
    probed), before any job."""
    from ..sources.datasets import check_images

    check_images(config)
    names = video_codecs(config)
    unknown = [c for c in names if c not in config["codecs"]]
    if unknown:
        raise RdflowError(f"video.codecs names {unknown}, which are not under codecs: "
                          f"known codecs are {', '.join(sorted(config['codecs']))}")
    for name, s in sequences(config).items():
        _check_sequence(config, name, s)


def _check_sequence(config: dict, name: str, s: dict) -> None:
    from ..sources.datasets import max_pixels

    where = f"video.sequences.{name}"
    if s["source"] == "uvg":
        for key in ("url", "member"):
            if not s.get(key):
                raise RdflowError(f"{where}.{key} is required for source: uvg")
        for key in ("width", "height"):
            if not s.get(key):
                raise RdflowError(f"{where}.{key} is required (UVG raw files have no header)")
    elif not s.get("path"):
        raise RdflowError(f"{where}.path: a file sequence needs the path of its .yuv/.y4m")
    frames(config, name)  # probes local files and checks the selection now, before any job
    if s["source"] == "uvg" or Path(s["path"]).suffix.lower() != ".y4m":
        w, h = s.get("width"), s.get("height")
    else:
        seq = probe_sequence(config, name)
        w, h = seq.width, seq.height
    if w and h and w * h > max_pixels():
        raise RdflowError(
            f"{where}: frames of {w}x{h} = {w * h} pixels are more than max_pixels = "
            f"{max_pixels()}; raise the config key max_pixels (e.g. max_pixels: {w * h}) if "
            "the size is right")


def targets(config: dict) -> list[str]:
    """Nothing final: the probes are inputs of the coding jobs."""
    return []


def downloads(config: dict) -> list[str]:
    """The archives of the downloaded (UVG) sequences."""
    return [paths.SEQUENCE_ARCHIVE.format(sequence=name)
            for name, s in sorted(sequences(config).items()) if s["source"] == "uvg"]


# -- job entry points (workflow/rules/decode.smk) -----------------------------------------------
def download_job(config: dict, sequence: str, dest: str, log: str) -> None:
    """Rule download_sequence (rdflow.sources.sequences.download)."""
    from ..runtime import job_log

    with job_log(log):
        download(config, sequence, dest)


def extract_job(config: dict, sequence: str, archive: str, dest: str, log: str) -> None:
    """Rule extract_sequence: member, width, height and frame count checked."""
    from ..runtime import job_log

    with job_log(log):
        extract(config, sequence, archive, dest)


def probe_job(config: dict, sequence: str, path: str, out: str, log: str) -> dict:
    """Rule probe_sequence (:func:`write_probe`)."""
    from ..runtime import job_log

    with job_log(log):
        return write_probe(config, sequence, path, out)


def write_probe(config: dict, name: str, path: str, out: str) -> dict:
    """Probe the file, check the frame selection against it, and record what was found."""
    from ..io import write_json
    from ..sources.video import select_frames

    seq = probe_sequence(config, name, path)
    sel = frame_selection(config, name)
    chosen = select_frames(seq.n_frames, sel["first"], sel["count"], sel["stride"], source=path)
    planned = frames(config, name) if sequences(config)[name]["source"] == "uvg" else chosen
    if chosen != planned:
        raise RdflowError(f"video.sequences.{name}: planned frames differ from the file's ({path})")
    info = {"sequence": name, "path": str(path), "width": seq.width, "height": seq.height,
            "n_frames": seq.n_frames, "fps": seq.fps, "matrix": seq.matrix, "range": seq.range,
            "chroma_loc": seq.chroma_loc, "container": seq.container, "frames": chosen}
    write_json(out, info)
    return info
