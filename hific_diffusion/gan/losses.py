"""HiFiC's losses (Mentzer et al. 2020, Eq. 4-5; tfc models/hific/model.py).

The GAN loss is the non-saturating one (Goodfellow et al. 2014) on the
discriminator's per-patch logits, averaged over patches and batch:

* discriminator: ``-log D(x) - log(1 - D(G(y)))`` =
  ``softplus(-l_real) + softplus(l_fake)``;
* generator: ``-log D(G(y))`` = ``softplus(-l_fake)``.

The generator's whole loss is ``mse_weight * MSE + lpips_weight * LPIPS +
gan_weight * generator GAN loss`` for images in [0, 1] (``gan/defaults.py``:
tfc's weights, the MSE rescaled from [0, 255]); the rate term of HiFiC's
loss is absent: the autoencoder (and so the bitstream) is frozen.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def discriminator_loss(real_logits, fake_logits):
    """Non-saturating discriminator loss (mean over patches and batch)."""
    return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def generator_gan_loss(fake_logits):
    """Non-saturating generator loss ``-log sigmoid(l_fake)`` (mean)."""
    return jnp.mean(jax.nn.softplus(-fake_logits))


def generator_loss(x_fake01, x01, fake_logits, cfg, lpips_fn):
    """``(loss, metrics)`` of the generator; ``lpips_fn(a, b)`` takes [-1, 1]
    images and returns a distance per example."""
    mse = jnp.mean((x_fake01 - x01) ** 2)
    d = jnp.mean(lpips_fn(2.0 * x_fake01 - 1.0, 2.0 * x01 - 1.0))
    g = generator_gan_loss(fake_logits)
    loss = cfg.mse_weight * mse + cfg.lpips_weight * d + cfg.gan_weight * g
    return loss, dict(mse=mse, lpips=d, g_gan=g)
