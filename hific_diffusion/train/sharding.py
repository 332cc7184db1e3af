"""Device mesh and parameter sharding rules chosen in the config.

The mesh has two named axes, ``("data", "fsdp")``. Batches are always split
over both axes (every device sees a different slice of the global batch).
Parameters follow ``config.train.sharding``:

* ``"replicate"``: every device holds every parameter (plain data parallel).
* ``"fsdp"``: each parameter's largest dimension that divides evenly by the
  ``fsdp`` axis size is split over that axis (ZeRO-3 style); XLA inserts the
  all-gathers and reduce-scatters. Small or indivisible arrays stay replicated.

``config.train.mesh_shape`` fixes ``(data, fsdp)``; empty means all devices on
``data`` for replicate and all on ``fsdp`` for fsdp.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from hific_diffusion.errors import HfdError

AXES = ("data", "fsdp")
BATCH_SPEC = PartitionSpec(AXES)
RULES = ("replicate", "fsdp")

# Arrays smaller than this stay replicated under fsdp: splitting a bias costs
# more in collectives than it saves in memory.
MIN_FSDP_SIZE = 2**10


class ShardingError(HfdError, ValueError):
    """A mesh or sharding rule that cannot be built."""


def make_mesh(shape: Sequence[int] | None = None, rule: str = "replicate", devices=None) -> Mesh:
    """A ``("data", "fsdp")`` mesh over ``devices`` (default: all devices)."""
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    if not shape:
        shape = (1, n) if rule == "fsdp" else (n, 1)
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2 or int(np.prod(shape)) != n:
        raise ShardingError(f"mesh_shape {shape} does not cover {n} devices as (data, fsdp)")
    return Mesh(np.asarray(devices, dtype=object).reshape(shape), AXES)


def param_spec(shape: Sequence[int], rule: str, fsdp_size: int) -> PartitionSpec:
    """PartitionSpec of one parameter under ``rule``."""
    if rule not in RULES:
        raise ShardingError(f"unknown sharding rule {rule!r}; choose one of {RULES}")
    if rule == "replicate" or fsdp_size == 1 or int(np.prod(shape)) < MIN_FSDP_SIZE:
        return PartitionSpec()
    # Largest dimension first, so the shard is as big as possible.
    for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
        if shape[axis] % fsdp_size == 0:
            spec = [None] * len(shape)
            spec[axis] = "fsdp"
            return PartitionSpec(*spec)
    return PartitionSpec()


def tree_shardings(tree, mesh: Mesh, rule: str):
    """NamedShardings for every array leaf in ``tree`` (shapes, e.g. from eval_shape)."""
    fsdp_size = mesh.shape["fsdp"]

    def one(leaf):
        shape = getattr(leaf, "shape", ())
        return NamedSharding(mesh, param_spec(shape, rule, fsdp_size))

    return jax.tree.map(one, tree)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, BATCH_SPEC)


def global_batch(local: np.ndarray, mesh: Mesh) -> jax.Array:
    """Assemble this host's slice of the batch into the global, batch-sharded array."""
    return jax.make_array_from_process_local_data(batch_sharding(mesh), local)
