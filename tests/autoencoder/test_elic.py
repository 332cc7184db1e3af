"""Float ELIC model: shapes, the rd_loss contract, and that training lowers the loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hific_diffusion import configs
from hific_diffusion.autoencoder import context
from hific_diffusion.autoencoder.elic import ELIC, rd_loss


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

    @jax.jit
    def run(state, x):
        m = nnx.merge(graphdef, state)
        return m(x, training=False), rd_loss(m, x, 0.01, training=False)

    out, (loss, metrics) = run(state, x)
    # rd_loss contract: loss = bpp + lmbda * 255^2 * mse, metrics bpp/mse/psnr.
    assert set(metrics) >= {"bpp", "mse", "psnr"}
    bpp = float(np.sum(out["y_bits"] + out["z_bits"])) / (2 * 64 * 64)
    np.testing.assert_allclose(float(metrics["bpp"]), bpp, rtol=1e-5)
    expected = metrics["bpp"] + 0.01 * 255.0**2 * metrics["mse"]
    np.testing.assert_allclose(float(loss), float(expected), rtol=1e-5)
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
    hyper = jax.random.normal(jax.random.key(1), (1, 4, 4, 2 * tiny_cfg.N))
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


def test_rd_loss_decreases_when_training_tiny(trained_tiny):
    """60 Adam steps on photo crops (conftest.train_tiny) lower the rd loss."""
    _, losses = trained_tiny
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10]), losses


@pytest.mark.parametrize("k,s", [(5, 2), (3, 2), (5, 4)])
def test_transposed_conv_equals_the_input_dilated_convolution_it_stands_for(k, s):
    """Conv(transpose=True) runs sub-pixel phases; its definition is the stride-1
    convolution of the zero-dilated input (``geometry()``), which the integer
    path and the CompressAI import rely on."""
    from hific_diffusion.autoencoder.layers import Conv

    conv = Conv(6, 5, k, stride=s, transpose=True, rngs=nnx.Rngs(3))
    conv.bias[...] = jnp.linspace(-1, 1, 5)
    x = jax.random.normal(jax.random.key(0), (2, 7, 9, 6))
    strides, padding, dilation = conv.geometry()
    ref = jax.lax.conv_general_dilated(
        x, conv.effective_kernel(), strides, padding, lhs_dilation=dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    ) + conv.bias[...]  # fmt: skip
    out = conv(x)
    assert out.shape == ref.shape == (2, 7 * s, 9 * s, 5)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5 * float(jnp.abs(ref).max()))
    # not just the same statistics: every phase lands where it belongs
    assert float(jnp.abs(out - ref).max()) < 1e-3 * float(
        jnp.abs(out[:, ::s, ::s] - ref[:, 1::s, 1::s]).max()
    )


@pytest.mark.parametrize(
    "k,s,hw", [(5, 2, (32, 48)), (3, 2, (32, 34)), (5, 4, (64, 64)), (5, 2, (18, 30))]
)
def test_strided_conv_keeps_the_forward_and_jax_gradients(k, s, hw):
    """The strided convolution's input gradient runs as sub-pixel phases: the
    forward pass is the plain convolution to the bit, both gradients equal
    JAX's own (the first three cases take the sub-pixel path; sizes that are
    not multiples of s, and small maps, use JAX's gradient)."""
    from hific_diffusion.autoencoder.layers import _conv, strided_conv

    p = k // 2
    kx, kk, kg = jax.random.split(jax.random.key(1), 3)
    x = jax.random.normal(kx, (2, *hw, 6))
    kernel = 0.2 * jax.random.normal(kk, (k, k, 6, 5))
    ref = lambda x, w: _conv(x, w, (s, s), ((p, p), (p, p)))  # noqa: E731
    np.testing.assert_array_equal(strided_conv(x, kernel, s, p), ref(x, kernel))
    g = jax.random.normal(kg, ref(x, kernel).shape)
    want = jax.vjp(ref, x, kernel)[1](g)
    got = jax.vjp(lambda x, w: strided_conv(x, w, s, p), x, kernel)[1](g)
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * float(jnp.abs(b).max()))
