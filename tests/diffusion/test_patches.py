"""Tiling: exact single tile, vmap == loop, merge inverts extract, no seams."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hific_diffusion.diffusion import decode, patches


def _smooth_image(h, w):
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    img = np.stack([0.5 + 0.3 * np.sin(2 * xx + 1 * yy), 0.3 + 0.4 * yy, 0.6 - 0.3 * xx * yy], -1)
    return img[None].astype(np.float32)


def test_tiles_cover_the_image_with_at_least_the_overlap():
    for size, tile, overlap in [(100, 32, 8), (64, 32, 8), (33, 32, 0), (256, 64, 16)]:
        starts = patches.tile_starts(size, tile, overlap)
        assert starts[0] == 0 and starts[-1] + tile == size
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:], strict=False))


def test_merge_inverts_extract():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 50, 70, 3))
    layout = patches.make_layout(50, 70, 32, 8)
    assert layout.num_tiles == 6
    merged = patches.merge_tiles(patches.extract_tiles(x, layout), layout, 2)
    np.testing.assert_allclose(merged, x, atol=1e-6)


def test_vmapped_tiles_equal_a_python_loop_over_tiles(tiny_cfg, tiny_unet):
    model = nnx.merge(*tiny_unet)
    k1, k2 = jax.random.split(jax.random.PRNGKey(1))
    z = jax.random.normal(k1, (1, 48, 56, 3))
    cond = jax.random.uniform(k2, (1, 48, 56, 3), minval=-1, maxval=1)
    layout = patches.make_layout(48, 56, 32, 8)

    def one(zt, ct):
        return model(zt[None], ct[None], jnp.float32(2.0))[0]

    # chunks of 3 of the 4 tiles exercises the lax.map-over-chunks path
    tiled = jax.jit(lambda z, c: patches.apply_tiled(one, z, c, layout, chunk=3))(z, cond)
    zt, ct = patches.extract_tiles(z, layout), patches.extract_tiles(cond, layout)
    one_jit = jax.jit(one)
    looped = patches.merge_tiles(
        jnp.stack([one_jit(zt[i], ct[i]) for i in range(layout.num_tiles)]), layout, 1
    )
    # Float32 convolutions over a batch of 3 tiles and over one tile may use
    # different XLA kernels, so the sums can round differently: identical here
    # under four XLA settings, off by more than 1e-5 (3 float32 ulps of the
    # output's magnitude ~58) on another CPU. Relative to the output's scale,
    # 1e-5 still lies five orders of magnitude below a misplaced or
    # mis-weighted tile.
    scale = float(jnp.abs(looped).max())
    assert scale > 1.0
    np.testing.assert_allclose(tiled, looped, rtol=0, atol=1e-5 * scale)


def test_image_within_one_tile_decodes_identically_with_and_without_tiling(tiny_cfg, tiny_unet):
    x = _smooth_image(22, 30)  # padded to 22 x 30, below the 32-pixel tile
    kw = dict(kind="diffusion", cfg=tiny_cfg, steps=2, seed=5, overlap=8)
    tiled = decode.generate(*tiny_unet, x, tile=32, **kw)
    untiled = decode.generate(*tiny_unet, x, tile=0, **kw)
    np.testing.assert_array_equal(tiled, untiled)


def _blur_zero_padded(x, radius=6):
    """Box blur with zero padding: wrong near every tile edge, like a U-Net's padding."""
    k = jnp.ones((2 * radius + 1,)) / (2 * radius + 1)
    x = jax.vmap(lambda col: jnp.convolve(col, k, mode="same"), in_axes=1, out_axes=1)(x)
    return jax.vmap(lambda row: jnp.convolve(row, k, mode="same"), in_axes=0, out_axes=0)(x)


