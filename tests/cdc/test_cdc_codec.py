"""CDC as a model family of the Codec: a bundle of its own, real bytes
through the container, the families refusing each other's files."""

from pathlib import Path

import ml_collections
import numpy as np
import pytest

from hific_diffusion import bundle, cli
from hific_diffusion.coding import bitstream
from hific_diffusion.pipeline import BitstreamError, Codec, CodecError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "format_v1" / "chelsea.hfd"


@pytest.fixture(scope="module")
def cdc_bundle(tmp_path_factory, tiny_cdc_cfg, tiny_cdc):
    codec = Codec(
        ml_collections.ConfigDict({"cdc": tiny_cdc_cfg}), None,
        decoders={"cdc": (tiny_cdc_cfg, tiny_cdc)},
    )  # fmt: skip
    return bundle.save_codec(tmp_path_factory.mktemp("cdc") / "bundle", codec)


def _photo(h=70, w=90, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    base = np.stack([xx * 2.5, yy * 3.0, (xx + yy) * 1.5], -1)
    return np.clip(base + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)


def test_cdc_bundle_compresses_and_decompresses_real_bytes(cdc_bundle, tmp_path):
    codec = Codec.load(cdc_bundle)
    assert codec.family == "cdc" and codec.decoders == ("cdc",)
    assert codec.default_decoder == "cdc" and set(codec.models()) == {"cdc"}
    img = _photo()
    data = codec.compress(img, seed=3)
    header, sections = bitstream.unpack(data)
    assert header.decoder == "cdc" and (header.height, header.width) == img.shape[:2]
    assert len(sections) == 2 and bitstream.real_bpp(data) == len(data) * 8 / (70 * 90)
    out = codec.decompress(data)
    assert out.shape == img.shape and out.dtype == np.uint8
    # Seeded: the same bytes decode to the same image; another seed differs.
    np.testing.assert_array_equal(out, codec.decompress(data))
    assert not np.array_equal(out, codec.decompress(data, seed=4))
    assert codec.estimate_bpp(img) > 0
    with pytest.raises(CodecError, match="no mse decoder"):
        codec.decompress(data, decoder="mse")
    with pytest.raises(CodecError, match="not a decoder of this CDC model"):
        codec.compress(img, decoder="diffusion")
    with pytest.raises(CodecError, match="no MSE reconstruction"):
        codec.decompress_mse(data)
    # Through the command line: --model a CDC bundle, the decoder its own.
    src, hfd, png = tmp_path / "in.png", tmp_path / "f.hfd", tmp_path / "out.png"
    from PIL import Image

    Image.fromarray(img).save(src)
    assert cli.main(["compress", str(src), str(hfd), "--model", str(cdc_bundle)]) == 0
    assert bitstream.unpack(hfd.read_bytes())[0].decoder == "cdc"
    assert cli.main(["decompress", str(hfd), str(png), "--model", str(cdc_bundle)]) == 0
    assert np.asarray(Image.open(png)).shape == img.shape


def test_the_two_families_refuse_each_others_files(cdc_bundle):
    cdc = Codec.load(cdc_bundle)
    hfd = Codec.load()  # the shipped default model (HFD)
    assert hfd.family == "hfd" and "cdc" not in hfd.decoders
    hfd_file = FIXTURE.read_bytes()  # real bytes of an HFD model
    with pytest.raises(BitstreamError, match="this is a HFD file .* this model is CDC"):
        cdc.decompress(hfd_file)
    cdc_file = cdc.compress(_photo(64, 64))
    with pytest.raises(BitstreamError, match="this is a CDC file .* this model is HFD"):
        hfd.decompress(cdc_file)
    with pytest.raises(BitstreamError, match="CDC file"):
        hfd.read_header(cdc_file)
    with pytest.raises(CodecError, match="not a decoder of this HFD model"):
        hfd.compress(_photo(64, 64), decoder="cdc")


def test_a_cdc_bundle_holds_the_cdc_model_alone(cdc_bundle, tmp_path, tiny_cdc_cfg):
    b = bundle.load_bundle(cdc_bundle)
    assert set(b.models) == {"cdc"} and set(b.tables) == {"z", "y"}
    state = Codec.load(cdc_bundle).models()["cdc"][1]
    with pytest.raises(bundle.BundleError, match="'cdc' alone"):
        bundle.save_bundle(
            tmp_path / "b", {"cdc": (tiny_cdc_cfg, state), "diffusion": (tiny_cdc_cfg, {})}, {}
        )
