"""Small CompressAI models of a researcher's own, for tests: a hyperprior with narrow layers
(a real CompressAI subclass, coding real bitstreams), and classes that are not models."""

from __future__ import annotations

import torch
import torch.nn as nn
from compressai.models import ScaleHyperprior


class TinyHyperprior(ScaleHyperprior):
    """bmshj2018-hyperprior with N channels in the transforms and M in the latent (small: fast
    on a CPU), its own name, and one extra parameter so that a zoo checkpoint does not fit."""

    def __init__(self, N: int = 16, M: int = 24, **kwargs):
        super().__init__(N, M, **kwargs)
        self.gain = nn.Parameter(torch.ones(1))

    def compress(self, x):
        return super().compress(x * self.gain)

    @classmethod
    def from_state_dict(cls, state_dict):
        n = state_dict["g_a.0.weight"].size(0)
        m = state_dict["g_a.6.weight"].size(0)
        net = cls(n, m)
        net.load_state_dict(state_dict)
        return net


class NotACodec(nn.Module):
    """A torch module without compress/decompress."""

    def forward(self, x):
        return x
