"""Results made outside rdflow (issue 15, item 3): ``kind: decoded`` (a bitstream and a
reconstruction per image or frame and quality) and ``kind: decoded_sequence`` (one bitstream and
one .yuv/.y4m reconstruction per sequence and quality). The files are made by the test with
Pillow and the bundled ffmpeg; rdflow's rows must equal its own codec's rows for the same files,
and direct numpy computations."""

from __future__ import annotations

import io
import math
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import REPO
from rdflow import RdflowError
from rdflow.study import validate
from test_video_workflow import make_raw

QUALITIES = (20, 60)


def crops(folder: Path, n: int = 2) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i, src in enumerate(sorted((REPO / "workflow/resources/data/kodak").glob("*.png"))[:n]):
        rgb = np.asarray(Image.open(src).convert("RGB").crop((40, 40, 40 + 200, 40 + 176)))
        Image.fromarray(rgb).save(folder / f"crop{i}.png")
        out[f"crop{i}"] = rgb
    return out


def code_outside(images: dict[str, np.ndarray], out: Path) -> None:
    """What a researcher's own tool would write: JPEG files (Pillow, as rdflow's jpeg codec
    calls it) and their decoded PNGs, one folder per quality."""
    for q in QUALITIES:
        (out / f"q{q}").mkdir(parents=True, exist_ok=True)
        for name, rgb in images.items():
            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, format="JPEG", quality=q)
            (out / f"q{q}" / f"{name}.jpg").write_bytes(buf.getvalue())
            Image.open(io.BytesIO(buf.getvalue())).convert("RGB").save(out / f"q{q}" / f"{name}.png")


def decoded_entry(out: Path, **over) -> dict:
    c = {"kind": "decoded", "qualities": list(QUALITIES),
         "bitstreams": str(out / "q{quality}" / "{image}.jpg"),
         "reconstructions": str(out / "q{quality}" / "{image}.png")}
    c.update(over)
    return c


def study(images: Path, c: dict) -> dict:
    return {"device": "cpu", "metrics": ["psnr_rgb", "ms_ssim"],
            "datasets": {"crops": {"kind": "local", "path": str(images)}},
            "codecs": {"theirs": c, "jpeg": {"kind": "jpeg", "qualities": list(QUALITIES)}}}


@pytest.fixture
def made(tmp_path):
    images = crops(tmp_path / "images")
    code_outside(images, tmp_path / "theirs")
    return tmp_path, images


def job(tmp, config, codec, q, image):
    from rdflow.stages.compress import image_job

    out = tmp / "results" / codec / f"q{q}"
    return image_job(config=config, dataset="crops", image=image, codec=codec, quality=q,
                     image_path=str(tmp / "images" / f"{image}.png"),
                     bitstream=str(out / f"{image}.bin"), out_json=str(out / f"{image}.json"),
                     recon=str(out / f"{image}.png"))


def test_decoded_rows_equal_rdflows_own_codec_on_the_same_files(made):
    tmp, images = made
    config = validate(study(tmp / "images", decoded_entry(tmp / "theirs")))
    for q in QUALITIES:
        for name, rgb in images.items():
            theirs, ours = job(tmp, config, "theirs", q, name), job(tmp, config, "jpeg", q, name)
            size = (tmp / "theirs" / f"q{q}" / f"{name}.jpg").stat().st_size
            assert theirs["bytes"] == size == ours["bytes"]
            assert theirs["bpp"] == ours["bpp"] == pytest.approx(8 * size / (200 * 176))
            assert theirs["psnr_rgb"] == ours["psnr_rgb"] and theirs["ms_ssim"] == ours["ms_ssim"]
            rec = np.asarray(Image.open(tmp / "theirs" / f"q{q}" / f"{name}.png"))
            mse = np.mean((rgb.astype(np.float64) - rec) ** 2)
            assert theirs["psnr_rgb"] == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-9)
            assert math.isnan(theirs["enc_s"]) and math.isnan(theirs["dec_s"])
            assert (tmp / "results/theirs" / f"q{q}" / f"{name}.bin").read_bytes() == \
                (tmp / "theirs" / f"q{q}" / f"{name}.jpg").read_bytes()


