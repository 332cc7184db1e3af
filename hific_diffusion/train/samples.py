"""Sample images written at eval steps: input | output of the model being trained.

Stage 1 shows the rounded-latent reconstruction. Stage 2 shows the frozen
``x_mse`` and what the decoder generates from it with the config's sampler
(hific: the generator's image of the same latents). CDC shows what its
sampler decodes from the rounded content latent.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hific_diffusion import images
from hific_diffusion.train import tasks


def rows(task, config, graphdef, params, rest, frozen, batch_uint8: np.ndarray) -> list:
    """One row of images per example of ``batch_uint8`` (host array)."""
    x01 = np.asarray(batch_uint8, np.float32) / 255.0
    if task.name == "autoencoder":

        @jax.jit
        def recon(params, rest, x):
            model = nnx.merge(graphdef, nnx.State(params), rest, copy=True)
            return tasks.reconstruct(model, x)

        x_hat = jax.device_get(recon(params, rest, x01))
        return [[images.to_uint8(a), images.to_uint8(b)] for a, b in zip(x01, x_hat, strict=True)]

    if task.name == "cdc":
        from hific_diffusion.cdc import decode as cdc_decode

        model = nnx.merge(graphdef, nnx.State(params), rest, copy=True)
        gd, st = nnx.split(model)
        y_hat = jax.device_get(jax.jit(lambda s, x: nnx.merge(gd, s).encode(x)[0])(st, x01))
        out = []
        for i in range(len(x01)):
            gen = cdc_decode.generate(model, y_hat[i : i + 1], config.cdc, seed=i)
            out.append([images.to_uint8(x01[i]), images.to_uint8(gen[0])])
        return out

    from hific_diffusion.diffusion import decode

    frozen_graphdef, frozen_state = frozen
    if task.name == "hific":

        @jax.jit
        def both(params, rest, frozen_state, x):
            ae = nnx.merge(frozen_graphdef, frozen_state, copy=True)
            generator = nnx.merge(graphdef, nnx.State(params), rest, copy=True)
            x_gan = jnp.clip(generator(tasks.latents(ae, x)), 0.0, 1.0)
            return tasks.reconstruct(ae, x), x_gan

        x_mse, x_gan = jax.device_get(both(params, rest, frozen_state, x01))
        return [[images.to_uint8(a), images.to_uint8(b), images.to_uint8(c)]
                for a, b, c in zip(x01, x_mse, x_gan, strict=True)]  # fmt: skip
    x_mse = jax.device_get(
        jax.jit(lambda s, x: tasks.reconstruct(nnx.merge(frozen_graphdef, s, copy=True), x))(
            frozen_state, x01
        )
    )
    unet_graphdef, unet_state = nnx.split(nnx.merge(graphdef, nnx.State(params), rest, copy=True))
    cfg = config.diffusion
    out = []
    for i in range(len(x01)):
        side = None
        if task.name == "hfdplus":
            side = tasks.hfdplus_side(x01[i : i + 1], x_mse[i : i + 1], cfg)
        gen = decode.generate(
            unet_graphdef,
            unet_state,
            x_mse[i : i + 1],
            side=side,
            kind="flow" if task.name == "flow" else "diffusion",
            cfg=cfg,
            steps=cfg.steps,
            seed=i,
            noise_level=cfg.noise_level,
            tile=cfg.tile,
            overlap=cfg.overlap,
        )
        out.append(
            [
                images.to_uint8(x01[i]),
                images.to_uint8(x_mse[i]),
                images.to_uint8(np.asarray(gen)[0]),
            ]
        )
    return out
