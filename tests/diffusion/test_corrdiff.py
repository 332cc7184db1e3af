"""CorrDiff's rule, its least-squares factor and the encoder/decoder replay
(tiny random U-Net: the sampler's bookkeeping, not its quality)."""

import numpy as np
import pytest

from hific_diffusion.diffusion import corrdiff, decode


def test_combine_and_fit_gamma_are_least_squares_within_the_range():
    rng = np.random.default_rng(0)
    x0, priv = rng.normal(size=(1, 8, 8, 3)), rng.normal(size=(1, 8, 8, 3))
    mask = np.ones((1, 8, 8, 1))
    truth = corrdiff.combine(x0, priv, 0.3)
    assert float(corrdiff.fit_gamma(x0, priv, truth, mask)) == pytest.approx(0.3, abs=1e-5)
    # outside the range it is clipped; equal predictions give 0
    assert float(corrdiff.fit_gamma(x0, priv, corrdiff.combine(x0, priv, 1.7), mask)) == 1.0
    assert float(corrdiff.fit_gamma(x0, priv, corrdiff.combine(x0, priv, -0.5), mask)) == 0.0
    assert float(corrdiff.fit_gamma(x0, x0, truth, mask)) == 0.0
    # the mask excludes pixels: garbage there does not move the fit
    masked = mask.copy()
    masked[:, 4:] = 0
    garbage = np.where(masked > 0, truth, 100.0)
    assert float(corrdiff.fit_gamma(x0, priv, garbage, masked)) == pytest.approx(0.3, abs=1e-5)


def test_quantize_is_float16():
    assert float(corrdiff.quantize(0.1)) == float(np.float16(0.1))


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(1)
    x = rng.random((1, 40, 56, 3)).astype(np.float32)
    x_mse = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1).astype(np.float32)
    return x, x_mse


@pytest.mark.parametrize("target", ["image", "residual"])
def test_factor_zero_is_the_diffusion_decoder_and_the_replay_is_the_encoders(
    tiny_cfg, tiny_unet, images, target
):
    cfg = tiny_cfg.copy_and_resolve_references()
    cfg.target = target
    x, x_mse = images
    kw = dict(cfg=cfg, steps=3, seed=4, tile=32, overlap=8)
    plain = decode.generate(*tiny_unet, x_mse, **kw)
    zero, _ = corrdiff.generate(*tiny_unet, x_mse, gammas=np.zeros(3), **kw)
    assert np.array_equal(zero, plain)
    fitted, gammas = corrdiff.generate(*tiny_unet, x_mse, x_true01=x, **kw)
    assert np.array_equal(gammas, gammas.astype(np.float16).astype(np.float32))
    replay, used = corrdiff.generate(*tiny_unet, x_mse, gammas=gammas, **kw)
    assert np.array_equal(replay, fitted) and np.array_equal(used, gammas)
    # the last step's fit: no worse than the uncorrected sampler, and than x_mse
    # (the random network's x0 is far off; the correction pulls toward x_mse)
    mse = lambda y: float(np.mean((y - x) ** 2))  # noqa: E731
    assert mse(fitted) <= mse(plain) and mse(fitted) <= mse(x_mse) + 1e-4


def test_the_decoder_needs_as_many_factors_as_steps(tiny_cfg, tiny_unet, images):
    _, x_mse = images
    with pytest.raises(decode.GenerateError, match="2 correction factors for a sampler of 3"):
        corrdiff.generate(*tiny_unet, x_mse, cfg=tiny_cfg, gammas=np.zeros(2), steps=3)
    with pytest.raises(decode.GenerateError, match="either x_true01"):
        corrdiff.generate(*tiny_unet, x_mse, cfg=tiny_cfg, steps=3)


def test_grouped_tiles_are_refused(tiny_cfg, tiny_unet, images):
    cfg = tiny_cfg.copy_and_resolve_references()
    cfg.tile_mode = "grouped"
    x, x_mse = images
    with pytest.raises(decode.GenerateError, match="tile_mode 'overlap'"):
        corrdiff.check_args(cfg, steps=2)
    with pytest.raises(decode.GenerateError, match="tile_mode 'overlap'"):
        corrdiff.generate(*tiny_unet, x_mse, cfg=cfg, x_true01=x, steps=2)
