"""Results made outside rdflow: bitstreams and reconstructions already on disk, scored by rdflow.

``kind: decoded`` (under ``codecs``): one bitstream file and one reconstruction image per item
and quality, found by name patterns, e.g.::

    mycodec:
      kind: decoded
      qualities: [1, 2, 3]
      bitstreams: out/q{quality}/{image}.bin          # images of a dataset
      reconstructions: out/q{quality}/{image}.png     # 8-bit RGB, the source's size

For the frames of ``video.sequences`` the patterns use ``{sequence}`` and ``{frame}`` (format
specs allowed: ``{frame:04d}``). rdflow copies each bitstream into its own results (the row's
``bytes`` and ``bpp`` are the file's size) and scores the reconstruction like any codec's:
every metric, VMAF, detection and BD-rate. Encode/decode times are not known (NaN).

``kind: decoded_sequence`` (under ``video_codecs``): one bitstream of the whole sequence and one
reconstruction (raw 4:2:0 ``.yuv`` of the source's size, or ``.y4m``) per (sequence, quality):
``bitstreams: out/{sequence}_q{quality}.bin``, ``reconstructions: out/{sequence}_q{quality}.yuv``.
The reconstruction holds the coded frames (the study's frame selection) or every frame of the
source (the selected ones are read). Per-frame sizes are not known: each frame row carries an
equal share of the file (``frame_bytes_source: equal share``); the sequence's mean bpp is exact.
"""

from __future__ import annotations

import glob
import math
import string
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .. import RdflowError
from .base import Codec, register
from .sequence import Encoded, SequenceCodec

#: pattern keys of a dataset's images and of a sequence's frames
IMAGE_KEYS, FRAME_KEYS = ("quality", "image"), ("quality", "sequence", "frame")


def fields(pattern: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(pattern) if f}


def fill(pattern: str, where: str, **keys) -> str:
    try:
        return pattern.format(**keys)
    except (KeyError, IndexError, ValueError) as exc:
        raise RdflowError(f"{where}: pattern {pattern!r} cannot be filled with {sorted(keys)} "
                          f"({type(exc).__name__}: {exc}); use only {{{'}, {'.join(sorted(keys))}}}") from None


def _check_pattern(pattern, where: str, needed: tuple[str, ...], allowed: tuple[str, ...],
                   hint: str = "") -> None:
    if not isinstance(pattern, str) or not pattern:
        raise RdflowError(f"{where} is missing: the name pattern of the files, e.g. "
                          f"out/q{{quality}}/{{{needed[-1]}}}" + (".bin" if "bitstreams" in where else ".png"))
    have = fields(pattern)
    bad = sorted(have - set(allowed))
    if bad:
        raise RdflowError(f"{where}: unknown placeholder(s) {bad} in {pattern!r}; allowed: "
                          f"{', '.join('{' + k + '}' for k in allowed)}")
    lacking = [k for k in needed if k not in have]
    if lacking:
        raise RdflowError(f"{where}: {pattern!r} lacks {', '.join('{' + k + '}' for k in lacking)}: "
                          f"every item and quality needs its own file{hint}")


def _extras(pattern: str, known: set[str], key: str, where: str, **fixed) -> list[str]:
    """Files the pattern matches (with ``fixed`` filled and ``key`` a wildcard) whose ``key`` is
    not a known item."""
    wild = fill(pattern, where, **fixed, **{key: "\0"})
    head, _, tail = wild.partition("\0")
    found = glob.glob(glob.escape(head) + "*" + glob.escape(tail))
    items = {p[len(head):len(p) - len(tail) or None] for p in found}
    return sorted(i for i in items if i not in known and "/" not in i)


