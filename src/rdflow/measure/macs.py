"""What a torch codec computes: MACs (:func:`count_macs`, kMAC per pixel), parameters and size
(:func:`model_size`), and network vs entropy-coding time (:func:`network_entropy_split`);
semantics in :mod:`rdflow.measure`."""

from __future__ import annotations

import io
import time
from typing import Any, Callable

import numpy as np

from .images import fit_image, synthetic_image
from .meters import NAN, is_cuda

#: the transforms whose forward calls count as "network" time in :func:`network_entropy_split`
NETWORK_PARTS = ("g_a", "h_a", "h_s", "g_s")
SPLIT_KEYS = ("enc_network_s", "enc_entropy_s", "dec_network_s", "dec_entropy_s")


def count_macs(module_or_fn: Callable[..., Any], inputs: Any = ()) -> int:
    """Multiply-accumulates of ``module_or_fn(*inputs)`` (FlopCounterMode FLOPs / 2).

    ``inputs`` is a tensor or a tuple/list of arguments. Runs under ``torch.no_grad()``.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if isinstance(inputs, torch.Tensor) or not isinstance(inputs, (tuple, list)):
        inputs = (inputs,)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module_or_fn(*inputs)
    flops = int(counter.get_total_flops())
    return flops // 2


def model_size(net) -> tuple[int, int]:
    """(parameter count, bytes of ``torch.save(net.state_dict())``) of a torch module.

    The state dict includes buffers (for CompressAI the entropy models' CDF tables).
    """
    import torch

    params = sum(int(p.numel()) for p in net.parameters())
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    return params, buf.getbuffer().nbytes


def torch_net(codec):
    """The codec's torch model (``codec.net``) or None for codecs without one."""
    net = getattr(codec, "net", None)
    if net is None:
        return None
    import torch

    return net if isinstance(net, torch.nn.Module) else None


def codec_kmac_per_px(codec, rgb: np.ndarray, data: bytes | None = None) -> tuple[float, float]:
    """(encoder, decoder) kMAC per source pixel of a torch codec, over its real encode/decode.

    NaN for codecs without a torch model (their work is not torch operations).
    """
    if torch_net(codec) is None:
        return NAN, NAN
    pixels = rgb.shape[0] * rgb.shape[1]
    holder: dict[str, bytes] = {}

    def enc(x):
        holder["data"] = codec.encode(x)

    enc_macs = count_macs(enc, (rgb,))
    data = holder["data"] if data is None else data
    dec_macs = count_macs(codec.decode, (data,))
    return enc_macs / pixels / 1e3, dec_macs / pixels / 1e3


class _SplitTimer:
    """Times the network transforms (forward hooks) and compress/decompress of a CompressAI model."""

    def __init__(self, net, sync: Callable[[], None] | None):
        self.net = net
        self.sync = sync
        self.network = 0.0
        self.total = 0.0
        self._t0: dict[int, float] = {}
        self._handles: list = []
        self._wrapped: list[str] = []

    def _pre(self, module, args):
        if self.sync is not None:
            self.sync()
        self._t0[id(module)] = time.perf_counter()

    def _post(self, module, args, output):
        if self.sync is not None:
            self.sync()
        self.network += time.perf_counter() - self._t0.pop(id(module))

    def _wrap(self, name: str) -> None:
        orig = getattr(self.net, name)

        def timed(*args, **kwargs):
            if self.sync is not None:
                self.sync()
            t0 = time.perf_counter()
            try:
                return orig(*args, **kwargs)
            finally:
                if self.sync is not None:
                    self.sync()
                self.total += time.perf_counter() - t0

        self.net.__dict__[name] = timed  # instance attribute shadows the method until restored
        self._wrapped.append(name)

    def __enter__(self) -> "_SplitTimer":
        for part in NETWORK_PARTS:
            mod = getattr(self.net, part, None)
            if mod is not None:
                self._handles.append(mod.register_forward_pre_hook(self._pre))
                self._handles.append(mod.register_forward_hook(self._post))
        for name in ("compress", "decompress"):
            self._wrap(name)
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        for name in self._wrapped:
            self.net.__dict__.pop(name, None)
        self._handles.clear()
        self._wrapped.clear()

    def reset(self) -> None:
        self.network = 0.0
        self.total = 0.0

    def run(self, call) -> tuple[float, float]:
        """(network, rest) seconds of ``call()``."""
        self.reset()
        call()
        return self.network, max(0.0, self.total - self.network)


def network_entropy_split(codec, rgb: np.ndarray, data: bytes, *, repeats: int = 3) -> dict[str, float]:
    """Median seconds in the network transforms vs the rest of compress/decompress.

    Returns ``enc_network_s``, ``enc_entropy_s``, ``dec_network_s``, ``dec_entropy_s`` (NaN
    for codecs without a CompressAI model). Call after a warm-up at this image size.
    """
    net = torch_net(codec)
    if net is None or not hasattr(net, "compress") or not hasattr(net, "decompress"):
        return dict.fromkeys(SPLIT_KEYS, NAN)
    sync = codec.synchronize if is_cuda(getattr(codec, "device", "cpu")) else None
    samples: list[tuple[float, float, float, float]] = []
    with _SplitTimer(net, sync) as st:
        for _ in range(max(1, int(repeats))):
            samples.append(st.run(lambda: codec.encode(rgb)) + st.run(lambda: codec.decode(data)))
    return {k: float(np.median([s[i] for s in samples])) for i, k in enumerate(SPLIT_KEYS)}


def learned_codec_complexity(architecture: str, quality: int, height: int, width: int,
                             device: str = "cpu", weights: str = "random", *,
                             metric: str = "mse", weights_path: str | None = None, seed: int = 0,
                             repeats: int = 3, image: np.ndarray | None = None) -> dict[str, Any]:
    """Complexity of a CompressAI zoo model at one size.

    Returns params, model_bytes, enc_kmac_per_px, dec_kmac_per_px, the network/entropy time
    split (see :func:`network_entropy_split`), bpp and device.
    """
    from ..codecs import CodecSpec, build

    options = {"architecture": architecture, "metric": metric, "weights": weights, "seed": seed}
    if weights_path is not None:
        options["weights_path"] = weights_path
    codec = build(CodecSpec(architecture, "learned", int(quality), options, device))
    rgb = fit_image(synthetic_image(height, width) if image is None else image, width, height)
    data = codec.encode(rgb)  # warm-up at this size
    codec.decode(data)
    params, nbytes = model_size(codec.net)
    enc_k, dec_k = codec_kmac_per_px(codec, rgb, data)
    out = {"architecture": architecture, "quality": int(quality), "width": width, "height": height,
           "device": codec.device, "params": params, "model_bytes": nbytes,
           "enc_kmac_per_px": enc_k, "dec_kmac_per_px": dec_k,
           "bpp": 8 * len(data) / (width * height)}
    out.update(network_entropy_split(codec, rgb, data, repeats=repeats))
    return out
