"""Evaluate a model: ``python -m hific_diffusion.eval --config=clic22 [--bundle=...]``.

Compresses every image to real bytes, decodes with each decoder the config
lists, and writes per-image CSV/JSON, a summary JSON and rate-distortion plots.
"""

from absl import flags
from ml_collections import config_flags

from hific_diffusion import configs
from hific_diffusion.errors import UsageError

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Evaluation config: clic20, clic22, coco30k, kodak, demo, tiny or a path."
)
_BUNDLE = flags.DEFINE_string("bundle", None, "Inference bundle (from export); default: bundled.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir to evaluate instead of a bundle.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Directory holding the dataset's images.")
_OUT = flags.DEFINE_string("out", None, "Output directory (default: eval_<config name>).")
flags.mark_flags_as_required(["config"])


def main(argv):
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments {argv[1:]}")
    import warnings

    from absl import logging

    # orbax logs every checkpoint restore at INFO (--workdir); the runner prints progress.
    logging.set_verbosity(logging.WARNING)
    # Skipped baselines or FID are user-facing notes: one line each, no source echo.
    warnings.formatwarning = lambda message, *args, **kwargs: f"warning: {message}\n"
    from hific_diffusion.cache import enable_compilation_cache
    from hific_diffusion.evaluation import runner

    enable_compilation_cache()
    # A user error (hific_diffusion.errors) or Ctrl-C is reported by configs.run_app.
    runner.run(
        _CONFIG.value,
        bundle=_BUNDLE.value,
        workdir=_WORKDIR.value,
        data_dir=_DATA_DIR.value,
        out=_OUT.value,
    )


if __name__ == "__main__":
    configs.run_app(main, interrupted_hint="rerun the same command to resume")
