"""CompressAI Elic2022Official weights imported into our ELIC reproduce CompressAI's outputs.

The fixture (tests/fixtures/make_compressai_fixture.py, run with torch and
compressai 1.2.8) holds a random Elic2022Official(N=24, M=24, groups 4,4,8,8)
state dict and CompressAI's outputs; no torch is needed here.
"""

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from hific_diffusion import configs
from hific_diffusion.codec import compressai_import, context, entropy_model
from hific_diffusion.codec.compressai_import import (
    CompressAIImportError,
    load_compressai_state_dict,
)
from hific_diffusion.codec.tables import gaussian_scale_table

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "compressai_elic_small.npz"


@pytest.fixture(scope="module")
def fx():
    with np.load(FIXTURE) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def state_dict(fx):
    return {k[3:]: v for k, v in fx.items() if k.startswith("sd/")}


@pytest.fixture(scope="module")
def cfg(state_dict):
    return compressai_import.config_for(state_dict, configs.load("tiny").model)


@pytest.fixture(scope="module")
def model(state_dict, cfg):
    return load_compressai_state_dict(state_dict, cfg, strict=False)


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


def test_only_the_differing_context_networks_stay_unmapped(model):
    report = model.compressai_import_report
    assert report.unmapped, "channel context and aggregation cannot be imported"
    assert all(k.startswith(("context/channel/", "context/aggregate/")) for k in report.unmapped)
    assert any(k.startswith("g_s/") for k in report.mapped)
    assert report.unused == []


def test_strict_import_refuses_a_partial_mapping(state_dict, cfg):
    with pytest.raises(CompressAIImportError, match="channel context"):
        load_compressai_state_dict(state_dict, cfg)


def test_mismatched_config_is_refused(state_dict):
    with pytest.raises(CompressAIImportError, match="config.model.N"):
        load_compressai_state_dict(state_dict, configs.load("tiny").model, strict=False)


def test_analysis_and_hyper_analysis_match_compressai(model, fx):
    y = model.analysis(jnp.asarray(fx["x"]))
    _close(y, fx["y"])
    _close(model.h_a(jnp.asarray(fx["y"])), fx["z"])


def test_transposed_convolutions_match_compressai(model, fx):
    """g_s and h_s are built from transposed convolutions (flip + in/out swap)."""
    _close(model.synthesis(jnp.round(jnp.asarray(fx["y"]))), fx["x_hat"])
    _close(model.h_s(jnp.round(jnp.asarray(fx["z"]))), fx["hyper"])


def test_factorized_prior_likelihood_matches_compressai(model, fx):
    _close(model.prior.likelihood(jnp.round(jnp.asarray(fx["z"]))), fx["z_likelihood"], 1e-5)


def test_checkerboard_spatial_context_matches_compressai(model, fx):
    parts = context.split_groups(jnp.round(jnp.asarray(fx["y"])), model.groups)
    for k, part in enumerate(parts):
        _close(context.chain(model.context.spatial[k], part), fx[f"spatial_{k}"])


def test_gaussian_conditional_likelihood_matches_compressai(model, cfg, fx):
    lik = entropy_model.gaussian_likelihood(
        jnp.round(jnp.asarray(fx["y"])),
        jnp.asarray(fx["means"]),
        jnp.asarray(fx["scales"]),
        cfg.scale_min,
    )
    _close(lik, fx["y_likelihood"], 1e-5)


def test_unreadable_inputs_get_a_clear_error(tmp_path):
    with pytest.raises(CompressAIImportError, match="no such"):
        compressai_import.read_state_dict(tmp_path / "missing.pth")
    with pytest.raises(CompressAIImportError, match="Elic2022Official"):
        compressai_import.config_for({"x": np.zeros(1)}, configs.load("tiny").model)
