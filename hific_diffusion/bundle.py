"""Inference bundles: everything needed to decode, nothing needed to train.

A bundle is a directory::

    config.json                 the experiment ConfigDict
    weights/<model>.npz         flat arrays per model: autoencoder,
                                unet_diffusion, unet_flow (the last two optional)
    tables/<name>.bin           the integer coding tables (DiscreteTables.to_bytes),
                                e.g. z (factorized prior) and y (Gaussian scales)
    manifest.json               format, version, sha256 of every file above and
                                the model fingerprint that bitstreams carry

``load_bundle`` recomputes every sha256 and refuses a bundle with a missing,
extra-in-manifest or altered file (``BundleError``); ``codec_from_bundle``
codes with the stored tables (never a re-derivation: float table building can
differ between CPUs, see ``coding.derive_tables``) and checks that the
rebuilt autoencoder with those tables reproduces the stored fingerprint.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from pathlib import Path

import ml_collections
import numpy as np

from hific_diffusion import hashing
from hific_diffusion.codec.tables import DiscreteTables
from hific_diffusion.errors import HfdError

FORMAT = "hific_diffusion-bundle"
VERSION = 1
WHAT = "model bundle"  # in messages
MODELS = ("autoencoder", "unet_diffusion", "unet_flow")
_SEP = "/"


class BundleError(HfdError, ValueError):
    """A bundle that is missing, incomplete, altered or inconsistent."""


@dataclasses.dataclass(frozen=True)
class Bundle:
    path: Path
    config: ml_collections.ConfigDict
    params: dict[str, dict[str, np.ndarray]]  # model -> {"a/b/kernel": array}
    tables: dict[str, DiscreteTables]
    fingerprint: str | None  # hex


# ------------------------------------------------------------------ arrays
def flatten_state(state) -> dict[str, np.ndarray]:
    """nnx.State or nested dict -> {"path/to/leaf": numpy array}.

    RNG variables (keys and counters) are dropped: inference needs none.
    Plain-array attributes (e.g. convolution masks) are kept, so a loader
    can fill an abstract module without running its initializers.
    """
    from flax import nnx

    if isinstance(state, nnx.State):
        flat = {}
        for path, var in nnx.to_flat_state(state):
            if isinstance(var, nnx.RngState):
                continue
            value = var.get_value() if isinstance(var, nnx.Variable) else var
            flat[_SEP.join(map(str, path))] = np.asarray(value)
        return flat
    from flax import traverse_util

    return {
        _SEP.join(map(str, k)): np.asarray(v)
        for k, v in traverse_util.flatten_dict(dict(state)).items()
    }


def assign_flat(module, flat: dict[str, np.ndarray], name: str = "model") -> None:
    """Writes flat arrays into ``module``'s variables; names and shapes must match."""
    import jax.numpy as jnp
    from flax import nnx

    state = nnx.state(module, nnx.Not(nnx.RngState))
    targets = {
        _SEP.join(map(str, p)): v
        for p, v in nnx.to_flat_state(state)
        if isinstance(v, nnx.Variable)
    }
    # Params are required; other variables (e.g. statistics) and plain-array
    # constants keep their constructed values when a checkpoint lacks them.
    required = {k for k, v in targets.items() if isinstance(v, nnx.Param)}
    constants = {_SEP.join(map(str, p)) for p, v in nnx.to_flat_state(state)}
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


def _npz_bytes(flat: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: flat[k] for k in sorted(flat)})
    return buf.getvalue()


# ------------------------------------------------------------------ config
def _tuples(x):
    # JSON has no tuples; the configs use tuples for every sequence.
    if isinstance(x, list):
        return tuple(_tuples(v) for v in x)
    if isinstance(x, dict):
        return {k: _tuples(v) for k, v in x.items()}
    return x


def config_to_json(config) -> str:
    return json.dumps(config.to_dict(), indent=1, sort_keys=True, default=str)


def config_from_json(text: str) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(_tuples(json.loads(text)))


