"""Noise schedules in log-SNR form (HFD Sec. 3.1; Kingma et al. 2021, VDM).

The shifted cosine schedule of HFD is
``logsnr(t) = -2 log tan(pi t / 2) + 2 log(1 / eta)``: eta < 1 multiplies
the SNR by ``1 / eta^2`` at every t (eta = 0.5: SNR x4, less noise, the model
spends its capacity on detail rather than structure). eta = 1 is the
standard cosine schedule (Nichol & Dhariwal 2021) in continuous time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def cosine_logsnr(t, eta: float = 1.0):
    """HFD Eq. (shifted cosine): -2 log tan(pi t / 2) + 2 log(1 / eta), unclipped."""
    t = jnp.clip(jnp.asarray(t, jnp.float32), 0.0, 1.0)
    # tan(pi t / 2) = sin(pi t / 2) / sin(pi (1 - t) / 2): in float32 tan(pi / 2)
    # comes out negative, while both sines are >= 0, giving -inf / +inf at the ends.
    log_tan = jnp.log(jnp.sin(jnp.pi * t / 2.0)) - jnp.log(jnp.sin(jnp.pi * (1.0 - t) / 2.0))
    return -2.0 * log_tan + 2.0 * jnp.log(1.0 / eta)


def logsnr_schedule(t, eta: float, logsnr_min: float, logsnr_max: float):
    """The shifted cosine log-SNR clipped to ``[logsnr_min, logsnr_max]``.

    Clipping keeps t = 0 and t = 1 finite (alpha and sigma never exactly 0).
    """
    return jnp.clip(cosine_logsnr(t, eta), logsnr_min, logsnr_max)


def logsnr_from_config(t, cfg):
    """``logsnr_schedule`` with eta and the clip range read from ``config.diffusion``."""
    return logsnr_schedule(t, cfg.eta, cfg.logsnr_min, cfg.logsnr_max)


def alpha_sigma(logsnr):
    """Variance-preserving alpha, sigma: alpha^2 = sigmoid(logsnr), sigma^2 = sigmoid(-logsnr)."""
    logsnr = jnp.asarray(logsnr, jnp.float32)
    return jnp.sqrt(jax.nn.sigmoid(logsnr)), jnp.sqrt(jax.nn.sigmoid(-logsnr))


def flow_logsnr(t, logsnr_min: float, logsnr_max: float):
    """The conditioning scalar fed to the U-Net by the rectified flow.

    On the path ``z_t = (1 - t) z_0 + t x`` the signal-to-source ratio is
    ``t^2 / (1 - t)^2``; using its log as the "log-SNR" lets the flow reuse
    the U-Net's log-SNR Fourier conditioning unchanged.
    """
    t = jnp.asarray(t, jnp.float32)
    return jnp.clip(2.0 * (jnp.log(t) - jnp.log1p(-t)), logsnr_min, logsnr_max)
