"""A tiny random-weight CDC shared by the CDC tests."""

import math

import jax
import numpy as np
import pytest
from flax import nnx

from hific_diffusion import configs, skeleton
from hific_diffusion.autoencoder.priors import FactorizedPrior
from hific_diffusion.cdc.model import CDC


def random_cdc(cfg, seed=0):
    """``CDC(cfg)`` with random weights, built at numpy speed.

    Eagerly, flax's per-parameter initialisers take about a minute for the
    tiny CDC on the shared 2-core machine; the skeleton (``skeleton.py``) is
    filled from numpy instead: LeCun-normal kernels, small random biases,
    unit norm scales, and the factorized prior's own initial values.
    """
    rng = np.random.default_rng(seed)
    with skeleton.skeleton():
        model = CDC(cfg, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    prior = FactorizedPrior(model.n, filters=tuple(cfg.prior_filters), rngs=nnx.Rngs(seed))
    leaves = jax.tree_util.tree_leaves_with_path(nnx.state(prior))
    prior_state = {jax.tree_util.keystr(p): np.asarray(v) for p, v in leaves}

    def fill(path, x):
        keys = [str(getattr(p, "key", getattr(p, "name", p))) for p in path]
        keys = [k for k in keys if k != "value"]
        if keys[0] == "prior":
            return prior_state[jax.tree_util.keystr(path[1:])]
        name = keys[-1]
        if name == "kernel":
            return rng.normal(size=x.shape).astype(x.dtype) / np.sqrt(math.prod(x.shape[:-1]))
        if name == "scale":
            return np.ones(x.shape, x.dtype)
        if name == "bias":
            return (0.01 * rng.normal(size=x.shape)).astype(x.dtype)
        return np.asarray(x)

    state = jax.tree_util.tree_map_with_path(lambda p, x: jax.numpy.asarray(fill(p, x)), state)
    return nnx.merge(graphdef, state)


@pytest.fixture(scope="session")
def tiny_cdc_cfg():
    return configs.load("cdc:tiny").cdc


@pytest.fixture(scope="session")
def tiny_cdc(tiny_cdc_cfg):
    return random_cdc(tiny_cdc_cfg)


@pytest.fixture(scope="session")
def make_random_cdc():
    return random_cdc
