"""A Codec's models, built from their config sections and flat weight arrays.

``bundle.SECTIONS`` names the models (the autoencoder, the generative
decoders) and the kind of config section each is built from; ``MODULES``
gives each kind its module: ELIC for a ``model`` section, the U-Net of a
``diffusion`` section's ``unet``, HiFiC's generator for a ``gan`` section.
Modules are built as skeletons (zeros, no initializer runs: ``skeleton.py``)
and filled from the arrays.

``from_bundle`` and ``from_checkpoint`` return what ``pipeline.Codec`` is
made of: a config whose ``model`` section built the autoencoder, the
autoencoder, and ``{decoder name: (config section, module)}``. A section a
module cannot be built from is the constructor's ``ModelConfigError``
(``ELICConfigError``, ``UNetConfigError``), in a bundle a ``BundleError``
naming the section; any other exception while building is a bug and
propagates as it is.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from hific_diffusion import skeleton
from hific_diffusion.autoencoder.elic import ELIC
from hific_diffusion.bundle import SECTIONS, Bundle, BundleError, load_bundle
from hific_diffusion.cdc.model import CDC
from hific_diffusion.diffusion.unet import UNet
from hific_diffusion.errors import ModelConfigError
from hific_diffusion.flatstate import flatten_state
from hific_diffusion.flatstate import key as flat_key
from hific_diffusion.gan.models import Generator

# Per section kind: the module a section builds, and the subsection that
# decides its shape (None: all of it).
MODULES = {
    "model": (lambda section: ELIC(section, rngs=nnx.Rngs(0)), None),
    "diffusion": (lambda section: UNet(section.unet, rngs=nnx.Rngs(0)), "unet"),
    "cdc": (lambda section: CDC(section, rngs=nnx.Rngs(0)), None),
    "gan": (lambda section: Generator(section, rngs=nnx.Rngs(0)), None),
}


def assign_flat(module, flat: dict[str, np.ndarray], name: str = "model") -> None:
    """Writes flat arrays into ``module``'s variables; names and shapes must match."""
    state = nnx.state(module, nnx.Not(nnx.RngState))
    targets = {flat_key(p): v for p, v in nnx.to_flat_state(state) if isinstance(v, nnx.Variable)}
    # Params are required; other variables (e.g. statistics) and plain-array
    # constants keep their constructed values when a checkpoint lacks them.
    required = {k for k, v in targets.items() if isinstance(v, nnx.Param)}
    constants = {flat_key(p) for p, v in nnx.to_flat_state(state)}
    missing = sorted(required - set(flat))
    extra = sorted(set(flat) - constants)
    if missing or extra:
        raise BundleError(
            f"{name} weights do not match the model built from the config "
            f"(missing {missing[:3]}, unexpected {extra[:3]})"
        )
    for key, var in targets.items():
        if key not in flat:
            continue
        arr = flat[key]
        want = var.get_value()
        if tuple(arr.shape) != tuple(want.shape):
            raise BundleError(f"{name} weight {key} has shape {arr.shape}, expected {want.shape}")
        var.set_value(jnp.asarray(arr, dtype=want.dtype))
    nnx.update(module, state)


_SKELETONS: dict = {}


def _skeleton(kind: str, section):
    """(graphdef, [(path, Variable)]) of the module ``section`` builds, built
    once per (kind, shape) in a process: zeros, no initializer runs. Two
    U-Nets of one shape share it."""
    ctor, part = MODULES[kind]
    key = (kind, (section[part] if part else section).to_json(sort_keys=True))
    if key not in _SKELETONS:
        with skeleton.skeleton():
            graphdef, state = nnx.split(ctor(section))
        _SKELETONS[key] = (graphdef, list(nnx.to_flat_state(state)))
    return _SKELETONS[key]


def _fill_abstract(kind: str, section, flat: dict[str, np.ndarray], name: str, exact: bool):
    """Fills every leaf of the module's skeleton from ``flat``. A weight of
    another shape is a BundleError; if ``flat`` lacks leaves or has extra ones,
    that is a BundleError when ``exact``, else None (then the caller initializes)."""
    graphdef, leaves = _skeleton(kind, section)
    items, seen, missing = [], set(), []
    for path, leaf in leaves:
        key = flat_key(path)
        is_var = isinstance(leaf, nnx.Variable)
        want = leaf.get_value() if is_var else leaf
        if isinstance(leaf, nnx.RngKey):
            n = int(np.prod(want.shape, dtype=np.int64))
            value = jax.random.split(jax.random.key(0), n).reshape(want.shape)
        elif isinstance(leaf, nnx.RngCount):
            value = np.zeros(want.shape, want.dtype)
        else:
            arr = flat.get(key)
            if arr is None:
                missing.append(key)
                continue
            if tuple(arr.shape) != tuple(want.shape):
                raise BundleError(
                    f"{name} weight {key} has shape {tuple(arr.shape)}, the model built "
                    f"from the config needs {tuple(want.shape)}"
                )
            seen.add(key)
            value = np.asarray(arr, dtype=want.dtype)
        value = jax.device_put(value) if isinstance(value, np.ndarray) else value
        items.append((path, leaf.replace(value) if is_var else jnp.asarray(value)))
    extra = sorted(set(flat) - seen)
    if missing or extra:
        if exact:
            raise BundleError(
                f"{name} weights do not match the model built from the config "
                f"(missing {missing[:3]}, unexpected {extra[:3]})"
            )
        return None
    return nnx.merge(graphdef, nnx.from_flat_state(items))


