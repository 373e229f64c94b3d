"""The video study's sequences: where each one's raw file is, and which frames are coded.

Frame lists are known when the workflow starts (one job per frame needs them): for local files
the file is probed then (a stat, or a .y4m header scan); for downloaded sequences the config's
frame count is trusted and the ``probe_sequence`` job checks it once the file is there.
"""

from __future__ import annotations

import functools
from pathlib import Path

from . import RdflowError

VIDEO_DIR = "resources/video"


def sequences(config: dict) -> dict:
    return (config.get("video") or {}).get("sequences") or {}


def video_codecs(config: dict) -> list[str]:
    names = (config.get("video") or {}).get("codecs")
    return sorted(config["codecs"]) if names is None else list(names)


def sequence_path(config: dict, name: str) -> str:
    s = sequences(config)[name]
    if s["source"] == "uvg":
        return f"{VIDEO_DIR}/{name}.yuv"
    return s["path"]


def frame_selection(config: dict, name: str) -> dict:
    s = sequences(config)[name]
    sel = dict((config.get("video") or {}).get("frames") or {})
    sel.update(s.get("frames") or {})
    return {"first": sel.get("first", 0), "count": sel.get("count", 100), "stride": sel.get("stride", 1)}


def probe_kwargs(config: dict, name: str) -> dict:
    s = sequences(config)[name]
    return dict(width=s.get("width"), height=s.get("height"), pix_fmt=_pix_fmt(s.get("pix_fmt")),
                name=name, fps=s.get("fps"), matrix=s.get("matrix", "bt709"), range=s.get("range"),
                chroma_loc=s.get("chroma_loc", "left"), where=f"video.sequences.{name}")


def _pix_fmt(p):
    return "yuv420p" if p in (None, "i420") else p


@functools.lru_cache(maxsize=64)
def _probe_cached(path: str, mtime_ns: int, size: int, kwargs_items: tuple):
    from .video import probe

    return probe(path, **dict(kwargs_items))


def probe_sequence(config: dict, name: str, path: str | None = None):
    """The :class:`rdflow.video.Sequence` of a sequence (cached per file state in-process)."""
    path = str(path or sequence_path(config, name))
    p = Path(path)
    if not p.is_file():
        raise RdflowError(f"video.sequences.{name}: file {path} does not exist")
    st = p.stat()
    return _probe_cached(path, st.st_mtime_ns, st.st_size, tuple(sorted(probe_kwargs(config, name).items())))


def frames(config: dict, name: str) -> list[int]:
    """The frame indices coded for a sequence."""
    from .video import select_frames

    s = sequences(config)[name]
    sel = frame_selection(config, name)
    if s["source"] == "file":
        seq = probe_sequence(config, name)
        return select_frames(seq.n_frames, sel["first"], sel["count"], sel["stride"], source=s["path"])
    if sel["count"] is None:
        raise RdflowError(
            f"video.sequences.{name}: a downloaded sequence needs a frame count "
            "(video.frames.count or the sequence's frames.count) so jobs can be planned before download"
        )
    return list(range(sel["first"], sel["first"] + sel["count"] * sel["stride"], sel["stride"]))


def check(config: dict) -> None:
    names = video_codecs(config)
    unknown = [c for c in names if c not in config["codecs"]]
    if unknown:
        raise RdflowError(f"video.codecs names {unknown}, which are not under codecs: "
                          f"known codecs are {', '.join(sorted(config['codecs']))}")
    for name, s in sequences(config).items():
        where = f"video.sequences.{name}"
        if s["source"] == "uvg":
            for key in ("url", "member"):
                if not s.get(key):
                    raise RdflowError(f"{where}.{key} is required for source: uvg")
            for key in ("width", "height"):
                if not s.get(key):
                    raise RdflowError(f"{where}.{key} is required (UVG raw files have no header)")
        else:
            if not s.get("path"):
                raise RdflowError(f"{where}.path: a file sequence needs the path of its .yuv/.y4m")
        frames(config, name)  # probes local files and checks the selection now, before any job


def extract_member(archive: str, dest: str, member_regex: str) -> None:
    """Extract the raw .yuv member of a 7z archive to ``dest`` (safe extraction, atomic move)."""
    import os
    import shutil
    import tempfile

    from .video import extract_7z

    dest_p = Path(dest)
    work = Path(tempfile.mkdtemp(prefix=f".{dest_p.name}.", dir=dest_p.parent))
    try:
        member = extract_7z(archive, work / "x", member_regex)
        os.replace(member, dest_p)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_probe(config: dict, name: str, path: str, out: str) -> dict:
    """Probe the file, check the frame selection against it, and record what was found."""
    from .io import write_json
    from .video import select_frames

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
