"""The integer entropy parameters of coding (ELIC Eq. 6-8 in the integer
path): h_s from z, then (mu, scale index) per group and stage, jitted at the
bucket of the coded size (``valid.region`` masks the padding), or for large
images in square windows with a halo (flat memory; exact, because the
arithmetic is integer and the halo covers the context's reach)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from hific_diffusion.autoencoder import context, tiles, valid
from hific_diffusion.autoencoder.defaults import Y_STRIDE, Z_STRIDE


@jax.jit
def jit_hyper(net, z_hat, coded_hw):
    with valid.region((z_hat.shape[1] * Z_STRIDE, z_hat.shape[2] * Z_STRIDE), coded_hw):
        return net.hyper(z_hat)


def stage_params(net, hyper, y_fixed, k, stage, channel=None):
    """Integer (mu, scale index) of group k at every position, for one coding
    stage; ``channel``: group k's channel context if already computed."""
    groups = net.context.groups
    start, end = sum(groups[:k]), sum(groups[: k + 1])
    y_prev = y_fixed[..., :start] if k else None
    current = y_fixed[..., start:end]
    # Traced, not static: one compilation per group serves both stages.
    current = jnp.where(stage == context.ANCHOR, 0, current)
    mu, sigma = context.group_params(net.context, k, hyper, y_prev, current, channel)
    return mu, net.scale_index(sigma)


def _region(y_fixed, coded_hw):
    return valid.region((y_fixed.shape[1] * Y_STRIDE, y_fixed.shape[2] * Y_STRIDE), coded_hw)


@functools.partial(jax.jit, static_argnums=(2,))
def jit_channel_context(net, y_fixed, k, coded_hw):
    with _region(y_fixed, coded_hw):
        start = sum(net.context.groups[:k])
        return context.channel_context(net.context, k, y_fixed[..., :start])


@functools.partial(jax.jit, static_argnums=(3,))
def jit_stage_params(net, hyper, y_fixed, k, stage, coded_hw, channel):
    with _region(y_fixed, coded_hw):
        return stage_params(net, hyper, y_fixed, k, stage, channel)


# Large images: the integer (mu, scale index) in square windows of BAND
# latents with HALO latents of context on every side (exact: integer
# arithmetic, and the halo covers the context's reach: ELIC's channel context
# is three 5x5 convolutions, 6 latents; its spatial context one 5x5, 2;
# tests/coding/test_coding). Even offsets keep the checkerboard's parity.
# Windows in both axes, so a window's program, and the peak memory, is the
# same for every image width (bands of whole rows grew with the width).
BAND, HALO = 64, 8


def _int32(a) -> jax.Array:
    """The programs take int32; large images keep their fixed-point arrays as
    int16 (exact: saturated to [ACT_MIN, ACT_MAX] = the int16 range)."""
    return jnp.asarray(np.asarray(a, np.int32))


def _windows(h: int, w: int, band: int, halo: int):
    for r in tiles.tile_windows(h, band, halo):
        for c in tiles.tile_windows(w, band, halo):
            yield r, c


def banded_hyper(net, z_hat):
    """The integer h_s in windows of BAND // 4 z latents, HALO // 2 of halo
    (h_s reaches 2 z latents: two stride-2 5x5 transposed convolutions, one 3x3)."""
    z_hat = np.asarray(z_hat)
    _, h, w, _ = z_hat.shape
    s = Z_STRIDE // Y_STRIDE  # latents per z latent
    band, halo = BAND // s, HALO // 2
    side = (band + 2 * halo) * Z_STRIDE
    out = None
    for (r0, r1, k0, k1), (c0, c1, j0, j1) in _windows(h, w, band, halo):
        coded = tiles.coded(((r1 - r0) * Z_STRIDE, (c1 - c0) * Z_STRIDE))
        zb = jnp.asarray(tiles.pad_to(z_hat[:, r0:r1, c0:c1], (side, side), Z_STRIDE))
        part = np.asarray(jit_hyper(net, zb, coded))
        if out is None:  # int16: every IntConv clips to [ACT_MIN, ACT_MAX] (exact)
            out = np.empty((1, h * s, w * s, part.shape[3]), np.int16)
        rows = slice((k0 - r0) * s, (k1 - r0) * s)
        out[:, k0 * s : k1 * s, j0 * s : j1 * s] = part[:, rows, (j0 - c0) * s : (j1 - c0) * s]
    return out


def banded_params(net, hyper, y_fixed, k, stage):
    _, h, w, _ = y_fixed.shape
    side = (BAND + 2 * HALO) * Y_STRIDE
    hyper = np.asarray(hyper)
    c_k = net.context.groups[k]
    mu, idx = np.empty((2, 1, h, w, c_k), np.int32)
    for (r0, r1, k0, k1), (c0, c1, j0, j1) in _windows(h, w, BAND, HALO):
        coded = tiles.coded(((r1 - r0) * Y_STRIDE, (c1 - c0) * Y_STRIDE))
        y = _int32(tiles.pad_to(y_fixed[:, r0:r1, c0:c1], (side, side), Y_STRIDE))
        hb = _int32(tiles.pad_to(hyper[:, r0:r1, c0:c1], (side, side), Y_STRIDE))
        channel = jit_channel_context(net, y, k, coded) if k else None
        m, i = jit_stage_params(net, hb, y, k, jnp.int32(stage), coded, channel)
        keep = (slice(None), slice(k0 - r0, k1 - r0), slice(j0 - c0, j1 - c0))
        mu[:, k0:k1, j0:j1] = np.asarray(m)[keep]
        idx[:, k0:k1, j0:j1] = np.asarray(i)[keep]
    return mu, idx
