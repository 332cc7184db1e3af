"""CorrDiff at inference time (Ma, Yang, Liu, ICML 2024): the encoder steers
the decoder's sampler with one transmitted factor per step.

The encoder has the image ``x``. It decodes ``x_mse`` from its own bytes, as
the decoder will, and runs the very sampler the decoder will run (same
model, seed, steps, tiling). At each step it mixes the score network's x0
prediction with ``x_mse``, the privileged end-to-end decoder's output
(:func:`combine`), with the factor ``gamma_t`` that fits ``x`` best in least
squares over the whole image (:func:`fit_gamma`; one scalar per step shared
by every tile, computed on the merged prediction, the padding excluded),
rounds it to float16 (:func:`quantize`) and continues with the *rounded*
factor, so its trajectory is the decoder's. The factors go into the file
(``coding/sideinfo.py``: 16 bits a step); the decoder replays the sampler
with them, optionally scaled by ``gamma_scale`` (0: the plain diffusion
decoder, 1: as fitted; in between: the perception-distortion trade).

Encoder and decoder run one compiled loop (``fit`` is a traced flag), so on
one machine the decoder's trajectory is the encoder's bit for bit. The
correction acts where the sampler forms x0 (``samplers.diffusion_steps``'s
``correct``), in the space the diffusion models: for ``target="residual"``
x_mse is 0 there and the rule scales the predicted residual by ``1 - gamma``,
which is the same rule applied to the image-space x0 (an affine map of it);
the least-squares gamma is the same in either space.

The paper's second phase (training the score network jointly) is not done
here: this runs on the trained diffusion decoder as it is.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from hific_diffusion import images
from hific_diffusion.diffusion import decode, losses, samplers, stepper

# ASSUMPTION (ours): the factor is kept in [0, 1], so the corrected x0 lies
# between the network's prediction and x_mse (never beyond either); 0 is in
# the range, so each step's fit is never worse than no correction.
GAMMA_RANGE = (0.0, 1.0)


def combine(x0_pred, x_priv, gamma):
    """CorrDiff's corrected x0: ``x0_pred + gamma * (x_priv - x0_pred)``.

    ASSUMPTION: our reading of the paper (its text was not available here):
    the privileged decoder's output ``x_priv`` (here x_mse) and the score
    network's x0 prediction mixed by one scalar per step. Change the rule
    here; :func:`fit_gamma` is its least-squares factor.
    """
    return x0_pred + gamma * (x_priv - x0_pred)


def fit_gamma(x0_pred, x_priv, x_true, mask):
    """The ``gamma`` minimising ``||mask * (x_true - combine(x0_pred, x_priv,
    gamma))||^2``, clipped to ``GAMMA_RANGE``; 0 where x_priv equals x0_pred."""
    d = (x_priv - x0_pred) * mask
    num = jnp.sum(d * (x_true - x0_pred))
    den = jnp.sum(d * d)
    ok = den > 1e-20
    gamma = jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)
    return jnp.clip(gamma, *GAMMA_RANGE)


def quantize(gamma):
    """What the file stores: the factor rounded to float16, as float32."""
    return jnp.asarray(gamma, jnp.float32).astype(jnp.float16).astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("spec", "layout"))
def run_steps(graphdef, state, z, unet_cond, key, start, stop, noise_level, gammas, scale, fit,
              x_true, x_priv, mask, *, spec, layout):  # fmt: skip
    """Steps ``start..stop-1`` of the diffusion sampler with CorrDiff's
    correction -> ``(z, gammas)``. ``fit`` (traced): fit each step's factor
    to ``x_true`` and write it, rounded, into ``gammas``; else use
    ``gammas[i] * scale``. ``x_true``, ``x_priv`` are in the diffusion's space."""
    predict = stepper.denoiser(graphdef, state, unet_cond, layout, spec.tile_chunk)

    def correct(i, z, x0_pred, gammas):
        del z
        fitted = quantize(fit_gamma(x0_pred, x_priv, x_true, mask))
        gamma = jnp.where(fit, fitted, gammas[i] * scale)
        return combine(x0_pred, x_priv, gamma), gammas.at[i].set(gamma)

    return samplers.diffusion_steps(
        predict, z, key, start, stop, steps=spec.steps, schedule=spec.logsnr,
        sampler=spec.sampler, noise_level=noise_level, clip_x=spec.clip_x,
        correct=(correct, gammas),
    )  # fmt: skip


