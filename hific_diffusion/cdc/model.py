"""The CDC network and its training loss (Yang & Mandt 2023, Sec. 3).

* Content encoder g_a: stages of [ResNet block + stride-2 conv] (widths 64,
  128, 192, 256): y at 1/16 of the image with 256 channels.
* Mean-scale hyperprior: h_a (3 convs) to z at 1/64, a factorized prior on
  z quantized around its medians, h_s giving (scale, mean) of every latent
  (scale floor 0.1). The coder is the project's: ``context.MeanScale`` in
  the one coding order, h_s in the bit-exact integer path (``coding/``), so
  :class:`CDC` has the attributes ``coding.prepare`` reads, like ELIC.
* Context network: stages of [ResNet block + 4x4 stride-2 transposed conv]
  decoding y_hat into features at 1/8, 1/4, 1/2 and full resolution.
* Denoiser: the project's U-Net (``diffusion/unet.py``) with no x_mse input,
  its first levels concatenating the context feature of their resolution;
  its scalar input is t in [0, 1] (a time embedding of t / T).
* x0-prediction on a cosine schedule; loss ``beta * bpp + (1 - rho) *
  min(SNR, 5) * x-MSE + rho * LPIPS(x, x0_pred)``.

Training quantizes as ELIC does (``quantize``): noisy y for the rate,
``round(y - mu) + mu`` (straight-through) for the context network, so the
decoder is trained on the values it will decode.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from hific_diffusion.autoencoder import context, entropy_model, quantize, valid
from hific_diffusion.autoencoder.defaults import Z_STRIDE
from hific_diffusion.autoencoder.layers import Conv, conv_init
from hific_diffusion.autoencoder.priors import FactorizedPrior
from hific_diffusion.autoencoder.transforms import HyperAnalysis, HyperSynthesis
from hific_diffusion.diffusion import losses, schedules
from hific_diffusion.diffusion import parameterization as P
from hific_diffusion.diffusion.unet import UNet
from hific_diffusion.errors import ModelConfigError, SectionReader


class CDCConfigError(ModelConfigError):
    """A ``cdc`` config section that cannot build CDC."""


def check_config(cfg) -> None:
    """CDCConfigError naming the first field of the ``cdc`` section CDC
    cannot be built from; the U-Net's own section is checked by the U-Net."""
    f = SectionReader(cfg, "cdc", CDCConfigError)
    enc = f.integers("encoder_widths")
    if len(enc) != 4:
        f.fail("encoder_widths", enc, "4 widths (4 stride-2 stages: y at 1/16)")
    f.integer("hyper_channels")
    f.integers("prior_filters", nonempty=False)
    f.integer("num_scales")
    scale_min = f.number("scale_min", above=0.0)
    f.number("scale_max", minimum=scale_min)
    f.integer("int_frac_bits", minimum=0)
    ctx = f.integers("context_widths")
    if len(ctx) != 4:
        f.fail("context_widths", ctx, "4 widths (features at 1/8, 1/4, 1/2, 1)")
    unet = f.get("unet")
    have = tuple(unet.get("context_channels", ()))
    want = tuple(reversed(ctx))
    if not have or have != want[: len(have)]:
        # The U-Net's first levels take the finest features (a U-Net of
        # fewer than four levels takes as many as it has levels).
        f.fail("unet.context_channels", have, f"a non-empty prefix of {want}")
    if unet.get("cond_channels", 3) != 0 or unet.get("side_channels", 0) != 0:
        f.fail("unet.cond_channels", unet.get("cond_channels"), "0 (CDC has no x_mse)")
    f.number("beta", minimum=0.0)
    f.number("perceptual_weight", minimum=0.0)
    f.number("snr_max", above=0.0)
    f.number("init_scale", above=0.0)
    f.integer("steps")


class ResBlock(nnx.Module):
    """``skip(x) + conv3(act(conv3(x)))``, skip a 1x1 conv when widths differ.
    ASSUMPTION: leaky ReLU (0.2) and no normalisation (CDC's block not followed exactly)."""

    def __init__(self, cin: int, cout: int, *, rngs: nnx.Rngs):
        self.c1 = Conv(cin, cout, 3, rngs=rngs)
        self.c2 = Conv(cout, cout, 3, rngs=rngs)
        self.skip = Conv(cin, cout, 1, rngs=rngs) if cin != cout else None

    def __call__(self, x):
        h = self.c2(jax.nn.leaky_relu(self.c1(x), 0.2))
        return (x if self.skip is None else self.skip(x)) + h


