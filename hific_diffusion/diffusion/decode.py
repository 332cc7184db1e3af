"""Decode-time generation: x_mse -> sample, patch-parallel, any image size.

``generate`` is what ``pipeline.Codec.decompress(decoder="diffusion"|"flow")``
calls (HFD Sec. 3 and 4). The image is padded (edge) to a multiple of the
U-Net's downsampling factor, sampled in [-1, 1] model space with the
U-Net applied tile-wise at every step (``patches``), cropped back and mapped
to [0, 1]. All steps run inside one compiled function; with a progress
bar the same compiled function runs chunks of steps.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hific_diffusion.diffusion import losses, patches, samplers, schedules
from hific_diffusion.errors import HfdError


class GenerateError(HfdError, ValueError):
    """Arguments ``generate`` cannot use (shape, steps, seed, tiling, kind)."""


KINDS = ("diffusion", "flow")


def _denoiser(graphdef, state, cond, layout, chunk):
    model = nnx.merge(graphdef, state)

    def predict(z, logsnr):
        def one_tile(z_tile, c_tile):
            return model(z_tile[None], c_tile[None], logsnr)[0]

        return patches.apply_tiled(one_tile, z, cond, layout, chunk)

    return predict


@functools.partial(
    jax.jit,
    static_argnames=("kind", "steps", "sampler", "layout", "chunk", "clip_x", "schedule_args"),
)
def _run_steps(graphdef, state, z, cond, key, start, stop, noise_level, *, kind, steps, sampler,
               layout, chunk, clip_x, schedule_args):  # fmt: skip
    eta, lo, hi = schedule_args
    predict = _denoiser(graphdef, state, cond, layout, chunk)
    if kind == "flow":
        cond_fn = functools.partial(schedules.flow_logsnr, logsnr_min=lo, logsnr_max=hi)
        return samplers.euler_flow_steps(predict, z, start, stop, steps=steps, cond=cond_fn)
    schedule = functools.partial(schedules.logsnr_schedule, eta=eta, logsnr_min=lo, logsnr_max=hi)
    return samplers.diffusion_steps(
        predict, z, key, start, stop, steps=steps, schedule=schedule, sampler=sampler,
        noise_level=noise_level, clip_x=clip_x,
    )  # fmt: skip


def check_args(cfg, kind, steps=None, seed=0, noise_level=None, tile=None, overlap=None):
    """Validates the sampling arguments (None: ``cfg``'s value) without any work.

    Returns them resolved, ``(steps, seed, noise_level, tile, overlap)``; raises
    ``GenerateError`` (or ``patches.TilingError``) naming the bad one. The Codec
    calls it before decoding the latents, so a bad argument costs nothing.
    """
    steps = cfg.steps if steps is None else steps
    noise_level = cfg.noise_level if noise_level is None else noise_level
    tile = cfg.tile if tile is None else tile
    overlap = cfg.overlap if overlap is None else overlap
    if kind not in KINDS:
        raise GenerateError(f"kind must be one of {KINDS}, got {kind!r}")
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise GenerateError(f"steps must be a positive integer, got {steps!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**32:
        raise GenerateError(f"seed must be an integer in [0, 2^32), got {seed!r}")
    if isinstance(noise_level, bool) or not isinstance(noise_level, int | float | np.number):
        raise GenerateError(f"noise_level must be a number in [0, 1], got {noise_level!r}")
    if not 0.0 <= float(noise_level) <= 1.0:  # NaN fails too
        raise GenerateError(f"noise_level must be in [0, 1], got {noise_level!r}")
    for name, v in (("tile", tile), ("overlap", overlap)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
            raise GenerateError(f"{name} must be a non-negative integer, got {v!r}")
    if tile:
        m = 2 ** (len(cfg.unet.channel_mult) - 1)
        if tile % m:
            raise patches.TilingError(f"tile must be a multiple of {m}, got {tile}")
        if overlap > tile // 2:
            raise patches.TilingError(
                f"overlap must be in [0, tile / 2 = {tile // 2}], got {overlap}"
            )
    return int(steps), int(seed), float(noise_level), int(tile), int(overlap)


def _check_image(x_mse01):
    x = np.asarray(x_mse01)
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[1] < 1 or x.shape[2] < 1:
        raise GenerateError(f"x_mse must be float [B, H, W, 3], got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating) or not np.all(np.isfinite(x)):
        raise GenerateError("x_mse must hold finite floats in [0, 1]")
    return np.clip(x.astype(np.float32), 0.0, 1.0)


def generate(graphdef, state, x_mse01, *, kind="diffusion", cfg, steps=None, seed=0,
             noise_level=None, tile=None, overlap=None, progress=False):  # fmt: skip
    """Sample an image given its MSE reconstruction; ``float32[B, H, W, 3]`` in [0, 1].

    Args:
      graphdef, state: ``nnx.split(unet)`` of the diffusion or flow U-Net.
      x_mse01: the autoencoder's reconstruction, ``float[B, H, W, 3]`` in [0, 1], any H, W.
      kind: "diffusion" (``cfg.sampler``: "ddpm" ancestral or "ddim"; any other
        value, e.g. a flow config's "euler", means "ddpm") or "flow" (Euler).
      cfg: ``config.diffusion``; None arguments below take its values.
      steps: sampling steps (model evaluations).
      seed: the sampler seed (stored in the bitstream header by the codec).
      noise_level: ancestral variance, 0 = posterior, 1 = forward process.
      tile, overlap: tile size (a multiple of ``2 ** (len(channel_mult) - 1)``;
        0 = one tile, no tiling) and minimum overlap (<= tile / 2).
      progress: show a tqdm bar over steps (runs the steps in ~20 chunks).

    Raises ``GenerateError`` (and ``patches.TilingError``) for bad arguments.
    """
    steps, seed, noise_level, tile, overlap = check_args(
        cfg, kind, steps, seed, noise_level, tile, overlap
    )
    x = _check_image(x_mse01)
    b, h, w, _ = x.shape
    m = 2 ** (len(cfg.unet.channel_mult) - 1)
    hp, wp = math.ceil(h / m) * m, math.ceil(w / m) * m
    x = np.pad(x, ((0, 0), (0, hp - h), (0, wp - w), (0, 0)), mode="edge")
    layout = patches.make_layout(hp, wp, tile, overlap, multiple=m)
    cond = jnp.asarray(losses.to_model_space(x))

    k_init, k_steps = jax.random.split(jax.random.PRNGKey(seed))
    noise = jax.random.normal(k_init, cond.shape)
    # .get: configs saved before these fields existed still decode.
    flow_noise = cfg.get("flow_noise", 0.1)
    z = losses.flow_source(cond, noise, flow_noise) if kind == "flow" else noise
    sampler = cfg.sampler if cfg.sampler in samplers.DIFFUSION_SAMPLERS else "ddpm"
    residual = kind == "diffusion" and losses.diffusion_target(cfg)[0] == "residual"
    static = dict(
        kind=kind, steps=steps, sampler=sampler, layout=layout, chunk=int(cfg.tile_chunk),
        clip_x=bool(cfg.get("clip_x", True)) and not residual,
        schedule_args=(float(cfg.eta), float(cfg.logsnr_min), float(cfg.logsnr_max)),
    )  # fmt: skip
    tile_mode = cfg.get("tile_mode", "overlap")
    if tile_mode == "grouped" and layout.num_tiles > 1:
        from hific_diffusion.diffusion import grouped

        z = grouped.run_grouped(graphdef, state, z, cond, k_steps, noise_level, static, progress)
    elif tile_mode not in ("overlap", "grouped"):
        raise GenerateError(f"tile_mode must be 'overlap' or 'grouped', got {tile_mode!r}")
    else:
        z = run_chunks(graphdef, state, z, cond, k_steps, noise_level, static, progress)
    if kind == "diffusion":
        z = losses.from_diffusion_space(z, cond, cfg)
    out = jnp.clip((z + 1.0) / 2.0, 0.0, 1.0)[:, :h, :w]
    return np.asarray(out, np.float32)


def run_chunks(graphdef, state, z, cond, key, noise_level, static, progress):
    """All steps in one call, or ~20 calls of the same compiled function with a bar."""
    steps = static["steps"]
    per = max(1, steps // 20) if progress else steps
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=f"{static['kind']} decode", unit="step")
    nl = jnp.float32(noise_level)
    for start in range(0, steps, per):
        stop = min(start + per, steps)
        z = _run_steps(graphdef, state, z, cond, key, jnp.int32(start), jnp.int32(stop), nl,
                       **static)  # fmt: skip
        if bar is not None:
            z.block_until_ready()
            bar.update(stop - start)
    if bar is not None:
        bar.close()
    return z
