"""Side information through the Codec: compress(decoders=...), CorrDiff on the
first demo model's trained diffusion decoder, and files written before
side information existed."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hific_diffusion import configs
from hific_diffusion.coding import bitstream, sideinfo
from hific_diffusion.coding.bitstream import BitstreamError
from hific_diffusion.data import offline_photos
from hific_diffusion.metrics.psnr import psnr
from hific_diffusion.pipeline import Codec, CodecError

# The first bundled default (configs/demo.py, 2026-11-23): the files in
# tests/fixtures/{previous_version,format_v1} were written with it.
DEMO_BUNDLE = Path(__file__).resolve().parent / "fixtures" / "demo_bundle"

V1 = Path(__file__).resolve().parent / "fixtures" / "format_v1"


@pytest.fixture(scope="module")
def codec():
    return Codec.load(DEMO_BUNDLE)  # a trained diffusion decoder, 16 steps; wrote format_v1


def _crop(x, h=96, w=128):
    r, c = (x.shape[0] - h) // 2, (x.shape[1] - w) // 2
    return np.ascontiguousarray(x[r : r + h, c : c + w])


@pytest.fixture(scope="module")
def photos():
    """Centre crops of two of the default model's held-out photos."""
    loaded = dict(zip(offline_photos.names("heldout"), offline_photos.load("heldout"), strict=True))
    return {name: _crop(loaded[name]) for name in ("coffee", "china")}


@pytest.fixture(scope="module")
def coded(codec, photos):
    """{name: (image, plain file, file with corrdiff side information)}."""
    return {
        name: (x, codec.compress(x, seed=3), codec.compress(x, seed=3, decoders=("corrdiff",)))
        for name, x in photos.items()
    }


def test_a_format_v1_file_decodes_as_it_did_when_written(codec):
    """tests/fixtures/format_v1: written with the demo bundle before side
    information existed; the same pixels (one grey level of float rounding
    allowed on another machine, DESIGN.md), and compressing the same crop
    still writes a version-1 file."""
    data = (V1 / "chelsea.hfd").read_bytes()
    header, _ = codec.read_header(data)
    assert header.version == 1 and header.side == ()
    for dec in ("mse", "diffusion", "flow"):
        old = np.asarray(Image.open(V1 / f"chelsea_{dec}.png")).astype(int)
        new = codec.decompress(data, decoder=dec).astype(int)
        assert new.shape == old.shape == (72, 100, 3)
        assert np.abs(new - old).max() <= 1, dec
    from skimage import data as skdata

    crop = skdata.chelsea()[100:172, 150:250]
    again = codec.compress(crop, decoder="diffusion", steps=3, seed=11)
    assert again[4] == 1 and len(again) == json.loads((V1 / "made.json").read_text())["bytes"]


def test_corrdiff_side_information_is_16_bits_a_step_and_counted_in_real_bpp(codec, coded):
    for x, plain, data in coded.values():
        h_plain, s_plain = bitstream.unpack(plain)
        header, sections = bitstream.unpack(data)
        assert sections == s_plain  # the latents are untouched
        (side,) = header.side
        steps = codec.generative["diffusion"].config.steps
        assert side.kind == "corrdiff" and len(side.payload) == 2 * steps
        assert len(data) - len(plain) == 2 * steps + 4  # count byte, tag, version, length
        assert bitstream.real_bpp(data) == len(data) * 8 / (x.shape[0] * x.shape[1])


