"""What the one trainer loop fits, by ``config.task``.

* ``autoencoder`` (stage 1, HFD Sec. 3.1): ELIC trained for
  ``bpp + lmbda * 255^2 * MSE`` (``autoencoder.elic.rd_loss``).
* ``diffusion`` / ``flow`` (stage 2, HFD Sec. 3.2): a U-Net conditioned on
  the frozen stage-1 reconstruction ``x_mse`` (float path, rounded latents),
  trained with ``diffusion.losses.diffusion_loss`` / ``flow_loss``.
* ``hfdplus`` (HFD+): the diffusion task with the U-Net also conditioned on
  the residual-energy map of the crop (``diffusion.hfdplus``), computed from
  the crop and its ``x_mse`` as the codec computes it at compress time;
  needs ``diffusion.unet.side_channels = 3``.
* ``hific`` (HiFiC, Mentzer et al. 2020, as a decoder): a generator of g_s's
  architecture (``gan.models``) mapping the frozen autoencoder's rounded
  latents to the image, trained adversarially against a conditional PatchGAN
  discriminator (``gan.losses``); it starts from the frozen g_s
  (:func:`warm_start_generator`). Its step is ``train/step.py``'s adversarial
  one: the discriminator's parameters, optimizer state and power-iteration
  vectors live in ``state["disc"]``.
* ``cdc`` (Yang & Mandt 2023): CDC's content coder, context network and
  x0-predicting U-Net trained together end to end (one stage, no frozen
  autoencoder), ``cdc.model.cdc_loss`` on ``config.cdc``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from hific_diffusion.autoencoder import context, quantize
from hific_diffusion.autoencoder.elic import ELIC, rd_loss
from hific_diffusion.cdc.model import CDC, cdc_loss
from hific_diffusion.diffusion import hfdplus, losses
from hific_diffusion.diffusion.unet import UNet
from hific_diffusion.errors import HfdError
from hific_diffusion.gan.models import Discriminator, Generator


class TaskError(HfdError, ValueError):
    """An unknown task or a stage-2 config without a usable stage-1 model."""


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    # Key of the trained model in checkpoints and bundles.
    model_key: str
    build: Callable  # (config, rngs) -> nnx.Module
    # (model, x01, x_mse01 | None, rng, config) -> (loss, metrics dict);
    # None for the adversarial task, whose step computes its own losses.
    loss: Callable | None
    needs_autoencoder: bool
    # (config, rngs) -> the discriminator of an adversarial task (else None).
    discriminator: Callable | None = None


def _build_autoencoder(config, rngs):
    return ELIC(config.model, rngs=rngs)


def _autoencoder_loss(model, x01, x_mse01, rng, config):
    del x_mse01
    # The step's rng (a function of seed and step) drives the quantization
    # noise, so a resumed run draws the same noise as an uninterrupted one.
    return rd_loss(model, x01, config.model.lmbda, rng=rng)


def _unet_builder(side_channels: int):
    def build(config, rngs):
        have = config.diffusion.unet.side_channels
        if have != side_channels:
            raise TaskError(
                f"task {config.task!r} needs diffusion.unet.side_channels = {side_channels}, "
                f"got {have}"
            )
        return UNet(config.diffusion.unet, rngs=rngs)

    return build


_build_unet = _unet_builder(0)


def _diffusion_loss(model, x01, x_mse01, rng, config):
    return losses.diffusion_loss(model, x01, x_mse01, rng, config.diffusion)


def _flow_loss(model, x01, x_mse01, rng, config):
    return losses.flow_loss(model, x01, x_mse01, rng, config.diffusion)


def hfdplus_side(x01, x_mse01, cfg):
    """HFD+'s U-Net side channels for images in [0, 1]: the quantized map of
    ``|x - x_mse|`` (what the codec sends), upsampled."""
    q = hfdplus.levels_of(x01.astype(jnp.float32), x_mse01.astype(jnp.float32), cfg)
    return hfdplus.conditioning(q, x01.shape[1], x01.shape[2], cfg)


def _hfdplus_loss(model, x01, x_mse01, rng, config):
    side = jax.lax.stop_gradient(hfdplus_side(x01, x_mse01, config.diffusion))
    return losses.diffusion_loss(model, x01, x_mse01, rng, config.diffusion, side=side)


def _build_cdc(config, rngs):
    return CDC(config.cdc, rngs=rngs)


def _cdc_loss(model, x01, x_mse01, rng, config):
    del x_mse01
    return cdc_loss(model, x01, rng, config.cdc)


def _build_generator(config, rngs):
    return Generator(config.gan, rngs=rngs)


def _build_discriminator(config, rngs):
    return Discriminator(config.gan, rngs=rngs)


TASKS = {
    "autoencoder": Task("autoencoder", "autoencoder", _build_autoencoder, _autoencoder_loss, False),
    "diffusion": Task("diffusion", "unet", _build_unet, _diffusion_loss, True),
    "flow": Task("flow", "unet", _build_unet, _flow_loss, True),
    "hfdplus": Task("hfdplus", "unet", _unet_builder(3), _hfdplus_loss, True),
    "cdc": Task("cdc", "cdc", _build_cdc, _cdc_loss, False),
    "hific": Task("hific", "generator", _build_generator, None, True, _build_discriminator),
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise TaskError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name]


def reconstruct(autoencoder, x01: jax.Array) -> jax.Array:
    """Stage-1 reconstruction ``x_mse`` that stage 2 conditions on.

    ``training=False`` rounds the latents (as the real codec does) instead of
    adding uniform noise; the autoencoder is frozen, so no gradient flows.
    """
    x_hat = autoencoder(x01, training=False)["x_hat"]
    return jax.lax.stop_gradient(jnp.clip(x_hat, 0.0, 1.0))


def latents(autoencoder, x01: jax.Array) -> jax.Array:
    """The rounded latents y_hat the frozen autoencoder's g_s decodes
    (``ELIC.__call__`` with ``training=False``): what the hific generator
    maps to the image. No gradient flows."""
    y = autoencoder.analysis(x01)
    z = autoencoder.h_a(y)
    hyper = autoencoder.h_s(autoencoder.prior.quantize(z, ste=True))
    _, _, y_hat = context.training_params(autoencoder.context, hyper, y, quantize.quantize_around)
    return jax.lax.stop_gradient(y_hat)


def generator_start(frozen_graphdef, frozen_state, abstract_params) -> dict:
    """The generator's starting weights: the frozen autoencoder's g_s (pure
    dict). TaskError when ``config.gan``'s shape differs from the autoencoder's."""
    from flax import nnx

    g_s = nnx.merge(frozen_graphdef, frozen_state, copy=True).g_s
    _, params, _ = nnx.split(g_s, nnx.Param, ...)
    start = {"g_s": params.to_pure_dict()}
    shapes = lambda tree: jax.tree.map(lambda a: (tuple(a.shape), str(a.dtype)), tree)  # noqa: E731
    if shapes(start) != shapes(abstract_params):
        raise TaskError(
            "the hific generator's shape (gan.N, gan.M, gan.res_blocks) differs from the "
            "frozen autoencoder's g_s (its model.N, model.M, model.res_blocks)"
        )
    return start