class UpConv(Conv):
    """4x4 stride-2 transposed convolution with PyTorch's padding 1 (output
    exactly twice the input), run as sub-pixel phases like every transposed
    convolution here (``layers.subpixel_conv``)."""

    def __init__(self, cin: int, cout: int, *, rngs: nnx.Rngs):
        super().__init__(cin, cout, 4, stride=2, transpose=True, rngs=rngs)

    def geometry(self):
        k, s, p = self.k, self.stride, 1
        lo, hi = k - 1 - p, k - 1 - p + s - 1 - 1
        return (1, 1), ((lo, hi), (lo, hi)), (s, s)


class ContentEncoder(nnx.Module):
    """g_a: image in [0, 1] -> y (``widths[-1]`` channels, 1/16 resolution)."""

    def __init__(self, widths, *, rngs: nnx.Rngs):
        cins = (3, *widths[:-1])
        self.blocks = nnx.List(
            [ResBlock(a, b, rngs=rngs) for a, b in zip(cins, widths, strict=True)]
        )
        self.downs = nnx.List([Conv(w, w, 5, stride=2, rngs=rngs) for w in widths])

    def __call__(self, x01):
        h = 2.0 * x01 - 1.0
        for i, (block, down) in enumerate(zip(self.blocks, self.downs, strict=True)):
            h = down(block(h))
            if i < len(self.downs) - 1:
                h = jax.nn.leaky_relu(h, 0.2)
        return h


class ContextNetwork(nnx.Module):
    """y_hat -> features at 1/8, 1/4, 1/2 and 1 of the image size, returned
    finest first (the U-Net's level order)."""

    def __init__(self, m: int, widths, *, rngs: nnx.Rngs):
        cins = (m, *widths[:-1])
        self.blocks = nnx.List(
            [ResBlock(a, b, rngs=rngs) for a, b in zip(cins, widths, strict=True)]
        )
        self.ups = nnx.List([UpConv(w, w, rngs=rngs) for w in widths])

    def __call__(self, y_hat):
        h, feats = y_hat, []
        for block, up in zip(self.blocks, self.ups, strict=True):
            h = up(jax.nn.leaky_relu(block(h), 0.2))
            feats.append(h)
            h = jax.nn.leaky_relu(h, 0.2)
        return tuple(reversed(feats))


def time_of(logsnr, cfg):
    """The t in [0, 1] of a log-SNR on the cosine schedule (the inverse of
    ``schedules.cosine_logsnr``): the U-Net's time input. Training and
    sampling both feed it this function of the log-SNR they use."""
    logsnr = jnp.asarray(logsnr, jnp.float32)
    return (2.0 / math.pi) * jnp.arctan(jnp.exp(-0.5 * logsnr) / float(cfg.eta))


