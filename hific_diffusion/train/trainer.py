"""The one training loop for every task (stage 1 and stage 2 of HFD).

big_vision style: one flat function, sections marked by banner comments.
``run(config, workdir)`` trains ``config.task`` for ``config.train.steps``
steps and resumes from ``workdir/checkpoints`` when rerun.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx

from hific_diffusion.data import pipeline, reconstructions
from hific_diffusion.errors import HfdError
from hific_diffusion.train import checkpoint, distributed, reporting, samples, step, tasks
from hific_diffusion.train import sharding as shd
from hific_diffusion.train import state as train_state


class TrainingError(HfdError, RuntimeError):
    """Training cannot continue (e.g. too many non-finite steps in a row)."""


def _is_bundle(path: str) -> bool:
    return (Path(path).expanduser() / "manifest.json").is_file()


def _bundle_model(path: str, name: str):
    """Model ``name`` of the inference bundle at ``path`` (its weights verified)."""
    from hific_diffusion import bundle, models

    b = bundle.load_bundle(Path(path).expanduser())
    if name not in b.models:
        raise tasks.TaskError(f"bundle {path} has no {name!r} model (it has {sorted(b.models)})")
    return models._bundle_module(b, name)


def _frozen_autoencoder(path: str, mesh, reconstructions_dir: str = ""):
    """Stage 2: the frozen, replicated stage-1 model: a training workdir's EMA
    weights or an inference bundle's autoencoder. ``reconstructions_dir``
    (``data.reconstructions``) must have been made by it."""
    if not path:
        raise tasks.TaskError(
            "stage 2 needs config.train.autoencoder_checkpoint (a stage-1 workdir or a bundle)"
        )
    if _is_bundle(path):
        model = _bundle_model(path, "autoencoder")
    else:
        _, model = checkpoint.restore_model(path, task="autoencoder", which="ema")
    graphdef, state = nnx.split(model)
    if reconstructions_dir:
        reconstructions.check_autoencoder(reconstructions_dir, state)
    shardings = jax.tree.map(lambda _: shd.replicated(mesh), state)
    return graphdef, jax.device_put(state, shardings), shardings


def _warm_weights(s, path: str, task):
    """The weights a fresh run starts from (``train.init_from``: another run's
    EMA weights in a workdir, or the model of this task in a bundle), checked
    against this config's model before anything is compiled."""
    if _is_bundle(path):
        _, params, _ = nnx.split(_bundle_model(path, task.name), nnx.Param, ...)
        pure = params.to_pure_dict()
    else:
        src_config, params = checkpoint.restore_params(path, which="ema")
        if src_config.task != task.name:
            raise tasks.TaskError(f"train.init_from={path} holds a {src_config.task!r} run")
        pure = params[task.model_key].to_pure_dict()
    shapes = lambda tree: jax.tree.map(lambda a: (tuple(a.shape), str(a.dtype)), tree)  # noqa: E731
    if shapes(pure) != shapes(s.abstract["params"]):
        raise tasks.TaskError(f"train.init_from={path}: its model differs from this config's")
    return pure


def _warm_start(s, state, pure):
    """The state of a fresh run that starts from the weights ``pure``
    (``_warm_weights``) with a fresh optimizer: e.g. another rate point
    fine-tuned from a trained model, or a run continued from the weights a
    bundle ships."""

    # Fresh buffers (a jitted copy): the step donates params and EMA, so they
    # must not alias each other or the restored arrays.
    def fresh(p):
        return dict(
            params=jax.tree.map(jnp.copy, p), opt_state=s.tx.init(p), ema=jax.tree.map(jnp.copy, p)
        )

    shardings = {k: s.shardings[k] for k in ("params", "opt_state", "ema")}
    weights = jax.device_put(pure, s.shardings["params"])
    return dict(state, **jax.jit(fresh, out_shardings=shardings)(weights))


def _start_generator(s, state, frozen_graphdef, frozen_state):
    """hific: the generator (and its EMA) start as the frozen autoencoder's g_s."""
    start = tasks.generator_start(frozen_graphdef, frozen_state, s.abstract["params"])
    shardings = {k: s.shardings[k] for k in ("params", "ema")}

    # Fresh copies: the step donates params and EMA, so they must not alias
    # each other or the frozen autoencoder's arrays.
    def fresh(p):
        return dict(params=jax.tree.map(jnp.copy, p), ema=jax.tree.map(jnp.copy, p))

    fresh = jax.jit(fresh, out_shardings=shardings)
    return dict(state, **fresh(jax.device_put(start, s.shardings["params"])))


