"""Train state: created abstractly with ``jax.eval_shape``, then placed by rules.

The state is a plain dict of arrays, so orbax and the sharding rules see one
pytree::

    step       int32          optimizer steps attempted (skipped ones too)
    params     pure dict      trained ``nnx.Param`` values (float32)
    opt_state  optax state
    ema        pure dict      exponential moving average of ``params``
    nonfinite  int32          consecutive skipped (non-finite) steps
    skipped    int32          skipped steps in total
    disc       dict           adversarial task only (``hific``): the
                              discriminator's ``params``, its ``opt_state``
                              (same optimizer settings) and ``power``, the
                              spectral norm's power-iteration vectors

Everything in the model that is not an ``nnx.Param`` (its ``nnx.Rngs``,
cached tables) is ``rest``: rebuilt from the config and seed, never trained.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from hific_diffusion.gan.layers import PowerIteration
from hific_diffusion.train import optim
from hific_diffusion.train import sharding as shd


@dataclasses.dataclass
class Setup:
    graphdef: nnx.GraphDef
    rest: nnx.State  # concrete, replicated
    tx: object
    abstract: dict  # ShapeDtypeStructs of the state, with .sharding set
    shardings: dict
    # Adversarial task: (graphdef, rest) of the discriminator; else None.
    disc: tuple | None = None


def build_model_parts(task, config, key):
    """``(graphdef, params pure dict, rest)`` of a freshly initialised model.

    ``key`` is passed into the jitted initialisers as an argument: with a
    constant seed XLA would constant-fold the whole random initialisation at
    compile time (minutes and >10 GB for ELIC on a CPU host).
    """
    model = task.build(config, nnx.Rngs(key))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return graphdef, params.to_pure_dict(), rest


def build_disc_parts(task, config, key):
    """``(graphdef, params, power, rest)`` of a fresh discriminator (pure
    dicts for params and the power-iteration vectors)."""
    disc = task.discriminator(config, nnx.Rngs(jax.random.fold_in(key, 1)))
    graphdef, params, power, rest = nnx.split(disc, nnx.Param, PowerIteration, ...)
    return graphdef, params.to_pure_dict(), power.to_pure_dict(), rest


def initial_state(params, tx, disc=None) -> dict:
    """``disc``: ``(params, power)`` of the discriminator (adversarial task)."""
    zero = jnp.zeros((), jnp.int32)
    state = dict(
        step=zero,
        params=params,
        opt_state=tx.init(params),
        ema=jax.tree.map(jnp.copy, params),
        nonfinite=zero,
        skipped=zero,
    )
    if disc is not None:
        dparams, power = disc
        state["disc"] = dict(params=dparams, opt_state=tx.init(dparams), power=power)
    return state


def setup(task, config, mesh) -> Setup:
    """Abstract state and its shardings on ``mesh``; nothing is allocated yet."""
    tx = optim.make_optimizer(config.train)
    holder = {}

    def init_params(key):
        graphdef, params, rest = build_model_parts(task, config, key)
        holder["graphdef"] = graphdef
        disc = None
        if task.discriminator is not None:
            dgraph, dparams, power, drest = build_disc_parts(task, config, key)
            holder["disc_graphdef"] = dgraph
            disc, rest = (dparams, power), (rest, drest)
        return (params, disc), rest

    key = jax.random.key(config.seed)
    params_shape, rest_shape = jax.eval_shape(init_params, key)

    state_shape = jax.eval_shape(lambda p: initial_state(p[0], tx, p[1]), params_shape)
    shardings = shd.tree_shardings(state_shape, mesh, config.train.sharding)
    abstract = jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), state_shape, shardings
    )
    rest_sharding = jax.tree.map(lambda _: shd.replicated(mesh), rest_shape)
    _, rest = jax.jit(init_params, out_shardings=(None, rest_sharding))(key)
    disc = None
    if task.discriminator is not None:
        rest, drest = rest
        disc = (holder["disc_graphdef"], drest)
    return Setup(holder["graphdef"], rest, tx, abstract, shardings, disc)


def init(s: Setup, task, config) -> dict:
    """Materialise the initial state directly in its shardings (no host copy)."""

    def make(key):
        _, params, _ = build_model_parts(task, config, key)
        disc = None
        if task.discriminator is not None:
            _, dparams, power, _ = build_disc_parts(task, config, key)
            disc = (dparams, power)
        return initial_state(params, s.tx, disc)

    return jax.jit(make, out_shardings=s.shardings)(jax.random.key(config.seed))
