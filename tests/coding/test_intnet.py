"""Integer entropy-parameter path: overflow bound, accuracy, scale lookup, order of use."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hific_diffusion import configs
from hific_diffusion.autoencoder import context
from hific_diffusion.autoencoder.elic import ELIC
from hific_diffusion.autoencoder.layers import Conv
from hific_diffusion.coding import coding, intnet
from hific_diffusion.coding.tables import gaussian_scale_table

F = 8


@pytest.fixture(scope="module")
def model():
    return ELIC(configs.load("tiny").model, rngs=nnx.Rngs(0))


def _all_layers(net):
    ctx = net.context
    return list(net.h_s) + [c for lst in (*ctx.spatial, *ctx.channel, *ctx.aggregate) for c in lst]


def test_int32_accumulators_cannot_overflow(model):
    net = coding.prepare(model).net
    for layer in _all_layers(net):
        assert intnet.worst_case_accumulator(layer) <= 2**31 - 1


def test_large_weights_get_smaller_shifts_and_absurd_ones_are_rejected():
    conv = Conv(64, 4, 3, rngs=nnx.Rngs(0))
    base = intnet.IntConv.from_conv(conv, F)
    conv.kernel[...] = conv.kernel[...] * 64.0
    big = intnet.IntConv.from_conv(conv, F)
    total = lambda c: np.asarray(c.pre_shift) + np.asarray(c.post_shift)  # noqa: E731
    assert np.all(total(big) <= total(base) - 5)
    assert intnet.worst_case_accumulator(big) <= 2**31 - 1
    conv.kernel[...] = conv.kernel[...] * 1e6
    with pytest.raises(intnet.IntegerPathError):
        intnet.IntConv.from_conv(conv, F)


def _int64_reference(layer, x):
    """The same integer arithmetic in numpy int64 (cannot wrap at these sizes)."""
    (plo, phi), (qlo, qhi) = layer.padding
    d = layer.dilation[0]
    n, h, w, c = x.shape
    xd = np.zeros((n, (h - 1) * d + 1, (w - 1) * d + 1, c), np.int64)
    xd[:, ::d, ::d] = x
    xp = np.pad(xd, ((0, 0), (plo, phi), (qlo, qhi), (0, 0)))
    s, k = layer.strides[0], layer.k
    ho, wo = (xp.shape[1] - k) // s + 1, (xp.shape[2] - k) // s + 1
    wgt = np.asarray(layer.weight, np.int64)
    r, t = np.asarray(layer.pre_shift, np.int64), np.asarray(layer.post_shift, np.int64)
    hr = np.where(r > 0, 1 << np.maximum(r - 1, 0), 0)
    ht = np.where(t > 0, 1 << np.maximum(t - 1, 0), 0)
    acc = np.asarray(layer.bias, np.int64)
    for i in range(k):
        for j in range(k):
            xs = xp[:, i : i + s * (ho - 1) + 1 : s, j : j + s * (wo - 1) + 1 : s]
            for c0 in range(0, c, intnet.CHUNK):
                part = xs[..., c0 : c0 + intnet.CHUNK] @ wgt[i * k + j, c0 : c0 + intnet.CHUNK]
                acc = acc + ((part + hr) >> r)
    return np.clip((acc + ht) >> t, intnet.ACT_MIN, intnet.ACT_MAX)


def test_adversarial_inputs_do_not_overflow_int32():
    """Inputs at the int16 limits with the signs of the weights drive every
    accumulator to its bound; int32 results must equal an int64 reference."""
    conv = Conv(160, 4, 5, rngs=nnx.Rngs(3))  # two channel chunks
    conv.bias[...] = jnp.asarray([3.0, -3.0, 0.5, 0.0])
    layer = intnet.IntConv.from_conv(conv, F)
    sign = np.sign(np.asarray(layer.weight)[12, :, 0])  # centre position, channel 0
    for v in (intnet.ACT_MAX, intnet.ACT_MIN):
        x = np.zeros((1, 5, 5, 160), np.int64)
        x[...] = np.where(sign >= 0, v, -v - 1 if v < 0 else intnet.ACT_MIN)
        got = np.asarray(layer(jnp.asarray(x, jnp.int32)))
        np.testing.assert_array_equal(got, _int64_reference(layer, x))


@pytest.mark.parametrize("stride,transpose", [(1, False), (2, False), (2, True)])
def test_int_conv_matches_float_conv_to_fixed_point_precision(stride, transpose):
    conv = Conv(8, 6, 5, stride=stride, transpose=transpose, rngs=nnx.Rngs(1))
    conv.bias[...] = jnp.linspace(-1, 1, 6)
    x = jax.random.normal(jax.random.key(2), (1, 8, 8, 8)) * 4
    x_fixed = jnp.round(x * 2**F).astype(jnp.int32)
    ref = np.asarray(conv(x_fixed.astype(jnp.float32) / 2**F))
    got = np.asarray(intnet.IntConv.from_conv(conv, F)(x_fixed)) / 2**F
    assert got.shape == ref.shape
    # Weight rounding (2^-s per weight) summed over k*k*cin terms dominates.
    np.testing.assert_allclose(got, ref, atol=0.04)


def test_scale_index_picks_log_nearest_table_scale():
    scales = gaussian_scale_table(16, 0.11, 64.0)
    thr = jnp.asarray(intnet.scale_thresholds(scales, F))
    net = intnet.IntNet([], None, thr, jnp.zeros(0, jnp.int32), F)
    sigma = np.exp(np.linspace(np.log(0.02), np.log(200), 500))
    idx = np.asarray(net.scale_index(jnp.asarray(np.round(sigma * 2**F), jnp.int32)))
    clipped = np.clip(sigma, scales[0], scales[-1])
    nearest = np.argmin(np.abs(np.log(clipped)[:, None] - np.log(scales)[None]), axis=1)
    # Fixed-point rounding may flip the choice only right at a midpoint.
    assert np.mean(idx == nearest) > 0.97 and np.all(np.abs(idx - nearest) <= 1)


def test_integer_params_track_float_params(model):
    """Float and integer paths compute the same function up to fixed-point error."""
    cm = coding.prepare(model)
    z_hat = jnp.round(jax.random.normal(jax.random.key(3), (1, 2, 2, model.n)) * 3)
    hyper_f = model.h_s(z_hat)
    hyper_i = cm.net.hyper(z_hat.astype(jnp.int32))
    np.testing.assert_allclose(np.asarray(hyper_i) / 2**F, hyper_f, atol=0.05)
    y = jax.random.normal(jax.random.key(4), (1, 8, 8, model.m)) * 2
    mu_f, sig_f, _ = context.training_params(model.context, hyper_f, y, lambda v, mu: v)
    y_fixed = jnp.round(y * 2**F).astype(jnp.int32)
    mu_i, sig_i, _ = context.training_params(cm.net.context, hyper_i, y_fixed, lambda v, mu: v)
    np.testing.assert_allclose(np.asarray(mu_i) / 2**F, mu_f, atol=0.05)
    np.testing.assert_allclose(np.asarray(sig_i) / 2**F, sig_f, atol=0.05)


def test_integer_hyper_adds_the_z_median(model):
    """Non-zero medians (as imported from CompressAI): the integer h_s of the
    symbols tracks the float h_s of symbol + median, and a round trip through
    the coder still returns the coded symbols."""
    medians = np.linspace(-1.6, 1.8, model.n).astype(np.float32)
    shifted = nnx.clone(model)
    shifted.prior.median.set_value(jnp.asarray(medians))
    cm = coding.prepare(shifted)
    sym = jnp.round(jax.random.normal(jax.random.key(6), (1, 2, 2, model.n)) * 3)
    hyper_f = shifted.h_s(sym + medians)
    hyper_i = cm.net.hyper(sym.astype(jnp.int32))
    err = float(np.abs(np.asarray(hyper_i) / 2**F - hyper_f).max())
    effect = float(np.abs(np.asarray(hyper_f) - np.asarray(shifted.h_s(sym))).max())
    # The integer path follows the medians' effect far more closely than its size.
    assert err < 0.05 and effect > 5 * err, (err, effect)
    x = jax.random.uniform(jax.random.key(7), (1, 64, 64, 3))
    sections, y_hat, z_sym = coding.encode_latents(shifted, x)
    _, z = coding.analyze(cm, x)
    np.testing.assert_array_equal(z_sym, np.round(np.asarray(z)))  # z - median, rounded
    y2, z2 = coding.decode_latents(shifted, sections, (64, 64))
    np.testing.assert_array_equal(z2, z_sym)
    np.testing.assert_array_equal(y2, y_hat)


def test_context_gives_same_params_in_training_and_coding_order(model):
    """training_params (all groups in one pass, as in training) on the integer
    network yields exactly the integers the coder used stage by stage."""
    cm = coding.prepare(model)
    x = jax.random.uniform(jax.random.key(5), (1, 64, 64, 3))
    _, y_hat, z_hat = coding.encode_latents(model, x)
    y, _ = coding.analyze(cm, x)
    hyper = cm.net.hyper(jnp.asarray(z_hat))

    def quantize_fixed(y_k, mu):
        q = jnp.floor(y_k - mu / 2**F + 0.5).astype(jnp.int32)
        return jnp.clip(q * 2**F + mu, intnet.ACT_MIN, intnet.ACT_MAX)

    mu, _, y_fixed = context.training_params(cm.net.context, hyper, y, quantize_fixed)
    coded_fixed = np.clip(np.round(y_hat * 2**F), intnet.ACT_MIN, intnet.ACT_MAX)
    np.testing.assert_array_equal(np.asarray(y_fixed), coded_fixed)
