"""kind: command (issue 15 item 2): an external codec given as encode/decode argument lists.
The bundled ffmpeg plays the external binary (MJPEG for the RGB formats, x265 for the YUV
ones); every result is compared with the same commands run directly by the test, and every
bad input gets its error (at config check where possible) and no row."""

from __future__ import annotations

import copy
import logging
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import REPO, item_file
from rdflow import RdflowError
from rdflow.codecs import CodecSpec, build, codec_class
from rdflow.codecs import command_io as cio
from rdflow.codecs.ffmpeg_tools import ffmpeg_exe
from rdflow.metrics.yuv import rgb_to_yuv420, yuv420_to_rgb
from test_e2e import psnr_255, run_snakemake, write_config

FF = ffmpeg_exe()
KODAK = REPO / "workflow/resources/data/kodak"
Q = ["-y", "-loglevel", "error"]
X265 = ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params",
        "qp={quality}:log-level=error:pools=none:frame-threads=1", "-f", "hevc", "{output}"]
MJPEG = {"format": "png",
         "encode": [FF, *Q, "-i", "{input}", "-c:v", "mjpeg", "-q:v", "{quality}", "-f", "mjpeg",
                    "{output}"],
         "decode": [FF, *Q, "-i", "{input}", "{output}"],
         "version": [FF, "-version"]}


def raw_yuv(fmt):
    return {"format": fmt,
            "encode": [FF, *Q, "-f", "rawvideo", "-pix_fmt", fmt, "-s", "{width}x{height}", "-i",
                       "{input}", *X265],
            "decode": [FF, *Q, "-i", "{input}", "-f", "rawvideo", "-pix_fmt", fmt, "{output}"]}


Y4M = {"format": "y4m", "encode": [FF, *Q, "-i", "{input}", *X265],
       "decode": [FF, *Q, "-i", "{input}", "-f", "yuv4mpegpipe", "-pix_fmt", "yuv420p", "{output}"]}


def kodak(name="kodim03", box=None) -> np.ndarray:
    im = Image.open(KODAK / f"{name}.png").convert("RGB")
    return np.asarray(im.crop(box) if box else im)


def codec(opts: dict, quality: int = 5):
    entry = {"kind": "command", "qualities": [quality], **copy.deepcopy(opts)}
    cls = codec_class("command")
    for k, v in cls.config_defaults(entry).items():
        entry.setdefault(k, v)
    cls.check_entry({}, "ext", entry, where="codecs.ext")
    options = {k: v for k, v in entry.items() if k not in ("kind", "qualities")}
    return build(CodecSpec("ext", "command", quality, options))


def direct(argv: list[str], **values) -> None:
    """Run one of the configured commands the way a user would, placeholders filled in."""
    subprocess.run([a.format(**values) for a in argv], check=True, stdin=subprocess.DEVNULL)


def test_png_command_bpp_recon_and_psnr_equal_the_commands_run_directly(tmp_path):
    from rdflow.rows import distortion, rate
    from rdflow.stages.compress import code

    rgb = kodak()
    c = codec(MJPEG, quality=5)
    coded = code(c, rgb, tmp_path / "item.bin")
    h, w = rgb.shape[:2]
    # the same commands by hand, on a PNG the test writes
    Image.fromarray(rgb).save(tmp_path / "src.png")
    direct(MJPEG["encode"], input=tmp_path / "src.png", output=tmp_path / "bs.jpg", quality=5)
    direct(MJPEG["decode"], input=tmp_path / "bs.jpg", output=tmp_path / "rec.png")
    assert coded.data == (tmp_path / "bs.jpg").read_bytes()
    assert (tmp_path / "item.bin").stat().st_size == len(coded.data)
    ref = np.asarray(Image.open(tmp_path / "rec.png").convert("RGB"))
    assert np.array_equal(coded.recon, ref)
    r = rate(len(coded.data), w, h, c.header_bytes(coded.data))
    assert r["bpp"] == pytest.approx(8 * (tmp_path / "bs.jpg").stat().st_size / (h * w))
    assert r["header_bytes"] == 0 and 0.3 < r["bpp"] < 3
    d = distortion({"metrics": ["psnr_rgb"]}, rgb, coded.recon)
    assert d["psnr_rgb"] == pytest.approx(psnr_255(rgb, ref), abs=1e-9)
    assert 30 < d["psnr_rgb"] < 45
    desc = c.describe()
    assert desc["encoder"].startswith("ffmpeg version ") and "{quality}" in desc["command"]
    first = subprocess.run([FF, "-version"], capture_output=True, text=True).stdout.splitlines()[0]
    assert desc["encoder"] == first.strip()


