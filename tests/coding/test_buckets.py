"""Size buckets (issue #13): networks run on a few padded sizes, and the
padding changes nothing that matters (autoencoder/valid.py)."""

import jax.numpy as jnp
import numpy as np
import pytest

from hific_diffusion.autoencoder import tiles, valid
from hific_diffusion.coding import coding, params
from hific_diffusion.coding.bitstream import BitstreamError


def _crop(photos, h, w, which=1):
    return jnp.asarray(photos[which][:h, :w][None])


def _policy(monkeypatch, extra):
    """Buckets ``extra`` pixels larger than the coded size (0: no padding)."""
    monkeypatch.setattr(valid, "bucket_side", lambda n: n + extra)


def _decode(model, sections, hw):
    y_hat, z_hat = coding.decode_latents(model, sections, hw)
    return y_hat, z_hat, coding.synthesize(model, y_hat)


def test_bucket_ladder():
    assert valid.bucket_hw((512, 768)) == (512, 768)  # Kodak is its own bucket
    assert valid.bucket_hw((704, 1024)) == (768, 1024)
    assert valid.bucket_hw((64, 4160)) == (64, 5120)
    for n in range(64, 9000, 64):
        b = valid.bucket_side(n)
        assert b >= n and b % 64 == 0
        assert b <= max(2 * n, 128) and (n < 512 or b <= 1.5 * n)


def test_integer_path_in_a_larger_bucket_is_bit_identical(trained_tiny, photo_list, monkeypatch):
    """Decoding the same sections at the exact size and inside a bucket 128
    pixels larger gives the same latents, bit for bit; without the region
    mask the padding leaks into the border and the latents change."""
    model = trained_tiny[0]
    x = _crop(photo_list, 192, 128)
    _policy(monkeypatch, 0)
    sections, y_enc, z_enc = coding.encode_latents(model, x)
    y0, z0, img0 = _decode(model, sections, (192, 128))
    np.testing.assert_array_equal(y0, y_enc)
    _policy(monkeypatch, 128)
    y1, z1, img1 = _decode(model, sections, (192, 128))
    np.testing.assert_array_equal(z1, z0)
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_allclose(img1, img0, atol=2e-6)
    # The obvious wrong implementation: pad without masking.
    _policy(monkeypatch, 192)  # a new shape, so the functions are traced again
    monkeypatch.setattr(valid, "mask", lambda v: v)
    try:
        y2 = coding.decode_latents(model, sections, (192, 128))[0]
    except BitstreamError:  # decoding goes wrong outright: the section no longer fits
        return
    assert not np.array_equal(y2, y0)


def test_encoding_in_a_larger_bucket_gives_the_same_latents_and_rate(
    trained_tiny, photo_list, monkeypatch
):
    model = trained_tiny[0]
    x = _crop(photo_list, 128, 192, which=2)
    _policy(monkeypatch, 0)
    y0, z0 = coding.analyze(model, x)
    s0 = coding.compress_latents(model, x)
    _policy(monkeypatch, 128)
    y1, z1 = coding.analyze(model, x)
    s1 = coding.compress_latents(model, x)
    scale = float(np.abs(y0).max())
    np.testing.assert_allclose(y1, y0, atol=1e-5 * scale)
    np.testing.assert_allclose(z1, z0, atol=1e-5 * float(np.abs(z0).max()))
    # Real bits: the same symbols up to a rare float-rounding flip.
    bits0, bits1 = 8 * sum(map(len, s0)), 8 * sum(map(len, s1))
    assert abs(bits1 - bits0) <= 0.005 * bits0, (bits0, bits1)


def test_twenty_sizes_compile_once_per_bucket(tiny_model, photo_list):
    """20 photos of 20 different sizes compress and decompress with at most
    one compilation of each jitted function per bucket (here <= 4 buckets),
    not one per size."""
    rng = np.random.default_rng(0)
    sizes = set()
    while len(sizes) < 20:
        sizes.add((int(rng.integers(300, 513)), int(rng.integers(300, 513))))
    coded = [(h + (-h) % 64, w + (-w) % 64) for h, w in sizes]
    buckets = {valid.bucket_hw(hw) for hw in coded}
    assert len(buckets) <= 4 < len(set(coded))
    fns = {
        "analyze": tiles._analyze,
        "hyper": params.jit_hyper,
        "stage_params": params.jit_stage_params,
        "channel_context": params.jit_channel_context,
        "synthesize": tiles._synthesize,
    }
    before = {k: f._cache_size() for k, f in fns.items()}
    groups = len(tiny_model.groups)
    for ph, pw in coded:
        x = _crop(photo_list, ph, pw, which=0)  # astronaut: 512x512
        sections = coding.compress_latents(tiny_model, x)
        out = coding.decompress_latents(tiny_model, sections, (ph, pw))
        assert out.shape == (1, ph, pw, 3)
    new = {k: f._cache_size() - before[k] for k, f in fns.items()}
    per_bucket = {
        "analyze": 1,
        "hyper": 1,
        "stage_params": groups,
        "channel_context": groups - 1,
        "synthesize": 1,
    }
    for k, n in new.items():
        assert n <= per_bucket[k] * len(buckets), (k, n, len(buckets))
    assert new["analyze"] >= 1 or before["analyze"] > 0


@pytest.mark.parametrize("scale", [1, 4, 16, 64])
def test_region_mask_zeroes_outside_at_every_resolution(scale):
    bucket, coded = (256, 384), (128, 320)
    x = jnp.ones((1, 256 // scale, 384 // scale, 2))
    with valid.region(bucket, jnp.asarray(coded)):
        m = np.asarray(valid.mask(x))
    vh, vw = 128 // scale, 320 // scale
    assert m[:, :vh, :vw].all() and not m[:, vh:].any() and not m[:, :, vw:].any()
    np.testing.assert_array_equal(valid.mask(x), x)  # outside a region: unchanged


def test_likelihood_estimate_ignores_the_padding(trained_tiny, photo_list, monkeypatch):
    model = trained_tiny[0]
    x = _crop(photo_list, 128, 192)
    _policy(monkeypatch, 0)
    exact = coding.estimate_bits(model, x)
    _policy(monkeypatch, 192)
    padded = coding.estimate_bits(model, x)
    assert padded == pytest.approx(exact, rel=1e-4)
