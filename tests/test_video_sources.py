"""rdflow.sources.video / .archives: raw and Y4M sources, frame selection, safe 7z extraction,
recorded checksums."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

from rdflow import RdflowError
from rdflow.sources.archives import UVG_MEMBER_REGEX, extract_7z, fetch_sequence
from rdflow.sources.video import (
    iter_frames,
    parse_y4m_header,
    probe,
    probe_raw,
    probe_y4m,
    read_frame,
    select_frames,
)

from conftest import shared_path


def planes(w, h, k):
    """Frame k of a synthetic sequence: every plane distinct and frame-dependent."""
    rng = np.random.default_rng(k)
    return (rng.integers(0, 256, (h, w), dtype=np.uint8),
            rng.integers(0, 256, (h // 2, w // 2), dtype=np.uint8),
            rng.integers(0, 256, (h // 2, w // 2), dtype=np.uint8))


def write_raw(path: Path, w, h, n) -> list:
    frames = [planes(w, h, k) for k in range(n)]
    with open(path, "wb") as fh:
        for y, u, v in frames:
            fh.write(y.tobytes() + u.tobytes() + v.tobytes())
    return frames


def write_y4m(path: Path, w, h, n, header="F30000:1001 Ip A1:1 C420mpeg2", frame_params=None):
    frames = [planes(w, h, k) for k in range(n)]
    with open(path, "wb") as fh:
        fh.write(f"YUV4MPEG2 W{w} H{h} {header}\n".encode())
        for k, (y, u, v) in enumerate(frames):
            marker = b"FRAME" + (frame_params(k).encode() if frame_params else b"") + b"\n"
            fh.write(marker + y.tobytes() + u.tobytes() + v.tobytes())
    return frames


def same(a, b):
    return all(np.array_equal(p, q) for p, q in zip(a, b))


# ----------------------------------------------------------------------------- raw


def test_raw_probe_and_read(tmp_path):
    p = tmp_path / "clip_64x48.yuv"
    frames = write_raw(p, 64, 48, 7)
    seq = probe_raw(p, 64, 48, name="clip", fps=30, matrix="bt601", range="full")
    assert (seq.n_frames, seq.width, seq.height, seq.frame_bytes) == (7, 64, 48, 64 * 48 * 3 // 2)
    assert (seq.name, seq.fps, seq.matrix, seq.range, seq.chroma_loc) == ("clip", 30, "bt601", "full", "left")
    for k in (0, 3, 6):
        assert same(read_frame(seq, k), frames[k])
    got = list(iter_frames(seq, [6, 1]))
    assert [i for i, _ in got] == [6, 1] and same(got[0][1], frames[6]) and same(got[1][1], frames[1])
    with pytest.raises(RdflowError, match="frame 7 requested .* has 7 frames"):
        read_frame(seq, 7)
    assert probe(p, width=64, height=48).container == "raw"  # dispatch by suffix


def test_raw_size_not_a_multiple_of_frame_size(tmp_path):
    p = tmp_path / "bad.yuv"
    write_raw(p, 64, 48, 3)
    with open(p, "ab") as fh:
        fh.write(b"\0" * 100)
    with pytest.raises(RdflowError) as e:
        probe_raw(p, 64, 48, where="video.sequences.bad")
    msg = str(e.value)
    assert "4608 bytes each" in msg and "holds 3 frames and 100 bytes more" in msg
    assert str(p) in msg and "video.sequences.bad" in msg
    # a wrong height is caught the same way (cars is 320x240, not 320x242)
    with pytest.raises(RdflowError, match="116160 bytes each"):
        probe_raw(p, 320, 242)
    p.write_bytes(b"")
    with pytest.raises(RdflowError, match="holds 0 frames"):
        probe_raw(p, 64, 48)


@pytest.mark.parametrize("w,h,match", [
    (None, 48, "needs its width and height"),
    (64, None, "needs its width and height"),
    (63, 48, "odd width or height"),
    (64, 47, "odd width or height"),
    (0, 48, "positive integers"),
    (64.5, 48, "positive integers"),
    ("wide", 48, "not integers"),
])
def test_raw_width_height_missing_or_odd(tmp_path, w, h, match):
    p = tmp_path / "x.yuv"
    write_raw(p, 64, 48, 1)
    with pytest.raises(RdflowError, match=match):
        probe_raw(p, w, h, where="video.sequences.x")


def test_raw_pix_fmt_and_missing_file(tmp_path):
    p = tmp_path / "x.yuv"
    write_raw(p, 64, 48, 2)
    assert probe_raw(p, 64, 48, "I420").pix_fmt == "yuv420p"
    with pytest.raises(RdflowError, match="pixel format 'yuv422p10le' .* not supported"):
        probe_raw(p, 64, 48, "yuv422p10le")
    with pytest.raises(RdflowError, match="does not exist"):
        probe_raw(tmp_path / "nope.yuv", 64, 48)


def test_read_frame_memory_stays_flat(tmp_path):
    """A 1080p file of 200 frames (sparse, ~622 MB apparent size): reading one frame allocates
    about one frame, never the file."""
    p = tmp_path / "big.yuv"
    fb = 1920 * 1080 * 3 // 2
    with open(p, "wb") as fh:
        fh.truncate(200 * fb)
        fh.seek(150 * fb)
        fh.write(b"\x07" * 1920)
    seq = probe_raw(p, 1920, 1080)
    assert seq.n_frames == 200
    tracemalloc.start()
    try:
        y, u, v = read_frame(seq, 150)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (y[0] == 7).all() and (y[1] == 0).all()
    assert peak < 2 * fb, f"peak {peak} bytes for a {fb}-byte frame"


def test_cisco_clip_frame_count():
    p = shared_path("data", "video", "CiscoVT2people_320x192_12fps.yuv")
    seq = probe_raw(p, 320, 192, fps=12)
    assert seq.n_frames == 9
    with pytest.raises(RdflowError, match="10 frames were asked .* only 9 frames"):
        select_frames(seq.n_frames, count=10, source=seq.path)


# ----------------------------------------------------------------------------- frame selection


def test_select_frames():
    assert select_frames(10) == list(range(10))
    assert select_frames(10, count=3) == [0, 1, 2]
    assert select_frames(10, first=2, count=3, stride=3) == [2, 5, 8]
    assert select_frames(10, stride=4) == [0, 4, 8]
    assert select_frames(10, first=9) == [9]
    assert select_frames(600, count=100) == list(range(100))  # UVG default: first 100 frames


def test_select_more_frames_than_available():
    with pytest.raises(RdflowError) as e:
        select_frames(10, first=2, count=4, stride=3, source="clip.yuv")
    msg = str(e.value)
    assert "4 frames were asked from clip.yuv" in msg and "up to frame 11" in msg
    assert "only 10 frames" in msg and "at most 3 fit" in msg
    with pytest.raises(RdflowError, match="starts at frame 10 .* only 10 frames"):
        select_frames(10, first=10)
    with pytest.raises(RdflowError, match="only 0 frames"):
        select_frames(0)


@pytest.mark.parametrize("kw,match", [
    ({"stride": 0}, "stride must be an integer >= 1"),
    ({"first": -1}, "first must be an integer >= 0"),
    ({"count": 0}, "count must be an integer >= 1"),
    ({"count": 2.5}, "count must be an integer"),
])
def test_select_frames_bad_arguments(kw, match):
    with pytest.raises(RdflowError, match=match):
        select_frames(10, **kw)


# ----------------------------------------------------------------------------- Y4M


def test_y4m_shared_header_and_frames_match_ffmpeg():
    import imageio_ffmpeg

    p = shared_path("data", "video", "trees_640x360_ref.y4m")
    hd = parse_y4m_header(p)
    assert (hd.width, hd.height, hd.fps, hd.chroma, hd.interlace) == (640, 360, 25, "420jpeg", "p")
    assert hd.chroma_loc == "center" and hd.header_bytes == 58
    seq = probe(p)
    assert (seq.container, seq.n_frames, seq.fps, seq.chroma_loc) == ("y4m", 3, 25.0, "center")
    raw = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(p), "-f", "rawvideo",
         "-pix_fmt", "yuv420p", "-"], capture_output=True, check=True).stdout
    fb = seq.frame_bytes
    assert len(raw) == 3 * fb
    for k in range(3):
        y, u, v = read_frame(seq, k)
        assert y.tobytes() + u.tobytes() + v.tobytes() == raw[k * fb:(k + 1) * fb]


def test_y4m_synthetic_with_frame_params(tmp_path):
    p = tmp_path / "s.y4m"
    # FRAME lines of varying length: frames are not equally spaced
    frames = write_y4m(p, 32, 16, 5, frame_params=lambda k: " Ip" + " XK=" + "z" * k if k % 2 else "")
    hd = parse_y4m_header(p)
    assert (hd.width, hd.height, hd.chroma, hd.chroma_loc) == (32, 16, "420mpeg2", "left")
    assert float(hd.fps) == pytest.approx(29.97, abs=1e-3) and hd.aspect == "1:1"
    seq = probe_y4m(p, name="s", matrix="bt601")
    assert (seq.n_frames, seq.matrix, seq.range) == (5, "bt601", "limited")
    for k in range(5):
        assert same(read_frame(seq, k), frames[k])


@pytest.mark.parametrize("tag,loc", [("", "center"), (" C420", "center"), (" C420jpeg", "center"),
                                     (" C420paldv", "topleft"), (" C420mpeg2", "left")])
def test_y4m_accepted_chroma(tmp_path, tag, loc):
    p = tmp_path / "c.y4m"
    write_y4m(p, 8, 8, 1, header="F25:1" + tag)
    assert parse_y4m_header(p).chroma_loc == loc


def test_y4m_colour_range_extension(tmp_path):
    p = tmp_path / "c.y4m"
    write_y4m(p, 8, 8, 1, header="F25:1 C420jpeg XYSCSS=420JPEG XCOLORRANGE=FULL")
    assert parse_y4m_header(p).color_range == "full"
    assert probe(p).range == "full"
    assert probe(p, range="limited").range == "limited"  # config wins


@pytest.mark.parametrize("chroma,match", [
    ("C422", "C422 is not supported"),
    ("C444", "C444 is not supported"),
    ("Cmono", "Cmono is not supported"),
    ("C420p10 XYSCSS=420P10", "C420p10 has 10-bit samples"),
    ("C444p12", "C444p12 has 12-bit samples"),
])
def test_y4m_unsupported_chroma_or_bit_depth(tmp_path, chroma, match):
    p = tmp_path / "bad.y4m"
    p.write_bytes(f"YUV4MPEG2 W8 H8 F25:1 {chroma}\nFRAME\n".encode() + b"\0" * 300)
    with pytest.raises(RdflowError, match=match) as e:
        parse_y4m_header(p)
    assert str(p) in str(e.value) and "ffmpeg -i bad.y4m -pix_fmt yuv420p" in str(e.value)


def test_y4m_bad_files(tmp_path):
    p = tmp_path / "a.y4m"
    p.write_bytes(b"RIFF....")
    with pytest.raises(RdflowError, match="not a YUV4MPEG2"):
        parse_y4m_header(p)
    p.write_bytes(b"YUV4MPEG2 H8 F25:1\nFRAME\n")
    with pytest.raises(RdflowError, match="lacks a valid W"):
        parse_y4m_header(p)
    p.write_bytes(b"YUV4MPEG2 W9 H8 F25:1\nFRAME\n")
    with pytest.raises(RdflowError, match="9x8 is not even"):
        parse_y4m_header(p)
    p.write_bytes(b"YUV4MPEG2 W8 H8 F25")  # no newline
    with pytest.raises(RdflowError, match="not terminated"):
        parse_y4m_header(p)
    write_y4m(p, 8, 8, 2)
    with open(p, "ab") as fh:  # a third frame cut short
        fh.write(b"FRAME\n" + b"\1" * 50)
    with pytest.raises(RdflowError, match="frame 2 is truncated"):
        probe_y4m(p)
    write_y4m(p, 8, 8, 2)
    with open(p, "ab") as fh:
        fh.write(b"GARBAGE\n")
    with pytest.raises(RdflowError, match=r"expected a FRAME marker at byte \d+ \(frame 2\)"):
        probe_y4m(p)
    p.write_bytes(b"YUV4MPEG2 W8 H8 F25:1\n")
    with pytest.raises(RdflowError, match="holds no frames"):
        probe_y4m(p)


# ----------------------------------------------------------------------------- 7z archives


def make_7z(path: Path, members: dict[str, bytes]):
    import py7zr

    with py7zr.SevenZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(data, name)


UVG_NAME = "Bosphorus_1920x1080_120fps_420_8bit_YUV.yuv"
UVG_RE = UVG_MEMBER_REGEX.format(name="Bosphorus")


def test_extract_7z_good(tmp_path):
    a = tmp_path / "Bosphorus.7z"
    payload = np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    make_7z(a, {UVG_NAME: payload, "license.txt": b"CC BY-NC"})
    dest = tmp_path / "seq" / "Bosphorus"
    out = extract_7z(a, dest, UVG_RE)
    assert out == dest / UVG_NAME and out.read_bytes() == payload
    assert (dest / "license.txt").read_bytes() == b"CC BY-NC"
    assert [p.name for p in dest.parent.iterdir()] == ["Bosphorus"]  # no temporary folder left
    with pytest.raises(RdflowError, match="already exists and is not empty"):
        extract_7z(a, dest, UVG_RE)


def test_extract_7z_member_in_subfolder(tmp_path):
    a = tmp_path / "a.7z"
    make_7z(a, {"Bosphorus/" + UVG_NAME: b"\1" * 10})
    assert extract_7z(a, tmp_path / "d", UVG_RE) == tmp_path / "d" / "Bosphorus" / UVG_NAME


def test_extract_7z_unexpected_member_name(tmp_path):
    a = tmp_path / "a.7z"
    make_7z(a, {"HoneyBee_1920x1080_120fps_420_8bit_YUV.yuv": b"\1" * 10, "readme.txt": b"x"})
    with pytest.raises(RdflowError) as e:
        extract_7z(a, tmp_path / "d", UVG_RE)
    msg = str(e.value)
    assert "HoneyBee_1920x1080_120fps_420_8bit_YUV.yuv" in msg and "found 0" in msg and str(a) in msg
    assert not (tmp_path / "d").exists()
    make_7z(a, {UVG_NAME: b"1", "x/" + UVG_NAME: b"2"})
    with pytest.raises(RdflowError, match="found 2"):
        extract_7z(a, tmp_path / "d", UVG_RE)


@pytest.mark.parametrize("bad", ["../evil.yuv", "sub/../../evil.yuv", "..\\evil_w.yuv"])
def test_extract_7z_refuses_path_escape(tmp_path, bad):
    work = tmp_path / "work"
    work.mkdir()
    a = work / "a.7z"
    hostile_7z(a, {UVG_NAME: b"ok", bad: b"evil"})
    with pytest.raises(RdflowError, match=r"would escape the extraction folder \('\.\.' in path\)"):
        extract_7z(a, work / "dest" / "seq", UVG_RE)
    assert not list(tmp_path.rglob("evil*"))
    assert not (work / "dest" / "seq").exists()


def _rename_member(archive: Path, old: str, new: str) -> None:
    """Rewrite a member name in an archive with a plain (unencoded) header and fix both CRCs:
    py7zr's writer sanitises absolute names, so this is how a hostile archive is made."""
    b = bytearray(archive.read_bytes())
    o, n = old.encode("utf-16-le"), new.encode("utf-16-le")
    assert len(o) == len(n)
    i = b.find(o)
    assert i > 0
    b[i:i + len(o)] = n
    off, size, _ = struct.unpack("<QQI", b[12:32])
    struct.pack_into("<I", b, 28, zlib.crc32(bytes(b[32 + off:32 + off + size])))
    struct.pack_into("<I", b, 8, zlib.crc32(bytes(b[12:32])))
    archive.write_bytes(bytes(b))


