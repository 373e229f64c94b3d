"""Codec interface, registry and an in-process cache of built codecs."""

from __future__ import annotations

import collections
import json
import threading
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from .. import RdflowError


@dataclass(frozen=True)
class CodecSpec:
    """Everything that identifies one operating point of a codec."""

    name: str  # the codec's name in config.yaml (codecs.<name>)
    kind: str
    quality: int
    options: dict = field(default_factory=dict, hash=False, compare=False)
    device: str = "cpu"

    def key(self) -> str:
        return json.dumps(
            [self.name, self.kind, self.quality, self.device, self.options], sort_keys=True, default=str
        )


class Codec:
    """Base class. Subclasses set ``kind`` and implement ``encode``/``decode``.

    ``encode`` returns the complete bitstream (every byte that a decoder needs, so that bpp can
    be computed from its length); ``decode`` inverts it to an 8-bit RGB image of the original
    size.
    """

    kind: ClassVar[str] = ""
    #: quality values the codec accepts (inclusive range), checked at config validation
    quality_range: ClassVar[tuple[int, int]] = (0, 100)
    #: config keys of this kind and their defaults, filled in when the config is validated
    defaults: ClassVar[dict] = {}

    @classmethod
    def config_defaults(cls, entry: dict) -> dict:
        """The defaults of a ``codecs.<name>`` entry of this kind (may depend on the entry)."""
        return dict(cls.defaults)

    def __init__(self, spec: CodecSpec):
        self.spec = spec
        self.lock = threading.Lock()

    # -- interface ------------------------------------------------------------------------
    def encode(self, rgb: np.ndarray) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Columns that say exactly what ran (versions, settings, weights)."""
        return {}

    def header_bytes(self, data: bytes) -> int:
        """Bytes of ``data`` that are rdflow's own container header (0 for standard formats)."""
        return 0

    def synchronize(self) -> None:
        """Wait for queued device work (CUDA) so that timings are true."""

    # -- helpers --------------------------------------------------------------------------
    def warmup(self) -> None:
        """One encode/decode on a small image so that one-time costs stay out of timings."""
        rng = np.random.default_rng(0)
        img = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
        self.decode(self.encode(img))

    @classmethod
    def check_quality(cls, quality: int, *, where: str) -> None:
        lo, hi = cls.quality_range
        if not (lo <= quality <= hi):
            raise RdflowError(f"{where}: quality {quality} is out of range for {cls.kind}; allowed {lo}–{hi}")


CODECS: dict[str, type[Codec]] = {}


def register(cls: type[Codec]) -> type[Codec]:
    if not cls.kind:
        raise ValueError(f"{cls.__name__} has no kind")
    CODECS[cls.kind] = cls
    return cls


def codec_class(kind: str, *, where: str = "codecs") -> type[Codec]:
    try:
        return CODECS[kind]
    except KeyError:
        raise RdflowError(
            f"{where}: unknown codec kind {kind!r}; known kinds: {', '.join(sorted(CODECS))}"
        ) from None


def build(spec: CodecSpec) -> Codec:
    return codec_class(spec.kind, where=f"codecs.{spec.name}.kind")(spec)


class _Cache:
    """A small LRU of built (and warmed-up) codecs, shared by the jobs of one process.

    Snakemake runs the coding jobs in threads of one process (see README), so a model is built
    and warmed up once and reused by every image/frame job of the same operating point.
    """

    def __init__(self, maxsize: int = 6):
        self.maxsize = maxsize
        self._items: collections.OrderedDict[str, Codec] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[str, threading.Lock] = {}

    def get(self, spec: CodecSpec, warmup: bool = True) -> Codec:
        key = spec.key()
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            build_lock = self._building.setdefault(key, threading.Lock())
        with build_lock:  # one thread builds; others with the same key wait for it
            with self._lock:
                if key in self._items:
                    return self._items[key]
            codec = build(spec)
            if warmup:
                codec.warmup()
            with self._lock:
                self._items[key] = codec
                while len(self._items) > self.maxsize:
                    self._items.popitem(last=False)
                self._building.pop(key, None)
            return codec

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_CACHE = _Cache()


def get_cached(spec: CodecSpec, warmup: bool = True) -> Codec:
    return _CACHE.get(spec, warmup=warmup)
