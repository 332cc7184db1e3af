"""Learned factorized prior for the hyper-latent z (Balle et al. 2018, Appendix 6.1).

Each channel has its own univariate cumulative c(x) = f_K o ... o f_1(x),
f_k(x) = g_k(H_k x + b_k), g_k(x) = x + a_k * tanh(x), with H_k = softplus(.)
>= 0 and a_k = tanh(.) >= -1 so c is monotone. The probability of an
integer z is c(z + 1/2) - c(z - 1/2) (Eq. 34 of the appendix), computed on
the logit scale for numerical stability.

z is quantized on a grid shifted by a per-channel ``median``:
``z_hat = round(z - median) + median``, the symbol coded being
``round(z - median)``. Models trained here keep ``median = 0`` (a parameter
that never receives a gradient); CompressAI's ``EntropyBottleneck`` learns
its medians, which :mod:`hific_diffusion.autoencoder.compressai_import` copies.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from scipy import special

from hific_diffusion import skeleton
from hific_diffusion.autoencoder.layers import uniform_init

LIKELIHOOD_FLOOR = 1e-9


def _const(shape, value: float):
    a = np.full(shape, value, np.float32)
    return a if skeleton.active() else jnp.asarray(a)


class FactorizedPrior(nnx.Module):
    def __init__(
        self, channels: int, *, filters=(3, 3, 3), init_scale: float = 10.0, rngs: nnx.Rngs
    ):
        dims = (1, *filters, 1)
        scale = init_scale ** (1.0 / (len(filters) + 1))
        self.matrices, self.biases, self.factors = nnx.List(), nnx.List(), nnx.List()
        for k in range(len(filters) + 1):
            init = float(np.log(np.expm1(1.0 / scale / dims[k + 1])))
            self.matrices.append(nnx.Param(_const((channels, dims[k + 1], dims[k]), init)))
            self.biases.append(nnx.Param(uniform_init(rngs, (channels, dims[k + 1]), -0.5, 0.5)))
            if k < len(filters):
                self.factors.append(nnx.Param(_const((channels, dims[k + 1]), 0.0)))
        self.median = nnx.Param(_const((channels,), 0.0))
        self.channels = channels

    def offset(self) -> jax.Array:
        """The quantization offset per channel (no gradient flows into it)."""
        return jax.lax.stop_gradient(self.median[...])

    def quantize(self, z: jax.Array, ste: bool = False) -> jax.Array:
        """``round(z - median) + median``; straight-through gradient when ``ste``."""
        m = self.offset()
        r = jnp.round(z - m)
        if ste:
            r = z - m + jax.lax.stop_gradient(r - (z - m))
        return r + m

    def logits_cumulative(self, x: jax.Array) -> jax.Array:
        """Logit of c(x) per channel; x has shape [..., channels]."""
        shape = x.shape
        h = x.reshape(-1, self.channels)[:, :, None]  # [P, C, 1]
        for k, (m, b) in enumerate(zip(self.matrices, self.biases, strict=True)):
            h = jnp.einsum("cij,pcj->pci", jax.nn.softplus(m[...]), h) + b[...]
            if k < len(self.factors):
                h = h + jnp.tanh(self.factors[k][...]) * jnp.tanh(h)
        return h.reshape(shape)

    def likelihood(self, z: jax.Array) -> jax.Array:
        """P(integer bin around z) = c(z + 1/2) - c(z - 1/2), floored at 1e-9."""
        lower = self.logits_cumulative(z - 0.5)
        upper = self.logits_cumulative(z + 0.5)
        # Flip to the side where both sigmoids are small: avoids 1 - 1 cancellation.
        sign = jax.lax.stop_gradient(-jnp.sign(lower + upper))
        p = jnp.abs(jax.nn.sigmoid(sign * upper) - jax.nn.sigmoid(sign * lower))
        return jnp.maximum(p, LIKELIHOOD_FLOOR)

    def logits_cumulative_f64(self, x: np.ndarray) -> np.ndarray:
        """:meth:`logits_cumulative` in float64 numpy, for building the coding tables.

        Elementwise numpy and sums over axes of length <= 3 only: no BLAS, no
        XLA, so the result does not depend on thread counts or XLA flags (XLA's
        float32 version did: issue #19). Across CPUs numpy's SIMD ``exp`` /
        ``tanh`` may still differ in the last bit, which is why bundles store
        the tables they were exported with instead of re-deriving them.
        """
        shape = x.shape
        h = np.asarray(x, np.float64).reshape(-1, self.channels)[:, :, None]  # [P, C, 1]
        for k, (m, b) in enumerate(zip(self.matrices, self.biases, strict=True)):
            w = np.logaddexp(0.0, np.asarray(m[...], np.float64))  # softplus, [C, i, j]
            h = (w[None] * h[:, :, None, :]).sum(-1) + np.asarray(b[...], np.float64)[None]
            if k < len(self.factors):
                h = h + np.tanh(np.asarray(self.factors[k][...], np.float64))[None] * np.tanh(h)
        return h.reshape(shape)

    def integer_pmfs(self, tail_mass: float = 1e-9, max_radius: int = 1024):
        """Per-channel pmf on the integers covering all but ``tail_mass``.

        Returns (pmf float64[C, L], offsets int32[C], lengths int32[C]); row c gives
        P(symbol = offsets[c] + j) for j < lengths[c], the symbol being
        ``round(z - median)``, i.e. ``z_hat = symbol + median``.
        The support is found on the CDF itself, so it always follows the learned
        density (no separately learned quantiles to keep in sync).
        """
        grid = np.arange(-max_radius, max_radius + 1, dtype=np.float64)
        x = grid[:, None] + np.asarray(self.offset(), np.float64)[None, :]
        lo = self.logits_cumulative_f64(x - 0.5).T
        hi = self.logits_cumulative_f64(x + 0.5).T
        cdf_lo, cdf_hi = special.expit(lo), special.expit(hi)
        # As in likelihood(): difference on the side where both sigmoids are small.
        sign = -np.sign(lo + hi)
        pmf = np.abs(special.expit(sign * hi) - special.expit(sign * lo))
        los, his = [], []
        for c in range(self.channels):
            inside = np.nonzero((cdf_hi[c] > tail_mass / 2) & (cdf_lo[c] < 1 - tail_mass / 2))[0]
            if inside.size == 0:  # degenerate density: keep the mode
                inside = np.array([int(np.argmax(pmf[c]))])
            los.append(int(inside[0]))
            his.append(int(inside[-1]))
        width = max(h - lo for lo, h in zip(los, his, strict=True)) + 1
        out = np.zeros((self.channels, width), np.float64)
        for c, (lo, hi) in enumerate(zip(los, his, strict=True)):
            out[c, : hi - lo + 1] = pmf[c, lo : hi + 1]
        offsets = (np.asarray(los) - max_radius).astype(np.int32)
        lengths = (np.asarray(his) - np.asarray(los) + 1).astype(np.int32)
        return out, offsets, lengths
