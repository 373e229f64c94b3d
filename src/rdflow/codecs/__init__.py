"""Codecs: one interface for learned (CompressAI) and classical codecs.

A codec is a class with ``encode(rgb) -> bytes`` and ``decode(bytes) -> rgb`` (HxWx3 uint8),
registered under a ``kind`` in :data:`CODECS`. config.yaml's ``codecs.<name>.kind`` picks the
class; adding a codec is one class and one config entry.
"""

from __future__ import annotations

from .base import CODECS, Codec, CodecSpec, build, get_cached, register  # noqa: F401
from . import pillow  # noqa: F401,E402  registers jpeg, webp
from . import ffmpeg  # noqa: F401,E402  registers jpeg2000, hevc_intra, av1_intra, jpegxl
from . import learned  # noqa: F401,E402  registers learned (imports torch lazily)
