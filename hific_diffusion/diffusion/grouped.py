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
import math

import jax
import jax.numpy as jnp

from hific_diffusion.diffusion import patches, stepper


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


def run_grouped(graphdef, state, z, cond, key, spec, layout, progress=False):
    """Grouped counterpart of ``stepper.run_chunks`` over ``layout``: same inputs,
    same output space.

    ``z`` (the initial state over the full image) supplies each tile's start
    state, so the seed fixes the result exactly as in the overlap mode. Group
    ``g`` samples with ``fold_in(key, g)``.
    """
    b = z.shape[0]
    canvas = jnp.zeros_like(z)
    done = jnp.zeros(z.shape[:3] + (1,), bool)
    subs = groups(layout)
    desc = f"{spec.kind} decode (grouped)"
    bar = stepper.progress_bar(desc, spec.steps * len(subs), progress)
    for g, sub in enumerate(subs):
        tiles = lambda a, sub=sub: patches.extract_tiles(a, sub)
        z0 = tiles(z)
        known = (tiles(canvas), tiles(done), z0)
        k = jax.random.fold_in(key, g)
        out = stepper.run_chunks(graphdef, state, z0, tiles(cond), k, spec, None, known, bar)
        # Tiles of a group do not overlap, so a flat merge writes each one back as is.
        flat = dataclasses.replace(sub, window="flat")
        covered = patches.merge_tiles(jnp.ones_like(out[..., :1]), flat, b) > 0
        merged = jnp.where(covered, patches.merge_tiles(out, flat, b), 0.0)
        canvas = jnp.where(done, canvas, merged)
        done = done | covered
    if bar is not None:
        bar.close()
    return canvas
