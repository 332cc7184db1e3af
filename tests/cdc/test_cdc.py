"""CDC's pieces: shapes, the loss terms, the context conditioning the
denoiser, and real bytes through the project's coder and back."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hific_diffusion import configs
from hific_diffusion.cdc import decode
from hific_diffusion.cdc.model import CDC, CDCConfigError, cdc_loss, check_config
from hific_diffusion.coding import coding


def _image(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).uniform(size=shape), jnp.float32)


def test_paper_scale_shapes():
    # Encoder widths 64..256 -> y: 256 channels at 1/16; z at 1/64; h_s gives
    # (scale, mean) of every channel; context at 1/8 .. 1 with 256 .. 64
    # channels; U-Net widths 64..384 over six levels, the first four given
    # the context; its output is the x0 prediction of the image.
    cfg = configs.load("cdc").cdc
    model = nnx.eval_shape(lambda: CDC(cfg, rngs=nnx.Rngs(0)))
    assert [lv.blocks[-1].conv2.kernel.shape[-1] for lv in model.unet.down] == [
        64, 128, 192, 256, 320, 384,
    ]  # fmt: skip
    graphdef, state = nnx.split(model)

    def shape(method, *args):
        return jax.eval_shape(lambda s, *a: method(nnx.merge(graphdef, s), *a), state, *args)

    x = jax.ShapeDtypeStruct((1, 256, 128, 3), jnp.float32)
    y = shape(CDC.analysis, x)
    assert y.shape == (1, 16, 8, 256)
    z = shape(lambda m, y: m.h_a(y), y)
    assert z.shape == (1, 4, 2, 256)
    assert shape(lambda m, z: m.h_s(z), z).shape == (1, 16, 8, 512)
    feats = shape(lambda m, y: m.context_net(y), y)
    assert [f.shape for f in feats] == [
        (1, 256, 128, 64), (1, 128, 64, 128), (1, 64, 32, 192), (1, 32, 16, 256),
    ]  # fmt: skip
    x0 = shape(lambda m, z, f: m.denoise(z, jnp.zeros(1), f), x, feats)
    assert x0.shape == x.shape
    assert model.scale_min == 0.1 and model.groups == (256,)


def test_tiny_shapes_and_what_the_coder_reads(tiny_cdc):
    m = tiny_cdc
    graphdef, state = nnx.split(m)
    x = jax.ShapeDtypeStruct((2, 64, 128, 3), jnp.float32)
    y_hat, y_bits, z_bits = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s).encode(x), state, x)
    assert y_hat.shape == (2, 4, 8, m.m) and y_bits.shape == z_bits.shape == (2,)
    # The coding attributes ELIC has (coding.prepare reads them).
    y, z = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s).analyze_for_coding(x), state, x)
    assert (y.shape, z.shape) == ((2, 4, 8, m.m), (2, 1, 2, m.n))
    assert m.context.groups == (m.m,) and len(m.h_s.convs) == 3


def test_bad_sections_are_named():
    cfg = configs.load("cdc:tiny").cdc
    cfg.unet.context_channels = (8, 16)  # not the finest context widths
    with pytest.raises(CDCConfigError, match="context_channels"):
        check_config(cfg)
    cfg = configs.load("cdc:tiny").cdc
    cfg.encoder_widths = (8, 8, 16)
    with pytest.raises(CDCConfigError, match="encoder_widths"):
        check_config(cfg)


def _loss_fn(cfg):
    @jax.jit
    def f(graphdef, state, x, key):
        def loss(state):
            return cdc_loss(nnx.merge(graphdef, state), x, key, cfg)

        (value, metrics), grads = jax.value_and_grad(loss, has_aux=True)(state)
        return value, metrics, grads

    return f


def test_loss_is_rate_plus_snr_weighted_x_loss(tiny_cdc_cfg, tiny_cdc):
    graphdef, state = nnx.split(tiny_cdc)
    x = _image((2, 64, 64, 3))
    # Low noise (SNR > 5 for every t drawn): the x-MSE weighted by 5.
    cfg = tiny_cdc_cfg.copy_and_resolve_references()
    cfg.beta, cfg.train_t = 0.5, (0.0, 0.05)
    loss, m, grads = _loss_fn(cfg)(graphdef, state, x, jax.random.key(0))
    m = {k: float(v) for k, v in m.items()}
    assert m["bpp"] > 0 and "lpips" not in m
    np.testing.assert_allclose(m["bpp"], m["y_bpp"] + m["z_bpp"], rtol=1e-5)
    np.testing.assert_allclose(m["x_loss"], 5.0 * m["x_mse"], rtol=1e-5)
    np.testing.assert_allclose(float(loss), m["x_loss"] + 0.5 * m["bpp"], rtol=1e-5)
    # Trained end to end: the x-loss and the rate reach the content encoder,
    # the context network and the hyperprior.
    for part in ("g_a", "context_net", "h_s", "unet"):
        norm = sum(float(jnp.sum(g**2)) for g in jax.tree.leaves(grads[part]))
        assert norm > 0, part
    # High noise (SNR < 5): the weight is the SNR itself, below 5.
    cfg.train_t = (0.9, 1.0)
    _, m2, _ = _loss_fn(cfg)(graphdef, state, x, jax.random.key(0))
    assert float(m2["x_loss"]) < float(m2["x_mse"])


def test_perceptual_weight_mixes_lpips_of_the_x0_prediction(tiny_cdc_cfg, tiny_cdc):
    graphdef, state = nnx.split(tiny_cdc)
    x = _image((2, 64, 64, 3), seed=1)
    cfg = tiny_cdc_cfg.copy_and_resolve_references()
    cfg.beta, cfg.perceptual_weight, cfg.perceptual_net = 0.25, 0.9, "alexnet"
    loss, m, _ = _loss_fn(cfg)(graphdef, state, x, jax.random.key(3))
    m = {k: float(v) for k, v in m.items()}
    assert m["lpips"] > 0
    want = 0.1 * m["x_loss"] + 0.9 * m["lpips"] + 0.25 * m["bpp"]
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)


def test_context_features_condition_the_denoiser(tiny_cdc):
    graphdef, state = nnx.split(tiny_cdc)

    @jax.jit
    def x0(state, y_hat, z_t):
        model = nnx.merge(graphdef, state)
        return model.denoise(z_t, jnp.full((1,), 0.5), model.context_net(y_hat))

    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    shape = (1, 4, 4, tiny_cdc.m)
    y1 = jnp.round(4 * jax.random.normal(k1, shape))
    y2 = jnp.round(4 * jax.random.normal(k2, shape))
    z_t = jax.random.normal(k3, (1, 64, 64, 3))
    a = x0(state, y1, z_t)
    assert a.shape == (1, 64, 64, 3)
    np.testing.assert_array_equal(a, x0(state, y1, z_t))
    assert float(jnp.mean(jnp.abs(a - x0(state, y2, z_t)))) > 1e-3


def test_real_bytes_decode_to_the_same_latents_and_image(tiny_cdc_cfg, tiny_cdc):
    # CDC's latents go through the project's coder: the integer h_s and
    # context.MeanScale give (mean, scale index); the decoder recovers the
    # very latents the encoder coded, and the sampler is seeded.
    x = np.asarray(_image((1, 64, 128, 3), seed=2))
    sections, y_hat, _ = coding.encode_latents(tiny_cdc, x)
    assert all(isinstance(s, bytes) and s for s in sections)
    y_dec, _ = coding.decode_latents(tiny_cdc, sections, (64, 128))
    np.testing.assert_array_equal(y_dec, y_hat)
    # The integer means are the float ones up to the fixed point (2^-8), so
    # a latent is the float path's or (rounded the other way) one step off.
    y_float = np.asarray(jax.jit(lambda s, x: nnx.merge(*s).encode(x)[0])(
        nnx.split(tiny_cdc), jnp.asarray(x)
    ))  # fmt: skip
    d = y_float - y_hat
    assert np.abs(d - np.round(d)).max() < 0.02 and np.mean(np.abs(d) < 0.02) > 0.95
    img = decode.generate(tiny_cdc, y_dec, tiny_cdc_cfg, seed=7)
    assert img.shape == (1, 64, 128, 3) and 0.0 <= img.min() and img.max() <= 1.0
    np.testing.assert_array_equal(img, decode.generate(tiny_cdc, y_dec, tiny_cdc_cfg, seed=7))
    assert not np.array_equal(img, decode.generate(tiny_cdc, y_dec, tiny_cdc_cfg, seed=8))
    with pytest.raises(decode.CDCDecodeError, match="at least 1"):
        decode.generate(tiny_cdc, y_dec, tiny_cdc_cfg, steps=0)


def test_training_samples_show_the_decoded_image(tiny_cdc):
    # The trainer's sample rows for the cdc task: input | what CDC decodes.
    from hific_diffusion.train import samples, tasks

    config = configs.load("cdc:tiny")
    graphdef, params, rest = nnx.split(tiny_cdc, nnx.Param, ...)
    batch = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    rows = samples.rows(
        tasks.get_task("cdc"), config, graphdef, params.to_pure_dict(), rest, None, batch
    )
    assert len(rows) == 1 and [a.shape for a in rows[0]] == [(64, 64, 3)] * 2
    assert rows[0][1].dtype == np.uint8
