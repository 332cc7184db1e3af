"""HiFiC's generator and conditional PatchGAN discriminator (Mentzer et al. 2020).

The generator has g_s's architecture (``autoencoder/transforms.py``) and maps
the autoencoder's quantized latents y_hat to the image, so it starts as the
frozen autoencoder's g_s (``train/tasks.py``) and decodes the same bitstream.
ASSUMPTION: HiFiC's own generator is wider (residual blocks at 1/16) and takes
noise channels; keeping g_s's shape is what lets it start from the MSE decoder
and run in g_s's size buckets and tiles.

The discriminator follows tfc's ``_PatchDiscriminatorCompareGANImpl``: the
latent through a spectrally normalised 3x3 conv to ``latent_channels``,
LeakyReLU 0.2, nearest-upsampled to the image and concatenated to it, then
4x4 convs (stride 2, widths doubling to at most 512), a 4x4 stride-1 conv and
a 4x4 conv to one logit per patch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from hific_diffusion.autoencoder.transforms import SynthesisTransform
from hific_diffusion.errors import ModelConfigError, SectionReader
from hific_diffusion.gan.layers import SpectralConv


class GanConfigError(ModelConfigError):
    """A ``gan`` config section no generator or discriminator can be built from."""


def check_config(cfg) -> None:
    r = SectionReader(cfg, "gan", GanConfigError)
    for name in ("N", "M", "disc_channels", "disc_layers", "latent_channels", "power_iterations"):
        r.integer(name, minimum=1)
    r.integer("res_blocks", minimum=0)
    for name in ("mse_weight", "lpips_weight", "gan_weight"):
        r.number(name, minimum=0.0)
    r.choice("lpips_net", ("alexnet", "vgg16"))


class Generator(nnx.Module):
    """y_hat [B, h, w, M] -> image [B, 16h, 16w, 3] (unclipped, ~[0, 1])."""

    def __init__(self, cfg, *, rngs: nnx.Rngs):
        check_config(cfg)
        self.m = int(cfg.M)
        self.res_blocks = int(cfg.res_blocks)  # sets the tiles' halo, as ELIC's
        self.g_s = SynthesisTransform(int(cfg.N), self.m, res_blocks=self.res_blocks, rngs=rngs)

    def synthesis(self, y_hat):
        """The name ``autoencoder/tiles.py`` calls, as ELIC.synthesis."""
        return self.g_s(y_hat.astype(jnp.float32)).astype(jnp.float32)

    def __call__(self, y_hat):
        return self.synthesis(y_hat)


def _lrelu(x):
    return jax.nn.leaky_relu(x, 0.2)


class Discriminator(nnx.Module):
    """``(image in [0, 1] [B, H, W, 3], y_hat [B, H/16, W/16, M])`` -> logits
    [B, H/2^disc_layers, W/2^disc_layers, 1], one per patch."""

    def __init__(self, cfg, *, rngs: nnx.Rngs):
        check_config(cfg)
        it = int(cfg.power_iterations)
        lc, c = int(cfg.latent_channels), int(cfg.disc_channels)
        self.latent = SpectralConv(int(cfg.M), lc, 3, iterations=it, rngs=rngs)
        convs = [SpectralConv(3 + lc, c, 4, stride=2, iterations=it, rngs=rngs)]
        for _ in range(int(cfg.disc_layers) - 1):
            c, cin = min(2 * c, 512), c
            convs.append(SpectralConv(cin, c, 4, stride=2, iterations=it, rngs=rngs))
        c, cin = min(2 * c, 512), c
        convs.append(SpectralConv(cin, c, 4, iterations=it, rngs=rngs))
        self.convs = nnx.List(convs)
        self.out = SpectralConv(c, 1, 4, iterations=it, rngs=rngs)

    def __call__(self, x01, y_hat, update: bool = False):
        if x01.shape[1] % y_hat.shape[1] or x01.shape[2] % y_hat.shape[2]:
            raise ValueError(f"image {x01.shape} is not a multiple of the latent {y_hat.shape}")
        lat = _lrelu(self.latent(y_hat, update))
        lat = jnp.repeat(lat, x01.shape[1] // y_hat.shape[1], axis=1)
        lat = jnp.repeat(lat, x01.shape[2] // y_hat.shape[2], axis=2)
        h = jnp.concatenate([x01.astype(lat.dtype), lat], axis=-1)
        for conv in self.convs:
            h = _lrelu(conv(h, update))
        return self.out(h, update)
