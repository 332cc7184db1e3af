"""Export training checkpoints to an inference bundle.

``python -m hific_diffusion.export --workdir=AE_DIR [--workdir=DIFF_DIR]
[--workdir=FLOW_DIR] --out=BUNDLE [--stablehlo]``

Each ``--workdir`` is a training run (stage 1, or a stage-2 diffusion or flow
run that names its stage-1 checkpoint). The bundle holds the config, the EMA
weights of every model, the integer coding tables and the model fingerprint
that bitstreams carry; loading it needs no optimizer state and no training
code. ``--stablehlo`` also writes the coding-time functions with
``jax.export`` into ``BUNDLE/stablehlo/`` (see ``hific_diffusion.stablehlo``),
with its own sha256 manifest that ``StableHLOCodec.load`` verifies.

Errors (unreadable workdirs, incompatible runs, an unwritable output) are one
line on stderr and exit status 2.
"""

from __future__ import annotations

from absl import flags

from hific_diffusion import configs
from hific_diffusion.errors import HfdError, UsageError

_WORKDIR = flags.DEFINE_multi_string("workdir", None, "Training workdir(s) to export.")
_OUT = flags.DEFINE_string("out", None, "Bundle directory to write.")
_WHICH = flags.DEFINE_enum("which", "ema", ["ema", "params"], "Which weights to export.")
_STABLEHLO = flags.DEFINE_bool("stablehlo", False, "Also write jax.export StableHLO artifacts.")


class ExportError(HfdError, ValueError):
    """Workdirs that cannot be combined into one bundle."""


def combine(codecs):
    """One Codec from several: one autoencoder, at most one diffusion and one flow."""
    from hific_diffusion.pipeline import Codec

    if not codecs:
        raise ExportError("pass at least one --workdir")
    base = codecs[0]
    generators, config = {}, base.config
    for codec in codecs:
        if codec.fingerprint != base.fingerprint:
            raise ExportError("the workdirs were trained on different autoencoders")
        for kind, gen in codec._generators.items():
            if gen is None:
                continue
            if kind in generators:
                raise ExportError(f"two workdirs hold a {kind} model; pass one")
            generators[kind] = gen
            if kind == "diffusion" or config is base.config:
                config = codec.config
    return Codec(config, base.autoencoder, **generators)


def export(workdirs, out, which: str = "ema", stablehlo: bool = False):
    """Writes the bundle and returns its path."""
    from hific_diffusion import bundle
    from hific_diffusion.pipeline import Codec

    codec = combine([Codec.from_checkpoint(w, which=which) for w in workdirs])
    path = bundle.save_codec(out, codec)
    if stablehlo:
        from hific_diffusion import stablehlo as shlo

        # Written after the bundle; bundle.py's manifest does not list it, the
        # export's own manifest covers it (and names the bundle's fingerprint).
        shlo.export_codec(codec, path / "stablehlo")
    return path


def main(argv):
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments {argv[1:]}")
    if not _WORKDIR.value or not _OUT.value:
        raise UsageError("--workdir and --out are required")
    from absl import logging

    # orbax logs every restore at INFO; the export prints its own result.
    logging.set_verbosity(logging.WARNING)
    # A user error (hific_diffusion.errors) is reported by configs.run_app.
    path = export(_WORKDIR.value, _OUT.value, _WHICH.value, _STABLEHLO.value)
    print(f"wrote bundle {path}")


if __name__ == "__main__":
    configs.run_app(main)