@register
class Decoded(Codec):
    """Bitstreams and reconstructions made outside rdflow, one file each per item and quality."""

    kind = "decoded"
    quality_range = (-(2**31), 2**31 - 1)
    entry_keys = frozenset({"bitstreams", "reconstructions"})
    codes_here = False

    @classmethod
    def check_entry(cls, config: dict, name: str, c: dict, *, where: str):
        """Patterns with the right placeholders; every item of every dataset and sequence the
        codec applies to has its two files, and no file names an item the source lacks."""
        from ..config import codec_applies
        from ..sources.sequences import frames, sequences, video_codecs

        super().check_entry(config, name, c, where=where)
        datasets = [d for d in sorted(config.get("datasets") or {}) if codec_applies(config, name, d)]
        seqs = sorted(sequences(config)) if name in video_codecs(config) else []
        allowed = tuple(dict.fromkeys((("dataset",) + IMAGE_KEYS if datasets else ())
                                      + (FRAME_KEYS if seqs else ())))
        for key in ("bitstreams", "reconstructions"):
            needed = ("quality",) + (("image",) if datasets else ()) + (("sequence", "frame") if seqs else ())
            hint = (" (video.codecs codes the sequences with this codec too: give {sequence} and "
                    "{frame}, or leave it out of video.codecs)") if seqs else ""
            _check_pattern(c.get(key), f"{where}.{key}", needed, allowed or IMAGE_KEYS, hint)
        for d in datasets:
            _check_items(c, where, _dataset_items(config, d), "image", dataset=d)
        for s in seqs:
            _check_items(c, where, [str(f) for f in frames(config, s)], "frame", sequence=s)
        return None

    @classmethod
    def item_inputs(cls, config: dict, name: str, entry: dict, quality: int, keys: dict) -> list[str]:
        """The item's two files: inputs of its coding job, so a changed file reruns it."""
        return [cls.item_file(entry, k, quality, keys, where=f"codecs.{name}.{k}")
                for k in ("bitstreams", "reconstructions")]

    @staticmethod
    def item_file(entry: dict, key: str, quality, keys: dict, *, where: str) -> str:
        fixed = {k: v for k, v in keys.items() if k != "frame"}
        if "frame" in keys:
            fixed["frame"] = int(keys["frame"])
        return fill(entry[key], where, quality=int(quality), **fixed)

    def encode_item(self, rgb: np.ndarray, item: dict) -> bytes:
        path = self._file("bitstreams", item)
        data = Path(path).read_bytes()
        if not data:
            raise RdflowError(f"codecs.{self.spec.name}.bitstreams: {path} is empty")
        return data

    def decode_item(self, data: bytes, item: dict, shape: tuple) -> np.ndarray:
        from PIL import Image

        path = self._file("reconstructions", item)
        with Image.open(path) as im:
            if im.mode != "RGB":
                raise RdflowError(f"codecs.{self.spec.name}.reconstructions: {path} is {im.mode} "
                                  "(mode of the file); rdflow scores 8-bit RGB reconstructions: "
                                  "write them as 8-bit RGB PNG/PPM")
            rgb = np.asarray(im.convert("RGB"))
        if rgb.shape != tuple(shape):
            raise RdflowError(f"codecs.{self.spec.name}.reconstructions: {path} is "
                              f"{rgb.shape[1]}x{rgb.shape[0]}, the source is {shape[1]}x{shape[0]}: "
                              "a reconstruction has the size of its source")
        return rgb

    def _file(self, key: str, item: dict) -> str:
        path = self.item_file(self.spec.options, key, self.spec.quality, item,
                              where=f"codecs.{self.spec.name}.{key}")
        if not Path(path).is_file():
            raise RdflowError(f"codecs.{self.spec.name}.{key}: {path} does not exist")
        return path

    def warmup(self) -> None:
        """Nothing runs here."""

    def describe(self) -> dict[str, Any]:
        return {"encoder": f"decoded outside rdflow ({self.spec.options['bitstreams']})"}


def _dataset_items(config: dict, dataset: str) -> list[str]:
    from ..config import dataset_images

    return sorted(dataset_images(config, dataset))