def _yuv_direct(fmt: str, rgb: np.ndarray, folder: Path, quality: int) -> tuple[bytes, np.ndarray]:
    """Write the planes (rdflow.metrics.yuv for 4:2:0, the test's own file layout), run the
    commands by hand, read the decoder's file back."""
    h, w = rgb.shape[:2]
    ph, pw = h + h % 2, w + w % 2
    padded = np.pad(rgb, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    if fmt == "yuv444p":
        planes = cio.rgb_to_yuv444(padded, "bt601", "full")
    else:
        planes = rgb_to_yuv420(padded, matrix="bt601", range="full", chroma_loc="left")
    body = b"".join(p.tobytes() for p in planes)
    src = folder / ("src.y4m" if fmt == "y4m" else "src.yuv")
    head = f"YUV4MPEG2 W{pw} H{ph} F25:1 Ip A1:1 C420mpeg2 XCOLORRANGE=FULL\nFRAME\n".encode()
    src.write_bytes(head + body if fmt == "y4m" else body)
    opts = Y4M if fmt == "y4m" else raw_yuv(fmt)
    vals = dict(width=pw, height=ph, quality=quality)
    direct(opts["encode"], input=src, output=folder / "bs.hevc", **vals)
    direct(opts["decode"], input=folder / "bs.hevc", output=folder / "rec.out", **vals)
    out = (folder / "rec.out").read_bytes()
    if fmt == "y4m":
        out = out[out.index(b"FRAME\n") + 6:]
    a = np.frombuffer(out, np.uint8)
    y = a[:ph * pw].reshape(ph, pw)
    if fmt == "yuv444p":
        u, v = a[ph * pw:2 * ph * pw].reshape(ph, pw), a[2 * ph * pw:].reshape(ph, pw)
        rec = cio.yuv444_to_rgb(y, u, v, "bt601", "full")
    else:
        n = (ph // 2) * (pw // 2)
        u = a[ph * pw:ph * pw + n].reshape(ph // 2, pw // 2)
        v = a[ph * pw + n:].reshape(ph // 2, pw // 2)
        rec = yuv420_to_rgb(y, u, v, matrix="bt601", range="full", chroma_loc="left")
    return (folder / "bs.hevc").read_bytes(), rec[:h, :w]


@pytest.mark.parametrize("fmt,box", [("yuv420p", None), ("yuv444p", (0, 0, 256, 192)),
                                     ("y4m", (3, 5, 104, 80)), ("yuv420p", (0, 0, 75, 101))])
def test_yuv_formats_equal_the_commands_run_directly(tmp_path, fmt, box):
    rgb = kodak("kodim12", box)
    c = codec(Y4M if fmt == "y4m" else raw_yuv(fmt), quality=30)
    data = c.encode(rgb)
    recon = c.decode(data)
    ref_data, ref = _yuv_direct(fmt, rgb, tmp_path, 30)
    assert data == ref_data
    assert recon.shape == rgb.shape and np.array_equal(recon, ref)
    assert 28 < psnr_255(rgb, recon) < 50
    assert c.describe()["encoder"] == "unknown"  # ffmpeg refuses --version: the default fails


def test_yuv444_conversion_is_the_bt601_bt709_formula():
    """rgb_to_yuv444 against a float64 formula written here (full and limited range), the Y
    plane against rdflow.metrics.yuv's 4:2:0 conversion, and the round trip."""
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    f = rgb.astype(np.float64)
    for matrix, (kr, kb) in {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}.items():
        for rng_name, (off, ys, cs) in {"full": (0, 1, 1),
                                        "limited": (16, 219 / 255, 224 / 255)}.items():
            ey = kr * f[..., 0] + (1 - kr - kb) * f[..., 1] + kb * f[..., 2]
            want = [ey * ys + off, (f[..., 2] - ey) / (2 * (1 - kb)) * cs + 128,
                    (f[..., 0] - ey) / (2 * (1 - kr)) * cs + 128]
            got = cio.rgb_to_yuv444(rgb, matrix, rng_name)
            for g, wnt in zip(got, want):
                assert np.abs(g.astype(np.float64) - np.clip(np.rint(wnt), 0, 255)).max() <= 1
            assert np.array_equal(got[0], rgb_to_yuv420(rgb, matrix=matrix, range=rng_name)[0])
            back = cio.yuv444_to_rgb(*got, matrix, rng_name)
            assert np.abs(back.astype(int) - rgb).max() <= (2 if rng_name == "full" else 3)


def test_ppm_input_png_reconstruction(tmp_path):
    opts = dict(MJPEG, format="ppm", recon_format="png")
    rgb = kodak("kodim20", (0, 0, 200, 120))
    c = codec(opts, quality=3)
    recon = c.decode(c.encode(rgb))
    (tmp_path / "src.ppm").write_bytes(b"P6\n200 120\n255\n" + rgb.tobytes())
    direct(opts["encode"], input=tmp_path / "src.ppm", output=tmp_path / "b.jpg", quality=3)
    direct(opts["decode"], input=tmp_path / "b.jpg", output=tmp_path / "r.png")
    assert np.array_equal(recon, np.asarray(Image.open(tmp_path / "r.png").convert("RGB")))


def test_threads_sharing_one_codec_get_their_own_sizes():
    c = codec(raw_yuv("yuv420p"), quality=35)
    boxes = [(0, 0, 64 + 8 * i, 48 + 6 * i) for i in range(6)]
    with ThreadPoolExecutor(4) as pool:
        shapes = list(pool.map(lambda b: c.decode(c.encode(kodak("kodim03", b))).shape, boxes))
    assert shapes == [(48 + 6 * i, 64 + 8 * i, 3) for i in range(6)]
    with pytest.raises(RdflowError, match="did not encode"):
        c.decode(b"not a bitstream of this codec")
    # {threads} is the entry's threads, {width}x{height} the picture's
    t = codec(dict(raw_yuv("yuv420p"), threads=3), quality=35)
    argv = t._argv("encode", input="in.yuv", output="out.hevc", width=64, height=48)
    assert argv[argv.index("-s") + 1] == "64x48" and "qp=35:" in " ".join(argv)
    enc = dict(raw_yuv("yuv420p"), threads=3)
    enc["encode"] = enc["encode"][:-1] + ["-threads", "{threads}", "{output}"]
    rgb = kodak("kodim03", (0, 0, 64, 48))
    threaded = codec(enc, quality=35)
    assert threaded._argv("encode", input="i", output="o", width=1, height=1)[-2] == "3"
    assert threaded.decode(threaded.encode(rgb)).shape == rgb.shape


def test_default_version_failing_warns_and_says_unknown(caplog):
    opts = {k: v for k, v in MJPEG.items() if k != "version"}
    from rdflow.codecs.command import version_line

    version_line.cache_clear()
    with caplog.at_level(logging.WARNING, logger="rdflow.command"):
        c = codec(opts)
    assert c.describe()["encoder"] == "unknown"
    assert any("--version" in r.getMessage() and "unknown" in r.getMessage() for r in caplog.records)
    # configured, a version command may exit non-zero (VTM's EncoderApp --help exits 1) if it
    # prints: ffmpeg --version prints its banner on stderr and exits 8
    c = codec(dict(opts, version=[FF, "--version"]))
    banner = subprocess.run([FF, "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    assert c.describe()["encoder"] == banner.strip()


# -- bad input: config check --------------------------------------------------------------
def _study(tmp_path, entry: dict) -> dict:
    return {"datasets": {"k": {"kind": "local", "path": str(KODAK), "images": ["kodim03"]}},
            "codecs": {"ext": {"kind": "command", "qualities": [5], **entry}},
            "vmaf": {"enabled": False}}


BAD_CONFIGS = [
    ("string", dict(MJPEG, encode=f"{FF} -i {{input}} {{output}}"), r"(?s)codecs\.ext\.encode.*list"),
    ("unquoted", dict(MJPEG, decode=[FF, "-i", {"input": None}, "{output}"]),
     r'(?s)codecs\.ext\.decode.*Quote each placeholder \("\{input\}"\)'),
    ("placeholder", dict(MJPEG, encode=[FF, "-i", "{input}", "-q:v", "{qp}", "{output}"]),
     r"codecs\.ext\.encode\[4\].*unknown placeholder \{qp\}"),
    ("no_output", dict(MJPEG, decode=[FF, "-i", "{input}", "out.png"]),
     r"codecs\.ext\.decode has no \{output\}"),
    ("not_on_path", dict(MJPEG, encode=["no-such-encoder-app", "{input}", "{output}"]),
     r"codecs\.ext\.encode\[0\]: 'no-such-encoder-app' is not found on PATH"),
    ("no_file", dict(MJPEG, decode=["./vtm/bin/DecoderApp", "-b", "{input}", "-o", "{output}"]),
     r"codecs\.ext\.decode\[0\]: \./vtm/bin/DecoderApp does not exist"),
    ("format", dict(MJPEG, format="jpeg"), r"codecs\.ext\.format"),
    ("matrix_png", dict(MJPEG, matrix="bt709"), r"codecs\.ext\.matrix applies to the YUV formats"),
    ("version", dict(MJPEG, version=[sys.executable, "-c", "pass"]),
     r"codecs\.ext\.version: the version command printed nothing"),
    ("timeout", dict(MJPEG, timeout=0), r"codecs\.ext\.timeout"),
]


@pytest.mark.parametrize("case,entry,pattern", BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_bad_config_is_refused_at_config_check(tmp_path, case, entry, pattern):
    from rdflow.study import validate

    with pytest.raises(RdflowError, match=pattern):
        validate(_study(tmp_path, entry))


def test_command_keys_are_refused_for_other_kinds(tmp_path):
    from rdflow.study import validate

    cfg = _study(tmp_path, MJPEG)
    cfg["codecs"]["jpeg"] = {"kind": "jpeg", "qualities": [50], "encode": ["cjpeg"]}
    with pytest.raises(RdflowError, match=r"codecs\.jpeg\.encode only applies to kind: command"):
        validate(cfg)
    with pytest.raises(RdflowError, match="list"):  # the direct API says it too
        codec(dict(MJPEG, decode="ffmpeg -i {input} {output}"))
    with pytest.raises(RdflowError, match=r'decode\[2\] is a mapping.*quote the placeholder, "\{input\}"'):
        codec(dict(MJPEG, decode=[FF, "-i", {"input": None}, "{output}"]))


# -- bad input: at the job, with the command line and its stderr tail ---------------------
PY = sys.executable
BAD_RUNS = [
    ("exit", dict(MJPEG, encode=[FF, *Q, "-i", "{input}", "-c:v", "nosuchcodec", "-f", "mjpeg",
                                    "{output}"]),
     r"encode: the command exited with status [1-9]\d*\ncommand: .*nosuchcodec.*\n.*nosuchcodec"),
    ("nothing", dict(MJPEG, encode=[FF, *Q, "-i", "{input}", "-f", "null", "{output}"]),
     r"encode: the command exited 0 but wrote no file at \{output\}.*\ncommand: .*-f null"),
    ("empty", dict(MJPEG, decode=[FF, *Q, "-i", "{input}", "-frames:v", "0", "-f", "rawvideo",
                                  "{output}"]), r"decode: .*wrote an empty file"),
    ("size", dict(MJPEG, decode=[FF, *Q, "-i", "{input}", "-vf", "scale=iw/2:ih/2", "{output}"]),
     r"decode: the decoder's png output is 100x60, expected 200x120.*\ncommand: .*scale=iw/2"),
    ("png16", dict(MJPEG, decode=[FF, *Q, "-i", "{input}", "-pix_fmt", "rgb48be", "{output}"]),
     r"16-bit PNG"),
    ("yuv10", dict(raw_yuv("yuv420p"), decode=raw_yuv("yuv420p10le")["decode"]),
     r"yuv420p output has 72000 bytes; one 8-bit 200x120 yuv420p frame has 36000: twice"),
    ("y4m10", dict(Y4M, decode=[FF, *Q, "-i", "{input}", "-pix_fmt", "yuv420p10le", "-strict",
                                "-1", "-f", "yuv4mpegpipe", "{output}"]), r"high bit depth y4m"),
    ("y4m_size", dict(Y4M, decode=[FF, *Q, "-i", "{input}", "-vf", "crop=100:60:0:0", "-f",
                                   "yuv4mpegpipe", "{output}"]), r"y4m is 100x60, expected 200x120"),
    ("timeout", dict(MJPEG, timeout=1, encode=[PY, "-c", "import time; time.sleep(60)", "{input}",
                                               "{output}"]),
     r"encode: the command ran longer than codecs\.ext\.timeout = 1 s and was killed"),
]


@pytest.mark.parametrize("case,entry,pattern", BAD_RUNS, ids=[b[0] for b in BAD_RUNS])
def test_bad_command_fails_with_its_command_line(case, entry, pattern):
    rgb = kodak("kodim20", (0, 0, 200, 120))
    c = codec(entry, quality=30 if entry["format"] != "png" else 5)
    t0 = time.perf_counter()
    with pytest.raises(RdflowError, match=pattern) as err:
        c.decode(c.encode(rgb))
    assert time.perf_counter() - t0 < 20
    assert "command: " in str(err.value)


# -- the workflow ---------------------------------------------------------------------------
def _clip(work: Path) -> Path:
    """2 frames of 192x128 crops of the shipped Kodak images, BT.601 limited 4:2:0."""
    path = work / "clip.yuv"
    with open(path, "wb") as f:
        for name in ("kodim03", "kodim12"):
            rgb = kodak(name, (100, 100, 292, 228))
            for p in rgb_to_yuv420(rgb, matrix="bt601", range="limited", chroma_loc="left"):
                f.write(p.tobytes())
    return path


@pytest.mark.e2e
def test_workflow_codes_kodak_and_frames_with_the_command(tmp_path):
    work = tmp_path / "study"
    work.mkdir()
    cfg = _study(tmp_path, MJPEG)
    cfg["datasets"]["k"]["images"] = ["kodim03", "kodim12"]
    cfg["codecs"]["ext"]["qualities"] = [3, 12]
    cfg["video"] = {"frames": {"count": 2}, "sequences": {"clip": {
        "source": "file", "path": str(_clip(work)), "width": 192, "height": 128,
        "matrix": "bt601"}}}
    write_config(work, cfg)
    run_snakemake(work)
    rd = pd.read_csv(work / "results/image_rd_k.csv")
    assert sorted(zip(rd.image, rd.quality)) == [("kodim03", 3), ("kodim03", 12),
                                                  ("kodim12", 3), ("kodim12", 12)]
    for r in rd.itertuples():
        bs = item_file(work, "image", "k", "ext", r.quality, r.image, "bin")
        assert r.bytes == bs.stat().st_size and r.header_bytes == 0
        assert r.bpp == pytest.approx(8 * r.bytes / (768 * 512))
        direct(MJPEG["decode"], input=bs, output=tmp_path / f"{r.image}{r.quality}.png")
        rec = np.asarray(Image.open(tmp_path / f"{r.image}{r.quality}.png").convert("RGB"))
        assert r.psnr_rgb == pytest.approx(psnr_255(kodak(r.image), rec), abs=1e-6)
        assert r.encoder.startswith("ffmpeg version") and "-q:v {quality}" in r.command
    assert (rd[rd.quality == 3].bpp.values > rd[rd.quality == 12].bpp.values).all()
    video = pd.read_csv(work / "results/video_rd_clip.csv")
    ext = video[video.codec == "ext"]
    assert len(ext) == 2 * 2 and ext.psnr_y.between(25, 60).all()
    for r in ext.itertuples():  # per-frame rows: the rate is the command's file too
        size = (item_file(work, "video", "clip", "ext", r.quality, r.frame, "bin")).stat().st_size
        assert r.bytes == size and r.bpp == pytest.approx(8 * size / (192 * 128))


@pytest.mark.e2e
def test_workflow_failing_command_leaves_no_row(tmp_path):
    work = tmp_path / "study"
    bad = dict(MJPEG, decode=[FF, *Q, "-i", "{input}", "-vf", "scale=iw/2:ih/2", "{output}"])
    write_config(work, _study(tmp_path, bad))
    proc = run_snakemake(work, check=False)
    log = work / "logs/compress_image/k/ext/q5/b0.log"
    assert proc.returncode != 0
    assert "expected 768x512" in proc.stdout + proc.stderr + log.read_text()
    assert not list(work.glob("results/image/k/ext/**/*.json"))  # no row, no batch folder
    assert not list(work.glob("results/image/k/ext/*/batch*"))
    assert not (work / "results/image_rd_k.csv").exists()


@pytest.mark.e2e
def test_workflow_refuses_a_missing_binary_before_any_job(tmp_path):
    work = tmp_path / "study"
    missing = dict(MJPEG, encode=["EncoderApp", "-i", "{input}", "-b", "{output}"])
    write_config(work, _study(tmp_path, missing))
    proc = run_snakemake(work, "-n", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "codecs.ext.encode[0]: 'EncoderApp' is not found on PATH" in out
    assert "Traceback" not in out and not (work / "results").exists()
