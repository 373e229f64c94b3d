"""Learned image codecs from CompressAI's zoo, coding real bitstreams.

The container is rdflow's own minimal header followed by CompressAI's entropy-coded strings:

    uint16 height, uint16 width          original image size (before padding)
    uint16 latent_h, uint16 latent_w     the ``shape`` returned by ``model.compress``
    uint8  n                             number of strings
    uint32 len[0..n-2]                   lengths of all strings but the last
    bytes  strings                       concatenated

All integers are big-endian. Every byte of the file counts in bpp; ``header_bytes`` reports
the container's share so results can be compared with CompressAI's ``eval_model`` (which
counts only the strings).
"""

from __future__ import annotations

import struct
import threading
import time
from pathlib import Path

import numpy as np

from .. import RdflowError
from ..weights import load_torch_file, zoo_filename, zoo_hash_prefix, zoo_url  # noqa: F401
from .base import Codec, register

#: quality range of each zoo architecture (checked against compressai.zoo.image.cfgs in tests);
#: kept here so that config validation does not import torch.
ARCH_QUALITIES: dict[str, tuple[int, int]] = {
    "bmshj2018-factorized": (1, 8),
    "bmshj2018-hyperprior": (1, 8),
    "mbt2018-mean": (1, 8),
    "mbt2018": (1, 8),
    "cheng2020-anchor": (1, 6),
    "cheng2020-attn": (1, 6),
}
#: zoo metrics CompressAI publishes weights for
ZOO_METRICS = ("mse", "ms-ssim")
PAD_MULTIPLE = 64  # 6 strided (de)convolutions of stride 2

#: random init draws from torch's global generator: one seeded construction at a time, or
#: models built concurrently by jobs in threads would get each other's numbers
_RNG_LOCK = threading.Lock()


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RdflowError(
            "config key device is 'cuda' but torch sees no CUDA device on this machine: "
            "set device: auto (uses the GPU when there is one) or device: cpu"
        )
    return device


def _unwrap_state_dict(obj):
    for key in ("network", "state_dict", "model_state_dict"):
        if isinstance(obj, dict) and key in obj:
            obj = obj[key]
    return obj


def load_model(architecture: str, quality: int, weights: str, *, path: str | None = None,
               seed: int = 0, device: str = "cpu", sha256: str | None = None):
    """Build a CompressAI model in eval mode.

    weights: ``pretrained`` (zoo file at ``path``), ``checkpoint`` (a state dict at ``path``,
    loaded with the architecture's ``from_state_dict`` and ``update(force=True)`` as
    CompressAI's eval_model does) or ``random`` (seeded init, then ``update(force=True)``).
    """
    from ..runtime import import_stack

    import_stack()
    import torch
    from compressai.zoo.image import cfgs, model_architectures
    from compressai.zoo.pretrained import load_pretrained

    if architecture not in model_architectures:
        raise RdflowError(
            f"unknown architecture {architecture!r}; known: {', '.join(sorted(model_architectures))}"
        )
    cls = model_architectures[architecture]
    if weights == "random":
        with _RNG_LOCK, torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = cls(*cfgs[architecture][quality])
        net.update(force=True)
    elif weights in ("pretrained", "checkpoint", "trained"):
        if path is None or not Path(path).is_file():
            raise RdflowError(f"weights file {path} for {architecture} q{quality} does not exist")
        if sha256:
            from ..download import verify

            verify(path, sha256, what=f"checkpoint of {architecture} q{quality}")
        obj = load_torch_file(path, what=f"weights for {architecture} q{quality}",
                              fix="Delete the file and rerun to download it again, or fix the checkpoint path")
        state = _unwrap_state_dict(obj)
        try:
            if weights == "pretrained":
                net = cls.from_state_dict(load_pretrained(state))
            else:
                net = cls.from_state_dict(state)
                net.update(force=True)
        except Exception as exc:
            raise RdflowError(
                f"weights {path} do not fit architecture {architecture} (quality {quality}): {exc}"
            ) from None
    else:
        raise RdflowError(f"unknown weights source {weights!r}; use pretrained, checkpoint or random")
    return net.eval().to(device)


