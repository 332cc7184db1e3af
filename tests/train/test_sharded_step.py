"""Sharded training steps equal the single-device step; the non-finite guard."""

import jax
import numpy as np
import pytest

from hific_diffusion import configs
from hific_diffusion.data import pipeline
from hific_diffusion.train import sharding as shd
from hific_diffusion.train import state as train_state
from hific_diffusion.train import step, tasks


def _config(**overrides):
    base = {"train.batch_size": 8, "data.crop": 64, "train.warmup_steps": 0}
    return configs.load("tiny:autoencoder", {**base, **overrides})


def _batch(config):
    ds = pipeline.make_dataset(config.data, 8, 0, pipeline.shard_options(0, 1))
    return next(iter(ds))


def _one_step(config, mesh, batch):
    task = tasks.get_task(config.task)
    s = train_state.setup(task, config, mesh)
    state = train_state.init(s, task, config)
    fn = step.jit_step(step.make_step_fn(task, config, s.graphdef, s.tx), s, mesh)
    state, metrics = fn(state, s.rest, shd.global_batch(batch, mesh), None)
    return jax.device_get(state), jax.device_get(metrics)


@pytest.mark.parametrize(
    "rule,shape",
    [("replicate", (8, 1)), ("fsdp", (2, 4))],
)
def test_eight_device_step_matches_single_device(rule, shape):
    cpus = jax.devices("cpu")
    config = _config(**{"train.sharding": rule})
    batch = _batch(config)
    one, m1 = _one_step(config, shd.make_mesh((1, 1), devices=cpus[:1]), batch)
    eight, m8 = _one_step(config, shd.make_mesh(shape, rule, cpus[:8]), batch)
    np.testing.assert_allclose(m8["loss"], m1["loss"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(eight["params"]), jax.tree.leaves(one["params"]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_fsdp_rule_splits_large_parameters():
    mesh = shd.make_mesh((2, 4), "fsdp", jax.devices("cpu")[:8])
    assert shd.param_spec((3, 3, 64, 128), "fsdp", 4) == jax.sharding.PartitionSpec(
        None, None, None, "fsdp"
    )
    assert shd.param_spec((7,), "fsdp", 4) == jax.sharding.PartitionSpec()
    assert mesh.shape == {"data": 2, "fsdp": 4}


def test_nonfinite_step_is_skipped_and_counted():
    config = _config()
    mesh = shd.make_mesh((1, 1), devices=jax.devices("cpu")[:1])
    task = tasks.get_task(config.task)
    s = train_state.setup(task, config, mesh)
    state = train_state.init(s, task, config)
    # Poison one weight: the loss is non-finite, so nothing may change.
    leaves, treedef = jax.tree.flatten(state["params"])
    leaves[0] = leaves[0].at[(0,) * leaves[0].ndim].set(np.nan)
    state["params"] = jax.tree.unflatten(treedef, leaves)
    before = jax.device_get(state)
    fn = jax.jit(step.make_step_fn(task, config, s.graphdef, s.tx))
    after, metrics = fn(state, s.rest, _batch(config), None)
    after = jax.device_get(after)
    assert metrics["finite"] == 0 and metrics["nonfinite"] == 1 and metrics["skipped"] == 1
    assert int(after["step"]) == 1
    for a, b in zip(
        jax.tree.leaves(after["params"]), jax.tree.leaves(before["params"]), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(
        jax.tree.leaves(after["opt_state"]), jax.tree.leaves(before["opt_state"]), strict=True
    ):
        np.testing.assert_array_equal(a, b)
