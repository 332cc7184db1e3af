"""U-Net shape and conditioning; loss identities; loss functions train."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from hific_diffusion import configs
from hific_diffusion.diffusion import losses, schedules, unet


def test_diffusers_equiv_has_the_peer_parameter_count():
    # Peer diffusers UNet2DModel: 113.7 M parameters (peer_gpu_figures.md).
    n = unet.param_count(configs.load("diffusers_equiv").diffusion.unet)
    assert abs(n / 113.7e6 - 1) < 0.02, n


def test_attention_sits_at_the_configured_levels():
    cfg = configs.load("diffusers_equiv").diffusion.unet
    model = nnx.eval_shape(lambda: unet.UNet(cfg, rngs=nnx.Rngs(0)))
    per_level = [len(level.attns) for level in model.down]
    assert per_level == [0, 0, 0, 0, 2, 0]  # 256 / 2^4 = 16
    assert [len(level.attns) for level in model.up] == [0, 3, 0, 0, 0, 0]
    assert model.mid_attn is not None


def test_parameters_are_float32_with_bfloat16_compute():
    cfg = configs.load("tiny").diffusion.unet
    cfg.compute_dtype = "bfloat16"
    model = nnx.eval_shape(lambda: unet.UNet(cfg, rngs=nnx.Rngs(0)))
    dtypes = {x.dtype for x in jax.tree.leaves(nnx.state(model, nnx.Param))}
    assert dtypes == {jnp.dtype("float32")}
    x = jnp.zeros((1, 16, 16, 3))
    graphdef, state = nnx.split(model)
    jaxpr = jax.make_jaxpr(lambda s: nnx.merge(graphdef, s)(x, x, 0.0))(state)
    convs = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "conv_general_dilated"]
    assert convs and all(e.outvars[0].aval.dtype == jnp.bfloat16 for e in convs)
    assert jax.eval_shape(lambda s: nnx.merge(graphdef, s)(x, x, 0.0), state).dtype == jnp.float32


def test_output_depends_on_the_logsnr_and_on_x_mse(tiny_unet):
    model = nnx.merge(*tiny_unet)
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    z, c = jax.random.normal(k1, (2, 16, 16, 3)), jax.random.normal(k2, (2, 16, 16, 3))
    f = jax.jit(lambda z, c, logsnr: model(z, c, logsnr))
    out = f(z, c, jnp.array([0.0, 0.0]))
    assert out.shape == (2, 16, 16, 3) and out.dtype == jnp.float32
    assert not np.allclose(out, f(z, c, jnp.array([5.0, 5.0])))
    assert not np.allclose(out, f(z, 0 * c, jnp.array([0.0, 0.0])))


def test_unet_rejects_sizes_it_cannot_downsample(tiny_unet):
    model = nnx.merge(*tiny_unet)
    with pytest.raises(unet.UNetInputError, match="multiples of 2"):
        jax.eval_shape(lambda: model(jnp.zeros((1, 15, 16, 3)), jnp.zeros((1, 15, 16, 3)), 0.0))
    with pytest.raises(unet.UNetInputError, match="equal shape"):
        jax.eval_shape(lambda: model(jnp.zeros((1, 16, 16, 3)), jnp.zeros((1, 16, 16, 4)), 0.0))


def test_defaults_keep_the_hfd_unet_unchanged(tiny_cfg):
    # cond_channels = 3 and no context: x_mse concatenated to z_t (6 inputs),
    # every level as wide as before, so existing bundles load unchanged.
    cfg = tiny_cfg.unet
    assert cfg.cond_channels == 3 and tuple(cfg.context_channels) == ()
    model = nnx.eval_shape(lambda: unet.UNet(cfg, rngs=nnx.Rngs(0)))
    assert model.conv_in.kernel.shape[2] == 6
    assert model.down[0].blocks[0].conv1.kernel.shape[2] == cfg.base_channels


def test_context_features_condition_their_levels(tiny_cfg, make_random_unet):
    # CDC: no x_mse input, a context feature concatenated at each of the
    # first levels; the output follows the context.
    cfg = tiny_cfg.unet.copy_and_resolve_references()
    cfg.cond_channels, cfg.context_channels = 0, (5, 7)
    model = nnx.merge(*make_random_unet(cfg))
    assert model.conv_in.kernel.shape[2] == 3
    assert model.down[0].blocks[0].conv1.kernel.shape[2] == cfg.base_channels + 5
    assert model.down[1].blocks[0].conv1.kernel.shape[2] == cfg.base_channels + 7
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    z = jax.random.normal(k[0], (1, 16, 16, 3))
    ctx = (jax.random.normal(k[1], (1, 16, 16, 5)), jax.random.normal(k[2], (1, 8, 8, 7)))
    f = jax.jit(lambda c0, c1: model(z, None, 0.5, context=(c0, c1)))
    out = f(*ctx)
    assert out.shape == (1, 16, 16, 3)
    assert not np.allclose(out, f(0 * ctx[0], ctx[1]), atol=1e-4)
    assert not np.allclose(out, f(ctx[0], 0 * ctx[1]), atol=1e-4)
    np.testing.assert_array_equal(out, f(*ctx))
    with pytest.raises(unet.UNetInputError, match="context features"):
        jax.eval_shape(lambda: model(z, None, 0.5, context=ctx[:1]))
    bad = tiny_cfg.unet.copy_and_resolve_references()
    bad.context_channels = (4, 4, 4)  # more than the two levels
    with pytest.raises(unet.UNetConfigError, match="context_channels"):
        unet.check_config(bad)


def _affine_model(z, c, logsnr, training=False, dropout_rng=None):
    """A simple differentiable stand-in for the U-Net (identities hold for any model)."""
    return 0.3 * z - 0.5 * c + 0.01 * logsnr[:, None, None, None]


@pytest.mark.parametrize("weighting,metric", [("x", "x_mse"), ("eps", "eps_mse"), ("v", "v_mse")])
def test_v_loss_weighting_equals_the_named_mse(weighting, metric):
    cfg = configs.load("tiny").diffusion
    cfg.loss_weighting = weighting
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    x, c = jax.random.uniform(k1, (16, 8, 8, 3)), jax.random.uniform(k2, (16, 8, 8, 3))
    loss, metrics = losses.diffusion_loss(_affine_model, x, c, jax.random.PRNGKey(3), cfg)
    # Per example the weighted v-MSE equals that MSE, so the batch means agree.
    np.testing.assert_allclose(loss, metrics[metric], rtol=2e-3)


def test_unknown_weighting_is_a_clear_error():
    cfg = configs.load("tiny").diffusion
    cfg.loss_weighting = "nope"
    x = jnp.zeros((1, 8, 8, 3))
    with pytest.raises(losses.LossConfigError, match="loss_weighting"):
        losses.diffusion_loss(_affine_model, x, x, jax.random.PRNGKey(0), cfg)


def _exact_for_zero_target(z, c, logsnr, training=False, dropout_rng=None):
    """The exact v when the diffused signal is 0: z = sigma eps, v = alpha eps."""
    alpha, sigma = schedules.alpha_sigma(logsnr)
    return (alpha / sigma)[:, None, None, None] * z


def test_residual_target_diffuses_x_minus_x_mse():
    cfg = configs.load("tiny").diffusion
    x = jax.random.uniform(jax.random.PRNGKey(1), (8, 8, 8, 3))
    # x == x_mse: the residual is 0, so the exact-for-zero model has zero loss...
    cfg.target = "residual"
    loss, _ = losses.diffusion_loss(_exact_for_zero_target, x, x, jax.random.PRNGKey(2), cfg)
    assert float(loss) < 1e-8
    # ...while modelling the image it does not.
    cfg.target = "image"
    loss, _ = losses.diffusion_loss(_exact_for_zero_target, x, x, jax.random.PRNGKey(2), cfg)
    assert float(loss) > 1e-2


def test_diffusion_space_round_trips():
    cfg = configs.load("tiny").diffusion
    cfg.target, cfg.residual_scale = "residual", 0.25
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    x, c = jax.random.normal(k1, (2, 4, 4, 3)), jax.random.normal(k2, (2, 4, 4, 3))
    r = losses.to_diffusion_space(x, c, cfg)
    np.testing.assert_allclose(r, (x - c) / 0.25, rtol=1e-6)
    np.testing.assert_allclose(losses.from_diffusion_space(r, c, cfg), x, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "field,value,match", [("target", "noise", "target"), ("residual_scale", 0.0, "residual_scale")]
)
def test_bad_diffusion_target_is_a_clear_error(field, value, match):
    cfg = configs.load("tiny").diffusion
    cfg.target = "residual"
    cfg[field] = value
    x = jnp.zeros((1, 8, 8, 3))
    with pytest.raises(losses.LossConfigError, match=match):
        losses.diffusion_loss(_affine_model, x, x, jax.random.PRNGKey(0), cfg)


@pytest.mark.parametrize("kind", ["diffusion", pytest.param("flow", marks=pytest.mark.slow)])
def test_stage2_loss_decreases_under_adam_on_a_fixed_batch(kind, tiny_cfg, make_random_unet):
    """With dropout on (its key from the loss's rng)."""
    random_unet = make_random_unet
    cfg = tiny_cfg.unet.copy_and_resolve_references()
    cfg.dropout = 0.1
    graphdef, state = random_unet(cfg)
    params = state
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(4, 16, 16, 3)), jnp.float32)
    batch = {"image": x, "x_mse": jnp.clip(x + 0.05, 0, 1)}
    opt = optax.adam(1e-3)

    @jax.jit
    def step(params, opt_state):
        loss_fn = getattr(losses, f"{kind}_loss")

        def pure(params):
            model = nnx.merge(graphdef, params)
            return loss_fn(model, batch["image"], batch["x_mse"], jax.random.PRNGKey(0), tiny_cfg)

        (loss, metrics), g = jax.value_and_grad(pure, has_aux=True)(params)
        updates, opt_state = opt.update(g, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state = opt.init(params)
    first = None
    for _ in range(8):
        params, opt_state, loss = step(params, opt_state)
        first = loss if first is None else first
    assert np.isfinite(loss) and loss < first


def test_dropout_is_active_in_training_only_and_driven_by_the_key(make_random_unet):
    random_unet = make_random_unet

    cfg = configs.load("tiny").diffusion.unet
    cfg.dropout = 0.5
    model = nnx.merge(*random_unet(cfg))
    z = jax.random.normal(jax.random.PRNGKey(0), (1, 16, 16, 3))
    k1, k2 = jax.random.PRNGKey(1), jax.random.PRNGKey(2)

    @jax.jit  # one compilation for all five calls
    def outputs():
        f = lambda t, k: model(z, z, 0.0, training=t, dropout_rng=k)
        return f(False, k1), f(False, k2), f(True, k1), f(True, k1), f(True, k2)

    eval1, eval2, train1, train1_again, train2 = outputs()
    np.testing.assert_array_equal(eval1, eval2)
    np.testing.assert_array_equal(train1, train1_again)
    assert not np.allclose(train1, train2) and not np.allclose(train1, eval1)
    with pytest.raises(unet.UNetInputError, match="dropout_rng"):
        model(z, z, 0.0, training=True)


def _exact_model(x):
    """The v that recovers ``x`` exactly: v = (alpha z - x) / sigma."""

    def model(z, c, logsnr, training=False, dropout_rng=None):
        alpha, sigma = (a[:, None, None, None] for a in schedules.alpha_sigma(logsnr))
        return (alpha * z - x) / sigma

    return model


@pytest.mark.parametrize("kind", ["diffusion", "flow"])
def test_perceptual_weight_mixes_in_lpips_of_the_implied_image(kind):
    """CDC's rho: (1 - rho) * MSE loss + rho * LPIPS(x, x0_pred); rho = 0 is the plain loss."""
    from hific_diffusion.metrics.lpips import LPIPS

    cfg = configs.load("tiny").diffusion
    cfg.target = "image"
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.uniform(k1, (2, 32, 32, 3))
    c = jnp.clip(x + 0.2 * jax.random.normal(k2, x.shape), 0, 1)
    loss_fn = getattr(losses, f"{kind}_loss")
    plain, plain_m = loss_fn(_affine_model, x, c, jax.random.PRNGKey(3), cfg)
    assert "lpips" not in plain_m
    cfg.perceptual_weight, cfg.perceptual_net = 0.75, "alexnet"
    mixed, m = loss_fn(_affine_model, x, c, jax.random.PRNGKey(3), cfg)
    np.testing.assert_allclose(mixed, 0.25 * plain + 0.75 * m["lpips"], rtol=1e-5)
    assert float(m["lpips"]) > 1e-4  # the affine stand-in's x0 is not x
    if kind == "diffusion":
        # A model whose implied x0 is x itself: LPIPS 0, the MSE part ~0 too.
        exact, m = loss_fn(_exact_model(2 * x - 1), x, c, jax.random.PRNGKey(3), cfg)
        assert float(m["lpips"]) < 1e-7 and float(exact) < 1e-3
    # The LPIPS term is the metric's own distance (AlexNet, on the same images).
    a = np.asarray(np.round(x * 255), np.uint8)
    b = np.asarray(np.round(c * 255), np.uint8)
    d = losses.lpips.distance("alexnet", losses._lpips_params("alexnet"), 2 * x - 1, 2 * c - 1)
    np.testing.assert_allclose(d, LPIPS("alexnet").batch(a, b), rtol=2e-2, atol=2e-3)


def test_perceptual_loss_has_gradients_towards_the_image():
    """Gradient descent on the image under the LPIPS term alone moves it closer to x."""
    cfg = configs.load("tiny").diffusion
    cfg.perceptual_weight, cfg.perceptual_net = 1.0, "alexnet"
    x = 2 * jax.random.uniform(jax.random.PRNGKey(0), (1, 32, 32, 3)) - 1
    y = jnp.zeros_like(x)

    def f(y):
        return losses.with_perceptual(jnp.float32(0), {}, y, x, cfg)[0]

    before = f(y)
    for _ in range(5):
        y = y - 0.5 * jax.grad(f)(y)
    assert float(f(y)) < 0.8 * float(before)


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("perceptual_weight", 1.5, "perceptual_weight"),
        ("perceptual_net", "resnet", "perceptual_net"),
    ],
)
def test_bad_perceptual_option_is_a_clear_error(field, value, match):
    cfg = configs.load("tiny").diffusion
    cfg.perceptual_weight = 0.5
    cfg[field] = value
    x = jnp.zeros((1, 32, 32, 3))
    with pytest.raises(losses.LossConfigError, match=match):
        losses.diffusion_loss(_affine_model, x, x, jax.random.PRNGKey(0), cfg)


