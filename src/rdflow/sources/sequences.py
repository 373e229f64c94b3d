"""The video study's sequences (config ``video``): where each one's raw file is, and which frames
are coded; fetching and extracting a downloaded one.

Frame lists are known when the workflow starts (one job per frame needs them): for local files
the file is probed then (a stat, or a .y4m header scan); for downloaded sequences the config's
frame count is trusted and the ``probe_sequence`` job checks it once the file is there.
"""

from __future__ import annotations

import functools
from pathlib import Path

from .. import RdflowError, paths


def sequences(config: dict) -> dict:
    return (config.get("video") or {}).get("sequences") or {}


def video_codecs(config: dict) -> list[str]:
    """The image codecs (names under ``codecs``) that code every frame of the sequences."""
    names = (config.get("video") or {}).get("codecs")
    return sorted(config["codecs"]) if names is None else list(names)


def sequence_path(config: dict, name: str) -> str:
    s = sequences(config)[name]
    if s["source"] == "uvg":
        return paths.SEQUENCE_YUV.format(sequence=name)
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
    """The :class:`rdflow.sources.video.Sequence` of a sequence (cached per file state
    in-process)."""
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


def geometry(config: dict, name: str) -> dict:
    """What a sequence's archive is checked against: frame size and the frames the study codes."""
    s = sequences(config)[name]
    return {"width": s["width"], "height": s["height"], "min_frames": max(frames(config, name)) + 1}


def download(config: dict, name: str, dest: str) -> None:
    """Rule download_sequence: fetch a UVG archive; its checksum is recorded (when not pinned)
    only after the archive is opened and its member found and sized
    (rdflow.sources.archives.fetch_sequence)."""
    from .archives import fetch_sequence

    s = sequences(config)[name]
    fetch_sequence(s["url"], dest, sha256=s.get("sha256"), member=s["member"],
                   extracted=sequence_path(config, name), **geometry(config, name))


def extract(config: dict, name: str, archive: str, dest: str) -> None:
    """Rule extract_sequence: extract the member and check its size against the config."""
    from .archives import extract_member

    s = sequences(config)[name]
    extract_member(archive, dest, s["member"], sha256=s.get("sha256"), **geometry(config, name))
