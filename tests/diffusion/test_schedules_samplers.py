"""Schedule and parameterization identities; samplers recover a known Gaussian."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hific_diffusion.diffusion import parameterization as P
from hific_diffusion.diffusion import samplers, schedules


def _alpha_sigma(n=64, seed=0):
    logsnr = jnp.linspace(-12.0, 12.0, n)
    return schedules.alpha_sigma(logsnr)


def test_x_eps_v_conversions_round_trip():
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    alpha, sigma = (a[:, None] for a in _alpha_sigma())
    x = jax.random.normal(k1, (64, 16))
    eps = jax.random.normal(k2, (64, 16))
    z = P.diffuse(x, eps, alpha, sigma)
    v = P.v_from_x_eps(x, eps, alpha, sigma)
    np.testing.assert_allclose(P.predict_x_from_v(z, v, alpha, sigma), x, atol=1e-5)
    np.testing.assert_allclose(P.predict_eps_from_v(z, v, alpha, sigma), eps, atol=1e-5)
    np.testing.assert_allclose(P.v_from_z_x(z, x, alpha, sigma), v, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(P.predict_eps_from_x(z, x, alpha, sigma), eps, rtol=1e-3, atol=1e-3)
    mid = slice(16, 48)  # away from alpha ~ 0 where x from eps is ill-conditioned
    np.testing.assert_allclose(
        P.predict_x_from_eps(z, eps, alpha, sigma)[mid], x[mid], rtol=1e-3, atol=1e-3
    )


def test_alpha_sigma_are_variance_preserving_with_the_given_logsnr():
    logsnr = jnp.linspace(-10.0, 10.0, 41)
    alpha, sigma = schedules.alpha_sigma(logsnr)
    np.testing.assert_allclose(alpha**2 + sigma**2, 1.0, atol=1e-6)
    np.testing.assert_allclose(jnp.log(alpha**2 / sigma**2), logsnr, atol=1e-4)


@pytest.mark.parametrize("eta", [0.5, 0.25, 2.0])
def test_shifted_schedule_snr_is_inverse_eta_squared_times_cosine(eta):
    t = jnp.linspace(0.02, 0.98, 49)
    ratio = jnp.exp(schedules.cosine_logsnr(t, eta) - schedules.cosine_logsnr(t, 1.0))
    np.testing.assert_allclose(ratio, 1.0 / eta**2, rtol=1e-5)


def test_eta_one_is_the_standard_cosine_schedule():
    # Nichol & Dhariwal: alpha^2(t) = cos^2(pi t / 2), so SNR = 1 / tan^2(pi t / 2).
    t = np.linspace(0.05, 0.95, 19)
    alpha, _ = schedules.alpha_sigma(schedules.cosine_logsnr(t, 1.0))
    np.testing.assert_allclose(alpha, np.cos(np.pi * t / 2), rtol=1e-5)


def test_schedule_is_clipped_to_the_configured_range():
    logsnr = schedules.logsnr_schedule(jnp.array([0.0, 1.0]), 0.5, -15.0, 15.0)
    np.testing.assert_allclose(logsnr, [15.0, -15.0])


# Data x ~ N(MU, S^2) per coordinate. The exact denoiser is the posterior mean
# E[x | z_t] = MU + alpha S^2 (z - alpha MU) / (alpha^2 S^2 + sigma^2).
MU, S = 0.3, 0.2


def _exact_v(z, logsnr):
    alpha, sigma = schedules.alpha_sigma(logsnr)
    x_hat = MU + alpha * S**2 * (z - alpha * MU) / (alpha**2 * S**2 + sigma**2)
    return P.v_from_z_x(z, x_hat, alpha, sigma)


@pytest.mark.parametrize(
    "sampler,noise_level", [("ddpm", 0.0), ("ddpm", 0.5), ("ddpm", 1.0), ("ddim", 0.0)]
)
def test_sampler_with_exact_prediction_recovers_gaussian_data(sampler, noise_level):
    schedule = functools.partial(
        schedules.logsnr_schedule, eta=0.5, logsnr_min=-15.0, logsnr_max=15.0
    )
    run = jax.jit(
        lambda key: samplers.sample_diffusion(
            _exact_v, (20000,), key, steps=256, schedule=schedule, sampler=sampler,
            noise_level=noise_level, clip_x=False,
        )
    )  # fmt: skip
    x = np.asarray(run(jax.random.PRNGKey(1)))
    # 20000 samples: the standard error of the mean is 0.0014 and of the std
    # 0.5%; 256 steps leave a discretisation bias of the std of about 2.5% at
    # noise_level 0 (it shrinks like 1 / steps: 6.5% at 64 steps).
    assert abs(x.mean() - MU) < 0.01
    assert abs(x.std() / S - 1.0) < 0.035


def test_euler_flow_transports_along_the_straight_path_exactly():
    # Flow from a point mass z0 to x with the exact velocity x - z0: Euler is exact.
    z0, x = jnp.full((8,), -0.5), jnp.linspace(-1.0, 1.0, 8)
    out = samplers.euler_flow_steps(lambda z, c: x - z0, z0, 0, 5, steps=5, cond=lambda t: t)
    np.testing.assert_allclose(out, x, atol=1e-6)


def _exact_x(z, logsnr):
    alpha, sigma = schedules.alpha_sigma(logsnr)
    return MU + alpha * S**2 * (z - alpha * MU) / (alpha**2 * S**2 + sigma**2)


def _ddim_affine_closed_form(steps, schedule, init_scale):
    """Mean and std of DDIM's output for x ~ N(MU, S^2) and the exact x0
    predictor, in float64: every step is affine in z (z_s = a z + b), so
    z_1 ~ N(0, init_scale^2) maps to N(b_total, (a_total init_scale)^2)."""
    a_tot, b_tot = 1.0, 0.0
    for i in range(steps):
        lt = float(schedule(1.0 - i / steps))
        ls = float(schedule(1.0 - (i + 1) / steps))
        at, st = np.sqrt(1 / (1 + np.exp(-lt))), np.sqrt(1 / (1 + np.exp(lt)))
        as_, ss = np.sqrt(1 / (1 + np.exp(-ls))), np.sqrt(1 / (1 + np.exp(ls)))
        v = at**2 * S**2 + st**2
        # x_hat = MU + at S^2 (z - at MU) / v = cx z + dx; eps = (z - at x_hat) / st
        cx, dx = at * S**2 / v, MU - at**2 * S**2 * MU / v
        if i == steps - 1:
            a, b = cx, dx
        else:
            ce, de = (1 - at * cx) / st, -at * dx / st
            a, b = as_ * cx + ss * ce, as_ * dx + ss * de
        a_tot, b_tot = a * a_tot, a * b_tot + b
    return b_tot, abs(a_tot) * init_scale


@pytest.mark.parametrize("steps,init_scale", [(65, 0.8), (65, 1.0), (8, 0.8)])
def test_ddim_with_x_prediction_matches_the_closed_form_gaussian(steps, init_scale):
    # CDC's decoder: DDIM on the cosine schedule, predicting x0, starting noise
    # scaled by init_scale. With Gaussian data and the exact x0 predictor the
    # output is Gaussian with the mean and std the affine recursion gives.
    schedule = functools.partial(
        schedules.logsnr_schedule, eta=1.0, logsnr_min=-15.0, logsnr_max=15.0
    )
    run = jax.jit(
        lambda key: samplers.sample_diffusion(
            _exact_x, (20000,), key, steps=steps, schedule=schedule, sampler="ddim",
            clip_x=False, predicts="x", init_scale=init_scale,
        )
    )  # fmt: skip
    x = np.asarray(run(jax.random.PRNGKey(2)), np.float64)
    mean, std = _ddim_affine_closed_form(steps, schedule, init_scale)
    assert abs(x.mean() - mean) < 4 * std / np.sqrt(x.size)
    assert abs(x.std() / std - 1.0) < 0.02
    # DDIM with 65 steps from unscaled noise is close to the data itself; the
    # 0.8 start shrinks the spread by about that factor.
    if init_scale == 1.0:
        assert abs(x.mean() - MU) < 0.005 and abs(std / S - 1.0) < 0.1
    else:
        assert std < S


def test_x_prediction_is_clipped_and_unknown_prediction_refused():
    schedule = functools.partial(
        schedules.logsnr_schedule, eta=1.0, logsnr_min=-15.0, logsnr_max=15.0
    )

    def far(z, logsnr):
        return jnp.full_like(z, 3.0)

    out = samplers.sample_diffusion(
        far, (16,), jax.random.PRNGKey(0), steps=4, schedule=schedule, sampler="ddim",
        predicts="x",
    )  # fmt: skip
    assert np.allclose(np.asarray(out), 1.0)
    with pytest.raises(ValueError, match="unknown prediction"):
        samplers.sample_diffusion(
            far, (16,), jax.random.PRNGKey(0), steps=4, schedule=schedule, predicts="eps"
        )
