"""Train state: created abstractly with ``jax.eval_shape``, then placed by rules.

The state is a plain dict of arrays, so orbax and the sharding rules see one
pytree::

    step       int32          optimizer steps attempted (skipped ones too)
    params     pure dict      trained ``nnx.Param`` values (float32)
    opt_state  optax state
    ema        pure dict      exponential moving average of ``params``
    nonfinite  int32          consecutive skipped (non-finite) steps
    skipped    int32          skipped steps in total

Everything in the model that is not an ``nnx.Param`` (its ``nnx.Rngs``,
cached tables) is ``rest``: rebuilt from the config and seed, never trained.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from hific_diffusion.train import optim
from hific_diffusion.train import sharding as shd


@dataclasses.dataclass
class Setup:
    graphdef: nnx.GraphDef
    rest: nnx.State  # concrete, replicated
    tx: object
    abstract: dict  # ShapeDtypeStructs of the state, with .sharding set
    shardings: dict


def build_model_parts(task, config, key):
    """``(graphdef, params pure dict, rest)`` of a freshly initialised model.

    ``key`` is passed into the jitted initialisers as an argument: with a
    constant seed XLA would constant-fold the whole random initialisation at
    compile time (minutes and >10 GB for ELIC on a CPU host).
    """
    model = task.build(config, nnx.Rngs(key))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return graphdef, params.to_pure_dict(), rest


def initial_state(params, tx) -> dict:
    zero = jnp.zeros((), jnp.int32)
    return dict(
        step=zero,
        params=params,
        opt_state=tx.init(params),
        ema=jax.tree.map(jnp.copy, params),
        nonfinite=zero,
        skipped=zero,
    )


def setup(task, config, mesh) -> Setup:
    """Abstract state and its shardings on ``mesh``; nothing is allocated yet."""
    tx = optim.make_optimizer(config.train)
    holder = {}

    def init_params(key):
        graphdef, params, rest = build_model_parts(task, config, key)
        holder["graphdef"] = graphdef
        return params, rest

    key = jax.random.key(config.seed)
    params_shape, rest_shape = jax.eval_shape(init_params, key)

    state_shape = jax.eval_shape(lambda p: initial_state(p, tx), params_shape)
    shardings = shd.tree_shardings(state_shape, mesh, config.train.sharding)
    abstract = jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), state_shape, shardings
    )
    rest_sharding = jax.tree.map(lambda _: shd.replicated(mesh), rest_shape)
    _, rest = jax.jit(init_params, out_shardings=(None, rest_sharding))(key)
    return Setup(holder["graphdef"], rest, tx, abstract, shardings)


def init(s: Setup, task, config) -> dict:
    """Materialise the initial state directly in its shardings (no host copy)."""

    def make(key):
        _, params, _ = build_model_parts(task, config, key)
        return initial_state(params, s.tx)

    return jax.jit(make, out_shardings=s.shardings)(jax.random.key(config.seed))
