"""Training input pipeline: source -> shuffle -> random crop + flip -> host batches.

The order of examples is a function of the seed only, never of the number of
hosts: the shuffled, repeated stream is cut into global batches, and host
``h`` of ``P`` reads rows ``[h * B/P, (h+1) * B/P)`` of each one (its shard,
``grain.sharding.ShardOptions(jax.process_index(), jax.process_count())``).
Crops and flips draw from a per-position RNG (grain ``random_map``), so one
host and many hosts, with or without worker processes, see the same global
batch at every step; that is what makes resume and multi-host runs
reproducible.
"""

from __future__ import annotations

import grain
import numpy as np

from hific_diffusion.data.sources import DataError, make_source


def random_crop_flip(image: np.ndarray, crop: int, flip: bool, rng: np.random.Generator):
    """A ``crop`` x ``crop`` window at a random offset, mirrored left-right half of the time.

    Images smaller than the crop are edge-padded (rather than rejected) so
    small photos in a folder still contribute.
    """
    h, w = image.shape[:2]
    if h < crop or w < crop:
        image = np.pad(image, ((0, max(crop - h, 0)), (0, max(crop - w, 0)), (0, 0)), mode="edge")
        h, w = image.shape[:2]
    top = int(rng.integers(0, h - crop + 1))
    left = int(rng.integers(0, w - crop + 1))
    out = image[top : top + crop, left : left + crop]
    if flip and rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def shard_options(process_index: int | None = None, process_count: int | None = None):
    if process_index is None or process_count is None:
        import jax

        process_index, process_count = jax.process_index(), jax.process_count()
    return grain.sharding.ShardOptions(shard_index=process_index, shard_count=process_count)


def make_dataset(
    data_cfg, global_batch: int, seed: int, shard=None, start: int = 0
) -> grain.IterDataset:
    """Host-local batches ``uint8[global_batch / shard_count, crop, crop, 3]``, endless
    (6 channels with ``data.reconstructions``: the photo, then its x_mse).

    ``start`` skips that many global batches (resuming without iterator state).
    """
    shard = shard or shard_options()
    if global_batch % shard.shard_count:
        raise DataError(
            f"batch_size {global_batch} is not divisible by the {shard.shard_count} hosts"
        )
    local = global_batch // shard.shard_count
    source = make_source(data_cfg, seed)
    if data_cfg.reconstructions:
        if data_cfg.source != "folder":
            raise DataError("data.reconstructions needs data.source = 'folder'")
        from hific_diffusion.data import reconstructions

        source = reconstructions.PairedSource(source, data_cfg.reconstructions)
    if len(source) == 0:
        raise DataError(f"data source {data_cfg.source!r} is empty")
    crop, flip = int(data_cfg.crop), bool(data_cfg.flip)
    ds = (
        grain.MapDataset.source(source)
        .shuffle(seed=seed)
        .repeat(None)
        .random_map(lambda img, rng: random_crop_flip(img, crop, flip, rng), seed=seed + 1)
        .batch(local, drop_remainder=True)
    )
    ds = ds[start * shard.shard_count + shard.shard_index :: shard.shard_count]
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=4, prefetch_buffer_size=4))
    if int(data_cfg.num_workers) > 0:
        from absl import flags

        # grain's worker processes read absl flags; outside an absl app
        # (tests, notebooks) nobody has parsed them, so take the defaults.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=int(data_cfg.num_workers)))
    return it
