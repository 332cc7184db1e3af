"""HFD+'s residual-energy map: levels, conditioning, and its side information
through the Codec (tiny random models: plumbing and exactness, not quality)."""

import dataclasses

import numpy as np
import pytest
from flax import nnx

from hific_diffusion import configs
from hific_diffusion.autoencoder.elic import ELIC
from hific_diffusion.coding import bitstream, sideinfo
from hific_diffusion.diffusion import decode, hfdplus
from hific_diffusion.diffusion.unet import UNetInputError
from hific_diffusion.pipeline import Codec, CodecError


@pytest.fixture(scope="module")
def cfg():
    return configs.load("tiny:hfdplus").diffusion


def test_levels_are_log_scale_per_channel_and_block(cfg):
    block, levels, e0, ratio = hfdplus.params(cfg)
    assert (block, levels, ratio) == (16, 8, 2.0)
    x = np.zeros((1, 32, 48, 3), np.float32)
    r = np.zeros_like(x)
    r[0, :16, :16, 0] = 0.5 * e0  # below min_energy: level 0
    r[0, :16, 16:32, 1] = 1.5 * e0  # [e0, 2 e0): level 1
    r[0, 16:, :16, 2] = 5 * e0  # [4 e0, 8 e0): level 3
    r[0, 16:, 32:, 0] = 1.0  # far above: the top level
    q = np.asarray(hfdplus.levels_of(x + r, x, cfg))
    assert q.shape == (1, 2, 3, 3) and q.dtype == np.int32
    want = np.zeros((2, 3, 3), np.int32)
    want[0, 0, 0], want[0, 1, 1], want[1, 0, 2], want[1, 2, 0] = 0, 1, 3, levels - 1
    np.testing.assert_array_equal(q[0], want)
    # the sign of the residual does not matter; a size off the block grid is edge-padded
    np.testing.assert_array_equal(np.asarray(hfdplus.levels_of(x - r, x, cfg)), q)
    assert hfdplus.levels_of(x[:, :20, :40], x[:, :20, :40], cfg).shape == (1, 2, 3, 3)


def test_conditioning_spans_minus_one_to_one_over_each_block(cfg):
    q = np.array([[[[0, 7, 3]]]], np.int32)
    c = np.asarray(hfdplus.conditioning(q, 10, 12, cfg))
    assert c.shape == (1, 10, 12, 3)
    np.testing.assert_allclose(c[0, 3, 5], [-1.0, 1.0, 2 * 3 / 7 - 1], rtol=1e-6)
    assert np.all(c == c[:, :1, :1])


def test_a_constant_residual_costs_a_few_bytes(cfg):
    """768x512, residual 0.05 everywhere: one level repeated 4608 times."""
    x = np.random.default_rng(0).random((1, 512, 768, 3)).astype(np.float32) * 0.9
    q = np.asarray(hfdplus.levels_of(x + 0.05, x, cfg))[0]
    assert np.all(q == q[0, 0, 0]) and q[0, 0, 0] > 0
    block, levels, _, _ = hfdplus.params(cfg)
    side = sideinfo.pack_energy(q, block, levels)
    assert len(side.payload) <= 12


def test_bad_map_config_is_an_error(cfg):
    bad = cfg.copy_and_resolve_references()
    bad.hfdplus.ratio = 1.0
    with pytest.raises(hfdplus.HfdPlusConfigError, match="ratio > 1"):
        hfdplus.params(bad)


def test_the_unet_takes_exactly_its_side_channels(cfg, make_random_unet):
    unet = nnx.merge(*make_random_unet(cfg.unet))
    z = np.zeros((1, 32, 32, 3), np.float32)
    assert unet(z, np.zeros((1, 32, 32, 6), np.float32), 0.0).shape == z.shape
    with pytest.raises(UNetInputError, match="side_channels=3"):
        unet(z, z, 0.0)


@pytest.fixture(scope="module")
def codec(cfg, make_random_unet):
    config = configs.load("tiny")
    autoencoder = ELIC(config.model, rngs=nnx.Rngs(0))
    return Codec(config, autoencoder, decoders={"hfdplus": (cfg, make_random_unet(cfg.unet))})


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(3)
    x = np.tile(np.linspace(0, 255, 40)[None, :, None], (36, 1, 3))
    return np.clip(x + rng.normal(0, 20, x.shape), 0, 255).astype(np.uint8)


def test_the_map_round_trips_through_the_file_exactly(codec, cfg, image):
    data = codec.compress(image, decoders=("hfdplus",), steps=2)
    header, _ = bitstream.unpack(data)
    side = header.side_info("hfdplus")
    assert header.side == (side,) and len(data) == len(codec.compress(image, steps=2)) + 4 + len(
        side.payload
    )
    _, x_mse = codec.decompress_mse(data)
    want = np.asarray(hfdplus.levels_of(image[None] / np.float32(255), x_mse, cfg))[0]
    got = sideinfo.unpack_energy(side, 36, 40, 16, 8)
    np.testing.assert_array_equal(got, want)
    out = codec.decompress(data, decoder="hfdplus")
    assert out.shape == image.shape and out.dtype == np.uint8


def test_zeroed_side_information_decodes_sanely(codec, cfg, image, make_random_unet):
    data = codec.compress(image, decoders=("hfdplus",), steps=2)
    header, sections = bitstream.unpack(data)
    zeros = sideinfo.pack_energy(np.zeros((3, 3, 3), np.int32), 16, 8)
    zeroed = bitstream.pack(dataclasses.replace(header, side=(zeros,)), sections)
    out = codec.decompress(zeroed, decoder="hfdplus")
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not np.array_equal(out, codec.decompress(data, decoder="hfdplus"))
    _, x_mse = codec.decompress_mse(data)
    side = hfdplus.conditioning(np.zeros((1, 3, 3, 3), np.int32), 36, 40, cfg)
    gen = decode.generate(*make_random_unet(cfg.unet), x_mse, cfg=cfg, steps=2, side=side)
    assert gen.shape == (1, 36, 40, 3) and np.all(np.isfinite(gen))


def test_hfdplus_needs_its_side_information_and_its_channels(codec, cfg, image, make_random_unet):
    plain = codec.compress(image)
    with pytest.raises(CodecError, match="no hfdplus side information.*--for hfdplus"):
        codec.decompress(plain, decoder="hfdplus")
    x_mse = np.zeros((1, 36, 40, 3), np.float32)
    with pytest.raises(decode.GenerateError, match="needs 3 channels of side information"):
        decode.generate(*make_random_unet(cfg.unet), x_mse, cfg=cfg, steps=1)
    plain_cfg = configs.load("tiny").diffusion  # side_channels 0
    with pytest.raises(CodecError, match="its U-Net has 0 side channels"):
        Codec(codec.config, codec.autoencoder,
              decoders={"hfdplus": (plain_cfg, make_random_unet(plain_cfg.unet))})  # fmt: skip
