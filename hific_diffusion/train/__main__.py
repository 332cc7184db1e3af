"""Train stage 1 or stage 2: ``python -m hific_diffusion.train --config=NAME --workdir=DIR``.

Rerunning the same command resumes from the last checkpoint in ``--workdir``.
"""

from absl import flags
from ml_collections import config_flags

from hific_diffusion import configs

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config: NAME, NAME:arg or path/to/file.py[:arg].", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and logs.")
_PROFILE = flags.DEFINE_integer(
    "profile_steps", 0, "Capture a jax.profiler trace of this many steps after warm-up."
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise SystemExit(f"error: unexpected arguments {argv[1:]}")
    from hific_diffusion.train import trainer

    trainer.run(_CONFIG.value, _WORKDIR.value, profile_steps=_PROFILE.value)


if __name__ == "__main__":
    configs.run_app(main)
