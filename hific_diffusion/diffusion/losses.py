"""Stage-2 training losses: v-prediction diffusion and rectified flow.

Both take images in [0, 1] (``x01`` the target, ``x_mse01`` the frozen
autoencoder's reconstruction) and work in [-1, 1] model space. The trainer
picks one per task (``train/tasks.py``, the one registry of tasks); the loop
itself lives in ``hific_diffusion.train``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from hific_diffusion.diffusion import parameterization as P
from hific_diffusion.diffusion import schedules
from hific_diffusion.errors import HfdError
from hific_diffusion.metrics import lpips

WEIGHTINGS = ("v", "x", "eps", "snr_trunc")


class LossConfigError(HfdError, ValueError):
    """An unknown loss option in ``config.diffusion``."""


@functools.cache
def _lpips_params(net: str):
    """LPIPS weights, loaded once per process as concrete numpy arrays: the
    first call may come from inside a jit trace, and a cached traced value
    would leak into the next step function built (UnexpectedTracerError)."""
    with jax.ensure_compile_time_eval():
        return jax.tree.map(np.asarray, lpips.load_params(net))


def with_perceptual(loss, metrics, x_hat, x, cfg):
    """CDC's mix (Yang & Mandt 2023, Eq. 9): ``(1 - rho) loss + rho LPIPS(x,
    x_hat)`` for model-space images ``x_hat`` (the network's implied x0) and
    ``x``; ``rho = cfg.perceptual_weight``, 0 leaves the loss unchanged."""
    rho = float(cfg.perceptual_weight)
    if not 0.0 <= rho <= 1.0:
        raise LossConfigError(f"perceptual_weight must be in [0, 1], got {rho!r}")
    if rho == 0.0:
        return loss, metrics
    net = cfg.perceptual_net
    if net not in lpips.NETS:
        raise LossConfigError(f"unknown perceptual_net {net!r}; expected one of {lpips.NETS}")
    d = jnp.mean(lpips.distance(net, _lpips_params(net), x_hat, x))
    return (1.0 - rho) * loss + rho * d, dict(metrics, loss=(1.0 - rho) * loss + rho * d, lpips=d)


def train_times(rng, b: int, cfg):
    """t ~ U(lo, hi) per example, ``(lo, hi) = cfg.train_t`` (0 <= lo < hi <= 1)."""
    t_range = cfg.train_t
    try:
        lo, hi = (float(v) for v in t_range)
    except (TypeError, ValueError):
        raise LossConfigError(f"train_t must be two numbers (lo, hi), got {t_range!r}") from None
    if not 0.0 <= lo < hi <= 1.0:  # NaN fails too
        raise LossConfigError(f"train_t must satisfy 0 <= lo < hi <= 1, got {t_range!r}")
    return jax.random.uniform(rng, (b,), minval=lo, maxval=hi)


def to_model_space(x01):
    return 2.0 * jnp.asarray(x01, jnp.float32) - 1.0


def v_loss_weight(logsnr, weighting: str):
    """Per-example weight of the v-MSE (Salimans & Ho 2022, Sec. 4).

    Since ``x - x_hat = -sigma (v - v_hat)`` and ``eps - eps_hat = alpha (v -
    v_hat)``, weighting the v-MSE by sigma^2 gives the x-MSE and by alpha^2 the
    eps-MSE; "snr_trunc" is their "truncated SNR" weighting max(SNR, 1) x-MSE.
    """
    alpha, sigma = schedules.alpha_sigma(logsnr)
    if weighting == "v":
        return jnp.ones_like(logsnr)
    if weighting == "x":
        return sigma**2
    if weighting == "eps":
        return alpha**2
    if weighting == "snr_trunc":
        return jnp.maximum(jnp.exp(logsnr), 1.0) * sigma**2
    raise LossConfigError(f"unknown loss_weighting {weighting!r}; expected one of {WEIGHTINGS}")


TARGETS = ("image", "residual")


def diffusion_target(cfg) -> tuple[str, float]:
    """``(target, residual_scale)`` of a diffusion config; configs saved before
    the option existed model the image."""
    target = cfg.target
    scale = float(cfg.residual_scale)
    if target not in TARGETS:
        raise LossConfigError(f"unknown diffusion target {target!r}; expected one of {TARGETS}")
    if target == "residual" and not scale > 0:
        raise LossConfigError(f"residual_scale must be > 0, got {scale!r}")
    return target, scale


def to_diffusion_space(x, c, cfg):
    """Model-space image ``x`` -> what the diffusion models (``cfg.target``)."""
    target, scale = diffusion_target(cfg)
    return x if target == "image" else (x - c) / scale


def from_diffusion_space(z, c, cfg):
    """Inverse of :func:`to_diffusion_space`: a generated state -> model-space image."""
    target, scale = diffusion_target(cfg)
    return z if target == "image" else c + scale * z


def diffusion_loss(unet, x01, x_mse01, rng, cfg, side=None):
    """HFD stage-2 loss: weighted v-prediction MSE at t ~ U(0, 1) (HFD Sec. 3.1).

    ``z_t = alpha_t x + sigma_t eps`` with the shifted cosine log-SNR; the
    U-Net sees ``(z_t, x_mse, logsnr_t)`` and predicts ``v_t``; ``side``
    (HFD+'s map, ``[B, H, W, unet.side_channels]``) is concatenated after
    x_mse. Returns
    ``(loss, metrics)``; metrics hold the unweighted v-, x- and eps-MSE.
    With ``cfg.perceptual_weight`` > 0, CDC's LPIPS term on the implied x0 is
    mixed in (:func:`with_perceptual`).
    """
    if cfg.parameterization != "v":
        raise LossConfigError(
            f"only the v parameterization is implemented, got {cfg.parameterization!r}"
        )
    c = to_model_space(x_mse01)
    x = to_diffusion_space(to_model_space(x01), c, cfg)
    b = x.shape[0]
    k_t, k_eps, k_drop = jax.random.split(rng, 3)
    t = train_times(k_t, b, cfg)
    logsnr = schedules.logsnr_from_config(t, cfg)
    alpha, sigma = (a[:, None, None, None] for a in schedules.alpha_sigma(logsnr))
    eps = jax.random.normal(k_eps, x.shape)
    z = P.diffuse(x, eps, alpha, sigma)
    v = P.v_from_x_eps(x, eps, alpha, sigma)
    unet_cond = c if side is None else jnp.concatenate([c, side.astype(c.dtype)], axis=-1)
    v_hat = unet(z, unet_cond, logsnr, training=True, dropout_rng=k_drop)
    v_mse = jnp.mean((v_hat - v) ** 2, axis=(1, 2, 3))
    loss = jnp.mean(v_loss_weight(logsnr, cfg.loss_weighting) * v_mse)
    x_hat = P.predict_x_from_v(z, v_hat, alpha, sigma)
    metrics = dict(
        loss=loss,
        v_mse=jnp.mean(v_mse),
        x_mse=jnp.mean((x_hat - x) ** 2),
        eps_mse=jnp.mean((P.predict_eps_from_v(z, v_hat, alpha, sigma) - eps) ** 2),
    )
    image = from_diffusion_space(x_hat, c, cfg)
    return with_perceptual(loss, metrics, image, to_model_space(x01), cfg)


def flow_source(x_mse, noise, flow_noise: float):
    """Source of the rectified flow: ``z_0 = x_mse + flow_noise * noise`` (HFD Sec. 3.3)."""
    return x_mse + flow_noise * noise


def flow_loss(unet, x01, x_mse01, rng, cfg):
    """Rectified-flow velocity loss (Liu et al. 2022, Eq. 1; HFD Sec. 3.3).

    Straight path from ``z_0 = x_mse + flow_noise * eps`` to ``x``; the U-Net,
    conditioned on ``x_mse`` and on ``flow_logsnr(t)``, regresses the
    constant velocity ``x - z_0``.
    """
    x, c = to_model_space(x01), to_model_space(x_mse01)
    b = x.shape[0]
    k_t, k_eps, k_drop = jax.random.split(rng, 3)
    t = train_times(k_t, b, cfg)
    z0 = flow_source(c, jax.random.normal(k_eps, x.shape), cfg.flow_noise)
    tb = t[:, None, None, None]
    z = P.flow_interpolate(z0, x, tb)
    target = P.flow_velocity(z0, x)
    cond = schedules.flow_logsnr(t, cfg.logsnr_min, cfg.logsnr_max)
    pred = unet(z, c, cond, training=True, dropout_rng=k_drop)
    loss = jnp.mean((pred - target) ** 2)
    x_hat = z + (1.0 - tb) * pred
    metrics = dict(loss=loss, velocity_mse=loss, x_mse=jnp.mean((x_hat - x) ** 2))
    return with_perceptual(loss, metrics, x_hat, x, cfg)
