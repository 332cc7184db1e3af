"""Train stage 1 or stage 2: ``python -m hific_diffusion.train --config=NAME --workdir=DIR``.

Rerunning the same command resumes from the last checkpoint in ``--workdir``.
"""

from absl import flags
from ml_collections import config_flags

from hific_diffusion import configs
from hific_diffusion.errors import UsageError

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config: NAME, NAME:arg or path/to/file.py[:arg].", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and logs.")
_PROFILE = flags.DEFINE_integer(
    "profile_steps", 0, "Capture a jax.profiler trace of this many steps after warm-up."
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator", None, "Multi-host: coordinator host:port (else HFD_COORDINATOR, SLURM or TPU)."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-host: this process's index.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments {argv[1:]}")
    from absl import logging

    from hific_diffusion.train import trainer

    # orbax logs every checkpoint step at INFO; the trainer prints its own progress.
    logging.set_verbosity(logging.WARNING)

    dist = dict(
        coordinator=_COORDINATOR.value,
        num_processes=_NUM_PROCESSES.value,
        process_id=_PROCESS_ID.value,
    )
    # A user error (hific_diffusion.errors) or Ctrl-C is reported by configs.run_app.
    trainer.run(_CONFIG.value, _WORKDIR.value, profile_steps=_PROFILE.value, distributed_args=dist)


if __name__ == "__main__":
    configs.run_app(main, interrupted_hint="rerun the same command to resume")