@pytest.mark.parametrize("window,seams", [("smooth", False), ("flat", True)])
def test_no_seams_error_along_tile_borders_is_no_larger_than_in_tile_interiors(window, seams):
    """Statistic: per-pixel error e = |tiled - untiled| (mean over channels).

    Sampling (DDIM, 4 steps) of a smooth synthetic image with a denoiser that
    predicts ``x = box_blur(x_mse)`` with zero padding, so every tile's output
    is wrong within 6 px of the tile's edges, as a U-Net's zero padding makes
    it. "Border" pixels lie within 1 px of an internal tile edge (a tile's
    first or last row/column not on the image boundary); "interior" pixels
    are all others. With the smooth window, mean e over border pixels must not
    exceed its mean over interior pixels; plain averaging (flat window), which
    does leave seams, must fail the same inequality.
    """
    from hific_diffusion.diffusion import parameterization as P
    from hific_diffusion.diffusion import samplers, schedules

    h = w = 72
    cond = jnp.asarray(2 * _smooth_image(h, w) - 1)
    layout = patches.make_layout(h, w, 32, 12, window=window)
    assert layout.ys == layout.xs == (0, 20, 40)
    one_tile_layout = patches.make_layout(h, w, 0, 0)

    def run(layout):
        def predict(z, logsnr):
            def tile_fn(zt, ct):
                alpha, sigma = schedules.alpha_sigma(logsnr)
                x_hat = jax.vmap(_blur_zero_padded, in_axes=2, out_axes=2)(ct)
                return P.v_from_z_x(zt, x_hat, alpha, sigma)

            return patches.apply_tiled(tile_fn, z, cond, layout, chunk=4)

        schedule = lambda t: schedules.logsnr_schedule(t, 0.5, -15.0, 15.0)
        return jax.jit(
            lambda key: samplers.sample_diffusion(
                predict, cond.shape, key, steps=4, schedule=schedule, sampler="ddim"
            )
        )(jax.random.PRNGKey(0))

    err = np.abs(np.asarray(run(layout) - run(one_tile_layout)))[0].mean(-1)
    border = np.zeros((h, w), bool)
    for s in layout.ys:
        for edge in (s, s + layout.tile_h - 1):
            if 0 < edge < h - 1:
                border[edge - 1 : edge + 2, :] = True
                border[:, edge - 1 : edge + 2] = True
    assert err.max() > 1e-3  # tiling does change the result
    assert (err[border].mean() > err[~border].mean()) == seams


@pytest.mark.parametrize("kind", ["diffusion", "flow"])
def test_same_seed_gives_the_same_image_and_a_different_seed_a_different_one(
    kind, tiny_cfg, tiny_unet
):
    x = _smooth_image(40, 36)
    kw = dict(kind=kind, cfg=tiny_cfg, steps=2, tile=32, overlap=8)
    a = decode.generate(*tiny_unet, x, seed=7, **kw)
    b = decode.generate(*tiny_unet, x, seed=7, **kw)
    c = decode.generate(*tiny_unet, x, seed=8, **kw)
    assert a.shape == x.shape and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 1e-3


def test_residual_target_decodes_to_x_mse_plus_the_scaled_generated_residual(tiny_cfg, tiny_unet):
    """Same random U-Net and seed: with the residual target the output is x_mse
    plus residual_scale times a sample that does not depend on the scale
    (the image target, by contrast, lands far from x_mse)."""
    x = _smooth_image(32, 32)
    kw = dict(kind="diffusion", steps=2, seed=3, tile=0)
    cfg = tiny_cfg.copy_and_resolve_references()
    assert np.abs(decode.generate(*tiny_unet, x, cfg=cfg, **kw) - x).mean() > 0.05
    cfg.target = "residual"
    out = {}
    for scale in (1e-3, 2e-3):
        cfg.residual_scale = scale
        out[scale] = decode.generate(*tiny_unet, x, cfg=cfg, **kw)
    d1, d2 = out[1e-3] - x, out[2e-3] - x
    assert np.abs(d1).mean() > 1e-4
    np.testing.assert_allclose(d2, 2 * d1, atol=2e-6)


def test_progress_chunks_give_the_same_image_as_one_call(tiny_cfg, tiny_unet):
    x = _smooth_image(24, 24)
    kw = dict(kind="diffusion", cfg=tiny_cfg, steps=3, seed=1, tile=0)
    np.testing.assert_array_equal(
        decode.generate(*tiny_unet, x, progress=True, **kw), decode.generate(*tiny_unet, x, **kw)
    )


@pytest.mark.parametrize(
    "args,match",
    [
        (dict(steps=0), "steps"),
        (dict(seed=-1), "seed"),
        (dict(noise_level=2.0), "noise_level"),
        (dict(kind="gan"), "kind"),
        (dict(tile=31), "multiple"),
        (dict(tile=32, overlap=20), "overlap"),
    ],
)
def test_bad_arguments_are_clear_errors(args, match, tiny_cfg, tiny_unet):
    kw = dict(kind="diffusion", cfg=tiny_cfg, steps=1, seed=0) | args
    with pytest.raises(ValueError, match=match):
        decode.generate(*tiny_unet, _smooth_image(40, 40), **kw)


def test_bad_images_are_clear_errors(tiny_cfg, tiny_unet):
    with pytest.raises(decode.GenerateError, match="shape"):
        decode.generate(*tiny_unet, np.zeros((8, 8, 3), np.float32), cfg=tiny_cfg)
    with pytest.raises(decode.GenerateError, match="finite"):
        decode.generate(*tiny_unet, np.full((1, 8, 8, 3), np.nan, np.float32), cfg=tiny_cfg)
