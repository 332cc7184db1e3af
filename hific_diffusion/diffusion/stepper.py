"""The compiled sampling loop of the flow and of grouped tiles (``decode``).

(The diffusion decoder in overlap mode runs ``corrdiff.run_steps``: the same
``samplers.diffusion_steps`` with CorrDiff's correction, every factor 0, so
that the corrdiff decoder with factor 0 gives its bits.)

``run_steps`` runs steps ``start..stop-1`` of the sampler a ``decode.SamplerSpec``
describes (diffusion: ``samplers.diffusion_steps`` with the spec's log-SNR
schedule; flow: ``samplers.euler_flow_steps``), with the U-Net applied to
tiles: merged over an overlapping ``layout`` ("overlap" mode), or with
``layout=None`` to a batch of disjoint tiles ``[T, th, tw, 3]`` ("grouped"
mode, which also passes the pixels already generated as ``known``).
``run_chunks`` runs all steps in one call, or, with a progress bar, in ~20
calls of the same compiled function (the loop bounds are traced).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from hific_diffusion.diffusion import patches, samplers


def denoiser(graphdef, state, cond, layout, chunk):
    model = nnx.merge(graphdef, state)

    def predict(z, logsnr):
        def one_tile(z_tile, c_tile):
            return model(z_tile[None], c_tile[None], logsnr)[0]

        if layout is None:
            return patches.map_tiles(one_tile, z, cond, chunk)
        return patches.apply_tiled(one_tile, z, cond, layout, chunk)

    return predict


@functools.partial(jax.jit, static_argnames=("spec", "layout"))
def run_steps(graphdef, state, z, cond, key, start, stop, noise_level, known=None, *, spec, layout):
    """Steps ``start..stop-1`` of ``spec.steps`` from state ``z`` (see the module docstring).

    ``spec`` is the static part of a ``decode.SamplerSpec`` (``spec.loop_key()``):
    the noise level is the traced ``noise_level``, so a new level reuses the
    compiled loop. ``known = (x_known, mask, z0)``: pixels to keep, and the
    flow's source state ``z0`` (the state at step 0) that their path starts from.
    """
    predict = denoiser(graphdef, state, cond, layout, spec.tile_chunk)
    if spec.kind == "flow":
        return samplers.euler_flow_steps(
            predict, z, start, stop, steps=spec.steps, cond=spec.flow_cond, known=known
        )
    return samplers.diffusion_steps(
        predict, z, key, start, stop, steps=spec.steps, schedule=spec.logsnr,
        sampler=spec.sampler, noise_level=noise_level, clip_x=spec.clip_x,
        known=None if known is None else known[:2],
    )  # fmt: skip


def run_chunks(graphdef, state, z, cond, key, spec, layout, known=None, bar=None):
    """All of ``spec``'s steps: in one call, or in ~20 with ``bar`` (tqdm) updated after each."""
    steps = spec.steps
    per = max(1, steps // 20) if bar is not None else steps
    loop_key = spec.loop_key()
    nl = jnp.float32(spec.noise_level)
    for start in range(0, steps, per):
        stop = min(start + per, steps)
        z = run_steps(graphdef, state, z, cond, key, jnp.int32(start), jnp.int32(stop), nl, known,
                      spec=loop_key, layout=layout)  # fmt: skip
        if bar is not None:
            z.block_until_ready()
            bar.update(stop - start)
    return z


def progress_bar(desc: str, total_steps: int, enabled: bool):
    """A tqdm bar over ``total_steps`` sampler steps, or None when not ``enabled``."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total_steps, desc=desc, unit="step")
