"""Evaluation image sets: a local directory per protocol, a TFDS array_record
build, the offline photos, or synthetic.

TFDS: with ``config.eval.tfds_name`` set (e.g. ``clic``), ``--data_dir`` is the
TFDS data directory (``tfds build clic --file_format=array_record
--data_dir=DIR``) and ``config.eval.tfds_split`` picks the split; records
are read without TensorFlow (``hific_diffusion.data.tfds_records``) and named
``<builder>_<split>_<index>``.

Images are yielded lazily as ``(name, uint8 HxWx3)`` in a fixed (sorted) order
so per-image results can be resumed by name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from hific_diffusion.errors import HfdError
from hific_diffusion.images import IMAGE_SUFFIXES

HOW_TO_GET = {
    "clic20": (
        "CLIC 2020 test set, professional (250) + mobile (178) = 428 PNGs (HiFiC/HFD "
        "Fig. 3): download both test splits from https://clic.compression.cc (or tfds 'clic') and "
        "unpack the PNGs into one directory"
    ),
    "clic22": (
        "CLIC 2022 test set (30 images): download the image test split from "
        "https://clic.compression.cc and unpack the PNGs into one directory"
    ),
    "kodak": (
        "Kodak (24 PNGs, 768x512): download kodim01.png .. kodim24.png from "
        "http://r0k.us/graphics/kodak/ into one directory"
    ),
    "coco30k": (
        "MS-COCO 30k: download val2014 from http://images.cocodataset.org/zips/val2014.zip, "
        "keep the 30,000 images of the caption subset (one per line in a list you provide) "
        "in one directory"
    ),
}


class DatasetError(HfdError, ValueError):
    """A dataset that is unknown, missing or empty."""


def offline_heldout() -> list[tuple[str, np.ndarray]]:
    """The held-out offline photos (never trained on) that ship with scikit-image/-learn."""
    from hific_diffusion.data import offline_photos

    return list(zip(offline_photos.names("heldout"), offline_photos.load("heldout"), strict=True))


def synthetic(count: int = 3, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """Small smooth-plus-texture images of varied sizes, for the ``tiny`` config."""
    rng = np.random.default_rng(seed)
    out = []
    for i, (h, w) in enumerate([(64, 96), (80, 64), (96, 96)][:count]):
        yy, xx = np.mgrid[0:h, 0:w] / 16.0
        phase = rng.uniform(0, 2 * np.pi, 3)
        base = np.stack([np.sin(xx * (1 + c) + yy + phase[c]) for c in range(3)], -1)
        img = 127.5 + 90 * base + rng.normal(0, 12, (h, w, 3))
        out.append((f"synthetic_{i:02d}", np.clip(img, 0, 255).astype(np.uint8)))
    return out


def _folder(path: Path, dataset: str) -> list[tuple[str, Path]]:
    how = HOW_TO_GET.get(dataset, "put the images in one directory")
    if not path.is_dir():
        raise DatasetError(f"{dataset}: no directory {path}; {how}, then pass --data_dir")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"{dataset}: no images in {path}; {how}")
    return [(p.stem, p) for p in files]


class _Record:
    """One record of a TFDS split, decoded when iterated."""

    def __init__(self, source, index: int):
        self.source, self.index = source, index

    def load(self) -> np.ndarray:
        return self.source[self.index]


def _tfds(directory: str, name: str, split: str) -> list[tuple[str, _Record]]:
    from hific_diffusion.data import sources, tfds_records

    try:
        src = tfds_records.TfdsSource(directory, name, split, sources.decode_image)
    except tfds_records.TfdsDataError as e:
        raise DatasetError(str(e)) from None
    safe = name.replace("/", "_")
    return [(f"{safe}_{split}_{i:05d}", _Record(src, i)) for i in range(len(src))]


def resolve(eval_cfg, data_dir: str | None = None) -> list[tuple[str, object]]:
    """[(name, uint8 array, Path or record)] for the config's dataset, cut to ``max_images``."""
    dataset = eval_cfg.dataset
    if dataset == "demo":
        items = offline_heldout()
    elif dataset == "synthetic":
        items = synthetic()
    else:
        directory = data_dir or eval_cfg.get("data_dir", "") or os.environ.get("HFD_DATA_DIR")
        tfds_name = eval_cfg.get("tfds_name", "")
        if not directory:
            how = HOW_TO_GET.get(dataset, "put the images in one directory")
            if tfds_name:
                how = f"pass the TFDS data directory that holds the {tfds_name!r} build"
            raise DatasetError(f"{dataset}: no --data_dir given; {how}")
        if tfds_name:
            items = _tfds(directory, tfds_name, eval_cfg.get("tfds_split", "test"))
        else:
            items = _folder(Path(directory).expanduser(), dataset)
    names = [n for n, _ in items]
    if len(set(names)) != len(names):
        raise DatasetError(f"{dataset}: duplicate image names; names identify results")
    limit = int(eval_cfg.get("max_images", 0) or 0)
    return items[:limit] if limit > 0 else items


def iterate(items) -> Iterator[tuple[str, np.ndarray]]:
    from hific_diffusion import images

    for name, item in items:
        if isinstance(item, Path):
            item = images.load(item)
        elif isinstance(item, _Record):
            item = item.load()
        yield name, item
