"""The models installed with the package: quality levels and the default.

``hific_diffusion/assets/quality_<k>`` holds the bundle of quality ``k``
(:data:`QUALITIES`, low to high rate, like CompressAI's quality levels);
``$HFD_MODELS`` points at another directory laid out the same way. The
default model is quality :data:`DEFAULT_QUALITY`, or ``$HFD_DEFAULT_BUNDLE``
when set. A ``.hfd`` file names its model by fingerprint, so decompressing
finds the installed bundle that wrote it (:func:`bundle_for`): the quality is
chosen once, at compress time.

Reads manifests only (JSON); loading a model is ``pipeline.Codec.load``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hific_diffusion.coding import bitstream
from hific_diffusion.errors import HfdError

QUALITIES = (1, 2, 3)
DEFAULT_QUALITY = 2
ASSETS = Path(__file__).resolve().parent / "assets"
MODELS_ENV = "HFD_MODELS"  # a directory of quality_<k> bundles, instead of ASSETS
DEFAULT_BUNDLE_ENV = "HFD_DEFAULT_BUNDLE"  # the default model's bundle, when set


class QualityError(HfdError, ValueError):
    """A quality level that does not exist or is not installed."""


def models_dir() -> Path:
    return Path(os.environ.get(MODELS_ENV) or ASSETS)


def quality_dir(quality: int) -> Path:
    """Where quality ``quality``'s bundle lives (whether or not it is installed)."""
    if isinstance(quality, bool) or not isinstance(quality, int) or quality not in QUALITIES:
        raise QualityError(f"quality must be one of {list(QUALITIES)}, got {quality!r}")
    return models_dir() / f"quality_{quality}"


def installed_qualities() -> tuple[int, ...]:
    return tuple(q for q in QUALITIES if (quality_dir(q) / "manifest.json").is_file())


def quality_path(quality: int) -> Path:
    """The bundle of an installed quality level; ``QualityError`` otherwise."""
    path = quality_dir(quality)
    if not (path / "manifest.json").is_file():
        have = ", ".join(map(str, installed_qualities())) or "none"
        raise QualityError(
            f"quality {quality} is not installed (installed: {have}; in {path.parent})"
        )
    return path


def default_bundle_path() -> Path:
    """``$HFD_DEFAULT_BUNDLE``, or the default quality's bundle."""
    return Path(os.environ.get(DEFAULT_BUNDLE_ENV) or quality_dir(DEFAULT_QUALITY))


def _short_fingerprint(bundle: Path) -> bytes | None:
    try:
        manifest = json.loads((bundle / "manifest.json").read_text())
        return bitstream.short_fingerprint(bytes.fromhex(manifest["fingerprint"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not a readable bundle: it cannot have written the file


def bundle_for(short_fingerprint: bytes) -> Path | None:
    """The installed bundle (default first, then each quality) whose model
    wrote a file with this header fingerprint; None if none did."""
    candidates = [default_bundle_path()] + [quality_dir(q) for q in QUALITIES]
    for path in dict.fromkeys(candidates):  # in order, each once
        if _short_fingerprint(path) == bytes(short_fingerprint):
            return path
    return None