class CDC(nnx.Module):
    """CDC from a ``cdc`` config section; coding attributes as ELIC's."""

    def __init__(self, cfg, *, rngs: nnx.Rngs):
        check_config(cfg)
        enc = tuple(int(w) for w in cfg.encoder_widths)
        n, m = int(cfg.hyper_channels), enc[-1]
        self.n, self.m = n, m
        self.groups = (m,)
        self.scale_min = float(cfg.scale_min)
        self.num_scales, self.scale_max = int(cfg.num_scales), float(cfg.scale_max)
        self.int_frac_bits = int(cfg.int_frac_bits)
        # Sets the halo of tiled analysis (tiles.halo: 8 latents = 128 px),
        # more than g_a's receptive field (4 + 8 + 16 + 32 = 60 px radius).
        self.res_blocks = 1
        self.eta = float(cfg.eta)
        with conv_init("pytorch"):
            self.g_a = ContentEncoder(enc, rngs=rngs)
            self.h_a = HyperAnalysis(n, m, rngs=rngs)
            self.h_s = HyperSynthesis(n, out=2 * m, rngs=rngs)
            self.context_net = ContextNetwork(m, tuple(cfg.context_widths), rngs=rngs)
        self.context = context.MeanScale(m)
        self.prior = FactorizedPrior(n, filters=tuple(int(f) for f in cfg.prior_filters), rngs=rngs)
        self.unet = UNet(cfg.unet, rngs=rngs)

    # ---- the coding interface (coding.prepare / tiles), as ELIC's
    def analysis(self, x01):
        return self.g_a(x01.astype(jnp.float32))

    def hyper_analysis(self, y):
        return self.h_a(y) - self.prior.offset()

    def analyze_for_coding(self, x01):
        y = self.analysis(x01)
        return y, self.hyper_analysis(y)

    # ---- training
    def encode(self, x01, training: bool = False, rng=None):
        """(y_hat, y_bits, z_bits): y_hat as the decoder gets it (rounded
        around the mean, straight-through), bits per image (noisy with ``training``)."""
        if x01.ndim != 4 or x01.shape[1] % Z_STRIDE or x01.shape[2] % Z_STRIDE:
            raise ValueError(f"CDC expects NHWC with H, W multiples of {Z_STRIDE}, got {x01.shape}")
        y = self.analysis(x01)
        z = self.h_a(y)
        if training:
            rz, ry = jax.random.split(rng)
            z_lik = self.prior.likelihood(quantize.add_uniform_noise(z, rz))
        else:
            z_lik = self.prior.likelihood(self.prior.quantize(z))
        hyper = self.h_s(self.prior.quantize(z, ste=True))
        mu, sigma, y_hat = context.training_params(self.context, hyper, y, quantize.quantize_around)
        y_rate = quantize.add_uniform_noise(y, ry) if training else y_hat
        y_lik = entropy_model.gaussian_likelihood(y_rate, mu, sigma, self.scale_min)
        return (
            y_hat,
            entropy_model.bits(valid.fill_outside(y_lik, 1.0)),
            entropy_model.bits(valid.fill_outside(z_lik, 1.0)),
        )

    def __call__(self, x01, training: bool = False, rng=None):
        """``{"y_bits", "z_bits"}`` per image (the likelihood estimate, as ELIC's)."""
        _, y_bits, z_bits = self.encode(x01, training, rng)
        return dict(y_bits=y_bits, z_bits=z_bits)

    def denoise(self, z_t, logsnr, features, training: bool = False, dropout_rng=None):
        """x0 prediction (model space [-1, 1]) from z_t at ``logsnr`` given
        the context features of y_hat."""
        t = time_of(logsnr, self)
        features = tuple(features)[: len(self.unet.context_channels)]
        return self.unet(z_t, None, t, training=training, dropout_rng=dropout_rng, context=features)


def cdc_loss(model: CDC, x01, rng, cfg):
    """``beta * bpp + (1 - rho) * mean(min(SNR, snr_max) * x-MSE) + rho * LPIPS``.

    t ~ U(train_t), ``z_t = alpha x + sigma eps`` on the cosine schedule, x
    in [-1, 1]; the U-Net predicts x0 directly. Metrics: loss, bpp, its y/z
    parts, the unweighted x-MSE, the weighted x-loss, and LPIPS when rho > 0.
    """
    k_q, k_t, k_eps, k_drop = jax.random.split(rng, 4)
    y_hat, y_bits, z_bits = model.encode(x01, training=True, rng=k_q)
    pixels = x01.shape[1] * x01.shape[2]
    bpp = jnp.mean(y_bits + z_bits) / pixels
    features = model.context_net(y_hat)
    x = losses.to_model_space(x01)
    b = x.shape[0]
    t = losses.train_times(k_t, b, cfg)
    logsnr = schedules.logsnr_from_config(t, cfg)
    alpha, sigma = (a[:, None, None, None] for a in schedules.alpha_sigma(logsnr))
    eps = jax.random.normal(k_eps, x.shape)
    z = P.diffuse(x, eps, alpha, sigma)
    x0 = model.denoise(z, logsnr, features, training=True, dropout_rng=k_drop)
    x_mse = jnp.mean((x0 - x) ** 2, axis=(1, 2, 3))
    weight = jnp.minimum(jnp.exp(logsnr), float(cfg.snr_max))
    x_loss = jnp.mean(weight * x_mse)
    metrics = dict(
        loss=x_loss,
        x_loss=x_loss,
        x_mse=jnp.mean(x_mse),
        bpp=bpp,
        y_bpp=jnp.mean(y_bits) / pixels,
        z_bpp=jnp.mean(z_bits) / pixels,
    )
    mixed, metrics = losses.with_perceptual(x_loss, metrics, x0, x, cfg)
    loss = mixed + float(cfg.beta) * bpp
    return loss, dict(metrics, loss=loss)
