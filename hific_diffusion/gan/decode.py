"""The GAN generator at decode time: the decoded latents y_hat -> image, at a
size bucket or in tiles exactly as g_s runs (``autoencoder/tiles.py``; the
generator has g_s's shape, so the same halo covers its receptive field)."""

from __future__ import annotations

import dataclasses

import numpy as np

from hific_diffusion.autoencoder import tiles


@dataclasses.dataclass(frozen=True)
class _Synthesis:
    """What ``tiles.synthesize`` reads of a coding model: the module (with a
    ``synthesis`` method), its latent width and its tiles' halo."""

    graphdef: object
    state: object
    m: int
    halo: int


def synthesize(graphdef, state, y_hat, *, uint8: bool = False) -> np.ndarray:
    """Generator(y_hat) clipped to [0, 1] of the padded size (float32, or
    uint8 converted tile by tile)."""
    from flax import nnx

    module = nnx.merge(graphdef, state)
    synth = _Synthesis(graphdef, state, module.m, tiles.halo(module.res_blocks))
    return tiles.synthesize(synth, y_hat, uint8=uint8)
