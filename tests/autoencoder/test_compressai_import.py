"""CompressAI Elic2022Official weights imported into our ELIC reproduce CompressAI's outputs.

The fixture (tests/fixtures/make_compressai_fixture.py, run with torch and
compressai 1.2.8) holds a random Elic2022Official(N=24, M=24, groups 4,4,8,8)
state dict and CompressAI's outputs; no torch is needed here. The
channel-context weights are not stored but drawn again by the fixture
script's numpy generator.
"""

import importlib.util
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from hific_diffusion import configs
from hific_diffusion.autoencoder import compressai_import, context, entropy_model
from hific_diffusion.autoencoder.compressai_import import (
    CompressAIImportError,
    load_compressai_state_dict,
)
from hific_diffusion.coding.tables import gaussian_scale_table

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "compressai_elic_small.npz"


@pytest.fixture(scope="module")
def fx():
    with np.load(FIXTURE) as z:
        return {k: z[k] for k in z.files}


def _fixture_script():
    path = FIXTURE.with_name("make_compressai_fixture.py")
    spec = importlib.util.spec_from_file_location("make_compressai_fixture", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def state_dict(fx):
    sd = {k[3:]: v for k, v in fx.items() if k.startswith("sd/")}
    script = _fixture_script()
    groups = tuple(int(g) for g in fx["groups"])
    for k in range(1, len(groups)):
        dims = (sum(groups[:k]), 224, 128, 2 * groups[k])
        for j in range(3):
            key = f"latent_codec.y.channel_context.y{k}.{2 * j}.weight"
            assert script.seeded_key(key) and key not in sd
            sd[key] = script.seeded_weight(key, (dims[j + 1], dims[j], 5, 5))
    return sd


@pytest.fixture(scope="module")
def cfg(state_dict):
    return compressai_import.config_for(state_dict, configs.load("tiny").model)


@pytest.fixture(scope="module")
def model(state_dict, cfg):
    return load_compressai_state_dict(state_dict, cfg)


def _close(ours, theirs, tol=2e-4):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape
    scale = max(1.0, float(np.abs(theirs).max()))
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=tol * scale)


def test_config_is_read_from_the_state_dict(cfg, fx):
    assert (cfg.N, cfg.M, cfg.groups) == (24, 24, (4, 4, 8, 8))
    assert cfg.prior_filters == (3, 3, 3, 3) and cfg.res_blocks == 3
    ours = gaussian_scale_table(cfg.num_scales, cfg.scale_min, cfg.scale_max)
    np.testing.assert_allclose(ours, fx["scale_table"], rtol=1e-6)


def test_every_parameter_is_imported(model):
    report = model.compressai_import_report
    assert report.unmapped == {}
    assert any(k.startswith("context/channel/") for k in report.mapped)
    assert any(k.startswith("context/aggregate/") for k in report.mapped)
    assert report.unused == []


def test_strict_import_refuses_a_partial_mapping(state_dict, cfg):
    partial = {k: v for k, v in state_dict.items() if "entropy_parameters" not in k}
    with pytest.raises(CompressAIImportError, match="exact import impossible"):
        load_compressai_state_dict(partial, cfg)
    model = load_compressai_state_dict(partial, cfg, strict=False)
    assert all("aggregate" in k for k in model.compressai_import_report.unmapped)


def test_channel_context_widths_are_read_from_the_state_dict(cfg):
    assert tuple(cfg.channel_context) == (224, 128)


def test_mismatched_config_is_refused(state_dict):
    with pytest.raises(CompressAIImportError, match="config.model.N"):
        load_compressai_state_dict(state_dict, configs.load("tiny").model, strict=False)


def test_analysis_and_hyper_analysis_match_compressai(model, fx):
    y = model.analysis(jnp.asarray(fx["x"]))
    _close(y, fx["y"])
    _close(model.h_a(jnp.asarray(fx["y"])), fx["z"])


def test_transposed_convolutions_match_compressai(model, fx):
    """g_s and h_s are built from transposed convolutions (flip + in/out swap)."""
    _close(model.synthesis(jnp.asarray(fx["y_hat"])), fx["x_hat"])
    _close(model.h_s(jnp.asarray(fx["z_hat"])), fx["hyper"])


def test_z_is_quantized_around_the_imported_medians(model, fx):
    assert np.abs(np.asarray(model.prior.median[...])).max() > 0.05  # really moved
    _close(model.prior.quantize(jnp.asarray(fx["z"])), fx["z_hat"], 1e-5)


def test_factorized_prior_likelihood_matches_compressai(model, fx):
    _close(model.prior.likelihood(jnp.asarray(fx["z_hat"])), fx["z_likelihood"], 1e-5)


def test_checkerboard_spatial_context_matches_compressai(model, fx):
    parts = context.split_groups(jnp.asarray(fx["y_hat"]), model.groups)
    for k, part in enumerate(parts):
        _close(context.chain(model.context.spatial[k], part), fx[f"spatial_{k}"])


def test_space_channel_context_matches_compressai(model, fx):
    """Channel context, parameter aggregation and the two checkerboard passes:
    the same means, scales and y_hat as CompressAI's eval-mode forward."""
    from hific_diffusion.autoencoder import quantize

    mu, sigma, y_hat = context.training_params(
        model.context, jnp.asarray(fx["hyper"]), jnp.asarray(fx["y"]), quantize.quantize_around
    )
    _close(mu, fx["means"])
    _close(sigma, fx["scales"])
    _close(y_hat, fx["y_hat"])


def test_gaussian_conditional_likelihood_matches_compressai(model, cfg, fx):
    lik = entropy_model.gaussian_likelihood(
        jnp.asarray(fx["y_hat"]),
        jnp.asarray(fx["means"]),
        jnp.asarray(fx["scales"]),
        cfg.scale_min,
    )
    _close(lik, fx["y_likelihood"], 1e-5)


def test_full_forward_pass_matches_compressai(model, fx):
    """Image in, reconstruction and both rates out, as CompressAI's ``net(x)``."""
    out = model(jnp.asarray(fx["x"]), training=False)
    _close(out["x_hat"], fx["x_hat"])
    bits = lambda lik: -np.log2(np.asarray(lik, np.float64)).sum()  # noqa: E731
    np.testing.assert_allclose(float(out["y_bits"][0]), bits(fx["y_likelihood"]), rtol=1e-4)
    np.testing.assert_allclose(float(out["z_bits"][0]), bits(fx["z_likelihood"]), rtol=1e-4)


def test_imported_model_codes_a_real_bitstream(model):
    """The imported weights go through the integer coding path and decode exactly."""
    from hific_diffusion.coding import coding

    x = np.random.default_rng(1).random((1, 64, 128, 3), dtype=np.float32)
    sections, y_hat, z_hat = coding.encode_latents(model, x)
    y2, z2 = coding.decode_latents(model, sections, (64, 128))
    np.testing.assert_array_equal(z2, z_hat)
    np.testing.assert_array_equal(y2, y_hat)


def test_unreadable_inputs_get_a_clear_error(tmp_path):
    with pytest.raises(CompressAIImportError, match="no such"):
        compressai_import.read_state_dict(tmp_path / "missing.pth")
    with pytest.raises(CompressAIImportError, match="Elic2022Official"):
        compressai_import.config_for({"x": np.zeros(1)}, configs.load("tiny").model)
