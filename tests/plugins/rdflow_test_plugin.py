"""A codec, a metric and a detector registered from outside rdflow: one class (or one
register call) each. tests/test_registries.py names them in a study (``plugins:
[rdflow_test_plugin]``) and finds them in the CSVs, the BD-rate table and the figures."""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np

from rdflow import metrics as M
from rdflow.codecs import Codec, register
from rdflow.detectors import Detections, Detector
from rdflow.detectors import register as register_detector


@register
class Posterize(Codec):
    """Keeps the top ``quality`` bits of every 8-bit sample, deflated (zlib): a real bitstream
    that a decoder reads back, rate and distortion falling with quality."""

    kind = "posterize"
    quality_range = (1, 8)

    def encode(self, rgb: np.ndarray) -> bytes:
        bits = int(self.spec.quality)
        h, w = rgb.shape[:2]
        return struct.pack(">HHB", h, w, bits) + zlib.compress((rgb >> (8 - bits)).tobytes(), 9)

    def decode(self, data: bytes) -> np.ndarray:
        h, w, bits = struct.unpack_from(">HHB", data)
        q = np.frombuffer(zlib.decompress(data[5:]), np.uint8).reshape(h, w, 3).astype(np.uint16)
        mid = (1 << (8 - bits)) >> 1  # the middle of each quantisation bin
        return np.minimum((q << (8 - bits)) + mid, 255).astype(np.uint8)

    def header_bytes(self, data: bytes) -> int:
        return 5

    def describe(self) -> dict:
        return {"encoder": f"posterize {self.spec.quality} bits + zlib 9"}


def psnr_green(ref: np.ndarray, rec: np.ndarray) -> float:
    """PSNR of the green channel alone, 8-bit peak."""
    d = ref[..., 1].astype(np.float64) - rec[..., 1].astype(np.float64)
    mse = float(np.mean(d * d))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


M.register(M.Metric("psnr_green", "PSNR-G [dB]", "dB", fn=psnr_green))


@register_detector
class BrightQuadrants(Detector):
    """Reports each quadrant of the frame brighter than the frame's mean as one box of class 0,
    scored by the quadrant's contrast: cheap, deterministic, and sensitive to coding."""

    backend = "bright_quadrants"

    @classmethod
    def known_names(cls, settings: dict) -> dict[int, str]:
        return {0: "person"}

    def _load(self) -> None:
        self.names = {0: "person"}

    def _detect(self, rgb: np.ndarray) -> Detections:
        h, w = rgb.shape[:2]
        y = rgb.astype(np.float64).mean(axis=2)
        boxes, scores = [], []
        for y0, y1 in ((0, h // 2), (h // 2, h)):
            for x0, x1 in ((0, w // 2), (w // 2, w)):
                part = y[y0:y1, x0:x1]
                if part.mean() > y.mean():
                    # a box shrunk by the quadrant's own brightness: coding moves it a little
                    m = int(round((part.mean() % 8)))
                    boxes.append([x0 + m, y0 + m, x1 - m, y1 - m])
                    scores.append(min(1.0, 0.3 + part.std() / 128.0))
        return Detections(np.array(boxes).reshape(-1, 4), np.array(scores), np.zeros(len(boxes)), w, h)
