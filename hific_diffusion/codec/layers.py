"""Convolution building blocks of the ELIC transforms (He et al., CVPR 2022, Fig. 4).

Every convolution here is one ``lax.conv_general_dilated`` call on NHWC
activations with an HWIO kernel, so the integer coding path
(:mod:`hific_diffusion.codec.intnet`) can mirror it exactly: a transposed
convolution is stored as the kernel of its equivalent zero-dilated forward
convolution (PyTorch ``ConvTranspose2d(k, stride=2, padding=k//2,
output_padding=1)`` semantics: output = 2 x input).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

_INIT = nnx.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")


class Conv(nnx.Module):
    """``k x k`` convolution, stride ``s``, symmetric padding ``k // 2`` (PyTorch style).

    ``transpose=True`` makes it the upsampling transposed convolution used by
    g_s and h_s (ELIC Fig. 4): a stride-1 convolution over the input dilated
    by ``s`` with padding ``(k-1-k//2, k-1-k//2+s-1)``.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        k: int,
        *,
        stride: int = 1,
        transpose: bool = False,
        rngs: nnx.Rngs,
    ):
        self.kernel = nnx.Param(_INIT(rngs.params(), (k, k, cin, cout), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((cout,), jnp.float32))
        self.k, self.stride, self.transpose = k, stride, transpose

    def geometry(self):
        """(window strides, padding, lhs dilation) of the equivalent forward conv."""
        k, s, p = self.k, self.stride, self.k // 2
        if self.transpose:
            lo, hi = k - 1 - p, k - 1 - p + s - 1
            return (1, 1), ((lo, hi), (lo, hi)), (s, s)
        return (s, s), ((p, p), (p, p)), (1, 1)

    def effective_kernel(self) -> jax.Array:
        """The HWIO kernel actually applied (subclasses may mask it)."""
        return self.kernel[...]

    def __call__(self, x: jax.Array) -> jax.Array:
        strides, padding, dilation = self.geometry()
        y = jax.lax.conv_general_dilated(
            x,
            self.effective_kernel().astype(x.dtype),
            strides,
            padding,
            lhs_dilation=dilation,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        return y + self.bias[...].astype(x.dtype)


class ResidualBottleneck(nnx.Module):
    """ELIC residual bottleneck block: 1x1 (N -> N/2), 3x3, 1x1 (N/2 -> N), identity skip."""

    def __init__(self, n: int, *, rngs: nnx.Rngs):
        h = max(n // 2, 1)
        self.c1 = Conv(n, h, 1, rngs=rngs)
        self.c2 = Conv(h, h, 3, rngs=rngs)
        self.c3 = Conv(h, n, 1, rngs=rngs)

    def __call__(self, x):
        h = jax.nn.relu(self.c1(x))
        h = jax.nn.relu(self.c2(h))
        return x + self.c3(h)


class _ResidualUnit(nnx.Module):
    """Residual unit of the simplified attention block (Cheng et al. 2020, Fig. 3)."""

    def __init__(self, n: int, *, rngs: nnx.Rngs):
        h = max(n // 2, 1)
        self.c1 = Conv(n, h, 1, rngs=rngs)
        self.c2 = Conv(h, h, 3, rngs=rngs)
        self.c3 = Conv(h, n, 1, rngs=rngs)

    def __call__(self, x):
        h = jax.nn.relu(self.c1(x))
        h = jax.nn.relu(self.c2(h))
        return jax.nn.relu(x + self.c3(h))


class Attention(nnx.Module):
    """Simplified attention (Cheng et al. 2020, Sec. 3.3; used by ELIC Fig. 4).

    ``out = x + trunk(x) * sigmoid(mask(x))``, trunk = 3 residual units,
    mask = 3 residual units + 1x1 conv; no non-local block.
    """

    def __init__(self, n: int, *, rngs: nnx.Rngs):
        self.trunk = nnx.List([_ResidualUnit(n, rngs=rngs) for _ in range(3)])
        self.mask = nnx.List([_ResidualUnit(n, rngs=rngs) for _ in range(3)])
        self.mask_out = Conv(n, n, 1, rngs=rngs)

    def __call__(self, x):
        a, b = x, x
        for unit in self.trunk:
            a = unit(a)
        for unit in self.mask:
            b = unit(b)
        return x + a * jax.nn.sigmoid(self.mask_out(b))