def test_corrdiff_with_its_factors_at_zero_is_the_diffusion_decoder_bit_for_bit(codec, coded):
    x, _, data = coded["coffee"]
    plain = codec.decompress(data, decoder="diffusion")
    assert np.array_equal(codec.decompress(data, decoder="corrdiff", gamma_scale=0.0), plain)
    header, sections = bitstream.unpack(data)
    zeros = sideinfo.pack_gammas(np.zeros(len(header.side[0].payload) // 2))
    zeroed = bitstream.pack(dataclasses.replace(header, side=(zeros,)), sections)
    assert np.array_equal(codec.decompress(zeroed, decoder="corrdiff"), plain)
    assert not np.array_equal(codec.decompress(data, decoder="corrdiff"), plain)


def test_corrdiff_is_no_worse_than_diffusion_in_psnr_and_scales_toward_it(codec, coded):
    """The encoder's factors: PSNR at least the diffusion decoder's on each
    held-out crop; gamma_scale moves between the two (0 is diffusion)."""
    for name, (x, _, data) in coded.items():
        diffusion = psnr(x, codec.decompress(data, decoder="diffusion"))
        corr = psnr(x, codec.decompress(data, decoder="corrdiff"))
        half = psnr(x, codec.decompress(data, decoder="corrdiff", gamma_scale=0.5))
        assert corr >= diffusion, name
        assert diffusion < half < corr + 0.5, name
    factors = sideinfo.unpack_gammas(bitstream.unpack(data)[0].side[0])
    assert np.all((0 <= factors) & (factors <= 1)) and factors.std() > 0


def test_the_header_hint_corrdiff_writes_its_side_information(codec, photos):
    data = codec.compress(photos["coffee"], decoder="corrdiff", steps=2)
    header, _ = bitstream.unpack(data)
    assert header.decoder == "corrdiff" and len(header.side_info("corrdiff").payload) == 4
    assert codec.decompress(data).shape == (96, 128, 3)  # the hint: corrdiff, 2 steps


def test_a_file_without_the_side_information_a_decoder_needs_is_refused(codec, coded):
    _, plain, _ = coded["coffee"]
    with pytest.raises(CodecError, match="no corrdiff side information.*--for corrdiff"):
        codec.decompress(plain, decoder="corrdiff")


def test_decoders_the_model_lacks_are_refused_before_any_work(codec):
    assert "hfdplus" not in codec.decoders and "corrdiff" in codec.decoders
    # the image does not exist: the decoder is refused before it is read
    with pytest.raises(CodecError, match="no hfdplus decoder"):
        codec.compress("/nonexistent.png", decoders=("hfdplus",))
    with pytest.raises(CodecError, match="unknown decoder 'gan'"):
        codec.compress("/nonexistent.png", decoders=("gan",))
    with pytest.raises(CodecError, match="list of decoder names"):
        codec.compress("/nonexistent.png", decoders=3)


def test_corrdiff_needs_the_diffusion_decoders_weights():
    """A model with only a flow decoder has no corrdiff decoder."""
    from flax import nnx

    from hific_diffusion.autoencoder.elic import ELIC
    from hific_diffusion.diffusion.unet import UNet

    config = configs.load("tiny")
    unet = UNet(config.diffusion.unet, rngs=nnx.Rngs(0))
    codec = Codec(config, ELIC(config.model, rngs=nnx.Rngs(0)), flow=unet)
    assert codec.decoders == ("mse", "flow")
    with pytest.raises(CodecError, match="no corrdiff decoder"):
        codec.compress(np.zeros((8, 8, 3), np.uint8), decoders=("corrdiff",))


def test_corrdiff_refuses_another_sampler_than_its_encoders(codec, coded):
    _, _, data = coded["coffee"]
    with pytest.raises(CodecError, match="16 factors.*got 4 steps"):
        codec.decompress(data, decoder="corrdiff", steps=4)
    with pytest.raises(CodecError, match="seed must stay 3"):
        codec.decompress(data, decoder="corrdiff", seed=4)
    with pytest.raises(CodecError, match="tile must stay 64"):
        codec.decompress(data, decoder="corrdiff", tile=32)
    with pytest.raises(CodecError, match="gamma_scale must be a number in"):
        codec.decompress(data, decoder="corrdiff", gamma_scale=1.5)
    with pytest.raises(CodecError, match="corrdiff decoder only"):
        codec.decompress(data, decoder="diffusion", gamma_scale=0.5)


def test_corrupt_corrdiff_side_information_is_a_bitstream_error(codec, coded):
    _, _, data = coded["coffee"]
    header, sections = bitstream.unpack(data)
    bad = bitstream.SideInfo("corrdiff", 1, header.side[0].payload[:-1])
    data = bitstream.pack(dataclasses.replace(header, side=(bad,)), sections)
    with pytest.raises(BitstreamError, match="corrupt corrdiff"):
        codec.decompress(data, decoder="corrdiff")
    assert codec.decompress(data, decoder="mse").shape == (96, 128, 3)  # others ignore it
