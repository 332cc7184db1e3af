"""HFD+'s side information: a coarse map of the residual energy ``|x - x_mse|``.

Hoogeboom et al. 2023 ("HFD+") additionally condition the diffusion decoder
on a downsampled map of the residual's energy, sent as side information. The
paper's exact construction was not available here; ours (ASSUMPTION, the
values in ``config.diffusion.hfdplus``): per colour channel, the mean
absolute residual in [0, 1] pixel units over ``block x block`` pixels (the
image edge-padded to a multiple of ``block``), quantized on a log scale to
``levels`` integers: 0 below ``min_energy``, then level ``k`` for energies in
``[min_energy * ratio^(k - 1), min_energy * ratio^k)``, the top level open.
The levels are coded by ``coding/sideinfo.py``; the U-Net sees them as
``side_channels = 3`` extra input channels, ``2 q / (levels - 1) - 1`` in
[-1, 1], each level repeated over its block (``conditioning``).

The stage-2 task ``hfdplus`` (``train/tasks.py``) computes the same map from
the training crop and its ``x_mse`` (``levels_of`` then ``conditioning``);
the codec computes it at compress time and the decoder reads it back.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from hific_diffusion.errors import HfdError


class HfdPlusConfigError(HfdError, ValueError):
    """A ``diffusion.hfdplus`` section the map cannot be made with."""


def params(cfg) -> tuple[int, int, float, float]:
    """``(block, levels, min_energy, ratio)`` of a ``diffusion`` section, checked."""
    h = cfg.hfdplus
    block, levels = h.block, h.levels
    min_energy, ratio = float(h.min_energy), float(h.ratio)
    if not isinstance(block, int) or not 1 <= block <= 255:
        raise HfdPlusConfigError(f"diffusion.hfdplus.block must be in [1, 255], got {block!r}")
    if not isinstance(levels, int) or not 2 <= levels <= 64:
        raise HfdPlusConfigError(f"diffusion.hfdplus.levels must be in [2, 64], got {levels!r}")
    if not (math.isfinite(min_energy) and min_energy > 0 and math.isfinite(ratio) and ratio > 1):
        raise HfdPlusConfigError(
            f"diffusion.hfdplus needs min_energy > 0 and ratio > 1, got {min_energy!r}, {ratio!r}"
        )
    return block, levels, min_energy, ratio


def energy(x01, x_mse01, block: int):
    """Per-channel mean ``|x - x_mse|`` over blocks: ``[B, H, W, 3]`` (H, W
    multiples of ``block``) -> ``[B, H / block, W / block, 3]`` (jnp)."""
    r = jnp.abs(jnp.asarray(x01, jnp.float32) - jnp.asarray(x_mse01, jnp.float32))
    b, h, w, c = r.shape
    return r.reshape(b, h // block, block, w // block, block, c).mean(axis=(2, 4))


def quantize(e, levels: int, min_energy: float, ratio: float):
    """Energies -> int32 levels in ``[0, levels)`` on the log scale above."""
    e = jnp.asarray(e, jnp.float32)
    k = jnp.floor(jnp.log(jnp.maximum(e, min_energy) / min_energy) / math.log(ratio)) + 1
    return jnp.where(e < min_energy, 0, jnp.clip(k, 1, levels - 1)).astype(jnp.int32)


def levels_of(x01, x_mse01, cfg):
    """The map of levels ``int32[B, h, w, 3]`` of images ``[B, H, W, 3]`` in
    [0, 1] (edge-padded to a multiple of the block first; jnp)."""
    block, levels, min_energy, ratio = params(cfg)
    ph, pw = -x01.shape[1] % block, -x01.shape[2] % block
    if ph or pw:  # edge padding, as images.pad_to_multiple (jnp: works under jit)
        pad = ((0, 0), (0, ph), (0, pw), (0, 0))
        x01 = jnp.pad(jnp.asarray(x01), pad, mode="edge")
        x_mse01 = jnp.pad(jnp.asarray(x_mse01), pad, mode="edge")
    return quantize(energy(x01, x_mse01, block), levels, min_energy, ratio)


def conditioning(q, height: int, width: int, cfg):
    """Levels ``[B, h, w, 3]`` -> the U-Net's side channels ``float32[B,
    height, width, 3]`` in [-1, 1] (each level over its block; jnp)."""
    block, levels, _, _ = params(cfg)
    c = 2.0 * jnp.asarray(q, jnp.float32) / (levels - 1) - 1.0
    c = jnp.repeat(jnp.repeat(c, block, axis=1), block, axis=2)
    return c[:, :height, :width]
