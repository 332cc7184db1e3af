"""HiFiC's pieces: generator (g_s warm start), conditional discriminator,
spectral norm, the non-saturating losses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hific_diffusion import configs
from hific_diffusion.autoencoder.elic import ELIC
from hific_diffusion.gan import layers, losses
from hific_diffusion.gan.models import Discriminator, GanConfigError, Generator
from hific_diffusion.train import tasks


@pytest.fixture(scope="module")
def tiny():
    config = configs.load("tiny:hific")
    return config, ELIC(config.model, rngs=nnx.Rngs(1))


def _image(seed=0, side=64):
    return jnp.asarray(np.random.default_rng(seed).uniform(0, 1, (2, side, side, 3)), jnp.float32)


def test_generator_shapes_and_warm_start_equal_g_s_exactly(tiny):
    config, ae = tiny
    generator = Generator(config.gan, rngs=nnx.Rngs(2))
    x = _image()
    y_hat = tasks.latents(ae, x)
    assert y_hat.shape == (2, 4, 4, config.model.M)
    # The latents are the ones g_s decodes in the autoencoder's forward pass.
    np.testing.assert_array_equal(ae.synthesis(y_hat), ae(x)["x_hat"])
    assert generator(y_hat).shape == x.shape
    graphdef, params, rest = nnx.split(generator, nnx.Param, ...)
    # A fresh generator differs from g_s; started from it, it is g_s to the bit.
    assert not np.array_equal(generator(y_hat), ae.synthesis(y_hat))
    frozen_graphdef, frozen_state = nnx.split(ae)
    start = tasks.generator_start(frozen_graphdef, frozen_state, params.to_pure_dict())
    started = nnx.merge(graphdef, nnx.State(start), rest)
    np.testing.assert_array_equal(started(y_hat), ae.synthesis(y_hat))


def test_generator_of_another_shape_than_the_autoencoder_is_a_clear_error(tiny):
    config, ae = tiny
    section = config.gan.copy_and_resolve_references()
    section.N = 8
    _, params, _ = nnx.split(Generator(section, rngs=nnx.Rngs(0)), nnx.Param, ...)
    with pytest.raises(tasks.TaskError, match="gan.N, gan.M, gan.res_blocks"):
        tasks.generator_start(*nnx.split(ae), params.to_pure_dict())


def test_bad_gan_section_names_the_field():
    section = configs.load("tiny:hific").gan
    section.disc_layers = 0
    with pytest.raises(GanConfigError, match="gan.disc_layers is 0"):
        Discriminator(section, rngs=nnx.Rngs(0))


def test_discriminator_is_patchwise_and_conditioned_on_the_latent(tiny):
    config, ae = tiny
    disc = Discriminator(config.gan, rngs=nnx.Rngs(3))
    x = _image(1)
    y_hat = tasks.latents(ae, x)
    logits = disc(x, y_hat)
    # disc_layers = 2 stride-2 convs: one logit per 4x4 patch.
    assert logits.shape == (2, 16, 16, 1)
    other = disc(x, y_hat + 1.0)
    assert float(jnp.max(jnp.abs(other - logits))) > 1e-4
    # Only the latent changed, and the image alone still matters too.
    assert float(jnp.max(jnp.abs(disc(_image(2), y_hat) - logits))) > 1e-4


def test_spectral_norm_bounds_the_largest_singular_value_near_one():
    conv = layers.SpectralConv(16, 24, 4, stride=2, iterations=1, rngs=nnx.Rngs(4))
    conv.kernel[...] = conv.kernel[...] * 7.0  # far from norm 1 before normalising
    raw = np.linalg.svd(np.asarray(conv.weight_matrix()), compute_uv=False)
    assert raw[0] > 3.0
    x = jnp.ones((1, 8, 8, 16))
    for _ in range(60):  # one power iteration per training call
        conv(x, update=True)
    w = np.asarray(conv.normalized_kernel()).reshape(-1, 24)
    s = np.linalg.svd(w, compute_uv=False)
    np.testing.assert_allclose(s[0], 1.0, atol=2e-3)
    # A plain (e.g. Frobenius) scaling would leave the top value far below 1.
    assert s[0] / np.sqrt(np.sum(s**2)) < 0.9
    # Without update the stored vector does not move.
    u = np.asarray(conv.u[...])
    conv(x)
    np.testing.assert_array_equal(conv.u[...], u)


def test_non_saturating_gan_losses_on_known_logits():
    zeros = jnp.zeros((2, 3, 3, 1))
    np.testing.assert_allclose(losses.discriminator_loss(zeros, zeros), 2 * np.log(2), rtol=1e-6)
    np.testing.assert_allclose(losses.generator_gan_loss(zeros), np.log(2), rtol=1e-6)
    real, fake = jnp.full((1, 2, 2, 1), 3.0), jnp.full((1, 2, 2, 1), -2.0)
    want_d = -np.log(1 / (1 + np.exp(-3.0))) - np.log(1 - 1 / (1 + np.exp(2.0)))
    np.testing.assert_allclose(losses.discriminator_loss(real, fake), want_d, rtol=1e-6)
    # Non-saturating: -log D(G(y)) (large when D rejects the fake), not log(1 - D(G(y))).
    np.testing.assert_allclose(losses.generator_gan_loss(fake), np.log(1 + np.exp(2.0)), rtol=1e-6)


def test_generator_loss_weights_the_three_terms():
    cfg = configs.load("tiny:hific").gan
    a = jnp.full((1, 8, 8, 3), 0.5)
    b = jnp.full((1, 8, 8, 3), 0.25)
    logits = jnp.zeros((1, 2, 2, 1))
    loss, m = losses.generator_loss(a, b, logits, cfg, lambda p, q: jnp.full((1,), 0.3))
    np.testing.assert_allclose(m["mse"], 0.0625, rtol=1e-6)
    want = cfg.mse_weight * 0.0625 + cfg.lpips_weight * 0.3 + cfg.gan_weight * np.log(2)
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    # tfc's k_M = 0.075 * 2^-5 on [0, 255] images, rescaled to [0, 1].
    np.testing.assert_allclose(cfg.mse_weight, 0.075 * 2**-5 * 255**2, rtol=1e-12)


def test_lpips_weights_cached_in_one_trace_serve_the_next():
    from hific_diffusion.diffusion import losses as diffusion_losses
    from hific_diffusion.metrics import lpips

    diffusion_losses._lpips_params.cache_clear()

    def dist(a, b):
        return lpips.distance("alexnet", diffusion_losses._lpips_params("alexnet"), a, b)

    a, b = jnp.zeros((1, 32, 32, 3)), jnp.full((1, 32, 32, 3), 0.5)
    first = jax.jit(dist)(a, b)  # the cache is filled inside this trace
    second = jax.jit(lambda p, q: dist(p, q) + 0.0)(a, b)
    np.testing.assert_allclose(first, second, rtol=1e-6)
    leaves = jax.tree.leaves(diffusion_losses._lpips_params("alexnet"))
    assert all(isinstance(x, np.ndarray) for x in leaves)
