"""Export training checkpoints to an inference bundle.

``python -m hific_diffusion.export --workdir=AE_DIR [--workdir=DIFF_DIR]
[--workdir=FLOW_DIR] --out=BUNDLE [--stablehlo]``

Each ``--workdir`` is a training run (stage 1, or a stage-2 diffusion or flow
run that names its stage-1 checkpoint). The bundle holds every model's
config section (each decoder its own run's) and EMA weights, the integer
coding tables and the model fingerprint that bitstreams carry; loading it
needs no optimizer state and no training code. ``--stablehlo`` also writes
the coding-time functions with ``jax.export`` into ``BUNDLE/stablehlo/`` (see
``hific_diffusion.stablehlo``), with its own sha256 manifest that
``StableHLOCodec.load`` verifies.

Errors (unreadable workdirs, incompatible runs, an unwritable output) are one
line on stderr and exit status 2.
"""

from __future__ import annotations

from absl import flags, logging

from hific_diffusion import bundle, configs
from hific_diffusion.errors import HfdError, UsageError
from hific_diffusion.pipeline import Codec

_WORKDIR = flags.DEFINE_multi_string("workdir", None, "Training workdir(s) to export.")
_OUT = flags.DEFINE_string("out", None, "Bundle directory to write.")
_WHICH = flags.DEFINE_enum("which", "ema", ["ema", "params"], "Which weights to export.")
_STABLEHLO = flags.DEFINE_bool("stablehlo", False, "Also write jax.export StableHLO artifacts.")


class ExportError(HfdError, ValueError):
    """Workdirs that cannot be combined into one bundle."""


def combine(codecs):
    """One Codec from several of one autoencoder: its generative decoders, each
    with its own config section and weights (at most one of each name)."""
    if not codecs:
        raise ExportError("pass at least one --workdir")
    base, decoders = codecs[0], {}
    for codec in codecs:
        if codec.fingerprint != base.fingerprint:
            raise ExportError("the workdirs were trained on different autoencoders")
        for name, gen in codec.generative.items():
            if name in decoders:
                raise ExportError(f"two workdirs hold a {name} model; pass one")
            decoders[name] = (gen.config, (gen.graphdef, gen.state))
    return Codec(base.config, base.autoencoder, decoders=decoders)


def export(workdirs, out, which: str = "ema", stablehlo: bool = False):
    """Writes the bundle and returns its path."""
    codec = combine([Codec.from_checkpoint(w, which=which) for w in workdirs])
    path = bundle.save_codec(out, codec)
    if stablehlo:
        from hific_diffusion import stablehlo as shlo  # jax.export: only --stablehlo needs it

        # Written after the bundle; bundle.py's manifest does not list it, the
        # export's own manifest covers it (and names the bundle's fingerprint).
        shlo.export_codec(codec, path / "stablehlo")
    return path


def main(argv):
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments {argv[1:]}")
    if not _WORKDIR.value or not _OUT.value:
        raise UsageError("--workdir and --out are required")
    # orbax logs every restore at INFO; the export prints its own result.
    logging.set_verbosity(logging.WARNING)
    # A user error (hific_diffusion.errors) or Ctrl-C is reported by configs.run_app.
    path = export(_WORKDIR.value, _OUT.value, _WHICH.value, _STABLEHLO.value)
    print(f"wrote bundle {path}")


if __name__ == "__main__":
    configs.run_app(main)
