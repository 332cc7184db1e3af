"""Decode-time generation: x_mse -> sample, patch-parallel, any image size.

``generate`` is what ``pipeline.Codec.decompress(decoder="diffusion"|"flow")``
calls (HFD Sec. 3 and 4). Everything the config section and the call say
about sampling is checked once into a frozen ``SamplerSpec``; an unknown
sampler, tile mode or target is an error there, not a silent default. The
image is padded (edge) to a multiple of the U-Net's downsampling factor,
sampled in [-1, 1] model space with the U-Net applied tile-wise at every step
(``stepper``: all tiles together, "overlap", or in groups, ``grouped``),
cropped back and mapped to [0, 1]. All steps run inside one compiled
function (the diffusion decoder's in overlap mode is ``corrdiff.run_steps``
with every factor 0); with a progress bar the same compiled function runs
chunks of steps. ``start`` and ``finish`` are shared with ``corrdiff``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from hific_diffusion import images
from hific_diffusion.diffusion import losses, patches, samplers, schedules, stepper
from hific_diffusion.errors import HfdError


class GenerateError(HfdError, ValueError):
    """Arguments ``generate`` cannot use (shape, steps, seed, tiling, kind)."""


KINDS = ("diffusion", "flow")
# The samplers each kind runs; the first is the kind's default.
SAMPLERS = {"diffusion": samplers.DIFFUSION_SAMPLERS, "flow": ("euler",)}
TILE_MODES = ("overlap", "grouped")


def _is_int(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, int | np.integer)


def _sampler_for(kind: str, name) -> str:
    """The sampler ``kind`` runs for a config's ``sampler`` name.

    A name of the other kind is allowed: one config section served both
    decoders (bundles such as the default one say "ddpm" for their flow, a
    flow config says "euler"), and then each kind runs its default. Any other
    name is an error.
    """
    known = [s for names in SAMPLERS.values() for s in names]
    if name not in known:
        raise GenerateError(f"unknown sampler {name!r}; expected one of {tuple(known)}")
    return name if name in SAMPLERS[kind] else SAMPLERS[kind][0]


@dataclasses.dataclass(frozen=True)
class SamplerSpec:
    """How to sample, from a config section (``config.diffusion``) and a call's
    arguments, checked once by :meth:`from_config`. Frozen and hashable: its
    :meth:`loop_key` is the compiled loop's static argument (``stepper``)."""

    kind: str  # "diffusion" | "flow"
    sampler: str  # what runs: "ddpm" | "ddim" (diffusion), "euler" (flow)
    steps: int
    noise_level: float | None  # ancestral variance in [0, 1]; None only in loop_key()
    eta: float  # the shifted cosine log-SNR schedule, clipped to [logsnr_min, logsnr_max]
    logsnr_min: float
    logsnr_max: float
    clip_x: bool  # as applied: never for the residual target
    target: str  # "image" | "residual" (diffusion only; the flow's is the image)
    residual_scale: float
    flow_noise: float
    tile: int  # 0: one tile
    overlap: int
    tile_mode: str  # "overlap" | "grouped"
    tile_chunk: int
    multiple: int  # the U-Net's downsampling factor: tiles and padding are multiples

    @classmethod
    def from_config(cls, cfg, kind, steps=None, noise_level=None, tile=None, overlap=None):
        """The spec of section ``cfg`` for ``kind``; arguments that are not None
        override the section's values. Raises ``GenerateError`` (unknown kind,
        sampler, tile mode; bad numbers), ``patches.TilingError`` (tiling) or
        ``losses.LossConfigError`` (target) naming the bad value."""
        if kind not in KINDS:
            raise GenerateError(f"kind must be one of {KINDS}, got {kind!r}")
        steps = cfg.steps if steps is None else steps
        noise_level = cfg.noise_level if noise_level is None else noise_level
        tile = cfg.tile if tile is None else tile
        overlap = cfg.overlap if overlap is None else overlap
        if not _is_int(steps) or steps < 1:
            raise GenerateError(f"steps must be a positive integer, got {steps!r}")
        if isinstance(noise_level, bool) or not isinstance(noise_level, int | float | np.number):
            raise GenerateError(f"noise_level must be a number in [0, 1], got {noise_level!r}")
        if not 0.0 <= float(noise_level) <= 1.0:  # NaN fails too
            raise GenerateError(f"noise_level must be in [0, 1], got {noise_level!r}")
        for name, v in (("tile", tile), ("overlap", overlap)):
            if not _is_int(v) or v < 0:
                raise GenerateError(f"{name} must be a non-negative integer, got {v!r}")
        if not _is_int(cfg.tile_chunk) or cfg.tile_chunk < 1:
            raise GenerateError(f"tile_chunk must be a positive integer, got {cfg.tile_chunk!r}")
        multiple = 2 ** (len(cfg.unet.channel_mult) - 1)
        if tile:
            if tile % multiple:
                raise patches.TilingError(f"tile must be a multiple of {multiple}, got {tile}")
            if overlap > tile // 2:
                raise patches.TilingError(
                    f"overlap must be in [0, tile / 2 = {tile // 2}], got {overlap}"
                )
        # .get: configs saved before these fields existed still decode.
        tile_mode = cfg.tile_mode
        if tile_mode not in TILE_MODES:
            raise GenerateError(f"tile_mode must be one of {TILE_MODES}, got {tile_mode!r}")
        target, scale = losses.diffusion_target(cfg)  # checks the name for either kind
        if kind == "flow":
            target = "image"
        return cls(
            kind=kind,
            sampler=_sampler_for(kind, cfg.sampler),
            steps=int(steps),
            noise_level=float(noise_level),
            eta=float(cfg.eta),
            logsnr_min=float(cfg.logsnr_min),
            logsnr_max=float(cfg.logsnr_max),
            clip_x=bool(cfg.clip_x) and target != "residual",
            target=target,
            residual_scale=scale,
            flow_noise=float(cfg.flow_noise),
            tile=int(tile),
            overlap=int(overlap),
            tile_mode=tile_mode,
            tile_chunk=int(cfg.tile_chunk),
            multiple=multiple,
        )

    def logsnr(self, t):
        """The diffusion's noise schedule, ``t -> logsnr``."""
        return schedules.logsnr_schedule(t, self.eta, self.logsnr_min, self.logsnr_max)

    def flow_cond(self, t):
        """The flow's U-Net conditioning at flow time ``t``."""
        return schedules.flow_logsnr(t, self.logsnr_min, self.logsnr_max)

    def loop_key(self) -> SamplerSpec:
        """This spec without the noise level: the compiled loop takes the level
        as a traced argument, so a new level does not recompile, and reading
        it from the spec inside the loop fails instead of baking in a constant."""
        return dataclasses.replace(self, noise_level=None)

    def layout(self, height: int, width: int) -> patches.TileLayout:
        return patches.make_layout(height, width, self.tile, self.overlap, multiple=self.multiple)


