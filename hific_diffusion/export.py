"""Export training checkpoints to an inference bundle.

``python -m hific_diffusion.export --workdir=AE_DIR [--workdir=DIFF_DIR]
[--workdir=FLOW_DIR] --out=BUNDLE [--stablehlo] [--decode=diffusion.steps=2 ...]
[--weights_dtype=float16]``

Each ``--workdir`` is a training run (stage 1, or a stage-2 diffusion, flow,
hfdplus or hific run that names its stage-1 checkpoint). The bundle holds every model's
config section (each decoder its own run's) and EMA weights, the integer
coding tables and the model fingerprint that bitstreams carry; loading it
needs no optimizer state and no training code. ``--decode NAME.FIELD=VALUE``
sets how a generative decoder samples by default (``DECODE_FIELDS``: steps,
sampler, tiling; chosen by measurement after training, e.g. 1-2 steps),
never what its network is; the fingerprint does not depend on it. ``--stablehlo`` also writes
the coding-time functions with ``jax.export`` into ``BUNDLE/stablehlo/`` (see
``hific_diffusion.stablehlo``), with its own sha256 manifest that
``StableHLOCodec.load`` verifies.

Errors (unreadable workdirs, incompatible runs, an unwritable output) are one
line on stderr and exit status 2.
"""

from __future__ import annotations

from absl import flags, logging

from hific_diffusion import bundle, configs
from hific_diffusion import decoders as decoders_
from hific_diffusion.errors import HfdError, UsageError
from hific_diffusion.pipeline import Codec

_WORKDIR = flags.DEFINE_multi_string("workdir", None, "Training workdir(s) to export.")
_OUT = flags.DEFINE_string("out", None, "Bundle directory to write.")
_WHICH = flags.DEFINE_enum("which", "ema", ["ema", "params"], "Which weights to export.")
_STABLEHLO = flags.DEFINE_bool("stablehlo", False, "Also write jax.export StableHLO artifacts.")
_DECODE = flags.DEFINE_multi_string(
    "decode", [], "NAME.FIELD=VALUE: a generative decoder's default sampling setting."
)
_WEIGHTS_DTYPE = flags.DEFINE_enum(
    "weights_dtype", "float32", list(bundle.WEIGHT_DTYPES),
    "Store the weights in this dtype: float16 rounds them first (the bundle is that "
    "model exactly, its tables and fingerprint derived from the rounded weights) "
    "and halves the bundle.",
)  # fmt: skip

# The sampling settings of a stage-2 config section: how to decode, not what
# was trained (the U-Net, its target and noise schedule stay as trained).
DECODE_FIELDS = ("steps", "sampler", "noise_level", "tile", "overlap", "tile_chunk", "tile_mode")


class ExportError(HfdError, ValueError):
    """Workdirs that cannot be combined into one bundle."""


def combine(codecs):
    """One Codec from several of one autoencoder: its generative decoders, each
    with its own config section and weights (at most one of each name)."""
    if not codecs:
        raise ExportError("pass at least one --workdir")
    base, decoders = codecs[0], {}
    if any(c.family == "cdc" for c in codecs):
        if len(codecs) > 1:
            raise ExportError("a CDC bundle is one cdc workdir alone (CDC has its own coder)")
        return base
    for codec in codecs:
        if codec.fingerprint != base.fingerprint:
            raise ExportError("the workdirs were trained on different autoencoders")
        for name, gen in codec.generative.items():
            if name in decoders:
                raise ExportError(f"two workdirs hold a {name} model; pass one")
            decoders[name] = (gen.config, (gen.graphdef, gen.state))
    return Codec(base.config, base.autoencoder, decoders=decoders)


def _parse_decode(setting: str):
    name_field, eq, value = setting.partition("=")
    name, dot, field = name_field.partition(".")
    if not (eq and dot and name and field and value):
        raise ExportError(f"--decode {setting!r}: expected NAME.FIELD=VALUE")
    if field not in DECODE_FIELDS:
        raise ExportError(
            f"--decode {setting!r}: {field!r} is not a sampling setting; "
            f"choose one of {', '.join(DECODE_FIELDS)}"
        )
    return name, field, value


def with_decode_settings(codec, settings):
    """``codec`` with its generative decoders' sampling defaults replaced
    (``settings``: ``NAME.FIELD=VALUE`` strings), each value converted to the
    field's type and checked by building the decoder's ``SamplerSpec``."""
    if not settings:
        return codec
    if codec.family == "cdc":
        raise ExportError("--decode sets HFD decoders' sampling; a CDC bundle has none")
    from hific_diffusion.diffusion import decode  # on use: imports jax

    sections = {
        name: gen.config.copy_and_resolve_references() for name, gen in codec.generative.items()
    }
    for setting in settings:
        name, field, value = _parse_decode(setting)
        if name not in sections:
            have = ", ".join(sections) or "none"
            raise ExportError(f"--decode {setting!r}: no {name} decoder in the bundle ({have})")
        if name not in decoders_.KIND:
            raise ExportError(f"--decode {setting!r}: the {name} decoder runs no sampler")
        old = sections[name][field]
        try:
            sections[name][field] = type(old)(value)
        except ValueError:
            raise ExportError(
                f"--decode {setting!r}: {value!r} is not a {type(old).__name__}"
            ) from None
    for name, section in sections.items():
        if name not in decoders_.KIND:
            continue
        try:
            decode.SamplerSpec.from_config(section, decoders_.KIND[name])
        except HfdError as e:
            raise ExportError(f"--decode: {name}: {e}") from None
    decoders = {
        name: (sections[name], (gen.graphdef, gen.state)) for name, gen in codec.generative.items()
    }
    return Codec(codec.config, codec.autoencoder, decoders=decoders)


def rounded(codec, dtype: str):
    """The Codec whose float weights are ``codec``'s rounded to ``dtype`` (and
    held in their own dtype again); its tables and fingerprint are derived from
    the rounded weights, so a bundle that stores them in ``dtype`` is this
    model to the bit."""
    if dtype == "float32":
        return codec
    import jax
    import jax.numpy as jnp
    from flax import nnx

    def cast(tree):
        def leaf(a):
            if hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.floating):
                return jnp.asarray(a).astype(dtype).astype(a.dtype)
            return a

        return jax.tree.map(leaf, tree)

    decoders = {
        name: (gen.config, (gen.graphdef, cast(gen.state)))
        for name, gen in codec.generative.items()
    }
    if codec.family == "cdc":  # the CDC model is its own coder: cast above
        return Codec(codec.config, None, decoders=decoders)
    graphdef, state = nnx.split(codec.autoencoder)
    return Codec(codec.config, nnx.merge(graphdef, cast(state)), decoders=decoders)


def export(workdirs, out, which: str = "ema", stablehlo: bool = False, decode_settings=(),
           weights_dtype: str = "float32"):  # fmt: skip
    """Writes the bundle and returns its path."""
    codec = combine([Codec.from_checkpoint(w, which=which) for w in workdirs])
    codec = with_decode_settings(codec, decode_settings)
    codec = rounded(codec, weights_dtype)
    path = bundle.save_codec(out, codec, weights_dtype=weights_dtype)
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
    path = export(_WORKDIR.value, _OUT.value, _WHICH.value, _STABLEHLO.value, _DECODE.value,
                  _WEIGHTS_DTYPE.value)  # fmt: skip
    print(f"wrote bundle {path}")


if __name__ == "__main__":
    configs.run_app(main)
