"""Codecs: one interface for learned (CompressAI) and classical codecs, of pictures and of
whole sequences.

A codec is a class registered under a ``kind`` in :data:`CODECS`. Image codecs (``medium =
"image"``, config ``codecs``) have ``encode(rgb) -> bytes`` and ``decode(bytes) -> rgb`` (HxWx3
uint8); sequence codecs (``medium = "sequence"``, config ``video_codecs``: x264, x265, ssf2020)
have ``encode(frames, clip) -> Encoded`` and ``decode(data, clip) -> frames``
(:mod:`rdflow.codecs.sequence`). The entry's ``kind`` picks the class; adding a codec is one
class and one config entry.
"""

from __future__ import annotations

from .base import (  # noqa: F401
    CODECS, Codec, CodecSpec, build, codec_class, codec_spec, get_cached, register, weights_file)
from . import pillow  # noqa: F401  registers jpeg, webp
from . import ffmpeg  # noqa: F401  registers jpeg2000, hevc_intra, av1_intra, jpegxl
from . import learned  # noqa: F401  registers learned (imports torch lazily)
from . import compressai_model  # noqa: F401  registers compressai_model (your own model class)
from . import decoded  # noqa: F401  registers decoded, decoded_sequence (results made elsewhere)
from . import command  # noqa: F401  registers command (an external codec's argument lists)
from . import x26x  # noqa: F401  registers the sequence codecs x264, x265
from . import av1  # noqa: F401  registers the sequence codec av1 (libsvtav1, libaom-av1)
from . import vvc  # noqa: F401  registers vvc_intra (image) and the sequence codec vvc (libvvenc)
from . import ssf  # noqa: F401  registers the sequence codec ssf2020 (imports torch lazily)
