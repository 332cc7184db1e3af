"""The jitted training step shared by every task.

One step: merge the model from ``(graphdef, params, rest)``, compute the
task loss and its gradient, clip + Adam, EMA. A step whose loss or
gradients are not finite changes nothing but the counters (the update is
skipped), so one bad batch cannot poison the weights.

The adversarial task (``hific``) has its own step (:func:`_gan_step_fn`):
one generator forward pass, then one discriminator update on real and
generated images and one generator update against the discriminator, both
from the same state (a simultaneous update, as tfc's HiFiC groups its two
train ops), each with its own optimizer state.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from hific_diffusion.diffusion import losses as diffusion_losses
from hific_diffusion.gan import losses as gan_losses
from hific_diffusion.gan.layers import PowerIteration
from hific_diffusion.metrics import lpips
from hific_diffusion.train import optim, tasks
from hific_diffusion.train import sharding as shd

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _cast(tree, dtype):
    return jax.tree.map(
        lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree
    )


def make_step_fn(task, config, graphdef, tx, frozen_graphdef=None, disc=None):
    """``step(state, rest, batch_uint8, frozen_state) -> (state, metrics)`` (not jitted).
    ``disc``: the discriminator's ``(graphdef, rest)`` (adversarial task)."""
    tcfg = config.train
    dtype = COMPUTE_DTYPES.get(tcfg.compute_dtype)
    if dtype is None:
        raise ValueError(f"train.compute_dtype must be one of {sorted(COMPUTE_DTYPES)}")
    if task.discriminator is not None:
        if dtype != jnp.float32:
            raise tasks.TaskError(f"task {task.name!r} trains in float32 only")
        return _gan_step_fn(config, graphdef, tx, frozen_graphdef, disc)
    base_key = jax.random.key(config.seed)

    def step_fn(state, rest, batch, frozen_state):
        step = state["step"]
        x01 = batch.astype(jnp.float32) / 255.0
        x_mse = None
        if batch.shape[-1] == 6:  # data.reconstructions: the photo, then its x_mse
            x01, x_mse = x01[..., :3], x01[..., 3:]
        elif frozen_graphdef is not None:
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
        decay = optim.ema_decay_at(step, tcfg.ema_decay, tcfg.ema_warmup)
        ema = optim.ema_update(state["ema"], params, decay)

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


def _gan_step_fn(config, graphdef, tx, frozen_graphdef, disc):
    tcfg, cfg = config.train, config.gan
    disc_graphdef, disc_rest = disc
    net = cfg.lpips_net

    def lpips_fn(a, b):
        return lpips.distance(net, diffusion_losses._lpips_params(net), a, b)

    def run_disc(dparams, power, x01, y_hat, update):
        """(logits, power after the call) of the discriminator."""
        d = nnx.merge(disc_graphdef, nnx.State(dparams), nnx.State(power), disc_rest, copy=True)
        logits = d(x01, y_hat, update=update)
        return logits, nnx.state(d, PowerIteration).to_pure_dict()

    def step_fn(state, rest, batch, frozen_state):
        x01 = batch.astype(jnp.float32) / 255.0
        y_hat = tasks.latents(nnx.merge(frozen_graphdef, frozen_state, copy=True), x01)
        dstate = state["disc"]

        def generate(params):
            return nnx.merge(graphdef, nnx.State(params), rest, copy=True)(y_hat)

        x_fake, generator_vjp = jax.vjp(generate, state["params"])

        # Discriminator: real and generated images in one batch (one power
        # iteration per step), no gradient into the generator.
        def d_loss_fn(dparams):
            both = jnp.concatenate([x01, jax.lax.stop_gradient(x_fake)])
            logits, power = run_disc(
                dparams, dstate["power"], both, jnp.concatenate([y_hat, y_hat]), True
            )
            real, fake = jnp.split(logits, 2)
            return gan_losses.discriminator_loss(real, fake), (power, real, fake)

        (d_loss, (power, real, fake)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
            dstate["params"]
        )

        # Generator: against the discriminator's parameters from the start of
        # the step (with this step's power-iteration vectors), not the update.
        def g_loss_fn(xf):
            logits, _ = run_disc(dstate["params"], power, xf, y_hat, False)
            return gan_losses.generator_loss(xf, x01, logits, cfg, lpips_fn)

        (loss, metrics), dx = jax.value_and_grad(g_loss_fn, has_aux=True)(x_fake)
        (grads,) = generator_vjp(dx)

        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        d_updates, d_opt_state = tx.update(d_grads, dstate["opt_state"], dstate["params"])
        d_params = optax.apply_updates(dstate["params"], d_updates)
        finite = (
            jnp.isfinite(loss)
            & jnp.isfinite(d_loss)
            & optim.all_finite((grads, d_grads))
            & optim.all_finite((params, d_params, power))
        )
        decay = optim.ema_decay_at(state["step"], tcfg.ema_decay, tcfg.ema_warmup)
        ema = optim.ema_update(state["ema"], params, decay)
        new_disc = dict(params=d_params, opt_state=d_opt_state, power=power)
        # One cond for both players: a non-finite step changes neither.
        kept = jax.lax.cond(
            finite,
            lambda: (params, opt_state, ema, new_disc),
            lambda: (state["params"], state["opt_state"], state["ema"], dstate),
        )
        new_state = dict(
            step=state["step"] + 1,
            params=kept[0],
            opt_state=kept[1],
            ema=kept[2],
            nonfinite=jnp.where(finite, 0, state["nonfinite"] + 1),
            skipped=state["skipped"] + (~finite).astype(jnp.int32),
            disc=kept[3],
        )
        out = {k: jnp.asarray(v, jnp.float32).mean() for k, v in metrics.items()}
        out.update(
            loss=loss,
            d_loss=d_loss,
            d_real=jnp.mean(jax.nn.sigmoid(real)),
            d_fake=jnp.mean(jax.nn.sigmoid(fake)),
            grad_norm=optax.tree.norm(grads),
            d_grad_norm=optax.tree.norm(d_grads),
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
