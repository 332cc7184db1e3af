"""CDC's decoder: y_hat -> image by DDIM with x0-prediction (Yang & Mandt 2023).

The context network runs once on y_hat; the sampler
(``samplers.diffusion_steps`` with ``predicts="x"``) starts from
``init_scale * N(0, I)`` (0.8 in CDC) at t = 1 and clips every x0
prediction to [-1, 1]. The whole padded image is sampled at once (no
tiles; ASSUMPTION: CDC decodes whole images too). The noise comes from
``seed``, so the same bytes decode to the same image on the same machine.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hific_diffusion.autoencoder.defaults import Y_STRIDE
from hific_diffusion.diffusion import samplers, schedules
from hific_diffusion.errors import HfdError


class CDCDecodeError(HfdError, ValueError):
    """Decoding settings CDC cannot use."""


def sampler_settings(cfg, steps: int | None = None) -> dict:
    """The sampler's static settings from a ``cdc`` section (``steps`` overrides)."""
    steps = int(cfg.steps if steps is None else steps)
    if steps < 1:
        raise CDCDecodeError(f"CDC needs at least 1 sampling step, got {steps}")
    if cfg.sampler not in samplers.DIFFUSION_SAMPLERS:
        raise CDCDecodeError(
            f"unknown sampler {cfg.sampler!r}; expected one of {samplers.DIFFUSION_SAMPLERS}"
        )
    return dict(
        steps=steps,
        sampler=str(cfg.sampler),
        init_scale=float(cfg.init_scale),
        clip_x=bool(cfg.clip_x),
        noise_level=float(cfg.noise_level),
        schedule=(float(cfg.eta), float(cfg.logsnr_min), float(cfg.logsnr_max)),
    )


@functools.partial(jax.jit, static_argnames=("settings",))
def _generate(graphdef, state, y_hat, key, settings):
    s = dict(settings)
    eta, lo, hi = s["schedule"]
    model = nnx.merge(graphdef, state)
    features = model.context_net(y_hat)

    def predict(z, logsnr):
        return model.denoise(z, logsnr, features)

    b, h, w, _ = y_hat.shape
    x = samplers.sample_diffusion(
        predict,
        (b, h * Y_STRIDE, w * Y_STRIDE, 3),
        key,
        steps=s["steps"],
        schedule=functools.partial(
            schedules.logsnr_schedule, eta=eta, logsnr_min=lo, logsnr_max=hi
        ),
        sampler=s["sampler"],
        noise_level=s["noise_level"],
        clip_x=s["clip_x"],
        predicts="x",
        init_scale=s["init_scale"],
    )
    return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)


def generate(model_or_parts, y_hat, cfg, *, seed: int = 0, steps: int | None = None):
    """float32 [B, 16h, 16w, 3] in [0, 1] from y_hat [B, h, w, M]."""
    graphdef, state = (
        model_or_parts if isinstance(model_or_parts, tuple) else nnx.split(model_or_parts)
    )
    settings = tuple(sorted(sampler_settings(cfg, steps).items()))
    y = jnp.asarray(np.asarray(y_hat, np.float32))
    return np.asarray(_generate(graphdef, state, y, jax.random.key(int(seed)), settings))
