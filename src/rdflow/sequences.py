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
    from .datasets import check_images, max_pixels

    check_images(config)  # max_pixels applied; local images' headers read (image and video inputs)
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


def geometry(config: dict, name: str) -> dict:
    """What a sequence's archive is checked against: frame size and the frames the study codes."""
    s = sequences(config)[name]
    return {"width": s["width"], "height": s["height"], "min_frames": max(frames(config, name)) + 1}


def download(config: dict, name: str, dest: str) -> None:
    """Rule download_sequence: fetch a UVG archive; its checksum is recorded (when not pinned)
    only after the archive is opened and its member found and sized (rdflow.video.fetch_sequence)."""
    from .video import fetch_sequence

    s = sequences(config)[name]
    fetch_sequence(s["url"], dest, sha256=s.get("sha256"), member=s["member"],
                   extracted=sequence_path(config, name), **geometry(config, name))


def extract_member(archive: str, dest: str, member_regex: str, *, width: int | None = None,
                   height: int | None = None, min_frames: int = 1, sha256: str | None = None) -> None:
    """Extract the raw .yuv member of a 7z archive to ``dest`` (safe extraction, atomic move).

    With ``width`` and ``height`` the extracted size is checked (whole frames, at least
    ``min_frames``) before the file is moved into place. A bad archive's message names every
    file to delete (the archive, its checksum record unless ``sha256`` is pinned, ``dest``).
    """
    import os
    import shutil
    import tempfile

    from .video import check_member_size, default_record_path, extract_7z, restart_files, restart_hint

    dest_p = Path(dest)
    record = None if sha256 else default_record_path(archive)
    fix = "to start over, " + restart_hint(
        restart_files(Path(archive), record if record and record.exists() else None, dest_p), dest_p)
    work = Path(tempfile.mkdtemp(prefix=f".{dest_p.name}.", dir=dest_p.parent))
    try:
        member = extract_7z(archive, work / "x", member_regex, fix=fix)
        if width and height:
            check_member_size(member.stat().st_size, f"{member.name} extracted from {archive}",
                              width, height, min_frames, fix=fix)
        os.replace(member, dest_p)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def extract(config: dict, name: str, archive: str, dest: str) -> None:
    """Rule extract_sequence: extract the member and check its size against the config."""
    s = sequences(config)[name]
    extract_member(archive, dest, s["member"], sha256=s.get("sha256"), **geometry(config, name))


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
