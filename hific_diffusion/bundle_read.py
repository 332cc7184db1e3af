"""Reading a bundle's files (after their sha256 matched the manifest): every
fault, such as a config section of the wrong type, a weights archive that is
not one, or NaN weights, is a ``BundleError`` naming the file and the field or array."""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

import ml_collections
import numpy as np

from hific_diffusion.bundle import BundleError, _tuples


def read_config(f: Path) -> ml_collections.ConfigDict:
    try:
        raw = json.loads(f.read_text())
    except (ValueError, OSError) as e:  # UnicodeDecodeError is a ValueError
        raise BundleError(f"bundle file {f} is not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise BundleError(f"bundle file {f} must hold a JSON object, not {type(raw).__name__}")
    try:
        return ml_collections.ConfigDict(_tuples(raw))
    except (ValueError, TypeError, KeyError) as e:
        raise BundleError(f"bundle file {f} is not a config ({e})") from None


def read_weights(f: Path) -> dict[str, np.ndarray]:
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


def check_config(config, params, f) -> None:
    """The config sections the bundle's models are built from exist and have
    the default's types (``configs.type_problem``): ``model`` always,
    ``diffusion`` (with ``unet``) when there is a U-Net. BundleError naming
    the file and field otherwise."""
    from hific_diffusion import configs
    from hific_diffusion.codec.defaults import model_config
    from hific_diffusion.diffusion.defaults import diffusion_config

    sections = {"model": model_config()}
    if any(name.startswith("unet_") for name in params):
        sections["diffusion"] = diffusion_config()
    for key, defaults in sections.items():
        if key not in config:
            raise BundleError(f"bundle file {f} has no {key!r} section")
        problem = configs.type_problem(config[key], defaults, key)
        if problem:
            raise BundleError(f"bundle file {f}: {problem}")