# ------------------------------------------------------------------ save / load
def save_bundle(path, config, params_by_model, tables, fingerprint: bytes | None = None) -> Path:
    """Writes a bundle directory (created; existing bundle files are replaced).

    ``params_by_model`` maps names in ``MODELS`` to nnx.State / nested dicts;
    ``tables`` maps names to DiscreteTables (one DiscreteTables is stored as
    "y"); ``fingerprint`` is
    ``coding.model_fingerprint(autoencoder)``.
    """
    unknown = set(params_by_model) - set(MODELS)
    if unknown or "autoencoder" not in params_by_model:
        raise BundleError(f"bundle needs 'autoencoder' and only models from {MODELS}")
    files = {"config.json": config_to_json(config).encode()}
    for name, state in params_by_model.items():
        if state is not None:
            files[f"weights/{name}.npz"] = _npz_bytes(flatten_state(state))
    if isinstance(tables, DiscreteTables):
        tables = {"y": tables}
    for name, t in tables.items():
        if not str(name).isidentifier():
            raise BundleError(f"table name {name!r} must be an identifier")
        files[f"tables/{name}.bin"] = t.to_bytes()
    fp = fingerprint.hex() if fingerprint is not None else None
    return hashing.write_manifest(path, files, FORMAT, VERSION, fingerprint=fp)


def load_bundle(path) -> Bundle:
    """Reads and verifies a bundle; BundleError with one line on any fault."""
    path = Path(os.fspath(path))
    manifest = hashing.read_manifest(path, FORMAT, (VERSION,), BundleError, WHAT)
    files = manifest["files"]
    for rel in ("config.json", "weights/autoencoder.npz"):
        if rel not in files:
            raise BundleError(f"bundle manifest lacks {rel}")
    hashing.verify_files(path, files, BundleError, WHAT)
    from hific_diffusion import bundle_read

    config = bundle_read.read_config(path / "config.json")
    tables = {}
    for rel in sorted(files):
        if rel.startswith("tables/"):
            try:
                tables[Path(rel).stem] = DiscreteTables.from_bytes((path / rel).read_bytes())
            except (ValueError, OSError) as e:
                raise BundleError(f"bundle file {path / rel} is not a coding table ({e})") from None
    params = {
        name: bundle_read.read_weights(path / f"weights/{name}.npz")
        for name in MODELS
        if f"weights/{name}.npz" in files
    }
    bundle_read.check_config(config, params, path / "config.json")
    return Bundle(path, config, params, tables, manifest.get("fingerprint"))


# ------------------------------------------------------------------ Codec glue
def _constructor(kind: str, config):
    from flax import nnx

    if kind == "autoencoder":
        from hific_diffusion.codec.autoencoder import ELIC

        return lambda: ELIC(config.model, rngs=nnx.Rngs(0))
    from hific_diffusion.diffusion.unet import UNet

    return lambda: UNet(config.diffusion.unet, rngs=nnx.Rngs(0))


_SKELETONS: dict = {}


def _skeleton(kind: str, config, ctor):
    """(graphdef, [(path, Variable)]) of the module ``ctor`` builds, built once
    per (kind, model config) in a process: zeros, no initializer runs
    (:mod:`hific_diffusion.skeleton`). Two U-Nets of one config share it."""
    from flax import nnx

    from hific_diffusion import skeleton

    section = config.model if kind == "autoencoder" else config.diffusion.unet
    key = (kind, section.to_json(sort_keys=True))
    if key not in _SKELETONS:
        with skeleton.skeleton():
            graphdef, state = nnx.split(ctor())
        _SKELETONS[key] = (graphdef, list(nnx.to_flat_state(state)))
    return _SKELETONS[key]


