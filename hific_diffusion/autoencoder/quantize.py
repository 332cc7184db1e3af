"""Quantization proxies for training (Balle et al. 2018 Sec. 2; ELIC Sec. 3.4).

ELIC's mixed quantization: the rate term sees ``y + U(-1/2, 1/2)`` (a
differentiable density), while the synthesis transform and the contexts see
the value the decoder will really get, ``round(y - mu) + mu``, with a
straight-through gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def round_ste(x: jax.Array) -> jax.Array:
    """round(x) in the forward pass, identity gradient (straight-through)."""
    return x + jax.lax.stop_gradient(jnp.round(x) - x)


def add_uniform_noise(x: jax.Array, rng: jax.Array) -> jax.Array:
    """x + u, u ~ U(-1/2, 1/2): the training proxy for rounding (Balle et al. 2017)."""
    return x + jax.random.uniform(rng, x.shape, x.dtype, -0.5, 0.5)


def quantize_around(y: jax.Array, mu: jax.Array) -> jax.Array:
    """The decoder-side value ``round(y - mu) + mu`` with a straight-through gradient."""
    return round_ste(y - mu) + mu
