"""g_a and g_s at a size bucket, or in overlapping tiles above a size (issue
#18: decode memory flat in the image size).

Small images run whole, padded to their size bucket (:mod:`valid`). Above
:data:`TILED_ABOVE` pixels the transforms run tile by tile on one fixed tile
layout (one compilation), so peak memory is one tile's activations, not the
image's: a 16384x16384 image would otherwise need ~100 GB of float
activations.

A tile is ``TILE`` latents (``TILE * Y_STRIDE`` pixels) square plus a halo of
:func:`halo` latents on each side, at least the transforms' receptive field
(measured with gradients: g_s reaches 7 latents for one residual block per
stage and 9 for three, g_a 104 and 132 pixels; ``tests/autoencoder/test_tiles``
checks the bound). The halo is cut away, so each output pixel is computed from
all the inputs it depends on, exactly as the whole-image pass does. Tiles at
the image border start at the border or end at the coded region, where the
zero padding and :func:`valid.region` give what the whole image sees. So tiled
and whole results differ only by float rounding (summation order of a
convolution on another shape): at most a few 1e-6 in [0, 1], never a visible
seam. The integer coding path is untouched: the bits and the decoded latents
do not depend on tiling.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hific_diffusion import images
from hific_diffusion.autoencoder import valid
from hific_diffusion.autoencoder.defaults import Y_STRIDE, Z_STRIDE

# Tile side in latents (768 pixels) and the image size (pixels of the bucket)
# above which the transforms run in tiles. ASSUMPTION: chosen so a 1024x1024
# decode (the memory baseline) runs whole and a tile with its halo (1024 px
# for one residual block per stage) costs about as much memory as it (64
# latents measured 2.08x the baseline's peak at 8192^2); not tuned further.
TILE = 48
TILED_ABOVE = 1536 * 1536


def halo(res_blocks: int) -> int:
    """Latents of context each side of a tile: >= the receptive field of g_s
    (latents) and g_a (pixels / Y_STRIDE) for ``res_blocks`` residual blocks per
    stage (measured: 7 and 6.5 for 1, 9 and 8.25 for 3). Even, so a tile's
    layout stays a multiple of 64 pixels."""
    return 6 + 2 * int(res_blocks)


def pad_to(x, hw, scale: int):
    """Zero-pad NHWC ``x`` (numpy or jax) to ``hw // scale``; zeros never matter."""
    h, w = hw[0] // scale, hw[1] // scale
    pad = ((0, 0), (0, h - x.shape[1]), (0, w - x.shape[2]), (0, 0))
    return np.pad(np.asarray(x), pad)


def coded(hw) -> jax.Array:
    """A coded size as the traced int32[2] :func:`valid.region` takes."""
    return jnp.asarray(np.asarray(hw, np.int32))


# Each runs on a bucket- or tile-sized array and sees only the coded region
# (traced, so all sizes sharing a layout share the compilation).
@jax.jit
def _analyze(graphdef, state, x01, coded_hw):
    with valid.region(x01.shape[1:3], coded_hw):
        return nnx.merge(graphdef, state).analyze_for_coding(x01)


@jax.jit
def _g_a(graphdef, state, x01, coded_hw):
    with valid.region(x01.shape[1:3], coded_hw):
        return nnx.merge(graphdef, state).analysis(x01)


@jax.jit
def _h_a(graphdef, state, y, coded_hw):
    with valid.region((y.shape[1] * Y_STRIDE, y.shape[2] * Y_STRIDE), coded_hw):
        return nnx.merge(graphdef, state).hyper_analysis(y)


@jax.jit
def _synthesize(graphdef, state, y_hat, coded_hw):
    bucket = (y_hat.shape[1] * Y_STRIDE, y_hat.shape[2] * Y_STRIDE)
    with valid.region(bucket, coded_hw):
        return jnp.clip(nnx.merge(graphdef, state).synthesis(y_hat), 0.0, 1.0)


def tiled(hw, tile: int) -> bool:
    """Do images of padded size ``hw`` run in tiles?"""
    bh, bw = valid.bucket_hw(hw)
    return bh * bw > TILED_ABOVE and max(hw) > tile * Y_STRIDE


