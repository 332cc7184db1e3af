"""Codec with generative decoders (tiny, randomly initialised U-Net)."""

import numpy as np
import pytest
from flax import nnx

from hific_diffusion import configs
from hific_diffusion.autoencoder.elic import ELIC
from hific_diffusion.coding import bitstream
from hific_diffusion.diffusion.unet import UNet
from hific_diffusion.pipeline import Codec, CodecError

# Building the U-Net and compiling two samplers takes minutes on 2 shared cores.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def codec():
    config = configs.load("tiny")
    unet = UNet(config.diffusion.unet, rngs=nnx.Rngs(2))
    # One U-Net serves both kinds: the sampler, not the weights, differs.
    return Codec(config, ELIC(config.model, rngs=nnx.Rngs(0)), diffusion=unet, flow=unet)


@pytest.fixture(scope="module")
def data(codec):
    x = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    return codec.compress(x, decoder="diffusion", steps=2, seed=5)


def test_header_seed_and_decoder_hint_drive_decoding(codec, data):
    assert bitstream.unpack(data)[0].seed == 5
    default = codec.decompress(data)  # hint: diffusion, 2 steps, seed 5
    assert default.shape == (20, 30, 3) and default.dtype == np.uint8
    assert np.array_equal(default, codec.decompress(data, decoder="diffusion", seed=5))
    assert not np.array_equal(default, codec.decompress(data, seed=6))
    assert not np.array_equal(default, codec.decompress(data, decoder="mse"))


def test_flow_decoder_returns_the_original_shape(codec, data):
    out = codec.decompress(data, decoder="flow", steps=2)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    assert codec.decoders == ("mse", "diffusion", "flow", "corrdiff")


def test_bad_sampler_arguments_are_codec_errors(codec, data):
    with pytest.raises(CodecError):
        codec.decompress(data, tile=3)
