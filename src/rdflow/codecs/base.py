"""Codec interface, registry and an in-process cache of built codecs."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from .. import RdflowError
from ..runtime import Cache


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
    """Base class. Subclasses set ``kind`` (and ``medium``) and implement ``encode``/``decode``.

    Two contracts, one per ``medium``:

    - ``"image"`` (config ``codecs``): ``encode(rgb) -> bytes`` returns the complete bitstream
      of one HxWx3 uint8 picture (every byte that a decoder needs, so that bpp can be computed
      from its length); ``decode(bytes) -> rgb`` inverts it to an 8-bit RGB image of the
      original size.
    - ``"sequence"`` (config ``video_codecs``; :class:`rdflow.codecs.sequence.SequenceCodec`):
      ``encode(frames, clip) -> Encoded`` codes an iterable of frames (in the codec's
      ``domain``: (Y, U, V) 4:2:0 planes or RGB) as ONE bitstream with inter prediction
      (``Encoded.data``, the whole file, with each frame's bytes and type); ``decode(data,
      clip)`` yields the decoded frames in display order. ``clip`` (a ``Clip``) gives the frame
      size, rate and the sequence's YCbCr matrix, range and chroma siting.
    """

    kind: ClassVar[str] = ""
    #: quality values the codec accepts (inclusive range), checked at config validation
    quality_range: ClassVar[tuple[int, int]] = (0, 100)
    #: config keys of this kind and their defaults, filled in when the config is validated
    defaults: ClassVar[dict] = {}
    #: "image": codes one picture at a time (config ``codecs``: datasets and per-frame video);
    #: "sequence": codes a whole sequence as one bitstream with inter prediction (``video_codecs``)
    medium: ClassVar[str] = "image"
    #: runs a torch network: torch intra-op threads, and a GPU job (resources: gpu=1) unless
    #: ``device: cpu``
    uses_torch: ClassVar[bool] = False
    #: rdflow runs the coder itself (False: results made elsewhere, rdflow.codecs.decoded):
    #: encode/decode times are measured and the complexity stage can measure it
    codes_here: ClassVar[bool] = True
    #: published reference curves of this kind are named by the kind (``jpeg.json`` <-> kind
    #: ``jpeg``); False for a family of models whose curves are named by architecture
    curves_named_by_kind: ClassVar[bool] = True

    # -- what the workflow asks of a configured entry (instead of testing its kind) ---------
    #: config keys only some kinds take (besides kind, qualities, datasets, threads): a kind
    #: lists those it takes; the others are refused for it, naming the kinds that take them
    entry_keys: ClassVar[frozenset] = frozenset()

    @classmethod
    def check_entry(cls, config: dict, name: str, entry: dict, *, where: str) -> tuple[int, int] | None:
        """Refuse a ``codecs.<name>`` entry this kind cannot run (RdflowError naming the key);
        returns the range its qualities must lie in (None: :attr:`quality_range`)."""
        same = [o for o in CODECS.values() if o.medium == cls.medium]
        takes = {k for other in same for k in other.entry_keys}
        for key in sorted(takes - set(cls.entry_keys)):
            if key in entry:
                owners = sorted(o.kind for o in same if key in o.entry_keys)
                raise RdflowError(f"{where}.{key} only applies to kind: {', '.join(owners)} "
                                  f"(this codec is {cls.kind})")
        return None

    @classmethod
    def weights_file(cls, config: dict, name: str, entry: dict, quality: int) -> str | None:
        """The weights file a job of (codec ``name``, ``quality``) reads (an input of the
        rule), or None."""
        return None

    @classmethod
    def downloads(cls, config: dict, name: str, entry: dict) -> list[str]:
        """Files this entry fetches from the network (the ``download`` target)."""
        return []

    @classmethod
    def trained_model(cls, entry: dict) -> str | None:
        """The train stage's model (``train.<model>``) this entry codes with, if any."""
        return None

    @classmethod
    def uses_gpu(cls, entry: dict, device: str) -> bool:
        """Whether a job of this entry asks the scheduler for a GPU (``resources: gpu=1``)."""
        return cls.uses_torch and device != "cpu"

    @classmethod
    def job_threads(cls, entry: dict) -> int:
        """Threads a coding job of this entry declares."""
        return int(entry.get("threads") or 1)

    @classmethod
    def item_inputs(cls, config: dict, name: str, entry: dict, quality: int, keys: dict) -> list[str]:
        """Files one item's coding reads besides its source (inputs of its job), e.g. a decoded
        result's bitstream and reconstruction; ``keys``: dataset+image or sequence+frame."""
        return []

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

    def encode_item(self, rgb: np.ndarray, item: dict) -> bytes:
        """The bitstream of one item (``item``: dataset+image or sequence+frame); codecs that
        code here encode ``rgb``."""
        return self.encode(rgb)

    def decode_item(self, data: bytes, item: dict, shape: tuple) -> np.ndarray:
        """The reconstruction of one item from its bitstream (``shape``: the source's)."""
        return self.decode(data)

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


#: built codecs shared by the jobs of one process (rdflow.runtime.Cache: the one model cache)
_CACHE = Cache(maxsize=6)


def get_cached(spec: CodecSpec, warmup: bool = True) -> Codec:
    """The built (and warmed-up) codec of ``spec``, shared by the jobs of one process: a model
    is built once and reused by every image/frame of the same operating point."""

    def make() -> Codec:
        codec = build(spec)
        if warmup:
            codec.warmup()
        return codec

    return _CACHE.get(spec.key(), make)


def weights_file(config: dict, name: str, quality: int | str, section: str = "codecs") -> str | None:
    """The weights file a job of ``<section>.<name>`` at ``quality`` reads, or None."""
    entry = config[section][name]
    return codec_class(entry["kind"]).weights_file(config, name, entry, int(quality))


#: keys of a config entry that select where it runs, not how it codes
_PLACEMENT_KEYS = ("kind", "qualities", "datasets", "sequences")


def codec_spec(config: dict, name: str, quality: int, weights_path: str | None = None,
               section: str = "codecs") -> CodecSpec:
    """The operating point ``quality`` of ``<section>.<name>`` (``codecs`` or ``video_codecs``)."""
    entry = config[section][name]
    options = {k: v for k, v in entry.items() if k not in _PLACEMENT_KEYS + ("checkpoint_sha256",)}
    if weights_path:
        options["weights_path"] = str(weights_path)
    sums = entry.get("checkpoint_sha256")
    if sums:  # the digest of this quality's checkpoint, checked before it is loaded
        options["weights_sha256"] = sums[[int(q) for q in entry["qualities"]].index(int(quality))]
    return CodecSpec(name=name, kind=entry["kind"], quality=int(quality), options=options,
                     device=config.get("device", "auto"))
