"""Checkpoints restore onto other meshes; damaged or missing ones fail clearly."""

import jax
import numpy as np
import pytest

from hific_diffusion import configs
from hific_diffusion.train import checkpoint, tasks
from hific_diffusion.train import sharding as shd
from hific_diffusion.train import state as train_state


def _setup(mesh_shape, n, rule="fsdp", name="tiny:autoencoder"):
    config = configs.load(name, {"train.sharding": rule})
    mesh = shd.make_mesh(mesh_shape, rule, jax.devices("cpu")[:n])
    task = tasks.get_task(config.task)
    return config, task, train_state.setup(task, config, mesh)


def _saved(tmp_path, name="tiny:autoencoder"):
    config, task, s = _setup((2, 4), 8, name=name)
    state = train_state.init(s, task, config)
    # Distinct values everywhere, so a mixed-up shard cannot go unnoticed.
    state = jax.tree.map(
        lambda x: x + jax.numpy.ones_like(x) * 0.25 if x.dtype.kind == "f" else x, state
    )
    mgr = checkpoint.manager(tmp_path, keep=2, async_save=True)
    checkpoint.save(mgr, 7, state)
    mgr.wait_until_finished()
    mgr.close()
    checkpoint.save_config(tmp_path, config)
    return jax.device_get(state)


@pytest.mark.parametrize("shape,n", [((1, 1), 1), ((4, 2), 8)])
def test_restore_on_other_mesh_gives_identical_values(tmp_path, shape, n):
    saved = _saved(tmp_path)
    _, _, s = _setup(shape, n)
    mgr = checkpoint.manager(tmp_path)
    restored, _ = checkpoint.restore(mgr, s.abstract)
    mgr.close()
    leaf = jax.tree.leaves(restored["params"])[0]
    assert leaf.sharding.mesh.devices.shape == shape
    for a, b in zip(jax.tree.leaves(jax.device_get(restored)), jax.tree.leaves(saved), strict=True):
        np.testing.assert_array_equal(a, b)


def test_hific_state_with_its_discriminator_restores_on_another_mesh(tmp_path):
    """The adversarial task's state: the generator's and the discriminator's
    parameters, both optimizer states and the power-iteration vectors."""
    saved = _saved(tmp_path, "tiny:hific")
    assert set(saved["disc"]) == {"params", "opt_state", "power"}
    assert jax.tree.leaves(saved["disc"]["power"])
    _, _, s = _setup((4, 2), 8, name="tiny:hific")
    mgr = checkpoint.manager(tmp_path)
    restored, _ = checkpoint.restore(mgr, s.abstract)
    mgr.close()
    for a, b in zip(jax.tree.leaves(jax.device_get(restored)), jax.tree.leaves(saved), strict=True):
        np.testing.assert_array_equal(a, b)
    config, params = checkpoint.restore_params(tmp_path, which="ema")
    assert config.task == "hific" and set(params) == {"generator"}


def test_restore_params_returns_ema_state(tmp_path):
    saved = _saved(tmp_path)
    config, params = checkpoint.restore_params(tmp_path, which="ema")
    assert config.task == "autoencoder"
    got = jax.tree.leaves(params["autoencoder"].to_pure_dict())
    for a, b in zip(got, jax.tree.leaves(saved["ema"]), strict=True):
        np.testing.assert_array_equal(a, b)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="not a training workdir"):
        checkpoint.restore_params(tmp_path / "nothing")
    _, _, s = _setup((1, 1), 1)
    mgr = checkpoint.manager(tmp_path)
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint"):
        checkpoint.restore(mgr, s.abstract)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    _saved(tmp_path)
    for f in (tmp_path / "checkpoints" / "7" / "state").rglob("*"):
        if f.is_file() and f.name != "commit_success.txt":
            f.write_bytes(b"garbage")
    _, _, s = _setup((1, 1), 1)
    mgr = checkpoint.manager(tmp_path)
    with pytest.raises(checkpoint.CheckpointError, match="cannot be restored"):
        checkpoint.restore(mgr, s.abstract)