@pytest.mark.parametrize("kind", ["diffusion", "flow"])
def test_train_t_limits_the_noise_levels_the_loss_trains(kind):
    """``train_t = (lo, hi)``: every example's t lies in [lo, hi] (seen through
    the log-SNR the network gets), and (0, 1) draws the same t as before."""
    cfg = configs.load("tiny").diffusion
    cfg.target = "image"
    seen = []

    def model(z, c, logsnr, training=True, dropout_rng=None):
        seen.append(np.asarray(logsnr))
        return jnp.zeros_like(z)

    x = jnp.full((64, 8, 8, 3), 0.5)
    loss_fn = getattr(losses, f"{kind}_loss")
    to_cond = (
        (lambda t: schedules.logsnr_from_config(t, cfg))
        if kind == "diffusion"
        else (lambda t: schedules.flow_logsnr(t, cfg.logsnr_min, cfg.logsnr_max))
    )
    full = to_cond(jnp.asarray([0.0, 1.0]))
    loss_fn(model, x, x, jax.random.PRNGKey(1), cfg)
    cfg.train_t = (0.8, 1.0)
    loss_fn(model, x, x, jax.random.PRNGKey(1), cfg)
    wide, narrow = seen
    lo, hi = sorted(np.asarray(to_cond(jnp.asarray([0.8, 1.0]))))
    assert np.all((narrow >= lo - 1e-4) & (narrow <= hi + 1e-4))
    assert np.mean((wide >= lo) & (wide <= hi)) < 0.5  # the full range really is wider
    assert not np.allclose(sorted(np.asarray(full)), (lo, hi))
    # (0, 1) is the plain uniform draw: the same t as jax.random.uniform.
    k_t = jax.random.split(jax.random.PRNGKey(1), 3)[0]
    np.testing.assert_array_equal(wide, np.asarray(to_cond(jax.random.uniform(k_t, (64,)))))


@pytest.mark.parametrize(
    "value", [(0.5, 0.5), (-0.1, 1.0), (0.2, 1.5), (0.1,), (float("nan"), 1.0)]
)
def test_bad_train_t_is_a_clear_error(value):
    cfg = configs.load("tiny").diffusion
    cfg.train_t = value
    x = jnp.zeros((1, 8, 8, 3))
    with pytest.raises(losses.LossConfigError, match="train_t"):
        losses.diffusion_loss(_affine_model, x, x, jax.random.PRNGKey(0), cfg)
