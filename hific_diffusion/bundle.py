"""Inference bundles: everything needed to decode, nothing needed to train.

A bundle is a directory (format version 2)::

    config.json                 {model name: the config section it is built and
                                run from}: "autoencoder" (an ELIC ``model``
                                section) and one entry per generative decoder,
                                e.g. "diffusion" and "flow" (each the
                                ``diffusion`` section of the run that trained it)
                                or "hific" (the ``gan`` section of its run)
    weights/<model>.npz         flat arrays of each model in config.json
    tables/<name>.bin           the integer coding tables (DiscreteTables.to_bytes),
                                z (factorized prior) and y (Gaussian scales)
    manifest.json               format, version, sha256 of every file above and
                                the model fingerprint that bitstreams carry

Every model carries its own config: a diffusion decoder and a flow decoder
of other U-Net shapes and step counts live in one bundle. Version 1 bundles
(one experiment ``config.json`` for all models, ``weights/unet_<decoder>.npz``)
still load: every U-Net is then built and sampled from that config's one
``diffusion`` section, as when they were written.

``load_bundle`` recomputes every sha256 (``hashing``) and refuses a bundle
with a missing, extra-in-manifest or altered file, or with a file whose hash
matches but whose content is broken (a config field of the wrong type, a
weights archive that is not one, NaN weights): a ``BundleError`` of one line
naming the file and field. ``models.py`` builds the modules from a loaded
bundle and ``pipeline.Codec.from_bundle`` codes with its stored tables.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import zipfile
import zlib
from pathlib import Path

import ml_collections
import numpy as np

from hific_diffusion import configs, flatstate, hashing
from hific_diffusion.autoencoder.defaults import model_config
from hific_diffusion.cdc.defaults import cdc_config
from hific_diffusion.coding.tables import DiscreteTables
from hific_diffusion.diffusion.defaults import diffusion_config
from hific_diffusion.errors import HfdError
from hific_diffusion.gan.defaults import gan_config

FORMAT = "hific_diffusion-bundle"
VERSION = 2
WHAT = "model bundle"  # in messages
# The models a bundle can hold, by name (a generative decoder's name is the
# one bitstream headers use), and the kind of experiment-config section each
# is built and run from. A new decoder kind adds its name here (and its module
# in ``models.py``).
SECTIONS = {
    "autoencoder": "model",
    "diffusion": "diffusion",
    "flow": "diffusion",
    "hfdplus": "diffusion",
    # CDC's own model family: one model that codes and decodes (a CDC bundle
    # holds it instead of an autoencoder).
    "cdc": "cdc",
    "hific": "gan",
}
DEFAULTS = {
    "model": model_config,
    "diffusion": diffusion_config,
    "cdc": cdc_config,
    "gan": gan_config,
}
# The model that decides a bundle's bits, per family: a bundle holds exactly one.
CODERS = ("autoencoder", "cdc")
# Version 1: one config.json for all models; their weights files.
V1_WEIGHTS = {
    "autoencoder": "weights/autoencoder.npz",
    "diffusion": "weights/unet_diffusion.npz",
    "flow": "weights/unet_flow.npz",
}


class BundleError(HfdError, ValueError):
    """A bundle that is missing, incomplete, altered or inconsistent."""


@dataclasses.dataclass(frozen=True)
class Model:
    """One model of a bundle."""

    config: ml_collections.ConfigDict  # its section (SECTIONS[name] kind)
    params: dict[str, np.ndarray]  # {"a/b/kernel": array}
    section: str  # where config.json holds its section, for messages
    weights: str  # its weights file, relative to the bundle


@dataclasses.dataclass(frozen=True)
class Bundle:
    path: Path
    models: dict[str, Model]  # "autoencoder" first, then the decoders
    tables: dict[str, DiscreteTables]
    fingerprint: str | None  # hex
    version: int


# ------------------------------------------------------------------ config
def _tuples(x):
    # JSON has no tuples; the configs use tuples for every sequence.
    if isinstance(x, list):
        return tuple(_tuples(v) for v in x)
    if isinstance(x, dict):
        return {k: _tuples(v) for k, v in x.items()}
    return x


def config_to_json(sections: dict) -> str:
    """{name: ConfigDict} -> the text of config.json."""
    raw = {name: section.to_dict() for name, section in sections.items()}
    return json.dumps(raw, indent=1, sort_keys=True, default=str)


def _read_json_object(f: Path) -> dict:
    try:
        raw = json.loads(f.read_text())
    except (ValueError, OSError) as e:  # UnicodeDecodeError is a ValueError
        raise BundleError(f"bundle file {f} is not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise BundleError(f"bundle file {f} must hold a JSON object, not {type(raw).__name__}")
    return _tuples(raw)


def _section(raw: dict, key: str, kind: str, f: Path) -> ml_collections.ConfigDict:
    """``raw[key]`` as a ConfigDict whose fields have the types of the
    ``kind`` section's defaults (``configs.type_problem``)."""
    if key not in raw:
        raise BundleError(f"bundle file {f} has no {key!r} section")
    node = raw[key]
    if isinstance(node, dict):
        try:
            node = ml_collections.ConfigDict(node)
        except (ValueError, TypeError, KeyError) as e:
            raise BundleError(f"bundle file {f} is not a config ({e})") from None
    defaults = DEFAULTS[kind]()
    problem = configs.type_problem(node, defaults, key)
    if problem:
        raise BundleError(f"bundle file {f}: {problem}")
    return configs.fill_defaults(node, defaults)


# ------------------------------------------------------------------ weights
# How weights may be stored; they load in the model's own dtype (float32).
WEIGHT_DTYPES = ("float32", "float16")


