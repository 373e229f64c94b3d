"""CompressAI's learned video codec ``ssf2020`` (scale-space flow, Agustsson et al., CVPR 2020)
as a sequence codec: its container (pack/unpack), its weights (CompressAI zoo, fetched and
hash-prefix checked) and the model cache.

Timing: each frame's model and entropy-coding time, measured per frame.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .. import RdflowError
from ..runtime import Cache
from .base import CodecSpec, register
from .sequence import Clip, Encoded, SequenceCodec

#: ssf2020: 4 stride-2 convolutions in the analysis transforms, 3 more in the hyper-analysis
SSF_PAD_MULTIPLE = 128
SSF_MAGIC = b"RSSF"
SSF_VERSION = 1

# ------------------------------------------------------------------------------------------
# container


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_uvarint(data: bytes, off: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if off >= len(data):
            raise RdflowError("ssf2020 bitstream is truncated (in a length field)")
        b = data[off]
        off += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, off


def pack_ssf(width: int, height: int, gop: int | None, frames: list[tuple[str, list[bytes]]]) -> tuple[bytes, list[int]]:
    """rdflow's ssf2020 container; returns (data, bytes of each frame's record).

    Header (11 bytes): ``RSSF``, uint8 version, uint16 width, uint16 height, uint16 gop (0: one
    intra frame only); then ``uvarint n_frames``. Each frame: uint8 type (0 = I: y, z strings of
    the image hyperprior; 1 = P: motion y, z then residual y, z), a uvarint length per string,
    the strings. Latent shapes follow from the padded frame size (multiples of 128). Integers
    are big-endian.
    """
    head = SSF_MAGIC + struct.pack(">BHHH", SSF_VERSION, width, height, gop or 0) + _uvarint(len(frames))
    recs = []
    for kind, strings in frames:
        want = 2 if kind == "I" else 4
        if len(strings) != want:
            raise ValueError(f"{kind} frame needs {want} strings, got {len(strings)}")
        recs.append(bytes([0 if kind == "I" else 1]) + b"".join(_uvarint(len(s)) for s in strings)
                    + b"".join(strings))
    return head + b"".join(recs), [len(r) for r in recs]


def _read_record(data: bytes, off: int) -> tuple[tuple[str, list[bytes]], int]:
    """One frame record at ``off``: ((type, strings), offset after it)."""
    if off >= len(data):
        raise RdflowError("ssf2020 bitstream is truncated (missing frames)")
    t = data[off]
    off += 1
    if t not in (0, 1):
        raise RdflowError(f"ssf2020 bitstream: unknown frame type {t}")
    lens = []
    for _ in range(2 if t == 0 else 4):
        ln, off = _read_uvarint(data, off)
        lens.append(ln)
    strings = []
    for ln in lens:
        if off + ln > len(data):
            raise RdflowError("ssf2020 bitstream is truncated (in a string)")
        strings.append(data[off:off + ln])
        off += ln
    return ("I" if t == 0 else "P", strings), off


def unpack_ssf(data: bytes) -> tuple[int, int, int | None, list[tuple[str, list[bytes]]], list[int]]:
    """Inverse of :func:`pack_ssf`: (width, height, gop, frames, bytes of each frame's record)."""
    if len(data) < 12 or data[:4] != SSF_MAGIC:
        raise RdflowError("not an rdflow ssf2020 bitstream (no RSSF header)")
    version, width, height, gop = struct.unpack_from(">BHHH", data, 4)
    if version != SSF_VERSION:
        raise RdflowError(f"ssf2020 bitstream version {version}; this rdflow reads {SSF_VERSION}")
    n, off = _read_uvarint(data, 11)
    frames, sizes = [], []
    for _ in range(n):
        start = off
        frame, off = _read_record(data, off)
        frames.append(frame)
        sizes.append(off - start)
    if off != len(data):
        raise RdflowError(f"ssf2020 bitstream has {len(data) - off} trailing bytes")
    return width, height, gop or None, frames, sizes


# ------------------------------------------------------------------------------------------
# weights and models


def ssf_zoo_url(metric: str, quality: int) -> str:
    """CompressAI's URL of pretrained ssf2020 weights (read from compressai.zoo.video)."""
    from compressai.zoo.video import model_urls

    try:
        return model_urls["ssf2020"][metric][int(quality)]
    except KeyError:
        raise RdflowError(f"CompressAI publishes no pretrained ssf2020 weights for metric={metric} "
                          f"quality={quality} (only mse, 1–9): use weights: random or metric: mse") from None


def ssf_source_url(metric: str, quality: int, base_url: str | None) -> tuple[str, str | None]:
    """(URL, SHA-256 prefix of the zoo file name); the base is replaced when base_url is set."""
    from ..weights import zoo_hash_prefix

    url = ssf_zoo_url(metric, quality)
    name = url.rsplit("/", 1)[1]
    if base_url:
        url = base_url.rstrip("/") + "/" + name
    return url, zoo_hash_prefix(name)


def fetch_ssf_weights(metric: str, quality: int, dest: str, base_url: str | None) -> Path:
    from ..download import fetch
    from ..runtime import import_stack

    import_stack()

    url, prefix = ssf_source_url(metric, quality, base_url)
    return fetch(url, dest, sha256_prefix=prefix)


def _load_pretrained(path: str | None, quality: int):
    import torch
    from compressai.models.video import ScaleSpaceFlow
    from compressai.zoo.pretrained import load_pretrained

    if path is None or not Path(path).is_file():
        raise RdflowError(f"ssf2020 weights file {path} (quality {quality}) does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise RdflowError(f"cannot load ssf2020 weights {path}: {exc}. Delete the file and rerun "
                          "to download it again") from None
    try:
        return ScaleSpaceFlow.from_state_dict(load_pretrained(state))
    except Exception as exc:
        raise RdflowError(f"weights {path} do not fit ssf2020 (quality {quality}): {exc}") from None


def load_ssf(quality: int, weights: str, *, path: str | None = None, seed: int = 0, device: str = "cpu"):
    """ScaleSpaceFlow in eval mode: ``pretrained`` (a zoo file at ``path``, loaded as
    compressai.zoo.video does) or ``random`` (seeded init, then ``update(force=True)``)."""
    import torch
    from compressai.models.video import ScaleSpaceFlow

    if weights == "random":
        torch.manual_seed(seed)
        net = ScaleSpaceFlow()
        net.update(force=True)
    elif weights == "pretrained":
        net = _load_pretrained(path, quality)
    else:
        raise RdflowError(f"unknown ssf2020 weights source {weights!r}; use pretrained or random")
    return net.eval().to(device)


#: loaded ssf2020 models of this process (rdflow.runtime.Cache)
_MODELS = Cache(maxsize=3)


def cached_ssf(**kwargs):
    """One model (and one lock) per (quality, weights, path, seed, device) in this process."""
    key = repr(sorted(kwargs.items()))
    return _MODELS.get(key, lambda: (load_ssf(**kwargs), threading.Lock()))


# ------------------------------------------------------------------------------------------
# the codec


@register
class Ssf2020(SequenceCodec):
    """CompressAI's ScaleSpaceFlow with its own inter coding: frame ``i`` of the selection is an
    I-frame (image hyperprior codec) when ``i % gop == 0`` (gop null: only the first frame),
    else a P-frame (motion + residual hyperpriors) predicted from the previous reconstruction,
    clamped to [0, 1] as CompressAI's video eval_model does. Frames are RGB (the sequence's own
    4:2:0 -> RGB conversion), zero-padded to a multiple of 128 and cropped back.

    Options: weights (pretrained | random), metric (mse), seed (0), gop (null).
    """

    kind = "ssf2020"
    domain = "rgb"
    quality_range = (1, 9)
    rate_rises_with_quality = True
    uses_torch = True
    entry_keys = frozenset({"weights", "metric", "seed"})

    def __init__(self, spec: CodecSpec):
        super().__init__(spec)
        from .learned import resolve_device

        o = spec.options
        self.weights = o.get("weights", "pretrained")
        self.device = resolve_device(spec.device)
        self.net, self.lock = cached_ssf(quality=spec.quality, weights=self.weights,
                                         path=o.get("weights_path"), seed=int(o.get("seed", 0)),
                                         device=self.device)
        import torch

        self._torch = torch

    # -- what the workflow asks of an entry -------------------------------------------------
    @classmethod
    def check_options(cls, c: dict, *, where: str) -> None:
        super().check_options(c, where=where)
        w = c.get("weights", "pretrained")
        if w not in ("pretrained", "random"):
            raise RdflowError(f"{where}.weights: {w!r}; ssf2020 takes pretrained or random")
        if w == "pretrained" and c.get("metric", "mse") != "mse":
            raise RdflowError(f"{where}.metric: CompressAI publishes ssf2020 weights for mse only; "
                              "set metric: mse or weights: random")

    @staticmethod
    def owners_text(owners: list[str]) -> str:
        return "/".join(owners)

    @classmethod
    def weights_file(cls, config: dict, name: str, entry: dict, quality: int | str) -> str | None:
        from ..paths import ZOO_VIDEO_WEIGHTS

        if entry.get("weights", "pretrained") != "pretrained":
            return None
        return ZOO_VIDEO_WEIGHTS.format(architecture=cls.kind, metric=entry.get("metric", "mse"),
                                        quality=quality)

    @classmethod
    def downloads(cls, config: dict, name: str, entry: dict) -> list[str]:
        return [w for q in entry["qualities"] if (w := cls.weights_file(config, name, entry, q))]

    @classmethod
    def job_threads(cls, entry: dict) -> int:
        return 1

    # -- tensors ----------------------------------------------------------------------------
    def _sync(self):
        if self.device.startswith("cuda"):
            self._torch.cuda.synchronize()

    def _to_tensor(self, rgb: np.ndarray):
        import torch.nn.functional as F
        from compressai.ops import compute_padding

        torch = self._torch
        h, w = rgb.shape[:2]
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
        x = x.to(self.device, torch.float32).div_(255.0)
        pad, unpad = compute_padding(h, w, min_div=SSF_PAD_MULTIPLE)
        return F.pad(x, pad, mode="constant", value=0), unpad

    def _to_rgb(self, x, unpad) -> np.ndarray:
        import torch.nn.functional as F

        x = F.pad(x, unpad)
        rgb = x[0].mul(255.0).clamp_(0, 255).round_().to(self._torch.uint8)
        return rgb.permute(1, 2, 0).contiguous().cpu().numpy()

    @staticmethod
    def _latent_shape(clip: Clip) -> tuple[int, int]:
        m = SSF_PAD_MULTIPLE
        return (-(-clip.height // m), -(-clip.width // m))

    # -- interface --------------------------------------------------------------------------
    def _encode_frame(self, i: int, x, x_ref):
        """One frame: (reference for the next, type, strings, latent shapes)."""
        if i == 0 or (self.gop and i % self.gop == 0):
            x_ref, out = self.net.encode_keyframe(x)
            return (x_ref, "I", [out["strings"][0][0], out["strings"][1][0]], [tuple(out["shape"])])
        x_ref, out = self.net.encode_inter(x, x_ref)
        s = out["strings"]
        strings = [s["motion"][0][0], s["motion"][1][0], s["residual"][0][0], s["residual"][1][0]]
        return x_ref, "P", strings, [tuple(out["shape"]["motion"]), tuple(out["shape"]["residual"])]

    def encode(self, frames: Iterable, clip: Clip) -> Encoded:
        shape = self._latent_shape(clip)
        recs, types, times, md5s = [], [], [], []
        x_ref = None
        with self.lock, self._torch.no_grad():
            for i, rgb in enumerate(frames):
                if rgb.shape != (clip.height, clip.width, 3):
                    raise ValueError(f"frame {i} is {rgb.shape}, expected {(clip.height, clip.width, 3)}")
                x, unpad = self._to_tensor(rgb)
                t0 = time.perf_counter()
                x_ref, kind, strings, shapes = self._encode_frame(i, x, x_ref)
                types.append(kind)
                x_ref = x_ref.clamp(0, 1)
                self._sync()
                times.append(time.perf_counter() - t0)
                if any(tuple(int(v) for v in s) != shape for s in shapes):
                    raise RuntimeError(f"ssf2020 latent shape {shapes} differs from {shape} for a "
                                       f"{clip.width}x{clip.height} frame padded to {SSF_PAD_MULTIPLE}")
                recs.append((kind, strings))
                md5s.append(hashlib.md5(self._to_rgb(x_ref, unpad).tobytes()).hexdigest())
        data, sizes = pack_ssf(clip.width, clip.height, self.gop, recs)
        return Encoded(data=data, frame_bytes=sizes, frame_types=types, enc_s=sum(times),
                       frame_enc_s=times, recon_md5=md5s)

    def decode(self, data: bytes, clip: Clip) -> Iterator[np.ndarray]:
        width, height, _, frames, _ = unpack_ssf(data)
        if (width, height) != (clip.width, clip.height):
            raise RdflowError(f"ssf2020 bitstream is {width}x{height}, the sequence {clip.width}x{clip.height}")
        shape = self._latent_shape(clip)
        from compressai.ops import compute_padding

        _, unpad = compute_padding(height, width, min_div=SSF_PAD_MULTIPLE)
        x_ref = None
        for kind, s in frames:
            with self.lock, self._torch.no_grad():
                if kind == "I":
                    x_ref = self.net.decode_keyframe([[s[0]], [s[1]]], shape)
                else:
                    x_ref = self.net.decode_inter(
                        x_ref, {"motion": [[s[0]], [s[1]]], "residual": [[s[2]], [s[3]]]},
                        {"motion": shape, "residual": shape})
                x_ref = x_ref.clamp(0, 1)
                rgb = self._to_rgb(x_ref, unpad)
            yield rgb

    def describe(self) -> dict:
        import compressai

        o = self.spec.options
        label = f"random(seed={o.get('seed', 0)})" if self.weights == "random" else self.weights
        return {
            "encoder": f"compressai {compressai.__version__} ssf2020",
            "architecture": "ssf2020",
            "train_metric": o.get("metric", "mse"),
            "weights": label,
            "gop": self.gop,
            "settings": f"gop={self.gop or 'first frame only'} pad={SSF_PAD_MULTIPLE} ref=clamped float",
            "bitstream_format": "rdflow RSSF v1",
            "device": self.device,
        }