GROUPED = (
    "corrdiff needs tile_mode 'overlap' (one factor per step over the whole image); "
    "this decoder's config says 'grouped'"
)


def check_args(cfg, steps=None, seed=0, noise_level=None, tile=None, overlap=None):
    """``decode.check_args`` for the diffusion kind, plus corrdiff's own
    condition (no grouped tiles), without any work."""
    out = decode.check_args(cfg, "diffusion", steps, seed, noise_level, tile, overlap)
    if cfg.tile_mode == "grouped" and out[3]:
        raise decode.GenerateError(GROUPED)
    return out


def generate(graphdef, state, x_mse01, *, cfg, x_true01=None, gammas=None, gamma_scale=1.0,
             steps=None, seed=0, noise_level=None, tile=None, overlap=None, progress=False,
             side=None):  # fmt: skip
    """The diffusion decoder with CorrDiff's correction -> ``(image, gammas)``.

    Exactly one of ``x_true01`` (the encoder: the original image, ``float[B,
    H, W, 3]`` in [0, 1]; fits the factors) and ``gammas`` (the decoder:
    ``float[steps]``, scaled by ``gamma_scale``) is given. Other arguments
    as ``decode.generate``. Returns the image (``float32[B, H, W, 3]``) and
    the factors used, ``float32[steps]``.
    """
    if (x_true01 is None) == (gammas is None):
        raise decode.GenerateError("give either x_true01 (fit) or gammas (replay)")
    s = decode.start(cfg, "diffusion", x_mse01, steps, seed, noise_level, tile, overlap, side)
    if s.spec.tile_mode == "grouped" and s.layout.num_tiles > 1:
        raise decode.GenerateError(GROUPED)
    desc = "corrdiff " + ("encode" if x_true01 is not None else "decode")
    return run(graphdef, state, s, cfg, x_true01=x_true01, gammas=gammas,
               gamma_scale=gamma_scale, progress=progress, desc=desc)  # fmt: skip


def run(graphdef, state, s: decode.Start, cfg, *, x_true01=None, gammas=None, gamma_scale=1.0,
        progress=False, desc="corrdiff"):  # fmt: skip
    """The loop of :func:`generate` from a ``decode.Start`` (overlap mode).
    ``decode.generate``'s diffusion decoder is this loop with every factor 0,
    so that a factor of exactly 0 gives its bits: the same network compiled
    into two programs can differ in the last bit (XLA fuses it differently)."""
    fit = x_true01 is not None
    if fit:
        x_true = np.asarray(x_true01, np.float32)
        if x_true.shape != (s.cond.shape[0], s.height, s.width, 3):
            raise decode.GenerateError(f"x_true01 must have x_mse's shape, got {x_true.shape}")
        x_true = images.pad_to_multiple(x_true, s.spec.multiple)
        x_true = losses.to_diffusion_space(losses.to_model_space(x_true), s.cond, cfg)
        g = jnp.zeros((s.spec.steps,), jnp.float32)
    else:
        g = np.asarray(gammas, np.float32).reshape(-1)
        if g.shape != (s.spec.steps,):
            raise decode.GenerateError(
                f"{g.shape[0]} correction factors for a sampler of {s.spec.steps} steps"
            )
        g = jnp.asarray(g)
        x_true = jnp.zeros_like(s.cond)
    mask = np.zeros(s.cond.shape[:3] + (1,), np.float32)
    mask[:, : s.height, : s.width] = 1.0
    x_priv = losses.to_diffusion_space(s.cond, s.cond, cfg)
    scale = jnp.float32(1.0 if fit else gamma_scale)
    bar = stepper.progress_bar(desc, s.spec.steps, progress)
    per = max(1, s.spec.steps // 20) if bar is not None else s.spec.steps
    z, nl = s.z, jnp.float32(s.spec.noise_level)
    for a in range(0, s.spec.steps, per):
        b = min(a + per, s.spec.steps)
        z, g = run_steps(graphdef, state, z, s.unet_cond, s.key, jnp.int32(a), jnp.int32(b), nl,
                         g, scale, jnp.bool_(fit), x_true, x_priv, jnp.asarray(mask),
                         spec=s.spec.loop_key(), layout=s.layout)  # fmt: skip
        if bar is not None:
            z.block_until_ready()
            bar.update(b - a)
    if bar is not None:
        bar.close()
    return decode.finish(z, s, cfg), np.asarray(g, np.float32)