def hostile_7z(path: Path, members: dict[str, bytes]) -> None:
    """An archive with member names py7zr's writer would refuse or sanitise (``..``, absolute)."""
    import py7zr

    placeholders = {name: f"P{i}".ljust(len(name), "x") for i, name in enumerate(members)}
    with py7zr.SevenZipFile(path, "w") as z:
        z.set_encoded_header_mode(False)
        for name, data in members.items():
            z.writestr(data, placeholders[name])
    for name, ph in placeholders.items():
        if ph != name:
            _rename_member(path, ph, name)
    with py7zr.SevenZipFile(path) as z:
        assert len(z.getnames()) == len(members) and not any(n.startswith("P") for n in z.getnames())


@pytest.mark.parametrize("absname", ["/tmp/evil.yuv", "C:/evil_x.yuv"])
def test_extract_7z_refuses_absolute_path(tmp_path, absname):
    a = tmp_path / "a.7z"
    hostile_7z(a, {UVG_NAME: b"ok", absname: b"evil"})
    with pytest.raises(RdflowError, match=r"escape the extraction folder \(absolute path\)"):
        extract_7z(a, tmp_path / "d", UVG_RE)
    assert not (tmp_path / "d").exists()


def test_extract_7z_refuses_symlink(tmp_path):
    import py7zr

    (tmp_path / "link").symlink_to("/etc")
    (tmp_path / UVG_NAME).write_bytes(b"ok")
    a = tmp_path / "a.7z"
    with py7zr.SevenZipFile(a, "w") as z:
        z.write(tmp_path / UVG_NAME, arcname=UVG_NAME)
        z.write(tmp_path / "link", arcname="link")
    with pytest.raises(RdflowError, match="symbolic link 'link'"):
        extract_7z(a, tmp_path / "d", UVG_RE)
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("damage", ["flip", "truncate", "junk"])
def test_extract_7z_corrupt(tmp_path, damage):
    a = tmp_path / "a.7z"
    payload = np.random.default_rng(1).integers(0, 256, 200_000, dtype=np.uint8).tobytes()
    make_7z(a, {UVG_NAME: payload})
    b = bytearray(a.read_bytes())
    if damage == "flip":
        b[len(b) // 3] ^= 0xFF  # inside the compressed data: caught by the CRC
    elif damage == "truncate":
        b = b[: len(b) // 2]
    else:
        b = bytearray(b"<html>503 Service Unavailable</html>")
    a.write_bytes(bytes(b))
    with pytest.raises(RdflowError) as e:
        extract_7z(a, tmp_path / "out" / "d", UVG_RE)
    msg = str(e.value)
    assert str(a) in msg and "corrupt" in msg and "delete" in msg and "rerun" in msg
    assert not (tmp_path / "out" / "d").exists()
    assert not list((tmp_path / "out").glob(".*part"))  # the temporary folder is gone too


def test_extract_7z_missing_archive(tmp_path):
    with pytest.raises(RdflowError, match="does not exist"):
        extract_7z(tmp_path / "none.7z", tmp_path / "d", UVG_RE)


# ----------------------------------------------------------------------------- downloads


def test_fetch_sequence_records_then_checks(tmp_path, http_server):
    data = os.urandom(4096)
    (http_server.root / "seq.7z").write_bytes(data)
    url = http_server.url + "seq.7z"
    dest = tmp_path / "dl" / "seq.7z"
    http_server.faults["seq.7z"] = 1  # one 503 first: retried
    assert fetch_sequence(url, dest, backoff_s=0.01) == dest
    assert dest.read_bytes() == data
    rec = json.loads((tmp_path / "dl" / "seq.7z.sha256.json").read_text())
    assert rec["sha256"] == hashlib.sha256(data).hexdigest() and rec["url"] == url
    assert rec["bytes"] == 4096
    hits = len(http_server.hits)
    fetch_sequence(url, dest)  # reuse: checked against the record, not downloaded again
    assert len(http_server.hits) == hits
    dest.write_bytes(data[:-1] + b"\0")  # silent corruption
    with pytest.raises(RdflowError, match="recorded in .*seq.7z.sha256.json at its first download"):
        fetch_sequence(url, dest)
    # after deleting the file, a new download is checked against the record too
    dest.unlink()
    (http_server.root / "seq.7z").write_bytes(os.urandom(4096))  # the server now serves another file
    with pytest.raises(RdflowError, match="checksum mismatch"):
        fetch_sequence(url, dest, backoff_s=0.01)
    assert not dest.exists()


def test_fetch_sequence_with_pinned_sha(tmp_path, http_server):
    data = b"uvg" * 1000
    (http_server.root / "s.7z").write_bytes(data)
    url = http_server.url + "s.7z"
    good = hashlib.sha256(data).hexdigest()
    dest = tmp_path / "s.7z"
    with pytest.raises(RdflowError, match="checksum mismatch"):
        fetch_sequence(url, dest, sha256="0" * 64)
    assert not dest.exists()
    fetch_sequence(url, dest, sha256=good.upper())
    assert dest.read_bytes() == data
    assert not (tmp_path / "s.7z.sha256.json").exists()  # pinned: nothing to record
    dest.write_bytes(b"other")
    with pytest.raises(RdflowError, match="was configured"):
        fetch_sequence(url, dest, sha256=good)


def test_fetch_sequence_url_changed_and_custom_record(tmp_path, http_server):
    (http_server.root / "a.7z").write_bytes(b"A" * 100)
    (http_server.root / "b.7z").write_bytes(b"B" * 100)
    dest, record = tmp_path / "x.7z", tmp_path / "records" / "x.json"
    fetch_sequence(http_server.url + "a.7z", dest, record_path=record)
    dest.unlink()
    fetch_sequence(http_server.url + "b.7z", dest, record_path=record)  # config changed the URL
    rec = json.loads(record.read_text())
    assert rec["url"].endswith("b.7z") and rec["sha256"] == hashlib.sha256(b"B" * 100).hexdigest()
    record.write_text("{not json")
    with pytest.raises(RdflowError, match="unreadable"):
        fetch_sequence(http_server.url + "b.7z", dest, record_path=record)


def test_fetch_sequence_http_error(tmp_path, http_server):
    http_server.faults["gone.7z"] = "404"
    with pytest.raises(RdflowError, match="could not download .*gone.7z"):
        fetch_sequence(http_server.url + "gone.7z", tmp_path / "g.7z", backoff_s=0.01)
    assert not (tmp_path / "g.7z").exists() and not (tmp_path / "g.7z.sha256.json").exists()


def test_download_extract_read_end_to_end(tmp_path, http_server):
    """A miniature UVG: 7z served over HTTP -> recorded digest -> safe extraction -> frames."""
    w, h, n = 64, 32, 6
    raw = tmp_path / "src.yuv"
    frames = write_raw(raw, w, h, n)
    make_7z(http_server.root / "Tiny_RAW.7z", {"Tiny_64x32_8bit_YUV.yuv": raw.read_bytes(),
                                               "copyright.txt": b"test"})
    arc = fetch_sequence(http_server.url + "Tiny_RAW.7z", tmp_path / "uvg" / "Tiny.7z")
    yuv = extract_7z(arc, tmp_path / "uvg" / "Tiny", r"Tiny_64x32_8bit_YUV\.yuv")
    seq = probe(yuv, width=w, height=h, fps=120)
    idx = select_frames(seq.n_frames, count=3, stride=2, source=seq.path)
    assert idx == [0, 2, 4]
    for i, pl in iter_frames(seq, idx):
        assert same(pl, frames[i])
