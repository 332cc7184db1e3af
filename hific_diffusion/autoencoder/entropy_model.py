"""Gaussian conditional entropy model for y (Minnen et al. 2018 Eq. 5; ELIC Sec. 3).

P(y_hat | mu, sigma) = Phi((y - mu + 1/2) / sigma) - Phi((y - mu - 1/2) / sigma):
the Gaussian convolved with U(-1/2, 1/2), evaluated on the side of the mean
where the tail is small. sigma is bounded below by ``scale_min`` (0.11,
as in CompressAI / tensorflow-compression) with a gradient that still pushes
sigma up from below the bound.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hific_diffusion.autoencoder.priors import LIKELIHOOD_FLOOR


@jax.custom_vjp
def lower_bound(x: jax.Array, bound: float) -> jax.Array:
    return jnp.maximum(x, bound)


def _lb_fwd(x, bound):
    return jnp.maximum(x, bound), (x, bound)


def _lb_bwd(res, g):
    x, bound = res
    # Pass the gradient where x is above the bound or where it would raise x.
    pass_through = (x >= bound) | (g < 0)
    return jnp.where(pass_through, g, 0.0), None


lower_bound.defvjp(_lb_fwd, _lb_bwd)


def _std_cdf(x):
    return 0.5 * jax.lax.erfc(-x * (2.0**-0.5))


def gaussian_likelihood(
    y: jax.Array, mu: jax.Array, scale: jax.Array, scale_min: float
) -> jax.Array:
    """Likelihood of the unit bin around ``y`` under N(mu, max(scale, scale_min))."""
    s = lower_bound(scale, scale_min)
    v = jnp.abs(y - mu)
    p = _std_cdf((0.5 - v) / s) - _std_cdf((-0.5 - v) / s)
    return jnp.maximum(p, LIKELIHOOD_FLOOR)


def bits(likelihood: jax.Array) -> jax.Array:
    """Per-image sum of -log2(likelihood) over all but the batch axis."""
    return -jnp.sum(jnp.log2(likelihood), axis=tuple(range(1, likelihood.ndim)))
