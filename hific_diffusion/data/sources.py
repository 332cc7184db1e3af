"""Grain random-access sources yielding uint8 HxWx3 images.

``make_source(config.data)`` picks one by ``config.data.source``:

* ``folder``: every PNG / JPEG / WebP under ``path``, recursively, sorted.
* ``synthetic``: deterministic smooth colour fields plus texture (tests).
* ``offline_photos``: see :mod:`hific_diffusion.data.offline_photos`.
* ``tfds``: array_record files written by a TFDS builder (see
  :mod:`hific_diffusion.data.tfds_records`).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from hific_diffusion.data import offline_photos, tfds_records
from hific_diffusion.errors import HfdError
from hific_diffusion.images import IMAGE_SUFFIXES, to_uint8


class DataError(HfdError, ValueError):
    """A data source that cannot be read."""


def decode_image(data: bytes, what: str = "record") -> np.ndarray:
    """Image file bytes (any format Pillow reads) -> uint8 HxWx3."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except Exception as e:
        raise DataError(f"cannot decode image {what}: {e}") from e


class FolderSource:
    """Images under a directory, found recursively (sorted, so every host agrees)."""

    def __init__(self, path: str):
        root = Path(path).expanduser()
        if not root.is_dir():
            raise DataError(f"data.path {path!r} is not a directory")
        self.root = root
        self.files = sorted(
            p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        if not self.files:
            raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {path!r}")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> np.ndarray:
        path = self.files[index]
        return decode_image(path.read_bytes(), str(path))


class SyntheticSource:
    """Image ``i`` is a pure function of ``(seed, i)``: smooth colour + texture."""

    def __init__(self, size: int, height: int, width: int, seed: int = 0):
        self.size, self.height, self.width, self.seed = int(size), height, width, seed

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, int(index)])
        yy, xx = np.mgrid[0 : self.height, 0 : self.width].astype(np.float32)
        img = np.zeros((self.height, self.width, 3), np.float32)
        for c in range(3):
            for _ in range(3):
                fy, fx = rng.uniform(0.005, 0.08, size=2)
                ph = rng.uniform(0, 2 * np.pi)
                img[:, :, c] += np.sin(fy * yy + fx * xx + ph)
        img = 0.5 + img / 6.0 + rng.normal(0, 0.03, img.shape).astype(np.float32)
        return to_uint8(img)


class ArraySource:
    """A fixed list of uint8 images (offline photos)."""

    def __init__(self, images: list[np.ndarray]):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.images[index]


def make_source(data_cfg, seed: int = 0):
    kind = data_cfg.source
    if kind == "folder":
        return FolderSource(data_cfg.path)
    if kind == "synthetic":
        side = int(data_cfg.crop) + int(data_cfg.crop) // 4
        return SyntheticSource(data_cfg.synthetic_size, side, side + 8, seed)
    if kind == "offline_photos":
        return ArraySource(offline_photos.load(data_cfg.split))
    if kind == "tfds":
        return tfds_records.TfdsSource(data_cfg.path, data_cfg.name, data_cfg.split, decode_image)
    raise DataError(
        f"unknown data.source {kind!r}; use 'folder', 'synthetic', 'offline_photos' or 'tfds'"
    )