def tile_windows(n: int, tile: int, halo_: int):
    """Along one axis of ``n`` latents: ``(start, stop, keep_from, keep_to)``
    per tile, with ``[start, stop)`` the input window (halo included) and
    ``[keep_from, keep_to)`` the latents it owns, all in latents."""
    for keep_from in range(0, n, tile):
        keep_to = min(n, keep_from + tile)
        yield max(0, keep_from - halo_), min(n, keep_to + halo_), keep_from, keep_to


def analyze(cm, x01_padded, tile: int | None = None):
    """(y, z - median) of g_a / h_a for a padded image (float in [0, 1], or
    uint8 pixels converted tile by tile), float32 numpy; ``tile``: latents per
    tile side (default :data:`TILE`)."""
    tile = tile or TILE
    x = np.asarray(x01_padded)
    unit = images.to_unit if x.dtype == np.uint8 else np.asarray  # uint8 pixels or [0, 1]
    ph, pw = x.shape[1:3]
    hl, wl = ph // Y_STRIDE, pw // Y_STRIDE
    if not tiled((ph, pw), tile):
        xb = unit(pad_to(x, valid.bucket_hw((ph, pw)), 1))
        y, z = _analyze(cm.graphdef, cm.state, jnp.asarray(xb), coded((ph, pw)))
        return np.asarray(y)[:, :hl, :wl], np.asarray(z)[:, : ph // Z_STRIDE, : pw // Z_STRIDE]
    side = (tile + 2 * cm.halo) * Y_STRIDE
    y = np.empty((1, hl, wl, cm.m), np.float32)
    for r0, r1, kr0, kr1 in tile_windows(hl, tile, cm.halo):
        for c0, c1, kc0, kc1 in tile_windows(wl, tile, cm.halo):
            crop = x[:, r0 * Y_STRIDE : r1 * Y_STRIDE, c0 * Y_STRIDE : c1 * Y_STRIDE]
            hw = crop.shape[1:3]
            xb = jnp.asarray(unit(pad_to(crop, (side, side), 1)))
            out = _g_a(cm.graphdef, cm.state, xb, coded(hw))
            y[:, kr0:kr1, kc0:kc1] = np.asarray(out)[:, kr0 - r0 : kr1 - r0, kc0 - c0 : kc1 - c0]
    yb = pad_to(y, valid.bucket_hw((ph, pw)), Y_STRIDE)
    z = _h_a(cm.graphdef, cm.state, jnp.asarray(yb), coded((ph, pw)))
    return y, np.asarray(z)[:, : ph // Z_STRIDE, : pw // Z_STRIDE]


def synthesize(cm, y_hat, tile: int | None = None, *, uint8: bool = False) -> np.ndarray:
    """g_s(y_hat) clipped to [0, 1], float32 numpy of the padded size;
    ``tile``: latents per tile side (default :data:`TILE`). ``uint8``: return
    ``images.to_uint8`` of it instead, converted tile by tile, so the MSE
    decoder never holds the float image (a 16384^2 one is 3.2 GB)."""
    tile = tile or TILE
    convert = images.to_uint8 if uint8 else np.asarray
    hl, wl = y_hat.shape[1:3]
    ph, pw = hl * Y_STRIDE, wl * Y_STRIDE
    if not tiled((ph, pw), tile):
        yb = pad_to(y_hat, valid.bucket_hw((ph, pw)), Y_STRIDE)
        x = _synthesize(cm.graphdef, cm.state, jnp.asarray(yb), coded((ph, pw)))
        return convert(np.asarray(x)[:, :ph, :pw])
    y_hat = np.asarray(y_hat, np.float32)
    side = (tile + 2 * cm.halo) * Y_STRIDE
    x = np.empty((1, ph, pw, 3), np.uint8 if uint8 else np.float32)
    s = Y_STRIDE
    for r0, r1, kr0, kr1 in tile_windows(hl, tile, cm.halo):
        for c0, c1, kc0, kc1 in tile_windows(wl, tile, cm.halo):
            crop = y_hat[:, r0:r1, c0:c1]
            hw = (crop.shape[1] * s, crop.shape[2] * s)
            yb = jnp.asarray(pad_to(crop, (side, side), s))
            out = np.asarray(_synthesize(cm.graphdef, cm.state, yb, coded(hw)))
            rows = slice((kr0 - r0) * s, (kr1 - r0) * s)
            cols = slice((kc0 - c0) * s, (kc1 - c0) * s)
            x[:, kr0 * s : kr1 * s, kc0 * s : kc1 * s] = convert(out[:, rows, cols])
    return x
