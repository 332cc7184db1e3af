"""Samplers in continuous time: ancestral DDPM, DDIM, Euler for the flow.

All take ``predict(z, logsnr) -> v`` (or a velocity for the flow) acting on
the whole state, so the same loop drives a plain U-Net call, a
patch-parallel one or an analytic denoiser in the tests. The time grid is
uniform in t: step ``i`` of ``steps`` goes from ``t = 1 - i / steps`` to
``s = 1 - (i + 1) / steps``; the last step returns the x prediction. Noise
for step ``i`` is ``normal(fold_in(key, i))`` over the full state, so it
does not depend on how the state is tiled. Loops are ``lax.fori_loop`` with
possibly traced bounds, so a caller can run chunks of steps through one
compiled function (progress bars) without recompiling.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hific_diffusion.diffusion import parameterization as P
from hific_diffusion.diffusion import schedules

DIFFUSION_SAMPLERS = ("ddpm", "ddim")
# What ``predict`` returns: v (HFD's U-Net) or the clean image x (CDC's
# x-parameterization, Yang & Mandt 2023).
PREDICTS = ("v", "x")


def ddpm_step(z_t, x_hat, logsnr_t, logsnr_s, noise, noise_level):
    """Ancestral step ``z_t -> z_s`` (s < t) from the posterior q(z_s | z_t, x = x_hat).

    VDM Eq. (32)-(33): with ``r = SNR(t) / SNR(s)``, the posterior mean is
    ``r (alpha_s / alpha_t) z_t + (1 - r) alpha_s x`` and its variance is
    ``(1 - r) sigma_s^2`` (the lower bound); the forward-process variance of
    the step is ``(1 - r) sigma_t^2`` (the upper bound). ``noise_level`` in
    [0, 1] interpolates the two in log space (Nichol & Dhariwal 2021,
    Eq. 15): ``std = sqrt(1 - r) sigma_s^(1 - nl) sigma_t^nl``.
    """
    alpha_t, sigma_t = schedules.alpha_sigma(logsnr_t)
    alpha_s, sigma_s = schedules.alpha_sigma(logsnr_s)
    r = jnp.exp(logsnr_t - logsnr_s)
    mean = r * (alpha_s / alpha_t) * z_t + (1.0 - r) * alpha_s * x_hat
    std = jnp.sqrt(1.0 - r) * sigma_s ** (1.0 - noise_level) * sigma_t**noise_level
    return mean + std * noise


def ddim_step(z_t, x_hat, eps_hat, logsnr_s):
    """Deterministic DDIM step ``z_s = alpha_s x_hat + sigma_s eps_hat``.

    Song et al. 2021, Eq. 12 with the noise term set to zero.
    """
    alpha_s, sigma_s = schedules.alpha_sigma(logsnr_s)
    return alpha_s * x_hat + sigma_s * eps_hat


def diffusion_steps(
    predict, z, key, start, stop, *, steps, schedule, sampler="ddpm", noise_level=0.0, clip_x=True,
    known=None, correct=None, predicts="v",
):  # fmt: skip
    """Run diffusion steps ``start..stop-1`` of ``steps`` from state ``z``.

    ``predicts``: what ``predict(z, logsnr)`` returns, ``"v"`` or ``"x"``
    (the clean image; the noise estimate is then ``(z - alpha x) / sigma``).

    ``schedule(t) -> logsnr``. Returns the new state; after the final step
    the state is the x prediction in [-1, 1] model space. ``known = (x, mask)``
    conditions on already generated pixels by replacement: after every step
    the masked part of the state is set to a fresh forward-process sample
    ``alpha_s x + sigma_s eps`` of the known content (Lugmayr et al. 2022,
    RePaint, Eq. 8 without resampling), and to ``x`` itself at the end.

    ``correct = (fn, aux)`` changes each step's x prediction (CorrDiff,
    ``corrdiff.py``): ``fn(i, z, x_hat, aux) -> (x_new, aux)``; the
    noise prediction follows it (``eps`` moves by ``-alpha / sigma`` times
    the change of x, so ``z = alpha x + sigma eps`` still holds) and the
    state is ``(z, aux)``, returned as such.
    """
    if sampler not in DIFFUSION_SAMPLERS:
        raise ValueError(f"unknown diffusion sampler {sampler!r}; expected {DIFFUSION_SAMPLERS}")
    if predicts not in PREDICTS:
        raise ValueError(f"unknown prediction {predicts!r}; expected {PREDICTS}")

    def body(i, carry):
        z, aux = carry if correct is not None else (carry, None)
        t = 1.0 - i / steps
        s = 1.0 - (i + 1) / steps
        logsnr_t, logsnr_s = schedule(t), schedule(s)
        alpha_t, sigma_t = schedules.alpha_sigma(logsnr_t)
        out = predict(z, logsnr_t)
        if predicts == "x":
            x_hat = jnp.clip(out, -1.0, 1.0) if clip_x else out
            eps_hat = P.predict_eps_from_x(z, x_hat, alpha_t, sigma_t)
        else:
            x_hat = P.predict_x_from_v(z, out, alpha_t, sigma_t)
            if clip_x:
                x_hat = jnp.clip(x_hat, -1.0, 1.0)
                eps_hat = P.predict_eps_from_x(z, x_hat, alpha_t, sigma_t)
            else:
                eps_hat = P.predict_eps_from_v(z, out, alpha_t, sigma_t)
        if correct is not None:
            x_new, aux = correct[0](i, z, x_hat, aux)
            eps_hat = eps_hat - (alpha_t / sigma_t) * (x_new - x_hat)
            x_hat = x_new
        if sampler == "ddim":
            z_s = ddim_step(z, x_hat, eps_hat, logsnr_s)
        else:
            noise = jax.random.normal(jax.random.fold_in(key, i), z.shape, z.dtype)
            z_s = ddpm_step(z, x_hat, logsnr_t, logsnr_s, noise, noise_level)
        if known is not None:
            x_known, mask = known
            alpha_s, sigma_s = schedules.alpha_sigma(logsnr_s)
            eps = jax.random.normal(jax.random.fold_in(key, steps + i), z.shape, z.dtype)
            z_s = jnp.where(mask, P.diffuse(x_known, eps, alpha_s, sigma_s), z_s)
            x_hat = jnp.where(mask, x_known, x_hat)
        z_next = jnp.where(i == steps - 1, x_hat, z_s)
        return z_next if correct is None else (z_next, aux)

    return jax.lax.fori_loop(start, stop, body, z if correct is None else (z, correct[1]))


def euler_flow_steps(predict, z, start, stop, *, steps, cond, known=None):
    """Euler steps ``z += v(z, t) / steps`` of the rectified flow, t from 0 to 1.

    ``cond(t)`` maps flow time to the U-Net's conditioning scalar
    (:func:`schedules.flow_logsnr`). Liu et al. 2022, Sec. 2. ``known = (x,
    mask, z0)`` keeps the masked part of the state on the straight path
    from its source ``z0`` to the known pixels ``x``.
    """

    def body(i, z):
        t = i / steps
        z = z + predict(z, cond(t)) / steps
        if known is not None:
            x_known, mask, z0 = known
            z = jnp.where(mask, P.flow_interpolate(z0, x_known, (i + 1) / steps), z)
        return z

    return jax.lax.fori_loop(start, stop, body, z)


def sample_diffusion(predict, shape, key, *, steps, schedule, sampler="ddpm", noise_level=0.0,
                     clip_x=True, predicts="v", init_scale=1.0):  # fmt: skip
    """Full sampling from ``z_1 ~ N(0, init_scale^2 I)``: the prior at t = 1
    (``init_scale`` < 1: CDC's reduced starting noise, 0.8 in its decoder)."""
    k_init, k_steps = jax.random.split(key)
    z = init_scale * jax.random.normal(k_init, shape)
    return diffusion_steps(
        predict, z, k_steps, 0, steps, steps=steps, schedule=schedule, sampler=sampler,
        noise_level=noise_level, clip_x=clip_x, predicts=predicts,
    )  # fmt: skip
