"""Codec end to end on the tiny config (randomly initialised ELIC)."""

import jax
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from hific_diffusion import bundle, configs, pipeline
from hific_diffusion.autoencoder.elic import ELIC
from hific_diffusion.coding import bitstream
from hific_diffusion.coding.bitstream import BitstreamError
from hific_diffusion.images import ImageError
from hific_diffusion.pipeline import Codec, CodecError


@pytest.fixture(scope="module")
def config():
    return configs.load("tiny")


@pytest.fixture(scope="module")
def codec(config):
    return Codec(config, ELIC(config.model, rngs=nnx.Rngs(0)))


def perturbed(model):
    """Another model of the same shape (initializing a second one costs ~30 s of
    compiles on CPU): every Param scaled by 1.01."""
    other = nnx.clone(model)
    params = nnx.state(other, nnx.Param)
    nnx.update(other, jax.tree.map(lambda a: a * 1.01, params))
    return other


@pytest.fixture(scope="module")
def other_codec(config, codec):
    return Codec(config, perturbed(codec.autoencoder))


def _photo(h, w, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 50 * np.sin(xx / 9.0)[..., None] + 30 * np.cos(yy / 7.0)[..., None]
    return np.clip(base + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def sample(codec):
    x = _photo(63, 65)
    return x, codec.compress(x)


@pytest.mark.parametrize("shape", [(1, 1), (63, 65), (1000, 3)])
def test_round_trip_returns_the_original_shape(codec, shape):
    x = _photo(*shape)
    data = codec.compress(x)
    out = codec.decompress(data)
    assert out.shape == (*shape, 3) and out.dtype == np.uint8
    h = bitstream.unpack(data)[0]
    assert (h.height, h.width) == shape


def test_4000x3000_round_trips_with_the_right_shape(codec):
    x = _photo(3000, 4000)
    assert codec.decompress(codec.compress(x)).shape == (3000, 4000, 3)


def test_compress_is_deterministic_and_decompress_repeatable(codec, sample):
    x, data = sample
    assert codec.compress(x) == data
    assert np.array_equal(codec.decompress(data), codec.decompress(data))


def test_mse_decoder_output_is_the_rounded_cropped_reconstruction(codec, sample):
    x, data = sample
    header, x_mse = codec.decompress_mse(data)
    assert x_mse.shape == (1, 63, 65, 3)
    out = codec.decompress(data)
    assert np.array_equal(out, np.round(np.clip(x_mse[0], 0, 1) * 255).astype(np.uint8))


def test_real_bpp_counts_every_byte(codec, sample):
    x, data = sample
    assert pipeline.real_bpp(data) == len(data) * 8 / (63 * 65)
    est = codec.estimate_bpp(x)
    assert np.isfinite(est) and est > 0
    # The file holds the estimated bits plus the header and coder overhead.
    assert len(data) * 8 >= 0.9 * est * 63 * 65


def test_header_carries_the_hints_and_seed(codec):
    data = codec.compress(_photo(8, 8), decoder="flow", steps=3, seed=1234)
    h, _ = bitstream.unpack(data)
    assert (h.decoder, h.steps, h.seed) == ("flow", 3, 1234)


def test_bitstream_from_another_model_is_refused(codec, other_codec, sample):
    with pytest.raises(BitstreamError, match="different model"):
        other_codec.decompress(sample[1])


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: b"",
        lambda d: d[: len(d) // 2],
        lambda d: d[:-1],
        lambda d: b"\x89PNG\r\n\x1a\n" + d[8:],
        lambda d: d[:4] + bytes([d[4] + 1]) + d[5:],
        lambda d: d[:30] + bytes([d[30] ^ 0x10]) + d[31:],
    ],
    ids=["empty", "half", "truncated", "foreign", "other_version", "corrupt"],
)
def test_bad_bitstreams_raise_bitstream_error(codec, sample, mutate):
    with pytest.raises(BitstreamError):
        codec.decompress(mutate(sample[1]))


@pytest.mark.parametrize("bug", [AssertionError, IndexError, KeyError, ValueError, OverflowError])
def test_a_bug_while_decoding_is_not_reported_as_a_corrupt_bitstream(
    codec, sample, monkeypatch, bug
):
    """Only the container parser and the range coder say "corrupt"; an exception
    from anywhere else in decoding is a bug and reaches the caller as it is."""
    from hific_diffusion.coding import coding

    def broken(*args, **kwargs):
        raise bug("a bug")

    monkeypatch.setattr(coding, "_run_stages", broken)  # runs after the z section is decoded
    with pytest.raises(bug) as info:
        codec.decompress(sample[1])
    assert not isinstance(info.value, BitstreamError)


def test_missing_generative_decoder_is_a_clear_error(codec, sample):
    with pytest.raises(CodecError, match="no diffusion decoder"):
        codec.decompress(sample[1], decoder="diffusion")
    assert codec.decoders == ("mse",)


def test_images_by_path_pil_and_grayscale_array_compress(codec, tmp_path):
    x = _photo(20, 30)
    Image.fromarray(x).save(tmp_path / "x.png")
    assert codec.compress(tmp_path / "x.png") == codec.compress(x)
    assert codec.compress(Image.fromarray(x)) == codec.compress(x)
    gray = x[..., 0]
    assert codec.compress(gray) == codec.compress(np.repeat(gray[..., None], 3, -1))
    with pytest.raises(ImageError):
        codec.compress(tmp_path / "missing.png")


def test_bundle_round_trip_decodes_identically_and_other_bundles_refuse(
    codec, other_codec, sample, tmp_path
):
    bundle.save_codec(tmp_path / "a", codec)
    bundle.save_codec(tmp_path / "b", other_codec)
    loaded = Codec.from_bundle(tmp_path / "a")
    assert loaded.fingerprint == codec.fingerprint
    assert np.array_equal(loaded.decompress(sample[1]), codec.decompress(sample[1]))
    assert loaded.compress(sample[0]) == sample[1]
    with pytest.raises(BitstreamError, match="different model"):
        Codec.from_bundle(tmp_path / "b").decompress(sample[1])
    w = tmp_path / "a" / "weights" / "autoencoder.npz"
    w.write_bytes(w.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(bundle.BundleError, match="altered"):
        Codec.from_bundle(tmp_path / "a")


def test_model_digest_covers_the_generative_decoders(config, codec):
    from hific_diffusion.diffusion.unet import UNet

    unet = lambda seed: UNet(config.diffusion.unet, rngs=nnx.Rngs(seed))  # noqa: E731
    a = Codec(config, codec.autoencoder, diffusion=unet(0))
    assert a.model_digest() == Codec(config, codec.autoencoder, diffusion=unet(0)).model_digest()
    # Same autoencoder (same bitstream fingerprint), other decoder weights or set.
    assert a.fingerprint == codec.fingerprint
    others = {
        codec.model_digest(),
        Codec(config, codec.autoencoder, diffusion=unet(1)).model_digest(),
        Codec(config, codec.autoencoder, flow=unet(0)).model_digest(),
    }
    assert a.model_digest() not in others and len(others) == 3


# ------------------------------------------------ arguments and model paths (#18)
def test_directories_that_are_neither_bundle_nor_workdir_are_bundle_errors(tmp_path):
    import shutil
    from pathlib import Path

    (tmp_path / "empty").mkdir()
    with pytest.raises(bundle.BundleError, match=r"neither a model bundle.*workdir.*is empty"):
        Codec.load(tmp_path / "empty")
    golden = Path(__file__).resolve().parent / "fixtures" / "golden_coding" / "bundle"
    shutil.copytree(golden, tmp_path / "b")
    (tmp_path / "b" / "manifest.json").unlink()
    with pytest.raises(bundle.BundleError, match=r"no manifest\.json"):
        Codec.load(tmp_path / "b")


def test_compress_checks_its_hints_before_reading_the_image(codec, tmp_path):
    missing = tmp_path / "missing.png"  # an ImageError if it were read first
    for bad in (70000, 65536, -1, True, 2.5, "3"):
        with pytest.raises(CodecError, match="steps"):
            codec.compress(missing, steps=bad)
    with pytest.raises(CodecError, match="unknown decoder"):
        codec.compress(missing, decoder="MSE")
    with pytest.raises(CodecError, match="seed"):
        codec.compress(missing, seed="7")
    data = codec.compress(_photo(8, 8), steps=65535)  # the header field's maximum
    assert bitstream.unpack(data)[0].steps == 65535


@pytest.mark.parametrize("decoder", ["", "MSE", "Flow", " mse", 0, b"mse"])
def test_decoder_must_be_none_or_an_exact_name_checked_before_decoding(codec, sample, decoder):
    with pytest.raises(CodecError, match="unknown decoder"):
        codec.decompress(sample[1], decoder=decoder)
    with pytest.raises(CodecError, match="unknown decoder"):  # before reading the bytes
        codec.decompress(b"not a bitstream", decoder=decoder)


def test_decoder_none_means_the_header_hint(codec, sample):
    assert bitstream.unpack(sample[1])[0].decoder == "mse"
    assert np.array_equal(codec.decompress(sample[1]), codec.decompress(sample[1], decoder="mse"))


@pytest.mark.parametrize(
    "bad",
    [
        dict(steps=0),
        dict(seed=-1),
        dict(seed=2**32),
        dict(noise_level=2.0),
        dict(noise_level=float("nan")),
        dict(tile=3),
        dict(tile=64, overlap=40),
        dict(overlap=-1),
    ],
)
def test_sampling_arguments_are_checked_before_any_decoding(config, codec, sample, bad):
    never = ("graphdef never used", "state never used")  # a bad argument must stop first
    gen = Codec(config, codec.autoencoder, diffusion=never)

    def decoded(*args):
        raise AssertionError("the latents were decoded before the arguments were checked")

    gen._decode_mse = decoded
    with pytest.raises(CodecError, match="diffusion decoder: "):
        gen.decompress(sample[1], decoder="diffusion", **bad)


def test_a_decoder_config_with_an_unknown_sampler_fails_when_the_codec_is_built():
    from flax import nnx

    from hific_diffusion import configs
    from hific_diffusion.autoencoder.elic import ELIC
    from hific_diffusion.diffusion.unet import UNet

    config = configs.load("tiny")
    section = config.diffusion.copy_and_resolve_references()
    section.sampler = "dpm++"
    ae = ELIC(config.model, rngs=nnx.Rngs(0))
    unet = UNet(section.unet, rngs=nnx.Rngs(0))
    with pytest.raises(pipeline.CodecError, match="diffusion decoder config: .*dpm"):
        pipeline.Codec(config, ae, decoders={"diffusion": (section, unet)})


# ------------------------------------------------------------ hific (issue #15)
def _g_s_generator(config, autoencoder):
    """HiFiC's generator holding the autoencoder's g_s weights (its warm start)."""
    from hific_diffusion.gan.models import Generator

    generator = Generator(config.gan, rngs=nnx.Rngs(5))
    nnx.update(generator.g_s, nnx.state(autoencoder.g_s, nnx.Param))
    return generator


def test_hific_decodes_the_same_bitstream_and_survives_a_bundle(config, codec, sample, tmp_path):
    """The hific decoder reads the file every decoder reads (no extra bits):
    a generator holding g_s's weights decodes it exactly as the mse decoder
    does (same latents, buckets, crop); saved and loaded as a bundle (its own
    gan section) it decodes the same, and the mse decoder is unchanged."""
    x, data = sample
    with_gan = Codec(
        config,
        codec.autoencoder,
        decoders={"hific": (config.gan, _g_s_generator(config, codec.autoencoder))},
    )
    assert with_gan.decoders == ("mse", "hific")
    assert with_gan.fingerprint == codec.fingerprint
    mse = codec.decompress(data)
    np.testing.assert_array_equal(with_gan.decompress(data, decoder="hific"), mse)
    np.testing.assert_array_equal(with_gan.decompress(data), mse)
    hinted = with_gan.compress(x, decoder="hific")
    assert bitstream.unpack(hinted)[1] == bitstream.unpack(data)[1]
    assert with_gan.read_header(hinted)[0].decoder == "hific"
    bundle.save_codec(tmp_path / "g", with_gan)
    b = bundle.load_bundle(tmp_path / "g")
    assert set(b.models) == {"autoencoder", "hific"}
    assert b.models["hific"].config.M == config.model.M
    loaded = Codec.from_bundle(tmp_path / "g")
    np.testing.assert_array_equal(loaded.decompress(hinted), mse)


def test_hific_without_the_model_or_with_sampler_arguments_is_a_clear_error(config, codec, sample):
    data = sample[1]
    with pytest.raises(CodecError, match="this model has no hific decoder"):
        codec.decompress(data, decoder="hific")
    with_gan = Codec(
        config,
        codec.autoencoder,
        decoders={"hific": (config.gan, _g_s_generator(config, codec.autoencoder))},
    )
    with pytest.raises(CodecError, match="runs no sampler; noise_level"):
        with_gan.decompress(data, decoder="hific", noise_level=0.5)
    section = config.gan.copy_and_resolve_references()
    section.M = config.model.M + 1
    from hific_diffusion.gan.models import Generator

    with pytest.raises(CodecError, match=f"reads {section.M} latent channels"):
        Codec(
            config,
            codec.autoencoder,
            decoders={"hific": (section, Generator(section, rngs=nnx.Rngs(0)))},
        )
