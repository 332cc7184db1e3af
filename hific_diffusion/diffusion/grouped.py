"""Grouped patch generation: tiles in groups, later groups see earlier ones.

HFD Sec. 4 (high resolution): instead of denoising all overlapping tiles
together, tiles are split into groups by their grid position, (row % k,
column % k), with the smallest k (usually 2) for which tiles k apart do not
overlap. Tiles of one group never overlap, so each group is generated in
parallel (one vmapped call per step) from start to end. A tile of a later
group is conditioned on the pixels that earlier groups already generated
inside it, by replacement
(``samplers`` ``known=``): those pixels stay fixed, the rest is generated
to agree with them. Every pixel is generated once, by the first group whose
tile covers it.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from hific_diffusion.diffusion import patches, samplers, schedules


def _period(starts, tile):
    if len(starts) == 1:
        return 1
    stride = min(b - a for a, b in zip(starts, starts[1:], strict=False))
    return math.ceil(tile / stride)


def groups(layout: patches.TileLayout):
    """Sub-layouts of the groups of mutually disjoint tiles, in generation order."""
    ky, kx = _period(layout.ys, layout.tile_h), _period(layout.xs, layout.tile_w)
    out = []
    for py in range(ky):
        for px in range(kx):
            ys, xs = layout.ys[py::ky], layout.xs[px::kx]
            if ys and xs:
                out.append(
                    patches.TileLayout(
                        layout.height,
                        layout.width,
                        layout.tile_h,
                        layout.tile_w,
                        ys,
                        xs,
                        layout.window,
                    )
                )
    return out


@functools.partial(
    jax.jit, static_argnames=("kind", "steps", "sampler", "chunk", "clip_x", "schedule_args")
)
def _run_group(
    graphdef,
    state,
    z0,
    cond,
    x_known,
    mask,
    key,
    noise_level,
    *,
    kind,
    steps,
    sampler,
    chunk,
    clip_x,
    schedule_args,
):
    """All steps for a batch of non-overlapping tiles ``[T, th, tw, 3]``."""
    eta, lo, hi = schedule_args
    model = nnx.merge(graphdef, state)

    def predict(z, logsnr):
        one = lambda zt, ct: model(zt[None], ct[None], logsnr)[0]
        return patches.map_tiles(one, z, cond, chunk)

    if kind == "flow":
        cond_fn = functools.partial(schedules.flow_logsnr, logsnr_min=lo, logsnr_max=hi)
        return samplers.euler_flow_steps(
            predict, z0, 0, steps, steps=steps, cond=cond_fn, known=(x_known, mask, z0)
        )
    schedule = functools.partial(schedules.logsnr_schedule, eta=eta, logsnr_min=lo, logsnr_max=hi)
    return samplers.diffusion_steps(
        predict,
        z0,
        key,
        0,
        steps,
        steps=steps,
        schedule=schedule,
        sampler=sampler,
        noise_level=noise_level,
        clip_x=clip_x,
        known=(x_known, mask),
    )


def run_grouped(graphdef, state, z, cond, key, noise_level, static, progress):
    """Grouped counterpart of ``decode.run_chunks``: same inputs, same output space.

    ``z`` (the initial state over the full image) supplies each tile's start
    state, so the seed fixes the result exactly as in the overlap mode.
    """
    layout, steps, kind = static["layout"], static["steps"], static["kind"]
    b = z.shape[0]
    canvas = jnp.zeros_like(z)
    done = jnp.zeros(z.shape[:3] + (1,), bool)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps * len(groups(layout)), desc=f"{kind} decode (grouped)", unit="step")
    run_static = {
        k: static[k] for k in ("kind", "steps", "sampler", "chunk", "clip_x", "schedule_args")
    }
    for g, sub in enumerate(groups(layout)):
        tiles = lambda a, sub=sub: patches.extract_tiles(a, sub)
        out = _run_group(
            graphdef,
            state,
            tiles(z),
            tiles(cond),
            tiles(canvas),
            tiles(done),
            jax.random.fold_in(key, g),
            jnp.float32(noise_level),
            **run_static,
        )
        # Tiles of a group do not overlap, so a flat merge writes each one back as is.
        flat = dataclasses.replace(sub, window="flat")
        covered = patches.merge_tiles(jnp.ones_like(out[..., :1]), flat, b) > 0
        merged = jnp.where(covered, patches.merge_tiles(out, flat, b), 0.0)
        canvas = jnp.where(done, canvas, merged)
        done = done | covered
        if bar is not None:
            canvas.block_until_ready()
            bar.update(steps)
    if bar is not None:
        bar.close()
    return canvas