def build(name: str, section, flat: dict[str, np.ndarray], exact: bool = False):
    """The module of model ``name`` (a ``SECTIONS`` name) built from its
    config ``section`` and holding ``flat``.

    ``exact`` (bundles): ``flat`` must hold every leaf. Otherwise (e.g.
    Params-only checkpoints) a module is initialized and the leaves assigned.
    """
    kind = SECTIONS[name]
    module = _fill_abstract(kind, section, flat, name, exact)
    if module is None:
        module = MODULES[kind][0](section)
        assign_flat(module, flat, name)
    return module


def _bundle_module(b: Bundle, name: str):
    m = b.models[name]
    part = MODULES[SECTIONS[name]][1]
    where = f"config.json {m.section}" + (f".{part}" if part else "")
    what = name if name in ("autoencoder", "cdc") else f"{name} decoder"
    try:
        return build(name, m.config, m.params, exact=True)
    except BundleError as e:
        raise BundleError(f"bundle {b.path}: {m.weights} does not fit {where}: {e}") from None
    except ModelConfigError as e:  # each constructor checks its section; anything else is a bug
        raise BundleError(f"bundle {b.path}: {where} cannot build the {what} ({e})") from None


def from_bundle(b: Bundle):
    """(config, autoencoder, decoders) of a loaded bundle, ``config`` holding
    only the autoencoder's ``model`` section; every fault is a BundleError
    naming the file and field. A CDC bundle: ``({"cdc": section}, None,
    {"cdc": (section, module)})``, its model coding and decoding."""
    if "cdc" in b.models:
        section = b.models["cdc"].config
        module = _bundle_module(b, "cdc")
        return ml_collections.ConfigDict({"cdc": section}), None, {"cdc": (section, module)}
    autoencoder = _bundle_module(b, "autoencoder")
    decoders = {
        name: (m.config, _bundle_module(b, name))
        for name, m in b.models.items()
        if name != "autoencoder"
    }
    config = ml_collections.ConfigDict({"model": b.models["autoencoder"].config})
    return config, autoencoder, decoders


def from_checkpoint(workdir, which: str = "ema"):
    """(config, autoencoder, decoders) of a training workdir (``checkpoint.restore_params``);
    a stage-2 workdir brings its autoencoder from ``config.train.autoencoder_checkpoint``
    and is the decoder named by its task, with its own ``config.diffusion`` (hific:
    its generator with ``config.gan``)."""
    # On use: checkpoint imports orbax (seconds), which loading a bundle never needs.
    from hific_diffusion.train import checkpoint

    config, states = checkpoint.restore_params(workdir, which=which)
    decoders = {}
    if "cdc" in states:  # CDC: one model, trained in one stage
        cdc = build("cdc", config.cdc, flatten_state(states["cdc"]))
        return config, None, {"cdc": (config.cdc, cdc)}
    stage2 = {"unet": "diffusion", "generator": "gan"}
    key = next((k for k in stage2 if k in states), None)
    if key is not None:
        ae_dir = config.train.get("autoencoder_checkpoint", "")
        if not ae_dir:
            raise BundleError(f"{workdir}: stage-2 config names no train.autoencoder_checkpoint")
        kind = stage2[key]
        if SECTIONS.get(config.task) != kind:
            raise BundleError(f"{workdir}: task {config.task!r} is not a generative decoder")
        module = build(config.task, config[kind], flatten_state(states[key]))
        decoders[config.task] = (config[kind], module)
        if (Path(ae_dir).expanduser() / "manifest.json").is_file():  # trained on a bundle's
            b = load_bundle(Path(ae_dir).expanduser())
            autoencoder, config.model = (
                _bundle_module(b, "autoencoder"),
                b.models["autoencoder"].config,
            )
        else:
            ae_config, autoencoder = checkpoint.restore_model(ae_dir, "autoencoder", which)
            config.model = ae_config.model
        return config, autoencoder, decoders
    if "autoencoder" not in states:
        raise BundleError(f"{workdir}: checkpoint has no autoencoder weights")
    autoencoder = build("autoencoder", config.model, flatten_state(states["autoencoder"]))
    return config, autoencoder, decoders
