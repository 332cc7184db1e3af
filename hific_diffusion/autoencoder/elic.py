"""The ELIC autoencoder and the stage-1 rate-distortion objective.

ELIC (He et al., CVPR 2022): g_a / g_s (Fig. 4), hyperprior h_a / h_s with a
factorized prior on z (Balle et al. 2018), and a Gaussian conditional on y
whose (mu, sigma) come from the space-channel context (Sec. 3.2-3.3).
Training uses ELIC's mixed quantization (Sec. 3.4): noisy y for the rate,
``round(y - mu) + mu`` (straight-through) for g_s and the contexts. The
rate-distortion loss is HFD Sec. 3.1 / Balle et al. 2018 Eq. 1 in the
project's units: ``bpp + lmbda * 255^2 * MSE``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from hific_diffusion.autoencoder import context, entropy_model, quantize, valid
from hific_diffusion.autoencoder.defaults import Z_STRIDE
from hific_diffusion.autoencoder.layers import CONV_INITS, conv_init
from hific_diffusion.autoencoder.priors import FactorizedPrior
from hific_diffusion.autoencoder.transforms import (
    AnalysisTransform,
    HyperAnalysis,
    HyperSynthesis,
    SynthesisTransform,
)
from hific_diffusion.errors import ModelConfigError, SectionReader

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class ELICConfigError(ModelConfigError):
    """A ``model`` config section that cannot build ELIC."""


def check_config(cfg) -> None:
    """ELICConfigError naming the first field of the ``model`` section that
    ELIC cannot be built from (missing, wrong type, out of range, groups that
    do not sum to M)."""
    f = SectionReader(cfg, "model", ELICConfigError)
    f.integer("N")
    m = f.integer("M")
    groups = f.integers("groups")
    if sum(groups) != m:
        raise ELICConfigError(
            f"model.groups {groups} must sum to M={m} (they sum to {sum(groups)})"
        )
    f.integers("channel_context")
    f.integer("res_blocks", minimum=0)
    f.integers("prior_filters", nonempty=False)
    # The scale table's fields (read by the coder) must at least make a table;
    # int_frac_bits's range is the integer path's rule (coding/intnet.py).
    f.integer("num_scales")
    scale_min = f.number("scale_min", above=0.0)
    f.number("scale_max", minimum=scale_min)
    f.integer("int_frac_bits", minimum=0)
    f.choice("compute_dtype", tuple(_DTYPES))
    f.choice("init", CONV_INITS)


class ELIC(nnx.Module):
    """ELIC with the hyperprior and space-channel context; sizes from ``config.model``.

    ``model(x01, training)`` returns ``x_hat`` (NHWC, unclipped), and per-image
    ``y_bits`` / ``z_bits`` (sums of -log2 likelihoods). With ``training=True``
    the noise for the rate proxy comes from ``rng`` (the trainer derives it
    from seed and step, so a resumed run draws the same noise). The module
    holds parameters and fixed arrays only, no random state.
    """

    def __init__(self, cfg, *, rngs: nnx.Rngs):
        check_config(cfg)
        n, m = int(cfg.N), int(cfg.M)
        self.n, self.m = n, m
        self.groups = tuple(int(g) for g in cfg.groups)
        self.scale_min = float(cfg.scale_min)
        # Coding-time settings (tables and the integer path), read by coding.py.
        self.num_scales, self.scale_max = int(cfg.num_scales), float(cfg.scale_max)
        self.int_frac_bits = int(cfg.int_frac_bits)
        self.compute_dtype = _DTYPES[str(cfg.compute_dtype)]
        blocks = int(cfg.res_blocks)
        self.res_blocks = blocks  # sets the tiles' halo (codec/tiles.py)
        with conv_init(str(cfg.init)):
            self.g_a = AnalysisTransform(n, m, res_blocks=blocks, rngs=rngs)
            self.g_s = SynthesisTransform(n, m, res_blocks=blocks, rngs=rngs)
            self.h_a = HyperAnalysis(n, m, rngs=rngs)
            self.h_s = HyperSynthesis(n, rngs=rngs)
            widths = tuple(int(w) for w in cfg.channel_context)
            self.context = context.SpaceChannelContext(n, m, self.groups, widths, rngs=rngs)
        # Hidden widths of the factorized prior's cumulative (Balle et al. 2018,
        # Appendix 6.1); CompressAI 1.2.8 uses (3, 3, 3, 3) (autoencoder/compressai_import.py).
        filters = tuple(int(f) for f in cfg.prior_filters)
        self.prior = FactorizedPrior(n, filters=filters, rngs=rngs)

    def analysis(self, x01):
        """g_a in the compute dtype; y in float32."""
        return self.g_a(x01.astype(self.compute_dtype)).astype(jnp.float32)

    def analyze_for_coding(self, x01):
        """(y, z - median): the coder's symbols are ``round`` of these
        (``coding/coding.py``; the integer h_s adds the median back)."""
        y = self.analysis(x01)
        return y, self.hyper_analysis(y)

    def hyper_analysis(self, y):
        """z - median from y (h_a), the second half of :meth:`analyze_for_coding`."""
        return self.h_a(y) - self.prior.offset()

    def synthesis(self, y_hat):
        return self.g_s(y_hat.astype(self.compute_dtype)).astype(jnp.float32)

    def __call__(self, x01: jax.Array, training: bool = False, rng: jax.Array | None = None):
        if (
            x01.ndim != 4
            or x01.shape[-1] != 3
            or x01.shape[1] % Z_STRIDE
            or x01.shape[2] % Z_STRIDE
        ):
            raise ValueError(
                f"ELIC expects NHWC RGB with H, W multiples of {Z_STRIDE}, got {x01.shape}"
            )
        y = self.analysis(x01)
        z = self.h_a(y)
        if training:
            if rng is None:
                raise ValueError("ELIC(training=True) needs rng for the quantization noise")
            rz, ry = jax.random.split(rng)
            z_lik = self.prior.likelihood(quantize.add_uniform_noise(z, rz))
        else:
            z_lik = self.prior.likelihood(self.prior.quantize(z))
        hyper = self.h_s(self.prior.quantize(z, ste=True))
        mu, sigma, y_hat = context.training_params(self.context, hyper, y, quantize.quantize_around)
        y_rate = quantize.add_uniform_noise(y, ry) if training else y_hat
        y_lik = entropy_model.gaussian_likelihood(y_rate, mu, sigma, self.scale_min)
        # Inside a coding bucket (autoencoder/valid.py) the padding costs no bits.
        return dict(
            x_hat=self.synthesis(y_hat),
            y_bits=entropy_model.bits(valid.fill_outside(y_lik, 1.0)),
            z_bits=entropy_model.bits(valid.fill_outside(z_lik, 1.0)),
        )


def rd_loss(
    model: ELIC,
    x01: jax.Array,
    lmbda: float,
    *,
    training: bool = True,
    rng: jax.Array | None = None,
):
    """``loss = bpp + lmbda * 255^2 * MSE`` with metrics ``bpp``, ``mse``, ``psnr``."""
    out = model(x01, training=training, rng=rng)
    pixels = x01.shape[1] * x01.shape[2]
    bpp = jnp.mean(out["y_bits"] + out["z_bits"]) / pixels
    mse = jnp.mean(jnp.square(out["x_hat"] - x01))
    loss = bpp + lmbda * 255.0**2 * mse
    psnr = 10.0 * jnp.log10(1.0 / jnp.maximum(mse, 1e-10))
    return loss, dict(
        loss=loss,
        bpp=bpp,
        mse=mse,
        psnr=psnr,
        y_bpp=jnp.mean(out["y_bits"]) / pixels,
        z_bpp=jnp.mean(out["z_bits"]) / pixels,
    )
