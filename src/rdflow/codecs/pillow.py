"""Classical image codecs through Pillow: JPEG (libjpeg) and WebP (libwebp)."""

from __future__ import annotations

import io

import numpy as np

from .base import Codec, register


class PillowCodec(Codec):
    format: str = ""
    quality_range = (0, 100)
    threads = 1  # libjpeg/libwebp through Pillow code on the calling thread (complexity.csv)

    def save_kwargs(self) -> dict:
        return {"quality": int(self.spec.quality)}

    def encode(self, rgb: np.ndarray) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(rgb, "RGB").save(buf, format=self.format, **self.save_kwargs())
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()

    def describe(self) -> dict:
        import PIL

        return {"encoder": f"Pillow {PIL.__version__} {self.format}",
                "settings": " ".join(f"{k}={v}" for k, v in self.save_kwargs().items())}


@register
class Jpeg(PillowCodec):
    """Baseline JPEG, 4:2:0 chroma subsampling (Pillow's default, as CompressAI's jpeg.json)."""

    kind = "jpeg"
    format = "JPEG"
    quality_range = (1, 100)

    def save_kwargs(self) -> dict:
        kw = {"quality": int(self.spec.quality)}
        sub = self.spec.options.get("subsampling")
        if sub is not None:
            kw["subsampling"] = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}[sub]
        return kw


@register
class Webp(PillowCodec):
    """Lossy WebP (libwebp), method 4 unless configured: Pillow's default, and what CompressAI's
    published webp.json used (tests/test_published_classical reproduces it bit-exactly)."""

    kind = "webp"
    defaults = {"method": 4}
    format = "WEBP"
    quality_range = (0, 100)

    def save_kwargs(self) -> dict:
        return {"quality": int(self.spec.quality), "method": int(self.spec.options.get("method", 4))}
