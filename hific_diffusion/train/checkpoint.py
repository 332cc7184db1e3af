"""Training checkpoints (orbax) and reading trained parameters back.

Layout of a workdir::

    workdir/config.json               the config the run was started with
    workdir/checkpoints/<step>/state  params, opt_state, ema, step, counters
    workdir/checkpoints/<step>/data   grain iterator state, one file per host

Saving is asynchronous and keeps ``config.train.keep_checkpoints``; orbax
writes into a temporary directory and renames it when complete, so a run
killed mid-save leaves the previous checkpoint as the latest. Restoring takes
the target shardings from the *current* mesh, so a checkpoint written on one
mesh or device count loads onto any other.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import ml_collections
import orbax.checkpoint as ocp

from hific_diffusion import atomic, configs
from hific_diffusion.errors import HfdError


class CheckpointError(HfdError, RuntimeError):
    """A missing, unreadable or mismatched checkpoint."""


def checkpoint_dir(workdir) -> Path:
    return Path(workdir).expanduser().resolve() / "checkpoints"


def _coordination_barriers() -> None:
    """Multi-host: let orbax line hosts up with the coordination service's
    barrier (its own timeout) instead of a collective, which on CPU goes
    through Gloo and fails after a fixed 30 s when one host is slow (a loaded
    machine). The switch is an absl flag, so it can only be set once absl has
    parsed the command line (the entry points); library callers keep orbax's
    default."""
    from absl import flags

    if jax.process_count() > 1 and flags.FLAGS.is_parsed():
        flags.FLAGS.experimental_orbax_use_distributed_barrier = True


def manager(workdir, keep: int = 3, async_save: bool = True) -> ocp.CheckpointManager:
    import grain

    _coordination_barriers()

    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, enable_async_checkpointing=async_save, create=True
    )
    return ocp.CheckpointManager(
        checkpoint_dir(workdir),
        options=options,
        item_handlers={
            "state": ocp.StandardCheckpointHandler(),
            "data": grain.checkpoint.CheckpointHandler(),
        },
    )


def save(mgr: ocp.CheckpointManager, step: int, state: dict, data_iter=None) -> None:
    import grain

    items = {"state": ocp.args.StandardSave(state)}
    if data_iter is not None:
        items["data"] = grain.checkpoint.CheckpointSave(data_iter)
    mgr.save(step, args=ocp.args.Composite(**items))


def _data_state_file(mgr, step: int) -> Path:
    n, i = jax.process_count(), jax.process_index()
    return Path(mgr.directory) / str(step) / "data" / f"process_{i}-of-{n}.json"


def restore(mgr: ocp.CheckpointManager, abstract: dict, data_iter=None, step=None):
    """Restore ``(state, data_restored)`` from ``step`` (default: the latest).

    ``abstract`` carries the target shardings. ``data_restored`` is False when
    the checkpoint has no iterator state for this host count; the caller then
    positions the input pipeline from the step.
    """
    import grain

    step = mgr.latest_step() if step is None else step
    if step is None:
        raise CheckpointError(f"no checkpoint in {mgr.directory}")
    items = {"state": ocp.args.StandardRestore(abstract)}
    data_ok = data_iter is not None and _data_state_file(mgr, step).is_file()
    if data_ok:
        items["data"] = grain.checkpoint.CheckpointRestore(data_iter)
    try:
        restored = mgr.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # orbax raises many types for damaged files
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(
            f"checkpoint {Path(mgr.directory) / str(step)} cannot be restored: {msg}"
        ) from e
    return restored["state"], data_ok


def save_config(workdir, config: ml_collections.ConfigDict) -> None:
    path = Path(workdir).expanduser() / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, config.to_json_best_effort(indent=2, sort_keys=True))


def load_config(workdir) -> ml_collections.ConfigDict:
    path = Path(workdir).expanduser() / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{workdir} is not a training workdir (no config.json)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from e
    # Fields added since the run was saved get their defaults (configs.fill_defaults).
    return configs.fill_defaults(_tuples(ml_collections.ConfigDict(data)), configs.base_config())


def _tuples(cfg):
    # JSON turns tuples into lists; configs use tuples (hashable, as written).
    for key, value in cfg.items():
        if isinstance(value, ml_collections.ConfigDict):
            _tuples(value)
        elif isinstance(value, list):
            cfg[key] = tuple(value)
    return cfg


def restore_params(workdir, which: str = "ema", step=None):
    """``(config, {model_key: nnx.State})`` of a training run, on one device.

    ``which`` is ``"ema"`` (what export and evaluation use) or ``"params"``.
    ``model_key`` is ``"autoencoder"`` for stage 1 and ``"unet"`` for stage 2.
    """
    from flax import nnx

    from hific_diffusion.train import sharding as shd
    from hific_diffusion.train import state as train_state
    from hific_diffusion.train import tasks

    if which not in ("ema", "params"):
        raise CheckpointError(f"which must be 'ema' or 'params', got {which!r}")
    config = load_config(workdir)
    if not checkpoint_dir(workdir).is_dir():
        raise CheckpointError(f"no checkpoints in {workdir}")
    task = tasks.get_task(config.task)
    mesh = shd.make_mesh((1, 1), devices=jax.local_devices()[:1])
    s = train_state.setup(task, config, mesh)
    mgr = manager(workdir, keep=config.train.keep_checkpoints, async_save=False)
    try:
        state, _ = restore(mgr, s.abstract, step=step)
    finally:
        mgr.close()
    abstract_model = nnx.eval_shape(lambda: task.build(config, nnx.Rngs(config.seed)))
    _, params, _ = nnx.split(abstract_model, nnx.Param, ...)
    nnx.replace_by_pure_dict(params, state[which])
    return config, {task.model_key: params}


def restore_model(workdir, task: str | None = None, which: str = "ema"):
    """``(config, module)``: the model a training run trained, built from its
    config and holding its ``which`` weights. With ``task`` given, a run of
    another task is a CheckpointError. The one way a frozen stage 1 (or any
    trained model) is read back: stage-2 training and ``Codec.load(workdir)``."""
    from flax import nnx

    from hific_diffusion.train import tasks

    config, states = restore_params(workdir, which=which)
    if task is not None and config.task != task:
        raise CheckpointError(f"{workdir} holds a {config.task!r} run, not {task!r}")
    t = tasks.get_task(config.task)
    model = t.build(config, nnx.Rngs(config.seed))
    nnx.update(model, states[t.model_key])
    return config, model
