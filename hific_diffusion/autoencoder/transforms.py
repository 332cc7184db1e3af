"""ELIC analysis / synthesis and hyper transforms (He et al., CVPR 2022, Fig. 4).

g_a: 4 stride-2 5x5 convolutions (x16 downsampling) with 3 residual
bottleneck blocks (``res_blocks``; the CPU test config uses 1) after each of
the first three and attention after the second and the last; g_s mirrors
it with transposed convolutions (upsampling choice: transposed 5x5, as in
ELIC, so CompressAI weights map one to one). The hyper transforms follow
Minnen et al. 2018 as used by ELIC: h_a = 3x3 conv and two stride-2 5x5
convs (x4 more); h_s = two stride-2 5x5 transposed convs and a 3x3 conv
producing 2N hyper features for the parameter aggregation. ReLU everywhere
in h_s: the integer path needs an integer-exact nonlinearity.
"""

from __future__ import annotations

import jax
from flax import nnx

from hific_diffusion.autoencoder.layers import Attention, Conv, ResidualBottleneck


def _blocks(n, rngs, count):
    return [ResidualBottleneck(n, rngs=rngs) for _ in range(count)]


class AnalysisTransform(nnx.Module):
    """g_a: image in [0, 1] (NHWC) -> y with M channels at 1/16 resolution."""

    def __init__(self, n: int, m: int, *, res_blocks: int = 3, rngs: nnx.Rngs):
        b = res_blocks
        self.layers = nnx.List(
            [
                Conv(3, n, 5, stride=2, rngs=rngs),
                *_blocks(n, rngs, b),
                Conv(n, n, 5, stride=2, rngs=rngs),
                *_blocks(n, rngs, b),
                Attention(n, rngs=rngs),
                Conv(n, n, 5, stride=2, rngs=rngs),
                *_blocks(n, rngs, b),
                Conv(n, m, 5, stride=2, rngs=rngs),
                Attention(m, rngs=rngs),
            ]
        )

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class SynthesisTransform(nnx.Module):
    """g_s: y_hat -> image (NHWC, unclamped; callers clip to [0, 1])."""

    def __init__(self, n: int, m: int, *, res_blocks: int = 3, rngs: nnx.Rngs):
        b = res_blocks
        self.layers = nnx.List(
            [
                Attention(m, rngs=rngs),
                Conv(m, n, 5, stride=2, transpose=True, rngs=rngs),
                *_blocks(n, rngs, b),
                Conv(n, n, 5, stride=2, transpose=True, rngs=rngs),
                Attention(n, rngs=rngs),
                *_blocks(n, rngs, b),
                Conv(n, n, 5, stride=2, transpose=True, rngs=rngs),
                *_blocks(n, rngs, b),
                Conv(n, 3, 5, stride=2, transpose=True, rngs=rngs),
            ]
        )

    def __call__(self, y):
        for layer in self.layers:
            y = layer(y)
        return y


class HyperAnalysis(nnx.Module):
    """h_a: y -> z (N channels, 1/4 the resolution of y)."""

    def __init__(self, n: int, m: int, *, rngs: nnx.Rngs):
        self.c1 = Conv(m, n, 3, rngs=rngs)
        self.c2 = Conv(n, n, 5, stride=2, rngs=rngs)
        self.c3 = Conv(n, n, 5, stride=2, rngs=rngs)

    def __call__(self, y):
        h = jax.nn.relu(self.c1(y))
        h = jax.nn.relu(self.c2(h))
        return self.c3(h)


class HyperSynthesis(nnx.Module):
    """h_s: z_hat -> 2N hyper features (input of the parameter aggregation;
    widths N, 3N/2, 2N as in CompressAI's ``Elic2022Official``).

    ``convs`` is a plain list of Conv layers with ReLU between them, the form
    the integer path (:func:`hific_diffusion.coding.intnet.IntConv`) mirrors.
    """

    def __init__(self, n: int, *, out: int | None = None, rngs: nnx.Rngs):
        # ``out``: output channels, 2N for ELIC's aggregation; a mean-scale
        # hyperprior (CDC) outputs (scale, mean) of every latent channel, 2M.
        out = 2 * n if out is None else int(out)
        h = max(n * 3 // 2, 1) if out == 2 * n else max((n + out) // 2, 1)
        self.convs = nnx.List(
            [
                Conv(n, n, 5, stride=2, transpose=True, rngs=rngs),
                Conv(n, h, 5, stride=2, transpose=True, rngs=rngs),
                Conv(h, out, 3, rngs=rngs),
            ]
        )

    def __call__(self, z_hat):
        h = z_hat
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if i < len(self.convs) - 1:
                h = jax.nn.relu(h)
        return h