def run(config, workdir, profile_steps: int = 0, *, devices=None, distributed_args=None):
    """Train; returns the final host-side metrics dict of the last step."""
    tcfg = config.train

    # ------------------------------------------------------------------ hosts
    distributed.initialize(**(distributed_args or {}), timeout=tcfg.init_timeout)
    is_main = jax.process_index() == 0
    if is_main:
        checkpoint.save_config(workdir, config)

    # ------------------------------------------------------------------- mesh
    mesh = shd.make_mesh(tcfg.mesh_shape, tcfg.sharding, devices)
    if tcfg.batch_size % mesh.size:
        raise shd.ShardingError(
            f"batch_size {tcfg.batch_size} does not split over {mesh.size} devices"
        )

    # --------------------------------------------------------- model and state
    task = tasks.get_task(config.task)
    if config.data.reconstructions and not (task.needs_autoencoder and task.loss is not None):
        raise tasks.TaskError(
            f"data.reconstructions is x_mse to condition on; task {task.name!r} does not"
        )
    frozen_graphdef = frozen_state = frozen_sh = None
    if task.needs_autoencoder:
        frozen_graphdef, frozen_state, frozen_sh = _frozen_autoencoder(
            tcfg.autoencoder_checkpoint, mesh, config.data.reconstructions
        )
    s = train_state.setup(task, config, mesh)
    step_fn = step.make_step_fn(task, config, s.graphdef, s.tx, frozen_graphdef, s.disc)
    train_step = step.jit_step(step_fn, s, mesh, frozen_sh)

    # ------------------------------------------------------- checkpoint / data
    mgr = checkpoint.manager(workdir, tcfg.keep_checkpoints, tcfg.async_checkpoints)
    shard = pipeline.shard_options()
    dataset = pipeline.make_dataset(config.data, tcfg.batch_size, config.seed, shard)
    data_iter = iter(dataset)
    if mgr.latest_step() is not None:
        state, data_restored = checkpoint.restore(mgr, s.abstract, data_iter)
        start = int(jax.device_get(state["step"]))
        if not data_restored:
            # Another host count wrote this checkpoint: batches are a function
            # of the step alone, so skip to the right one.
            data_iter = iter(
                pipeline.make_dataset(config.data, tcfg.batch_size, config.seed, shard, start)
            )
        if is_main:
            print(f"resumed from step {start} in {workdir}", flush=True)
    else:
        # init_from is checked first: a model that does not fit fails before
        # the (long) compilation of the initialisation.
        warm = _warm_weights(s, tcfg.init_from, task) if tcfg.get("init_from", "") else None
        state, start = train_state.init(s, task, config), 0
        if task.discriminator is not None:
            state = _start_generator(s, state, frozen_graphdef, frozen_state)
        if warm is not None:
            state = _warm_start(s, state, warm)
            if is_main:
                print(f"starting from the weights of {tcfg.init_from}", flush=True)

    # ------------------------------------------------------------------- loop
    report = reporting.Reporter(workdir, tcfg.steps, tcfg.batch_size, enabled=is_main)
    eval_every = tcfg.eval_every or tcfg.ckpt_every
    profile_at = start + 2 if profile_steps > 0 else -1
    tracing = False
    pending, pending_step, last = None, None, {}
    for i in range(start, tcfg.steps):
        # Trace a few steps after the first (compiling) ones.
        if i == profile_at and is_main:
            jax.profiler.start_trace(str(workdir) + "/profile")
            tracing = True
        annotate = jax.profiler.StepTraceAnnotation if tracing else _no_annotation
        with annotate("train", step_num=i):
            local = next(data_iter)
            batch = shd.global_batch(local, mesh)
            if i == start and jax.process_count() > 1:
                # Compile first, then line the hosts up: the first step's
                # collective must not start while another host still compiles.
                train_step = train_step.lower(state, s.rest, batch, frozen_state).compile()
                distributed.barrier("first_step", tcfg.init_timeout)
            state, metrics = train_step(state, s.rest, batch, frozen_state)
        if i == start:
            # Rates and ETA count from the end of the first (compiling) step.
            jax.block_until_ready(metrics)
            report.start(i + 1)
        if tracing and i + 1 >= profile_at + profile_steps:
            jax.profiler.stop_trace()
            tracing = False
            report.note(f"profile written to {workdir}/profile")

        # Non-finite guard: read the previous step's counters (one step late,
        # so the host never stalls the device pipeline).
        if pending is not None:
            last = _check_finite(jax.device_get(pending), pending_step, tcfg, report)
        pending, pending_step = metrics, i + 1

        done = i + 1
        if itstime(done, tcfg.log_every, tcfg.steps):
            last = _check_finite(jax.device_get(metrics), done, tcfg, report)
            pending = None
            report.write(done, last)
        if itstime(done, tcfg.ckpt_every, tcfg.steps):
            checkpoint.save(mgr, done, state, data_iter)
        # Samples run outside the sharded step on one host's devices, so
        # they are written by single-process runs only.
        single = jax.process_count() == 1
        if single and tcfg.num_samples and itstime(done, eval_every, tcfg.steps):
            ema = jax.device_get(state["ema"])
            frozen = (frozen_graphdef, frozen_state)
            batch_rows = samples.rows(
                task, config, s.graphdef, ema, s.rest, frozen, local[: tcfg.num_samples, ..., :3]
            )
            report.images(done, batch_rows)

    # ------------------------------------------------------------------ close
    if tracing:
        jax.profiler.stop_trace()
    mgr.wait_until_finished()
    mgr.close()
    report.close()
    return last


def itstime(done: int, every: int, total: int) -> bool:
    """After ``done`` steps of ``total``: is a periodic action (log, checkpoint,
    samples) due? Every ``every`` steps (0: never) and always after the last."""
    return done == total or (every > 0 and done % every == 0)


def _no_annotation(name, step_num):
    del name, step_num
    return contextlib.nullcontext()


def _check_finite(metrics: dict, step_no: int, tcfg, report) -> dict:
    if metrics.get("finite", 1.0) < 1.0:
        report.note(
            f"step {step_no}: non-finite loss or gradients, update skipped "
            f"({int(metrics['nonfinite'])} in a row, {int(metrics['skipped'])} in total)"
        )
        if metrics["nonfinite"] >= tcfg.max_nonfinite:
            raise TrainingError(
                f"{int(metrics['nonfinite'])} consecutive non-finite steps at step {step_no} "
                f"(train.max_nonfinite={tcfg.max_nonfinite}); "
                "lower the learning rate or check the data"
            )
    return metrics