def _npz_bytes(flat: dict[str, np.ndarray], dtype: str = "float32", where: str = "") -> bytes:
    """The arrays as an .npz; float arrays stored in ``dtype``, which must hold
    them exactly (round the model first: ``export.rounded``)."""
    if dtype not in WEIGHT_DTYPES:
        raise BundleError(f"weights dtype must be one of {WEIGHT_DTYPES}, got {dtype!r}")
    out = {}
    for k in sorted(flat):
        a = np.asarray(flat[k])
        if a.dtype.kind == "f" and a.dtype != np.dtype(dtype):
            b = a.astype(dtype)
            if not np.array_equal(b.astype(a.dtype), a):
                raise BundleError(
                    f"{where} weight {k} is not exactly representable in {dtype}; "
                    "round the model first (export --weights_dtype rounds it)"
                )
            a = b
        out[k] = a
    buf = io.BytesIO()
    np.savez(buf, **out)
    return buf.getvalue()


def _read_weights(f: Path) -> dict[str, np.ndarray]:
    """An .npz of numeric, finite arrays; BundleError naming the file (and array) otherwise."""
    try:
        with open(f, "rb") as fh:
            z = np.load(fh, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive")
            with z:
                arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        msg = str(e).splitlines()[0] if str(e) else ""
        raise BundleError(
            f"bundle file {f} is not a readable weights archive ({type(e).__name__}: {msg})"
        ) from None
    for key, a in arrays.items():
        if a.dtype.kind not in "biuf":
            raise BundleError(f"bundle file {f}: array {key} has dtype {a.dtype}, not numbers")
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise BundleError(f"bundle file {f}: array {key} holds NaN or infinity")
    return arrays


# ------------------------------------------------------------------ save / load
def save_bundle(path, models, tables, fingerprint: bytes | None = None,
                weights_dtype: str = "float32") -> Path:  # fmt: skip
    """Writes a bundle directory (created; existing bundle files are replaced).

    ``models`` maps names in ``SECTIONS`` ("autoencoder" required) to
    ``(config section, weights)``, the weights an nnx.State or a (nested or
    flat) dict of arrays; ``tables`` maps names to DiscreteTables (one
    DiscreteTables is stored as "y"); ``fingerprint`` is
    ``coding.model_fingerprint(autoencoder)``. ``weights_dtype``: how float
    weights are stored (``WEIGHT_DTYPES``; they must be exact in it).
    """
    unknown = set(models) - set(SECTIONS)
    coders = [n for n in CODERS if n in models]
    if unknown or len(coders) != 1 or ("cdc" in models and len(models) > 1):
        raise BundleError(
            f"bundle needs 'autoencoder' (and decoders from {tuple(SECTIONS)}) or 'cdc' alone"
        )
    order = [name for name in SECTIONS if name in models]
    files = {"config.json": config_to_json({n: models[n][0] for n in order}).encode()}
    for name in order:
        flat = flatstate.flatten_state(models[name][1])
        files[f"weights/{name}.npz"] = _npz_bytes(flat, weights_dtype, name)
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
    manifest = hashing.read_manifest(path, FORMAT, (1, VERSION), BundleError, WHAT)
    files = manifest["files"]
    coder = "weights/cdc.npz" if "weights/cdc.npz" in files else "weights/autoencoder.npz"
    for rel in ("config.json", coder):
        if rel not in files:
            raise BundleError(f"bundle manifest lacks {rel}")
    hashing.verify_files(path, files, BundleError, WHAT)
    raw = _read_json_object(path / "config.json")
    read = _models_v1 if manifest["version"] == 1 else _models_v2
    models = {
        name: Model(section, _read_weights(path / weights), key, weights)
        for name, (section, key, weights) in read(raw, files, path / "config.json").items()
    }
    tables = {}
    for rel in sorted(files):
        if rel.startswith("tables/"):
            try:
                tables[Path(rel).stem] = DiscreteTables.from_bytes((path / rel).read_bytes())
            except (ValueError, OSError) as e:
                raise BundleError(f"bundle file {path / rel} is not a coding table ({e})") from None
    return Bundle(path, models, tables, manifest.get("fingerprint"), manifest["version"])


def _models_v2(raw: dict, files: dict, f: Path) -> dict:
    """{name: (section, config.json key, weights file)} of a version 2 bundle."""
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise BundleError(f"bundle file {f} names unknown models {unknown}")
    out = {}
    coder = "cdc" if "cdc" in raw else "autoencoder"
    for name, kind in SECTIONS.items():
        weights = f"weights/{name}.npz"
        if name in raw or name == coder:
            if weights not in files:
                raise BundleError(f"bundle manifest lacks {weights} ({f.name} has a {name} model)")
            out[name] = (_section(raw, name, kind, f), name, weights)
        elif weights in files:
            raise BundleError(f"bundle file {f} has no {name!r} section for {weights}")
    return out


def _models_v1(raw: dict, files: dict, f: Path) -> dict:
    """Version 1: one experiment config; every U-Net uses its ``diffusion`` section."""
    out = {"autoencoder": (_section(raw, "model", "model", f), "model", V1_WEIGHTS["autoencoder"])}
    decoders = [n for n, rel in V1_WEIGHTS.items() if n != "autoencoder" and rel in files]
    if decoders:
        shared = _section(raw, "diffusion", "diffusion", f)
        out |= {name: (shared, "diffusion", V1_WEIGHTS[name]) for name in decoders}
    return out


def save_codec(path, codec, weights_dtype: str = "float32") -> Path:
    """Writes a Codec's models (``codec.models()``), its coding tables and its
    fingerprint as a bundle (used by export)."""
    return save_bundle(path, codec.models(), codec.coding.tables, fingerprint=codec.fingerprint,
                       weights_dtype=weights_dtype)  # fmt: skip