@register
class Learned(Codec):
    """A CompressAI zoo architecture. Options: architecture, metric, weights, weights_path, seed."""

    kind = "learned"
    quality_range = (1, 8)
    defaults = {"metric": "mse", "weights": "pretrained"}
    uses_torch = True
    curves_named_by_kind = False  # published curves carry the architecture's name
    entry_keys = frozenset({"architecture", "checkpoint", "checkpoint_sha256", "weights", "model",
                            "metric", "seed"})

    @classmethod
    def trained_model(cls, entry: dict) -> str | None:
        """``model`` of an entry with ``weights: trained``."""
        return entry.get("model") if entry.get("weights") == "trained" else None

    @classmethod
    def check_entry(cls, config: dict, name: str, c: dict, *, where: str):
        """Architecture, weights source and its keys; returns the qualities' allowed range."""
        super().check_entry(config, name, c, where=where)
        arch = c.get("architecture")
        if arch not in ARCH_QUALITIES:
            raise RdflowError(f"{where}.architecture: unknown architecture {arch!r}; known: "
                              f"{', '.join(sorted(ARCH_QUALITIES))}")
        weights = c.get("weights", "pretrained")
        if weights == "checkpoint" and not c.get("checkpoint"):
            raise RdflowError(f"{where}.checkpoint: weights is 'checkpoint' but no checkpoint path/URL "
                              "is given; set checkpoint: path/to/model-q{quality}.pth.tar")
        if weights == "checkpoint":
            from ..weights import check_checkpoints

            check_checkpoints(c, where)
        if "model" in c and weights != "trained":
            raise RdflowError(f"{where}.model only applies to weights: trained (this codec has "
                              f"weights: {weights})")
        _check_checkpoint_sha256(c, where)
        if weights == "trained":
            return _check_trained(config, name, c)
        return ARCH_QUALITIES[arch]

    @classmethod
    def weights_file(cls, config: dict, name: str, entry: dict, quality: int) -> str | None:
        from ..weights import learned_weights_file

        return learned_weights_file(config, name, entry, quality)

    @classmethod
    def downloads(cls, config: dict, name: str, entry: dict) -> list[str]:
        """Zoo files and checkpoint URLs (local checkpoints, trained and random: nothing)."""
        from ..weights import checkpoint_source, is_url

        w = entry.get("weights", "pretrained")
        if w == "pretrained":
            return [cls.weights_file(config, name, entry, q) for q in entry["qualities"]]
        if w == "checkpoint":
            return [cls.weights_file(config, name, entry, q) for q in entry["qualities"]
                    if is_url(checkpoint_source(entry, q))]
        return []

    @classmethod
    def trained_model(cls, entry: dict) -> str | None:
        return entry.get("model") if entry.get("weights") == "trained" else None

    @classmethod
    def config_defaults(cls, entry: dict) -> dict:
        out = dict(cls.defaults)
        if entry.get("weights", out["weights"]) == "random":
            out["seed"] = 0  # the seed of a random init; no other weights have one
        return out

    def __init__(self, spec):
        super().__init__(spec)
        import torch

        self._torch = torch
        self.device = resolve_device(spec.device)
        self.net = self.load_net(spec)

    def load_net(self, spec):
        """The CompressAI model of ``spec``, in eval mode on :attr:`device`, entropy coders ready."""
        o = spec.options
        self.architecture = o["architecture"]
        self.weights = o.get("weights", "pretrained")
        return load_model(self.architecture, spec.quality, self.weights, path=o.get("weights_path"),
                          seed=int(o.get("seed", 0)), device=self.device,
                          sha256=o.get("weights_sha256"))

    # -- bitstream ------------------------------------------------------------------------
    @staticmethod
    def pack(height: int, width: int, shape, strings: list[bytes]) -> bytes:
        if not (0 < height < 65536 and 0 < width < 65536):
            raise ValueError(f"image size {height}x{width} does not fit the container")
        head = struct.pack(">HHHHB", height, width, int(shape[0]), int(shape[1]), len(strings))
        head += b"".join(struct.pack(">I", len(s)) for s in strings[:-1])
        return head + b"".join(strings)

    @staticmethod
    def unpack(data: bytes):
        if len(data) < 9:
            raise RdflowError(f"bitstream too short ({len(data)} bytes) for rdflow's container")
        height, width, sh, sw, n = struct.unpack_from(">HHHHB", data, 0)
        off = 9
        lens = list(struct.unpack_from(f">{n - 1}I", data, off)) if n > 1 else []
        off += 4 * (n - 1)
        strings = []
        for ln in lens:
            strings.append(data[off:off + ln])
            off += ln
        strings.append(data[off:])
        if sum(len(s) for s in strings) != len(data) - (9 + 4 * (n - 1)):
            raise RdflowError("bitstream is truncated")
        return height, width, (sh, sw), strings

    def header_bytes(self, data: bytes) -> int:
        n = data[8]
        return 9 + 4 * (n - 1)

    # -- coding ---------------------------------------------------------------------------
    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            self._torch.cuda.synchronize()

    def encode(self, rgb: np.ndarray) -> bytes:
        torch = self._torch
        import torch.nn.functional as F
        from compressai.ops import compute_padding

        h, w = rgb.shape[:2]
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
        x = x.to(self.device, torch.float32).div_(255.0)
        pad, _ = compute_padding(h, w, min_div=PAD_MULTIPLE)
        with torch.no_grad():
            out = self.net.compress(F.pad(x, pad, mode="constant", value=0))
        strings = [s[0] for s in out["strings"]]
        data = self.pack(h, w, out["shape"], strings)
        self.synchronize()
        return data

    def decode(self, data: bytes) -> np.ndarray:
        torch = self._torch
        import torch.nn.functional as F
        from compressai.ops import compute_padding

        h, w, shape, strings = self.unpack(data)
        _, unpad = compute_padding(h, w, min_div=PAD_MULTIPLE)
        with torch.no_grad():
            out = self.net.decompress([[s] for s in strings], list(shape))
            x_hat = F.pad(out["x_hat"], unpad)
            rgb = x_hat[0].mul(255.0).clamp_(0, 255).round_().to(torch.uint8)
            rgb = rgb.permute(1, 2, 0).contiguous().cpu().numpy()
        return rgb

    def describe(self) -> dict:
        import compressai

        seed = self.spec.options.get("seed", 0)
        label = f"random(seed={seed})" if self.weights == "random" else self.weights
        if self.weights == "trained":
            label = f"trained({self.spec.options.get('model')})"
        return {
            "encoder": f"compressai {compressai.__version__} {self.architecture}",
            "architecture": self.architecture,
            "train_metric": self.spec.options.get("metric", "mse"),
            "weights": label,
            "device": self.device,
        }