def _check_seed(seed) -> int:
    if not _is_int(seed) or not 0 <= seed < 2**32:
        raise GenerateError(f"seed must be an integer in [0, 2^32), got {seed!r}")
    return int(seed)


def check_args(cfg, kind, steps=None, seed=0, noise_level=None, tile=None, overlap=None):
    """Validates the config section and the sampling arguments (None: ``cfg``'s
    value) without any work.

    Returns them resolved, ``(steps, seed, noise_level, tile, overlap)``; raises
    as :meth:`SamplerSpec.from_config` does, or ``GenerateError`` for the seed.
    The Codec calls it before decoding the latents, so a bad argument costs nothing.
    """
    spec = SamplerSpec.from_config(cfg, kind, steps, noise_level, tile, overlap)
    return spec.steps, _check_seed(seed), spec.noise_level, spec.tile, spec.overlap


def _check_image(x_mse01):
    x = np.asarray(x_mse01)
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[1] < 1 or x.shape[2] < 1:
        raise GenerateError(f"x_mse must be float [B, H, W, 3], got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating) or not np.all(np.isfinite(x)):
        raise GenerateError("x_mse must hold finite floats in [0, 1]")
    return np.clip(x.astype(np.float32), 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class Start:
    """Everything a sampling loop starts from (:func:`start`)."""

    spec: SamplerSpec
    height: int  # the image's size before padding to ``spec.multiple``
    width: int
    layout: patches.TileLayout
    cond: jax.Array  # x_mse in [-1, 1] model space, padded
    unet_cond: jax.Array  # cond, then the side channels (if any): what the U-Net sees
    z: jax.Array  # the initial state
    key: jax.Array  # the steps' key


def _check_side(side, x, cfg):
    want = int(cfg.unet.side_channels)
    if side is None:
        if want:
            raise GenerateError(f"this decoder's U-Net needs {want} channels of side information")
        return None
    side = np.asarray(side, np.float32)
    if side.shape != x.shape[:3] + (want,) or not want:
        raise GenerateError(
            f"side information must be [B, H, W, {want}] for this U-Net, got shape {side.shape}"
        )
    return side


def start(cfg, kind, x_mse01, steps=None, seed=0, noise_level=None, tile=None, overlap=None,
          side=None) -> Start:  # fmt: skip
    """Checks the arguments (see :func:`generate`) and prepares the sampling loop."""
    spec = SamplerSpec.from_config(cfg, kind, steps, noise_level, tile, overlap)
    seed = _check_seed(seed)
    x = _check_image(x_mse01)
    side = _check_side(side, x, cfg)
    h, w = x.shape[1:3]
    x = images.pad_to_multiple(x, spec.multiple)
    layout = spec.layout(*x.shape[1:3])
    cond = jnp.asarray(losses.to_model_space(x))
    unet_cond = cond
    if side is not None:
        side = jnp.asarray(images.pad_to_multiple(side, spec.multiple))
        unet_cond = jnp.concatenate([cond, side], axis=-1)
    k_init, k_steps = jax.random.split(jax.random.PRNGKey(seed))
    noise = jax.random.normal(k_init, cond.shape)
    z = losses.flow_source(cond, noise, spec.flow_noise) if kind == "flow" else noise
    return Start(spec, h, w, layout, cond, unet_cond, z, k_steps)


def finish(z, s: Start, cfg) -> np.ndarray:
    """The loop's final state -> the image, ``float32[B, H, W, 3]`` in [0, 1]."""
    if s.spec.kind == "diffusion":
        z = losses.from_diffusion_space(z, s.cond, cfg)
    out = jnp.clip((z + 1.0) / 2.0, 0.0, 1.0)[:, : s.height, : s.width]
    return np.asarray(out, np.float32)


def generate(graphdef, state, x_mse01, *, kind="diffusion", cfg, steps=None, seed=0,
             noise_level=None, tile=None, overlap=None, progress=False, side=None):  # fmt: skip
    """Sample an image given its MSE reconstruction; ``float32[B, H, W, 3]`` in [0, 1].

    Args:
      graphdef, state: ``nnx.split(unet)`` of the diffusion or flow U-Net.
      x_mse01: the autoencoder's reconstruction, ``float[B, H, W, 3]`` in [0, 1], any H, W.
      kind: "diffusion" (``cfg.sampler``: "ddpm" ancestral or "ddim"; a flow
        config's "euler" means "ddpm") or "flow" (Euler, whatever ``cfg.sampler`` says).
      cfg: ``config.diffusion``; None arguments below take its values.
      steps: sampling steps (model evaluations).
      seed: the sampler seed (stored in the bitstream header by the codec).
      noise_level: ancestral variance, 0 = posterior, 1 = forward process.
      tile, overlap: tile size (a multiple of ``2 ** (len(channel_mult) - 1)``;
        0 = one tile, no tiling) and minimum overlap (<= tile / 2).
      progress: show a tqdm bar over steps (runs the steps in ~20 chunks).
      side: the U-Net's side channels ``float[B, H, W, cfg.unet.side_channels]``
        (HFD+: ``hfdplus.conditioning``); required exactly when it has some.

    Raises ``GenerateError`` (and ``patches.TilingError``,
    ``losses.LossConfigError``) for bad arguments or config values.
    """
    s = start(cfg, kind, x_mse01, steps, seed, noise_level, tile, overlap, side)
    if s.spec.tile_mode == "grouped" and s.layout.num_tiles > 1:
        from hific_diffusion.diffusion import grouped

        z = grouped.run_grouped(graphdef, state, s.z, s.unet_cond, s.key, s.spec, s.layout,
                                progress)  # fmt: skip
    elif kind == "diffusion":  # CorrDiff's loop with every factor 0 (see corrdiff.run)
        from hific_diffusion.diffusion import corrdiff  # it imports this module

        zeros = np.zeros(s.spec.steps, np.float32)
        return corrdiff.run(graphdef, state, s, cfg, gammas=zeros, gamma_scale=0.0,
                            progress=progress, desc="diffusion decode")[0]  # fmt: skip
    else:
        bar = stepper.progress_bar(f"{kind} decode", s.spec.steps, progress)
        z = stepper.run_chunks(graphdef, state, s.z, s.unet_cond, s.key, s.spec, s.layout, bar=bar)
        if bar is not None:
            bar.close()
    return finish(z, s, cfg)