def _check_items(c: dict, where: str, items: list[str], key: str, **fixed) -> None:
    """Every (quality, item) has both files; no file of the pattern names an unknown item."""
    for q in c["qualities"]:
        for pat in ("bitstreams", "reconstructions"):
            missing = [i for i in items if not Path(Decoded.item_file(
                c, pat, q, {**fixed, key: i}, where=f"{where}.{pat}")).is_file()]
            if missing:
                one = Decoded.item_file(c, pat, q, {**fixed, key: missing[0]}, where=where)
                raise RdflowError(f"{where}.{pat}: {len(missing)} item(s) of quality {q} have no file, "
                                  f"e.g. {one} ({', '.join(map(str, missing[:5]))}); every coded item "
                                  "needs a bitstream and a reconstruction")
            if key == "image":
                extra = _extras(c[pat], set(items), key, where, quality=int(q), **fixed)
                if extra:
                    raise RdflowError(f"{where}.{pat}: files for {extra[:5]} at quality {q}, which are "
                                      f"not images of {fixed.get('dataset')}: the folder belongs to "
                                      "another dataset or its names differ (remove them or fix the "
                                      "pattern)")


@register
class DecodedSequence(SequenceCodec):
    """A sequence coded outside rdflow: one bitstream and one .yuv/.y4m reconstruction per
    (sequence, quality)."""

    kind = "decoded_sequence"
    quality_range = (-(2**31), 2**31 - 1)
    entry_keys = frozenset({"bitstreams", "reconstructions"})
    codes_here = False
    quality_meaning = "your quality index"

    @classmethod
    def check_entry(cls, config: dict, name: str, entry: dict, *, where: str):
        from ..sources.sequences import sequences

        super().check_entry(config, name, entry, where=where)
        allowed = ("quality", "sequence")
        for key in ("bitstreams", "reconstructions"):
            _check_pattern(entry.get(key), f"{where}.{key}", allowed, allowed)
        seqs = entry.get("sequences") or sorted(sequences(config))
        for s in seqs:
            for q in entry["qualities"]:
                for key in ("bitstreams", "reconstructions"):
                    path = fill(entry[key], f"{where}.{key}", quality=int(q), sequence=s)
                    if not Path(path).is_file():
                        raise RdflowError(f"{where}.{key}: {path} (sequence {s}, quality {q}) does "
                                          "not exist")
        return None

    @classmethod
    def item_inputs(cls, config: dict, name: str, entry: dict, quality: int, keys: dict) -> list[str]:
        return [fill(entry[k], f"video_codecs.{name}.{k}", quality=int(quality), **keys)
                for k in ("bitstreams", "reconstructions")]

    def _path(self, key: str, clip) -> str:
        return fill(self.spec.options[key], f"video_codecs.{self.spec.name}.{key}",
                    quality=self.spec.quality, sequence=clip.name)

    def encode(self, frames, clip) -> Encoded:
        n = sum(1 for _ in frames)
        data = Path(self._path("bitstreams", clip)).read_bytes()
        base, extra = divmod(len(data), n)
        sizes = [base + (1 if i < extra else 0) for i in range(n)]
        self.coded = n
        return Encoded(data=data, frame_bytes=sizes, frame_types=["?"] * n, enc_s=math.nan)

    def decode(self, data: bytes, clip):
        from ..sources.video import probe, read_frame

        path, where = self._path("reconstructions", clip), f"video_codecs.{self.spec.name}.reconstructions"
        rec = probe(path, width=clip.width, height=clip.height, where=where)
        if (rec.width, rec.height) != (clip.width, clip.height):
            raise RdflowError(f"{where}: {path} is {rec.width}x{rec.height}, the source "
                              f"{clip.width}x{clip.height}")
        if rec.n_frames == self.coded:
            idx = range(self.coded)
        elif rec.n_frames == clip.source_frames and len(clip.frames) == self.coded:
            idx = clip.frames
        else:
            raise RdflowError(f"{where}: {path} has {rec.n_frames} frames; the study codes "
                              f"{self.coded} (of {clip.source_frames} in the source): write "
                              "the coded frames, or every frame of the source")
        for i in idx:
            yield read_frame(rec, i)

    def decode_seconds(self, data: bytes, clip) -> float | None:
        return math.nan

    def describe(self) -> dict[str, Any]:
        return {"encoder": f"decoded outside rdflow ({self.spec.options['bitstreams']})",
                "frame_bytes_source": "equal share"}

