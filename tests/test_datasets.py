"""Dataset folders and image reading: bad inputs get errors that name the file."""

import numpy as np
import pytest
from PIL import Image

from rdflow import RdflowError
from rdflow.config import dataset_images
from rdflow.sources.datasets import KODAK_SHA256, list_local_images, read_image


def test_missing_folder_names_key_and_path(tmp_path):
    with pytest.raises(RdflowError, match=r"nope.*datasets\.x\.path"):
        list_local_images(tmp_path / "nope", key="datasets.x.path")


def test_non_image_files_are_skipped(tmp_path, caplog):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "LICENSE.kodak").write_text("licence text shipped beside the images")
    imgs = list_local_images(tmp_path)
    assert list(imgs) == ["a"]
    assert "notes.txt" in caplog.text
    assert "LICENSE" not in caplog.text       # a license beside shipped images is expected


def test_folder_without_images(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(RdflowError, match="holds no PNG/JPEG"):
        list_local_images(tmp_path)


def test_duplicate_stems(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    with pytest.raises(RdflowError, match="two images named 'a'"):
        list_local_images(tmp_path)


def test_corrupt_image_names_the_file(tmp_path):
    p = tmp_path / "broken.png"
    Image.new("RGB", (32, 32), (10, 20, 30)).save(p)
    p.write_bytes(p.read_bytes()[:40])  # truncated PNG
    with pytest.raises(RdflowError, match="broken.png"):
        read_image(p)


def test_non_image_with_image_suffix(tmp_path):
    p = tmp_path / "fake.jpg"
    p.write_text("this is not a jpeg")
    with pytest.raises(RdflowError, match="fake.jpg.*corrupt or not an image"):
        read_image(p)


def test_grayscale_and_rgba_are_converted_and_recorded(tmp_path):
    g = np.arange(64, dtype=np.uint8).reshape(8, 8)
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    rgba = np.dstack([np.full((8, 8), v, np.uint8) for v in (10, 20, 30, 128)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    gi = read_image(tmp_path / "g.png")
    assert gi.source_mode == "L" and gi.rgb.shape == (8, 8, 3)
    assert np.array_equal(gi.rgb[..., 0], g) and np.array_equal(gi.rgb[..., 2], g)
    ai = read_image(tmp_path / "a.png")
    assert ai.source_mode == "RGBA" and ai.rgb.shape == (8, 8, 3)
    assert tuple(ai.rgb[0, 0]) == (10, 20, 30)


def test_16_bit_png(tmp_path):
    a = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 257)
    Image.fromarray(a).save(tmp_path / "d.png")
    im = read_image(tmp_path / "d.png")
    assert im.rgb.dtype == np.uint8 and im.rgb.max() == 255


def test_kodak_hashes_match_shared(shared):
    import hashlib

    kodak = shared("data", "kodak")
    sums = (kodak / "SHA256SUMS").read_text().split("\n")
    pinned = {l.split()[1][:-4]: l.split()[0] for l in sums if l.strip()}
    assert pinned == KODAK_SHA256 and len(pinned) == 24
    # and the files themselves have those hashes (hashlib, not rdflow)
    for name, digest in pinned.items():
        assert hashlib.sha256((kodak / f"{name}.png").read_bytes()).hexdigest() == digest, name


def test_dataset_subset(tmp_path):
    for n in ("a", "b", "c"):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{n}.png")
    cfg = {"datasets": {"d": {"kind": "local", "path": str(tmp_path), "images": ["a", "c"]}}}
    assert list(dataset_images(cfg, "d")) == ["a", "c"]
    cfg["datasets"]["d"]["images"] = ["z"]
    with pytest.raises(RdflowError, match="'z'"):
        dataset_images(cfg, "d")
