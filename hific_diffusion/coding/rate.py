"""Where the bits go: float likelihoods vs the integer path vs the coded bytes.

Splits the gap between the training-time estimate (-log2 of the float
likelihoods, Minnen et al. 2018 Eq. 5) and the real file into its causes:
fixed-point (mu, sigma) from :mod:`intnet`, snapping sigma to the scale
table, and the coder (16-bit pmfs, escapes, final flush words).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from scipy import special

from hific_diffusion.autoencoder import context
from hific_diffusion.coding import coding, intnet


def _gaussian_bits(q: np.ndarray, scale: np.ndarray) -> float:
    v = -np.abs(q)
    p = special.ndtr((v + 0.5) / scale) - special.ndtr((v - 0.5) / scale)
    return float(-np.log2(np.maximum(p, 1e-9)).sum())


def rate_breakdown(model, x01_padded) -> dict:
    """Bits of one padded image [1, H, W, 3] under each stage of the coding path.

    Keys: ``float_y``/``float_z`` (model likelihoods on hard-quantized latents),
    ``int_y`` (same symbols, integer mu and sigma with the lower bound),
    ``table_y`` (sigma snapped to the scale table), ``coded_y``/``coded_z``
    (section bytes * 8).
    """
    cm = coding.prepare(model)
    x = jnp.asarray(x01_padded, jnp.float32)
    sections, y_hat, z_hat = coding.encode_latents(model, x)
    out = model(x, training=False)
    y, _ = coding.analyze(cm, x)
    f = cm.net.frac_bits

    def quantize_fixed(y_k, mu):
        q = jnp.floor(y_k - mu / 2**f + 0.5).astype(jnp.int32)
        return jnp.clip(q * 2**f + mu, intnet.ACT_MIN, intnet.ACT_MAX)

    hyper = cm.net.hyper(jnp.asarray(z_hat))
    mu, sigma, _ = context.training_params(cm.net.context, hyper, y, quantize_fixed)
    mu = np.asarray(mu, np.float64) / 2**f
    q = np.round(np.asarray(y_hat, np.float64) - mu)
    sigma_f = np.maximum(np.asarray(sigma, np.float64) / 2**f, model.scale_min)
    scales = coding.gaussian_scale_table(model.num_scales, model.scale_min, model.scale_max)
    idx = np.asarray(cm.net.scale_index(sigma))
    return dict(
        float_y=float(out["y_bits"][0]),
        float_z=float(out["z_bits"][0]),
        int_y=_gaussian_bits(q, sigma_f),
        table_y=_gaussian_bits(q, scales[idx]),
        coded_z=8 * len(sections[0]),
        coded_y=8 * len(sections[1]),
    )
