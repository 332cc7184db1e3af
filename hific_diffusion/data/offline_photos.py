"""Natural photos that scikit-image and scikit-learn ship inside their wheels.

No download is needed, so tests, benchmarks and the demo can use real photos
on a machine without network. The split is fixed:

* ``heldout``: ``china`` and ``flower`` (scikit-learn's two sample photos) and
  scikit-image's ``coffee``; never used for training.
* ``train``: scikit-image's other camera-taken photos (``astronaut``,
  ``chelsea``, ``rocket``, ``hubble_deep_field``, ``immunohistochemistry``,
  ``retina``) and its grayscale ones (``camera``, ``coins``, ``moon``,
  ``brick``, ``grass``, ``gravel``) copied to 3 channels. Drawings
  (``colorwheel``, ``logo``) are left out.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

from hific_diffusion.errors import HfdError

TRAIN = (
    "astronaut",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "camera",
    "coins",
    "moon",
    "brick",
    "grass",
    "gravel",
)
HELDOUT = ("china", "flower", "coffee")
SPLITS = {"train": TRAIN, "heldout": HELDOUT}


class OfflinePhotosError(HfdError, ValueError):
    """An unknown split or a photo the installed packages do not ship."""


def _to_rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3].astype(np.uint8))


@functools.cache
def _photo(name: str) -> np.ndarray:
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return _to_rgb(load_sample_image(f"{name}.jpg"))
    import skimage.data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return _to_rgb(getattr(skimage.data, name)())
        except Exception as e:  # a newer skimage may move an image to pooch
            raise OfflinePhotosError(f"skimage.data.{name} is not available offline: {e}") from e


def names(split: str = "train") -> tuple[str, ...]:
    if split not in SPLITS:
        raise OfflinePhotosError(f"unknown split {split!r}; use 'train' or 'heldout'")
    return SPLITS[split]


def photo(name: str) -> np.ndarray:
    """One photo of either split by name, as a uint8 HxWx3 array (a copy)."""
    if name not in TRAIN + HELDOUT:
        raise OfflinePhotosError(f"unknown offline photo {name!r}; see offline_photos.SPLITS")
    return _photo(name).copy()


def load(split: str = "train") -> list[np.ndarray]:
    """The photos of ``split`` as uint8 HxWx3 arrays (fixed order)."""
    return [_photo(n).copy() for n in names(split)]