def _check_checkpoint_sha256(c: dict, where: str) -> None:
    """checkpoint_sha256: one digest per quality, for checkpoints (local files are checked before
    they are loaded, URLs when downloaded); an http(s) checkpoint without one is warned about."""
    import logging

    from ..download import url_scheme

    sums, ck = c.get("checkpoint_sha256"), c.get("checkpoint")
    ck = ck[0] if isinstance(ck, list) and ck else ck
    scheme = url_scheme(ck) if isinstance(ck, str) else None
    if sums is not None:
        if not ck or c.get("weights", "checkpoint") != "checkpoint":
            raise RdflowError(f"{where}.checkpoint_sha256 applies only to checkpoints (weights: "
                              "checkpoint with checkpoint: a path or URL); remove it here")
        if len(sums) != len(c["qualities"]):
            raise RdflowError(
                f"{where}.checkpoint_sha256 has {len(sums)} digest(s) but qualities has "
                f"{len(c['qualities'])} ({c['qualities']}): give one SHA-256 per quality, in the "
                "order of qualities")
    elif scheme in ("http", "https") and c.get("weights", "checkpoint") == "checkpoint":
        logging.getLogger("rdflow").warning(
            "%s.checkpoint is a %s URL without %s.checkpoint_sha256: the downloaded file is not "
            "checked against a digest (set checkpoint_sha256: one SHA-256 per quality)",
            where, scheme, where)


def _check_trained(config: dict, name: str, c: dict) -> tuple[int, int]:
    """weights: trained — the model exists (a train recipe or shipped files) for every quality,
    with the codec's architecture. Returns the range of qualities it has."""
    from ..weights import trained_file

    where = f"codecs.{name}"
    recipe = (config.get("train") or {}).get(c.get("model"))
    if recipe is not None:
        if recipe["architecture"] != c["architecture"]:
            raise RdflowError(f"{where}.architecture is {c['architecture']} but train.{c['model']} "
                              f"trains {recipe['architecture']}: make them equal")
        missing = [q for q in c["qualities"] if q not in recipe["qualities"]]
        if missing:
            raise RdflowError(f"{where}.qualities: {missing} are not trained by train.{c['model']} "
                              f"(qualities {recipe['qualities']}); add them there or drop them here")
    for q in c["qualities"]:
        trained_file(config, c.get("model"), q, where=where)
    return min(c["qualities"]), max(c["qualities"])