def test_decoded_bad_input_at_config_check(made):
    tmp, _ = made
    theirs = tmp / "theirs"
    base = study(tmp / "images", decoded_entry(theirs))
    (theirs / "q20" / "crop1.png").unlink()
    with pytest.raises(RdflowError, match=r"codecs\.theirs\.reconstructions: 1 item\(s\) of quality 20 "
                                          r"have no file, e\.g\. .*q20/crop1\.png \(crop1\)"):
        validate(base)
    code_outside({"crop1": np.zeros((176, 200, 3), np.uint8)}, theirs)
    (theirs / "q60" / "kodim99.jpg").write_bytes(b"x")
    with pytest.raises(RdflowError, match=r"codecs\.theirs\.bitstreams: files for \['kodim99'\] at "
                                          r"quality 60, which are not images of crops"):
        validate(base)
    (theirs / "q60" / "kodim99.jpg").unlink()
    for over, match in [
        ({"bitstreams": str(theirs / "{image}.jpg")}, r"bitstreams: .* lacks \{quality\}"),
        ({"reconstructions": str(theirs / "q{quality}/{img}.png")},
         r"reconstructions: unknown placeholder\(s\) \['img'\]"),
        ({"bitstreams": None}, r"codecs\.theirs\.bitstreams is missing"),
        ({"architecture": "x"}, r"codecs\.theirs\.architecture only applies to kind: "),
    ]:
        c = {k: v for k, v in decoded_entry(theirs, **over).items() if v is not None}
        with pytest.raises(RdflowError, match=match):
            validate(study(tmp / "images", c))
    c = study(tmp / "images", decoded_entry(theirs))
    c["complexity"] = {"enabled": True, "codecs": ["theirs"]}
    with pytest.raises(RdflowError, match=r"complexity\.codecs names \['theirs'\], whose results were "
                                          r"made outside rdflow"):
        validate(c)


def test_decoded_bad_reconstructions_fail_the_job_with_no_row(made):
    tmp, _ = made
    config = validate(study(tmp / "images", decoded_entry(tmp / "theirs")))
    rec = tmp / "theirs" / "q20" / "crop0.png"
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(rec)
    with pytest.raises(RdflowError, match=r"crop0\.png is 80x60, the source is 200x176"):
        job(tmp, config, "theirs", 20, "crop0")
    Image.fromarray(np.zeros((176, 200), np.uint16)).save(rec)  # 16-bit grey
    with pytest.raises(RdflowError, match=r"crop0\.png is I;16 \(mode of the file\); rdflow scores "
                                          r"8-bit RGB"):
        job(tmp, config, "theirs", 20, "crop0")
    assert not (tmp / "results/theirs/q20/crop0.json").exists()


# -- sequences ---------------------------------------------------------------------------------
W, H, N = 64, 48, 6


def seq_study(raw: Path, video_codecs: dict | None = None, codecs: dict | None = None) -> dict:
    return {"device": "cpu", "metrics": ["psnr_rgb"],
            "codecs": codecs or {"jpeg": {"kind": "jpeg", "qualities": [50]}},
            "video": {"frames": {"count": N},
                      "sequences": {"synth": {"source": "file", "path": str(raw), "width": W,
                                              "height": H, "matrix": "bt601"}}},
            "video_codecs": video_codecs or {}}


