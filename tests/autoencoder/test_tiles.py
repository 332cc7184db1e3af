"""Tiled g_a / g_s for large images (issue #18: flat decode memory): the halo
covers the receptive field, so tiles equal the whole-image pass up to float
rounding, with one compilation for all tiles (autoencoder/tiles.py)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hific_diffusion import configs
from hific_diffusion.autoencoder import tiles
from hific_diffusion.autoencoder.defaults import Y_STRIDE
from hific_diffusion.autoencoder.elic import ELIC
from hific_diffusion.coding import coding


def _reach(grad_map, centre):
    rows = np.where(np.abs(grad_map).sum(axis=(1, 2)) > 0)[0]
    return max(centre - rows.min(), rows.max() - centre)


@pytest.mark.parametrize("res_blocks", [1, 3])
def test_halo_covers_the_receptive_field_of_g_s_and_g_a(res_blocks):
    """Measured with gradients of a random model on random inputs (no dead ReLUs)."""
    cfg = configs.load("tiny").model
    cfg.res_blocks = res_blocks
    model = ELIC(cfg, rngs=nnx.Rngs(0))
    n = 40  # latents; the centre is far from every border
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    y = 3 * jax.random.normal(k1, (1, n, n, cfg.M))
    c = n // 2 * Y_STRIDE

    def pixels(y):  # the first and the last pixel of the centre latent's block
        x = model.synthesis(y)
        return x[0, c, c].sum() + x[0, c + Y_STRIDE - 1, c + Y_STRIDE - 1].sum()

    reach_s = _reach(np.asarray(jax.grad(pixels)(y))[0], n // 2)
    x = jax.random.uniform(k2, (1, n * Y_STRIDE, n * Y_STRIDE, 3))
    grad = jax.grad(lambda x: model.analysis(x)[0, n // 2, n // 2].sum())(x)
    reach_a = _reach(np.asarray(grad)[0], c) / Y_STRIDE
    halo = tiles.halo(res_blocks)
    assert 4 <= reach_s <= halo and 4 <= reach_a <= halo, (reach_s, reach_a, halo)


@pytest.fixture
def always_tiled(monkeypatch):
    monkeypatch.setattr(tiles, "TILED_ABOVE", 0)


def _model_and_latents(tiny_model, photo_list):
    cm = coding.prepare(tiny_model)
    x = jnp.asarray(photo_list[0][:448, :320][None])  # 28 x 20 latents
    y_hat, _ = coding.decode_latents(cm, coding.compress_latents(cm, x), (448, 320))
    return cm, x, y_hat


def test_tiled_synthesis_equals_the_whole_image_up_to_rounding(
    tiny_model, photo_list, always_tiled
):
    cm, _, y_hat = _model_and_latents(tiny_model, photo_list)
    whole = tiles.synthesize(cm, y_hat, tile=64)  # one tile: no seams
    before = tiles._synthesize._cache_size()
    tiled = tiles.synthesize(cm, y_hat, tile=8)  # 4 x 3 tiles, 7 seams
    assert tiles._synthesize._cache_size() - before <= 1  # one layout for every tile
    err = np.abs(tiled - whole)
    assert err.max() < 1e-5, err.max()  # invisible: far below 1/255
    # The halo is what makes it exact: without it the seams show.
    no_halo = tiles.synthesize(dataclasses.replace(cm, halo=0), y_hat, tile=8)
    assert np.abs(no_halo - whole).max() > 1e-3


def test_tiled_analysis_equals_the_whole_image_up_to_rounding(tiny_model, photo_list, always_tiled):
    cm, x, _ = _model_and_latents(tiny_model, photo_list)
    y0, z0 = tiles.analyze(cm, x, tile=64)
    y1, z1 = tiles.analyze(cm, x, tile=8)
    assert y1.shape == y0.shape and z1.shape == z0.shape
    assert np.abs(y1 - y0).max() < 1e-4 * max(1.0, np.abs(y0).max())
    assert np.abs(z1 - z0).max() < 1e-4 * max(1.0, np.abs(z0).max())
    y2, _ = tiles.analyze(dataclasses.replace(cm, halo=0), x, tile=8)
    assert np.abs(y2 - y0).max() > 1e-2


def test_large_images_tile_and_small_ones_do_not():
    assert not tiles.tiled((1024, 1024), tiles.TILE)
    assert not tiles.tiled((1536, 1536), tiles.TILE)
    assert tiles.tiled((2048, 1536), tiles.TILE)
    assert tiles.tiled((4096, 4096), tiles.TILE)
    # Windows cover every latent once, with the halo clipped at the borders.
    windows = list(tiles.tile_windows(20, 8, 3))
    assert windows == [(0, 11, 0, 8), (5, 19, 8, 16), (13, 20, 16, 20)]


def test_uint8_synthesis_converts_each_tile_by_the_one_rule(tiny_model, photo_list, always_tiled):
    """The MSE decoder's uint8 output (no float image of the whole size) is
    images.to_uint8 of the float synthesis."""
    from hific_diffusion import images

    cm, _, y_hat = _model_and_latents(tiny_model, photo_list)
    as_uint8 = tiles.synthesize(cm, y_hat, tile=8, uint8=True)
    assert as_uint8.dtype == np.uint8
    np.testing.assert_array_equal(as_uint8, images.to_uint8(tiles.synthesize(cm, y_hat, tile=8)))