def _fill_abstract(kind: str, config, ctor, flat: dict[str, np.ndarray], name: str, exact: bool):
    """Fills every leaf of the module's skeleton from ``flat``. A weight of
    another shape is a BundleError; if ``flat`` lacks leaves or has extra ones,
    that is a BundleError when ``exact``, else None (then the caller initializes)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    graphdef, leaves = _skeleton(kind, config, ctor)
    items, seen, missing = [], set(), []
    for path, leaf in leaves:
        key = _SEP.join(map(str, path))
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


def build_module(kind: str, config, flat: dict[str, np.ndarray], name: str, exact: bool = False):
    """The ``kind`` ("autoencoder" | "unet") module of ``config`` holding ``flat``.

    ``exact`` (bundles): ``flat`` must hold every leaf. Otherwise (e.g.
    Params-only checkpoints) a module is initialized and the leaves assigned.
    """
    ctor = _constructor(kind, config)
    module = _fill_abstract(kind, config, ctor, flat, name, exact)
    if module is None:
        module = ctor()
        assign_flat(module, flat, name)
    return module


def codec_from_flat(codec_cls, config, params, tables=None):
    """Codec from {model name: flat arrays} (bundle layout) and optional stored tables."""
    ae = build_module("autoencoder", config, params["autoencoder"], "autoencoder")
    gens = {}
    for kind in ("diffusion", "flow"):
        flat = params.get(f"unet_{kind}")
        if flat is not None:
            gens[kind] = build_module("unet", config, flat, f"unet_{kind}")
    return codec_cls(config, ae, **gens, tables=tables)


# What building a module from a (hash-verified but wrong) config can raise.
_BUILD_ERRORS = (
    ValueError, TypeError, KeyError, AttributeError, IndexError, ZeroDivisionError, OverflowError
)  # fmt: skip


def _bundle_module(path, b: Bundle, name: str):
    ae = name == "autoencoder"
    kind, section = ("autoencoder", "model") if ae else ("unet", "diffusion.unet")
    try:
        return build_module(kind, b.config, b.params[name], name, exact=True)
    except BundleError as e:
        raise BundleError(
            f"bundle {path}: weights/{name}.npz does not fit config.json {section}: {e}"
        ) from None
    except _BUILD_ERRORS as e:
        raise BundleError(
            f"bundle {path}: config.json {section} cannot build the {name} "
            f"({type(e).__name__}: {e})"
        ) from None


def codec_from_bundle(codec_cls, path):
    """A Codec of a verified bundle; every fault is a BundleError naming the file and field."""
    b = load_bundle(path)
    if set(b.tables) != {"z", "y"}:
        raise BundleError(f"bundle {path}: expected tables z and y, found {sorted(b.tables)}")
    ae = _bundle_module(path, b, "autoencoder")
    gens = {
        kind: _bundle_module(path, b, f"unet_{kind}")
        for kind in ("diffusion", "flow")
        if f"unet_{kind}" in b.params
    }
    try:
        codec = codec_cls(b.config, ae, **gens, tables=b.tables)
    except _BUILD_ERRORS as e:
        raise BundleError(
            f"bundle {path}: tables/z.bin and tables/y.bin cannot code with "
            f"weights/autoencoder.npz ({e})"
        ) from None
    if b.fingerprint is not None and codec.fingerprint.hex() != b.fingerprint:
        raise BundleError(
            f"bundle {path}: the rebuilt model's fingerprint differs from the manifest's"
        )
    return codec


def codec_from_checkpoint(codec_cls, workdir, which: str = "ema"):
    """Codec from training workdirs: ``checkpoint.restore_params`` gives
    ``{"autoencoder" | "unet": nnx.State}``; stage 2 names its stage-1 workdir."""
    from hific_diffusion import checkpoint

    config, states = checkpoint.restore_params(workdir, which=which)
    params = {}
    if "unet" in states:
        ae_dir = config.train.get("autoencoder_checkpoint", "")
        if not ae_dir:
            raise BundleError(f"{workdir}: stage-2 config names no train.autoencoder_checkpoint")
        ae_config, ae_states = checkpoint.restore_params(ae_dir, which=which)
        config.model = ae_config.model
        params[f"unet_{config.task}"] = flatten_state(states["unet"])
        states = ae_states
    if "autoencoder" not in states:
        raise BundleError(f"{workdir}: checkpoint has no autoencoder weights")
    params["autoencoder"] = flatten_state(states["autoencoder"])
    return codec_from_flat(codec_cls, config, params)


def save_codec(path, codec) -> Path:
    """Writes a Codec's models and its coding tables as a bundle (used by export)."""
    from flax import nnx

    params = {"autoencoder": nnx.state(codec.autoencoder)}
    for kind, gen in codec._generators.items():
        if gen is not None:
            params[f"unet_{kind}"] = gen[1]
    return save_bundle(
        path,
        codec.config,
        params,
        codec.coding.tables,
        fingerprint=codec.fingerprint,
    )