def planes(raw: Path, i: int):
    fs = W * H * 3 // 2
    b = np.frombuffer(raw.read_bytes()[i * fs:(i + 1) * fs], np.uint8)
    return (b[:W * H].reshape(H, W), b[W * H:W * H * 5 // 4].reshape(H // 2, W // 2),
            b[W * H * 5 // 4:].reshape(H // 2, W // 2))


def psnr(a, b) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def x264_outside(raw: Path, out: Path, qp: int, frames: int) -> tuple[Path, Path]:
    """A researcher's x264 run (bundled ffmpeg): the Annex-B stream and its decoded I420."""
    import imageio_ffmpeg

    ff = imageio_ffmpeg.get_ffmpeg_exe()
    out.mkdir(parents=True, exist_ok=True)
    bit, rec = out / f"synth_q{qp}.264", out / f"synth_q{qp}.yuv"
    subprocess.run([ff, "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{W}x{H}",
                    "-i", str(raw), "-frames:v", str(frames), "-c:v", "libx264", "-qp", str(qp),
                    "-f", "h264", str(bit)], check=True)
    subprocess.run([ff, "-v", "error", "-y", "-i", str(bit), "-f", "rawvideo", "-pix_fmt", "yuv420p",
                    str(rec)], check=True)
    return bit, rec


def test_decoded_sequence_rows(tmp_path):
    from rdflow.stages.video_codecs import sequence_job

    raw = tmp_path / "synth.yuv"
    make_raw(raw, W, H, n=8)
    for qp in (24, 36):
        x264_outside(raw, tmp_path / "theirs", qp, N)
    vc = {"theirs": {"kind": "decoded_sequence", "qualities": [24, 36],
                     "bitstreams": str(tmp_path / "theirs/{sequence}_q{quality}.264"),
                     "reconstructions": str(tmp_path / "theirs/{sequence}_q{quality}.yuv")}}
    config = validate(seq_study(raw, vc))
    out = tmp_path / "out"
    rows = sequence_job(config=config, sequence="synth", codec="theirs", quality=24, seq_path=str(raw),
                        bitstream=str(out / "s.bin"), out_json=str(out / "rows.json"))
    size = (tmp_path / "theirs/synth_q24.264").stat().st_size
    assert len(rows) == N and sum(r["frame_bytes"] for r in rows) == size
    assert np.mean([r["bpp"] for r in rows]) == pytest.approx(8 * size / (W * H * N), rel=1e-12)
    rec = tmp_path / "theirs/synth_q24.yuv"
    for r in rows:
        got = planes(rec, r["frame"])
        src = planes(raw, r["frame"])
        assert r["psnr_y"] == pytest.approx(psnr(src[0], got[0]), abs=1e-9)
        assert r["psnr_v"] == pytest.approx(psnr(src[2], got[2]), abs=1e-9)
    # a reconstruction with another frame count is refused, and no rows are written
    rec.write_bytes(rec.read_bytes()[: W * H * 3 // 2 * 4])
    with pytest.raises(RdflowError, match=r"synth_q24\.yuv has 4 frames; the study codes 6 \(of 8"):
        sequence_job(config=config, sequence="synth", codec="theirs", quality=24, seq_path=str(raw),
                     bitstream=str(out / "t.bin"), out_json=str(out / "rows2.json"))
    assert not (out / "rows2.json").exists()
    vc["theirs"]["bitstreams"] = str(tmp_path / "theirs/{sequence}_q{quality}.265")
    with pytest.raises(RdflowError, match=r"video_codecs\.theirs\.bitstreams: .*synth_q24\.265 "
                                          r"\(sequence synth, quality 24\) does not exist"):
        validate(seq_study(raw, vc))


def test_decoded_frames_of_a_sequence(tmp_path):
    """Per-frame results of a sequence ({sequence}, {frame:02d}) through the frame job."""
    from rdflow.stages.compress import frame_job

    raw = tmp_path / "synth.yuv"
    make_raw(raw, W, H, n=8)
    out = tmp_path / "theirs"
    out.mkdir()
    from rdflow.metrics.yuv import yuv420_to_rgb

    for f in range(N):
        rgb = yuv420_to_rgb(*planes(raw, f), matrix="bt601", range="limited", chroma_loc="left")
        Image.fromarray(rgb).save(out / f"synth_q1_{f:02d}.png", format="PNG")
        (out / f"synth_q1_{f:02d}.bin").write_bytes(bytes(100 + f))
    c = {"kind": "decoded", "qualities": [1],
         "bitstreams": str(out / "{sequence}_q{quality}_{frame:02d}.bin"),
         "reconstructions": str(out / "{sequence}_q{quality}_{frame:02d}.png")}
    config = validate(seq_study(raw, codecs={"theirs": c}))
    row = frame_job(config=config, sequence="synth", frame=3, codec="theirs", quality=1,
                    seq_path=str(raw), bitstream=str(tmp_path / "r/3.bin"),
                    out_json=str(tmp_path / "r/3.json"), recon=None)
    assert row["bytes"] == 103 and row["bpp"] == pytest.approx(103 * 8 / (W * H))
    assert row["psnr_rgb"] == math.inf  # the source frame's own RGB conversion
    (out / "synth_q1_05.png").unlink()
    with pytest.raises(RdflowError, match=r"codecs\.theirs\.reconstructions: 1 item\(s\) of quality 1 "
                                          r"have no file, e\.g\. .*synth_q1_05\.png"):
        validate(seq_study(raw, codecs={"theirs": c}))


# -- the workflow: BD-rate, VMAF and summaries as for rdflow's own codecs ----------------------------
@pytest.mark.e2e
def test_decoded_through_the_workflow(made):
    from test_e2e import run_snakemake, write_config

    tmp, _ = made
    work = tmp / "work"
    cfg = study(tmp / "images", decoded_entry(tmp / "theirs"))
    cfg["codecs"]["jpeg"]["qualities"] = [10, 30, 50, 80]
    cfg["codecs"]["theirs"]["qualities"] = [20, 60]
    cfg.update({"vmaf": {"enabled": True}, "detection": {"enabled": False},
                "complexity": {"enabled": False},
                "bd_rate": {"anchor": "jpeg", "metrics": ["psnr_rgb"]}})
    write_config(work, cfg)
    run_snakemake(work)
    rd = pd.read_csv(work / "results/image_rd_crops.csv")
    theirs, jpeg = rd[rd.codec == "theirs"], rd[rd.codec == "jpeg"]
    assert len(theirs) == 4
    for r in theirs.itertuples():
        size = (tmp / "theirs" / f"q{r.quality}" / f"{r.image}.jpg").stat().st_size
        assert r.bytes == size
    vm = pd.read_csv(work / "results/vmaf.csv")
    assert set(vm[vm.codec == "theirs"].quality) == {20, 60}
    bd = pd.read_csv(work / "results/bd_rate.csv")
    assert "theirs" in set(bd.codec)
    # a changed reconstruction reruns that item's batch
    Image.fromarray(np.zeros((176, 200, 3), np.uint8)).save(tmp / "theirs/q20/crop0.png")
    run_snakemake(work)
    rd2 = pd.read_csv(work / "results/image_rd_crops.csv")
    new = rd2[(rd2.codec == "theirs") & (rd2.quality == 20) & (rd2.image == "crop0")].psnr_rgb.iloc[0]
    assert new < theirs[(theirs.quality == 20) & (theirs.image == "crop0")].psnr_rgb.iloc[0] - 5
    assert jpeg.psnr_rgb.tolist() == rd2[rd2.codec == "jpeg"].psnr_rgb.tolist()
