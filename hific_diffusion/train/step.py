"""The jitted training step shared by every task.

One step: merge the model from ``(graphdef, params, rest)``, compute the
task loss and its gradient, clip + Adam, EMA. A step whose loss or
gradients are not finite changes nothing but the counters (the update is
skipped), so one bad batch cannot poison the weights.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from hific_diffusion.train import optim, tasks
from hific_diffusion.train import sharding as shd

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _cast(tree, dtype):
    return jax.tree.map(
        lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree
    )


def make_step_fn(task, config, graphdef, tx, frozen_graphdef=None):
    """``step(state, rest, batch_uint8, frozen_state) -> (state, metrics)`` (not jitted)."""
    tcfg = config.train
    dtype = COMPUTE_DTYPES.get(tcfg.compute_dtype)
    if dtype is None:
        raise ValueError(f"train.compute_dtype must be one of {sorted(COMPUTE_DTYPES)}")
    base_key = jax.random.key(config.seed)

    def step_fn(state, rest, batch, frozen_state):
        step = state["step"]
        x01 = batch.astype(jnp.float32) / 255.0
        x_mse = None
        if frozen_graphdef is not None:
            x_mse = tasks.reconstruct(nnx.merge(frozen_graphdef, frozen_state, copy=True), x01)
        rng = jax.random.fold_in(base_key, step)

        def loss_fn(params, rest):
            # bf16 compute: parameters stay float32 in the state; the forward
            # and backward pass run on a bf16 copy, gradients come back f32.
            p = _cast(params, dtype) if dtype != jnp.float32 else params
            xin = x01.astype(dtype)
            cond = None if x_mse is None else x_mse.astype(dtype)
            model = nnx.merge(graphdef, nnx.State(p), rest, copy=True)
            loss, metrics = task.loss(model, xin, cond, rng, config)
            return loss.astype(jnp.float32), metrics

        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], rest)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        # The new parameters are checked too: a finite gradient can still
        # produce a non-finite update (e.g. a NaN learning rate).
        finite = jnp.isfinite(loss) & optim.all_finite(grads) & optim.all_finite(params)
        ema = optim.ema_update(state["ema"], params, tcfg.ema_decay)

        # lax.cond, not an elementwise select: a select whose predicate
        # reduces over every gradient makes XLA's CPU compile of ELIC's step
        # take >10 minutes and >10 GB; the cond compiles in seconds.
        kept = jax.lax.cond(
            finite,
            lambda: (params, opt_state, ema),
            lambda: (state["params"], state["opt_state"], state["ema"]),
        )
        new_state = dict(
            step=step + 1,
            params=kept[0],
            opt_state=kept[1],
            ema=kept[2],
            nonfinite=jnp.where(finite, 0, state["nonfinite"] + 1),
            skipped=state["skipped"] + (~finite).astype(jnp.int32),
        )
        out = {k: jnp.asarray(v, jnp.float32).mean() for k, v in metrics.items()}
        out.update(
            loss=loss,
            grad_norm=optax.tree.norm(grads),
            finite=finite.astype(jnp.float32),
            nonfinite=new_state["nonfinite"],
            skipped=new_state["skipped"],
        )
        return new_state, out

    return step_fn


def jit_step(step_fn, s, mesh, frozen_shardings=None):
    """jit with explicit in/out shardings; the old state's buffers are donated."""
    rest_sh = jax.tree.map(lambda _: shd.replicated(mesh), s.rest)
    return jax.jit(
        step_fn,
        in_shardings=(s.shardings, rest_sh, shd.batch_sharding(mesh), frozen_shardings),
        out_shardings=(s.shardings, shd.replicated(mesh)),
        donate_argnums=(0,),
    )
