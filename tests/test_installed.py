"""Quality levels: installed bundles, chosen at compress time, found again
from the file at decompress time (``hific_diffusion.installed``)."""

import numpy as np
import pytest
from PIL import Image
from test_cli import assert_clean_error, run_cli

from hific_diffusion import bundle, installed
from hific_diffusion.coding import bitstream
from hific_diffusion.pipeline import Codec, CodecError


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """$HFD_MODELS with qualities 1 and 3 (two different tiny models); a third
    model's bundle elsewhere (not installed)."""
    from flax import nnx

    from hific_diffusion import configs
    from hific_diffusion.autoencoder.elic import ELIC

    root = tmp_path_factory.mktemp("models")
    codecs = {}
    for name, seed in (("quality_1", 0), ("quality_3", 1), ("other", 2)):
        codec = Codec(configs.load("tiny"), ELIC(configs.load("tiny").model, rngs=nnx.Rngs(seed)))
        bundle.save_codec(root / name, codec)
        codecs[name] = codec
    return root, codecs


@pytest.fixture
def env(models, monkeypatch):
    root, _ = models
    monkeypatch.setenv(installed.MODELS_ENV, str(root))
    monkeypatch.delenv(installed.DEFAULT_BUNDLE_ENV, raising=False)
    return {installed.MODELS_ENV: str(root), installed.DEFAULT_BUNDLE_ENV: ""}


@pytest.mark.parametrize("bad", [0, 4, "2", True, 2.0, None])
def test_a_quality_outside_the_levels_is_a_clear_error(bad):
    with pytest.raises(installed.QualityError, match="quality must be one of"):
        installed.quality_dir(bad)


def test_only_installed_qualities_load(models, env):
    _, codecs = models
    assert installed.installed_qualities() == (1, 3)
    for q, name in ((1, "quality_1"), (3, "quality_3")):
        assert Codec.load(quality=q).fingerprint == codecs[name].fingerprint
    with pytest.raises(
        installed.QualityError, match=r"quality 2 is not installed \(installed: 1, 3"
    ):
        Codec.load(quality=2)
    with pytest.raises(CodecError, match="not both"):
        Codec.load(models[0] / "quality_1", quality=1)


def test_a_file_finds_the_installed_model_that_wrote_it(models, env, photo_list):
    root, codecs = models
    x = photo_list[0][:64, :96]
    for name in ("quality_1", "quality_3"):
        data = codecs[name].compress(x)
        assert installed.bundle_for(bitstream.unpack(data)[0].fingerprint) == root / name
        found = Codec.load_for(data)
        assert found.fingerprint == codecs[name].fingerprint
        np.testing.assert_array_equal(found.decompress(data), codecs[name].decompress(data))
    stranger = codecs["other"].compress(x)
    assert installed.bundle_for(bitstream.unpack(stranger)[0].fingerprint) is None
    with pytest.raises(bundle.BundleError, match="no installed model wrote this file"):
        Codec.load_for(stranger)


def test_cli_compresses_at_a_quality_and_decompresses_without_naming_it(
    models, env, photo_list, tmp_path
):
    root, codecs = models
    x = np.round(photo_list[1][:64, :96] * 255).astype(np.uint8)
    Image.fromarray(x).save(tmp_path / "x.png")
    outs = {}
    for q in (1, 3):
        proc = run_cli(
            "compress", tmp_path / "x.png", tmp_path / f"q{q}.hfd", "--quality", q, **env
        )
        assert proc.returncode == 0, proc.stderr
        data = (tmp_path / f"q{q}.hfd").read_bytes()
        want = codecs[f"quality_{q}"]
        assert bitstream.unpack(data)[0].fingerprint == want._container.short_fingerprint
        outs[q] = data
    assert outs[1] != outs[3]
    # Both files in one run, each decoded by its own model, no --quality given.
    proc = run_cli("decompress", tmp_path / "q*.hfd", tmp_path / "dec", **env)
    assert proc.returncode == 0, proc.stderr
    for q in (1, 3):
        got = np.asarray(Image.open(tmp_path / "dec" / f"q{q}.png"))
        np.testing.assert_array_equal(got, codecs[f"quality_{q}"].decompress(outs[q]))


def test_cli_quality_errors_are_one_line(models, env, photo_list, tmp_path):
    root, codecs = models
    Image.fromarray(np.round(photo_list[0][:32, :32] * 255).astype(np.uint8)).save(
        tmp_path / "x.png"
    )
    proc = run_cli("compress", tmp_path / "x.png", tmp_path / "a.hfd", "--quality", 2, **env)
    assert_clean_error(proc, "quality 2 is not installed")
    proc = run_cli(
        "compress", tmp_path / "x.png", tmp_path / "a.hfd", "--quality", 1,
        "--model", root / "quality_1", **env,
    )  # fmt: skip
    assert_clean_error(proc, "not both")
    (tmp_path / "s.hfd").write_bytes(codecs["other"].compress(photo_list[0][:32, :32]))
    proc = run_cli("decompress", tmp_path / "s.hfd", tmp_path / "s.png", **env)
    assert_clean_error(proc, "no installed model wrote this file")
    assert not (tmp_path / "s.png").exists()
    # With --model the file's own model decodes it, as before.
    proc = run_cli(
        "decompress", tmp_path / "s.hfd", tmp_path / "s.png", "--model", root / "other", **env
    )
    assert proc.returncode == 0, proc.stderr
