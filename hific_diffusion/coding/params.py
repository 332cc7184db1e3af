"""The integer entropy parameters of coding (ELIC Eq. 6-8 in the integer
path): h_s from z, then (mu, scale index) per group and stage, jitted at the
bucket of the coded size (``valid.region`` masks the padding), or for large
images in bands of latent rows with a halo (flat memory; exact, because the
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


# Large images: the integer (mu, scale index) in bands of BAND latent rows
# with HALO rows of context each side (exact: integer arithmetic, and the halo
# covers the context's reach: ELIC's channel context is three 5x5 convolutions,
# 6 rows; its spatial context one 5x5, 2 rows; tests/coding/test_coding). Even
# offsets keep the checkerboard's parity. Peak memory is one band's.
BAND, HALO = 64, 8


def banded_hyper(net, z_hat):
    """The integer h_s in bands of BAND // 4 z rows, HALO // 2 rows of halo
    (h_s reaches 2 z rows: two stride-2 5x5 transposed convolutions, one 3x3)."""
    z_hat = np.asarray(z_hat)
    _, h, w, _ = z_hat.shape
    s = Z_STRIDE // Y_STRIDE  # latent rows per z row
    band, halo = BAND // s, HALO // 2
    layout = ((band + 2 * halo) * Z_STRIDE, valid.bucket_side(w * Z_STRIDE))
    out = None
    for r0, r1, k0, k1 in tiles.tile_windows(h, band, halo):
        coded = tiles.coded(((r1 - r0) * Z_STRIDE, w * Z_STRIDE))
        zb = jnp.asarray(tiles.pad_to(z_hat[:, r0:r1], layout, Z_STRIDE))
        part = np.asarray(jit_hyper(net, zb, coded))
        if out is None:
            out = np.empty((1, h * s, part.shape[2], part.shape[3]), part.dtype)
        out[:, k0 * s : k1 * s] = part[:, (k0 - r0) * s : (k1 - r0) * s]
    return out


def banded_params(net, hyper, y_fixed, k, stage):
    _, h, w, _ = y_fixed.shape
    layout = ((BAND + 2 * HALO) * Y_STRIDE, valid.bucket_side(w * Y_STRIDE))
    hyper = np.asarray(hyper)
    c_k = net.context.groups[k]
    mu, idx = np.empty((2, 1, h, w, c_k), np.int32)
    for r0, r1, k0, k1 in tiles.tile_windows(h, BAND, HALO):
        coded = tiles.coded(((r1 - r0) * Y_STRIDE, w * Y_STRIDE))
        y = jnp.asarray(tiles.pad_to(y_fixed[:, r0:r1], layout, Y_STRIDE))
        hb = jnp.asarray(tiles.pad_to(hyper[:, r0:r1], layout, Y_STRIDE))
        channel = jit_channel_context(net, y, k, coded) if k else None
        m, i = jit_stage_params(net, hb, y, k, jnp.int32(stage), coded, channel)
        mu[:, k0:k1] = np.asarray(m)[:, k0 - r0 : k1 - r0, :w]
        idx[:, k0:k1] = np.asarray(i)[:, k0 - r0 : k1 - r0, :w]
    return mu, idx
