"""A tiny random-weight U-Net shared by the diffusion tests."""

import math

import jax
import numpy as np
import pytest
from flax import nnx

from hific_diffusion import configs
from hific_diffusion.diffusion.unet import UNet


@pytest.fixture(scope="session")
def tiny_cfg():
    return configs.load("tiny:diffusion").diffusion


def random_unet(cfg, seed=0):
    """``(graphdef, state)`` of ``UNet(cfg)`` with LeCun-normal random weights.

    Filled from numpy on the abstract model: on the shared 2-core CI machine
    flax's per-parameter initialisers take 20-30 s for the tiny U-Net (one
    dispatch or compilation per layer), this takes well under a second.
    """
    rng = np.random.default_rng(seed)
    graphdef, state = nnx.split(nnx.eval_shape(lambda: UNet(cfg, rngs=nnx.Rngs(0))))

    def fill(path, x):
        name = str(path[-1].key if hasattr(path[-1], "key") else path[-1])
        if name == "kernel":
            fan_in = math.prod(x.shape[:-1])
            return rng.normal(size=x.shape).astype(x.dtype) / np.sqrt(fan_in)
        if name == "scale":
            return np.ones(x.shape, x.dtype)
        if name == "bias":
            return np.zeros(x.shape, x.dtype)
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"unexpected non-parameter state {path}")
        return rng.normal(size=x.shape).astype(x.dtype)

    state = jax.tree_util.tree_map_with_path(lambda p, x: jax.numpy.asarray(fill(p, x)), state)
    return graphdef, state


@pytest.fixture(scope="session")
def tiny_unet(tiny_cfg):
    return random_unet(tiny_cfg.unet)


@pytest.fixture(scope="session")
def make_random_unet():
    """:func:`random_unet` as a fixture (a test module cannot import ``conftest``
    reliably: several test directories have one)."""
    return random_unet
