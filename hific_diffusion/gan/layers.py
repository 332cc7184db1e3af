"""Spectrally normalised convolution (Miyato et al. 2018), as HiFiC's discriminator uses.

The kernel (HWIO) is applied divided by an estimate of the largest singular
value of its ``(k*k*cin, cout)`` matrix, found by power iteration. The
iteration's vector ``u`` (length ``cout``) is a :class:`PowerIteration`
variable, not a parameter: the trainer keeps it in the train state
(``state["disc"]["power"]``), so a resumed run continues the same iteration.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from hific_diffusion.autoencoder import layers
from hific_diffusion.autoencoder.layers import fan_in_init


class PowerIteration(nnx.Variable):
    """The power iteration's current left singular vector estimate (not trained)."""


def _normalize(v, eps=1e-12):
    return v / (jnp.linalg.norm(v) + eps)


def spectral_sigma(w_mat, u, iterations: int):
    """``(sigma, u)``: ``iterations`` power-iteration steps from ``u`` on
    ``w_mat`` [rows, cout], then ``sigma = v^T W u``, the estimate of W's
    largest singular value. ``u`` and ``v`` carry no gradient (Miyato et
    al.); sigma's gradient flows through W."""
    u = jax.lax.stop_gradient(u)
    w = jax.lax.stop_gradient(w_mat)
    for _ in range(iterations):
        v = _normalize(w @ u)
        u = _normalize(w.T @ v)
    v = _normalize(w @ u)
    return v @ (w_mat @ u), u


class SpectralConv(nnx.Module):
    """``k x k`` convolution, stride 1 or 2 (padding so the output is the
    input size / stride, as TF's SAME), with a spectrally normalised kernel.

    ``update=True`` (the discriminator's own training step) advances the
    power iteration by ``iterations`` steps and stores the new vector;
    otherwise the stored vector is used as it is.
    """

    def __init__(self, cin: int, cout: int, k: int, *, stride: int = 1, iterations: int = 1,
                 rngs: nnx.Rngs):  # fmt: skip
        self.kernel = nnx.Param(fan_in_init(rngs, (k, k, cin, cout)))
        self.bias = nnx.Param(jnp.zeros((cout,), jnp.float32))
        self.u = PowerIteration(_normalize(jax.random.normal(rngs.params(), (cout,))))
        self.k, self.stride, self.iterations = k, stride, int(iterations)

    def weight_matrix(self):
        return self.kernel[...].reshape(-1, self.kernel.shape[-1])

    def normalized_kernel(self, update: bool = False):
        sigma, u = spectral_sigma(self.weight_matrix(), self.u[...], self.iterations)
        if update:
            self.u[...] = u
        return self.kernel[...] / sigma

    def __call__(self, x, update: bool = False):
        kernel = self.normalized_kernel(update).astype(x.dtype)
        k, s = self.k, self.stride
        if s > 1:
            if k % 2 or k // 2 - 1 < 0:
                raise ValueError("strided spectral convs use an even kernel")
            # Symmetric padding k/2 - 1 halves the size exactly; the input
            # gradient runs as sub-pixel phases (autoencoder/layers.py).
            y = layers.strided_conv(x, kernel, s, k // 2 - 1)
        else:
            lo = (k - 1) // 2
            pad = ((lo, k - 1 - lo), (lo, k - 1 - lo))
            y = jax.lax.conv_general_dilated(
                x, kernel, (1, 1), pad, dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
        return y + self.bias[...].astype(x.dtype)
