"""Float ELIC model: shapes, the rd_loss contract, and that training lowers the loss."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from hific_diffusion import configs
from hific_diffusion.codec import context
from hific_diffusion.codec.autoencoder import ELIC, rd_loss


@pytest.fixture(scope="module")
def tiny_cfg():
    return configs.load("tiny").model


def _image(seed=0, size=64):
    """A smooth synthetic image (compressible, unlike white noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    chans = [
        0.5
        + 0.4
        * np.sin(
            2 * np.pi * (rng.uniform(0.5, 2) * xx + rng.uniform(0.5, 2) * yy) + rng.uniform(0, 6)
        )
        for _ in range(3)
    ]
    return jnp.asarray(np.stack(chans, -1)[None], jnp.float32)


def test_forward_shapes_and_positive_bits(tiny_cfg):
    model = ELIC(tiny_cfg, rngs=nnx.Rngs(0))
    x = jnp.concatenate([_image(0), _image(1)])
    graphdef, state = nnx.split(model)
    out = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x, training=False))(state, x)
    assert out["x_hat"].shape == x.shape
    assert out["y_bits"].shape == (2,) and out["z_bits"].shape == (2,)
    assert np.all(np.asarray(out["y_bits"]) > 0) and np.all(np.asarray(out["z_bits"]) > 0)


def test_rejects_sizes_not_multiple_of_64(tiny_cfg):
    model = ELIC(tiny_cfg, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="multiples of 64"):
        model(jnp.zeros((1, 48, 64, 3)))


def test_groups_must_sum_to_m(tiny_cfg):
    cfg = tiny_cfg.copy_and_resolve_references()
    cfg.groups = (4, 4, 8)
    with pytest.raises(ValueError, match="sum to M"):
        ELIC(cfg, rngs=nnx.Rngs(0))


def test_anchor_params_do_not_depend_on_current_group(tiny_cfg):
    """Checkerboard causality: anchors ignore group k; non-anchors see only its anchors."""
    model = ELIC(tiny_cfg, rngs=nnx.Rngs(0))
    net = model.context
    hyper = jax.random.normal(jax.random.key(1), (1, 4, 4, 2 * tiny_cfg.M))
    y_prev = jax.random.normal(jax.random.key(2), (1, 4, 4, 4))
    a = jax.random.normal(jax.random.key(3), (1, 4, 4, 4))
    b = jax.random.normal(jax.random.key(4), (1, 4, 4, 4))
    anchor = np.asarray(context.checkerboard(4, 4, context.ANCHOR))[..., 0]
    mu_a, s_a = context.group_params(net, 1, hyper, y_prev, a)
    mu_b, s_b = context.group_params(net, 1, hyper, y_prev, b)
    np.testing.assert_array_equal(np.asarray(mu_a)[0][anchor[0]], np.asarray(mu_b)[0][anchor[0]])
    # Values at non-anchor positions of the input are never seen.
    b_on_anchors = jnp.where(anchor[..., None], a, b)
    mu_c, _ = context.group_params(net, 1, hyper, y_prev, b_on_anchors)
    np.testing.assert_allclose(np.asarray(mu_c), np.asarray(mu_a), rtol=1e-5, atol=1e-6)


def test_rd_loss_decreases_when_training_tiny(tiny_cfg):
    model = ELIC(tiny_cfg, rngs=nnx.Rngs(0))
    x = jnp.concatenate([_image(s) for s in range(2)])
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt = optax.adam(1e-3)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, rng):
        def loss_fn(p):
            return rd_loss(nnx.merge(graphdef, p, rest), x, 0.01, rng=rng)

        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, metrics

    losses = []
    for i in range(12):
        params, opt_state, metrics = step(params, opt_state, jax.random.key(i))
        losses.append(float(metrics["loss"]))
        assert set(metrics) >= {"bpp", "mse", "psnr"}
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
