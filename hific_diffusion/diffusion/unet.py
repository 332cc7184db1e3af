"""Conditional U-Net for the HFD decoder (HFD Sec. 3.2; Ho et al. 2020, App. B).

Input: the noisy image ``z_t`` concatenated with the MSE reconstruction
``x_mse`` (6 channels, [-1, 1] model space) and, with ``side_channels`` > 0,
that many channels of side information (HFD+'s residual-energy map,
``hfdplus.py``) after ``x_mse``; conditioning: log-SNR through
sinusoidal Fourier features and a 2-layer MLP, added to every residual
block. CDC's denoiser (``hific_diffusion/cdc``) is the same network with
``cond_channels = 0`` (no x_mse) and ``context_channels``: its first levels
concatenate a context feature of their resolution to their input.
Parameters are float32; activations run in ``compute_dtype`` (bf16 on
accelerators); normalisation statistics are computed in float32.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from hific_diffusion import skeleton
from hific_diffusion.errors import HfdError, ModelConfigError, SectionReader


class UNetInputError(HfdError, ValueError):
    """An input the U-Net cannot process (wrong rank, channels or size)."""


class UNetConfigError(ModelConfigError):
    """A ``unet`` config section that cannot build the U-Net."""


def check_config(cfg) -> None:
    """UNetConfigError naming the first field of the ``unet`` section the
    U-Net cannot be built from (missing, wrong type, out of range, widths that
    do not fit the log-SNR features or the attention heads).

    Channel counts need not be multiples of ``norm_groups``: each GroupNorm
    takes the largest divisor not above it (:func:`_groups`).
    """
    f = SectionReader(cfg, "unet", UNetConfigError)
    base, mult = f.integer("base_channels"), f.integers("channel_mult")
    f.integer("num_res_blocks", minimum=0)
    attn, res = f.integers("attn_resolutions", nonempty=False), f.integer("resolution")
    mid = f.boolean("mid_attention")
    head_dim = f.integer("head_dim")
    f.integer("norm_groups")
    f.number("dropout", minimum=0.0, below=1.0)
    f.number("fourier_scale")
    f.integer("side_channels", minimum=0)
    f.integer("cond_channels", minimum=0)
    context = f.integers("context_channels", nonempty=False)
    if f.integer("out_channels") != 3:
        f.fail("out_channels", cfg["out_channels"], "3 (v or x of an RGB image)")
    for name in ("compute_dtype", "param_dtype"):
        if not _is_float_dtype(f.get(name)):
            f.fail(name, f.get(name), "a float dtype name (float32, bfloat16, ...)")
    ch = [base * m for m in mult]
    if len(context) > len(ch) or any(c < 1 for c in context):
        f.fail(
            "context_channels",
            tuple(context),
            f"at most {len(ch)} positive channel counts (one per level)",
        )
    if ch[0] % 2:
        raise UNetConfigError(
            f"unet.base_channels * channel_mult[0] = {ch[0]} must be even "
            "(the log-SNR features are sin/cos pairs)"
        )
    widths = [c for level, c in enumerate(ch) if res // 2**level in attn]
    widths += [ch[-1]] if mid else []
    for c in widths:
        if c % _heads(c, head_dim):
            raise UNetConfigError(
                f"unet: {c} channels do not split into {_heads(c, head_dim)} attention "
                f"heads (head_dim={head_dim})"
            )


def _is_float_dtype(name) -> bool:
    try:
        return isinstance(name, str) and jnp.issubdtype(jnp.dtype(name), jnp.floating)
    except TypeError:  # not a dtype name
        return False


def _heads(channels: int, head_dim: int) -> int:
    return max(1, channels // head_dim)


def _dtype(name):
    return jnp.dtype(name)


def _groups(channels: int, max_groups: int) -> int:
    # Largest divisor of ``channels`` not above ``max_groups``, so tiny
    # configs with 16 channels still get a valid GroupNorm.
    return max(g for g in range(1, max_groups + 1) if channels % g == 0)


def fourier_features(logsnr, dim: int, scale: float):
    """Sinusoidal features of ``scale * logsnr`` (Vaswani et al. 2017, Sec. 3.5)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(10000.0) * jnp.arange(half, dtype=jnp.float32) / half)
    args = (scale * logsnr.astype(jnp.float32))[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)


class _Layers:
    """Layer factory with the config's dtypes, so every block builds alike."""

    def __init__(self, cfg, rngs):
        self.cfg, self.rngs = cfg, rngs
        self.dtype = _dtype(cfg.compute_dtype)
        self.param_dtype = _dtype(cfg.param_dtype)

    def conv(self, cin, cout, k=3, stride=1):
        pad = ((k // 2, k // 2), (k // 2, k // 2))
        return nnx.Conv(
            cin, cout, (k, k), strides=(stride, stride), padding=pad, dtype=self.dtype,
            param_dtype=self.param_dtype, rngs=self.rngs,
            **skeleton.flax_init_kwargs("kernel_init", "bias_init"),
        )  # fmt: skip

    def linear(self, cin, cout):
        return nnx.Linear(
            cin, cout, dtype=self.dtype, param_dtype=self.param_dtype, rngs=self.rngs,
            **skeleton.flax_init_kwargs("kernel_init", "bias_init"),
        )  # fmt: skip

    def norm(self, c):
        return nnx.GroupNorm(
            c, num_groups=_groups(c, self.cfg.norm_groups), epsilon=1e-5, dtype=self.dtype,
            param_dtype=self.param_dtype, rngs=self.rngs,
            **skeleton.flax_init_kwargs("scale_init", "bias_init"),
        )  # fmt: skip


class ResBlock(nnx.Module):
    """GroupNorm-SiLU-conv twice with the embedding added in between (Ho et al. 2020)."""

    def __init__(self, cin, cout, temb_dim, layers: _Layers):
        self.norm1 = layers.norm(cin)
        self.conv1 = layers.conv(cin, cout)
        self.temb = layers.linear(temb_dim, cout)
        self.norm2 = layers.norm(cout)
        rate = layers.cfg.dropout
        # No RNG stream stored in the module: the caller passes a key, so the
        # training step stays a pure function of (params, batch, rng).
        self.dropout = nnx.Dropout(rate) if rate > 0 else None
        self.conv2 = layers.conv(cout, cout)
        self.skip = layers.conv(cin, cout, k=1) if cin != cout else None

    def __call__(self, x, temb, training: bool, rng=None):
        h = self.conv1(jax.nn.silu(self.norm1(x)))
        h = h + self.temb(jax.nn.silu(temb))[:, None, None, :]
        h = jax.nn.silu(self.norm2(h))
        if self.dropout is not None:
            h = self.dropout(h, deterministic=not training, rngs=rng)
        h = self.conv2(h)
        return (x if self.skip is None else self.skip(x)) + h


class Attention(nnx.Module):
    """Multi-head self-attention over all positions, residual (ADM, Sec. 3)."""

    def __init__(self, c, layers: _Layers):
        self.heads = _heads(c, layers.cfg.head_dim)
        self.norm = layers.norm(c)
        self.qkv = layers.linear(c, 3 * c)
        self.out = layers.linear(c, c)

    def __call__(self, x):
        b, h, w, c = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, h * w, 3, self.heads, c // self.heads)
        o = jax.nn.dot_product_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2])
        return x + self.out(o.reshape(b, h, w, c))


class Level(nnx.Module):
    """Residual blocks (+ attention) at one resolution, then a resampler."""

    def __init__(self, blocks, attns, resample):
        self.blocks = nnx.List(blocks)
        self.attns = nnx.List(attns)
        self.resample = resample


class UNet(nnx.Module):
    """``unet(z_t, x_mse, logsnr, training=False, dropout_rng=None) -> v``.

    NHWC, [-1, 1] model space. ``logsnr`` is a scalar or one value per
    example. Height and width must be multiples of ``2 ** (len(channel_mult) -
    1)``. With dropout > 0, training needs ``dropout_rng`` (a JAX key).
    """

    def __init__(self, cfg, *, rngs: nnx.Rngs):
        check_config(cfg)
        layers = _Layers(cfg, rngs)
        ch = [cfg.base_channels * m for m in cfg.channel_mult]
        self.cfg_levels = len(ch)
        self.fourier_dim = ch[0]
        self.fourier_scale = float(cfg.fourier_scale)
        self.dtype = layers.dtype
        self.dropout = float(cfg.dropout)
        temb_dim = 4 * ch[0]
        self.temb1 = layers.linear(ch[0], temb_dim)
        self.temb2 = layers.linear(temb_dim, temb_dim)
        self.side_channels = int(cfg.side_channels)
        self.cond_channels = int(cfg.cond_channels)
        self.context_channels = tuple(int(c) for c in cfg.context_channels)
        self.conv_in = layers.conv(3 + self.cond_channels + self.side_channels, ch[0])

        def use_attn(level):
            return (cfg.resolution // 2**level) in tuple(cfg.attn_resolutions)

        skips, cur, down = [ch[0]], ch[0], []
        for level, cout in enumerate(ch):
            blocks, attns = [], []
            # CDC: this level's context feature is concatenated to its input.
            cur += self.context_channels[level] if level < len(self.context_channels) else 0
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(cur, cout, temb_dim, layers))
                attns += [Attention(cout, layers)] if use_attn(level) else []
                cur = cout
                skips.append(cur)
            last = level == len(ch) - 1
            resample = None if last else layers.conv(cur, cur, stride=2)
            skips += [] if last else [cur]
            down.append(Level(blocks, attns, resample))
        self.down = nnx.List(down)

        self.mid1 = ResBlock(cur, cur, temb_dim, layers)
        self.mid_attn = Attention(cur, layers) if cfg.mid_attention else None
        self.mid2 = ResBlock(cur, cur, temb_dim, layers)

        up = []
        for level in reversed(range(len(ch))):
            blocks, attns = [], []
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(ResBlock(cur + skips.pop(), ch[level], temb_dim, layers))
                attns += [Attention(ch[level], layers)] if use_attn(level) else []
                cur = ch[level]
            resample = layers.conv(cur, cur) if level > 0 else None
            up.append(Level(blocks, attns, resample))
        self.up = nnx.List(up)

        self.norm_out = layers.norm(cur)
        self.conv_out = layers.conv(cur, cfg.out_channels)

    def __call__(self, z_t, x_mse, logsnr, training: bool = False, dropout_rng=None, context=None):
        """``x_mse``: ``[B, H, W, cond_channels + side_channels]``, the side
        channels after x_mse (with ``cond_channels = 0`` and no side channels
        it may be None). ``context``: with ``context_channels``, one feature
        ``[B, H / 2^l, W / 2^l, context_channels[l]]`` per level l (CDC)."""
        c = self.cond_channels + self.side_channels
        if x_mse is None and c == 0:
            x_mse = jnp.zeros((*z_t.shape[:3], 0), z_t.dtype)
        if (
            z_t.ndim != 4
            or x_mse is None
            or z_t.shape[:3] != x_mse.shape[:3]
            or (z_t.shape[-1], x_mse.shape[-1]) != (3, c)
        ):
            raise UNetInputError(
                f"expected z_t [B, H, W, 3] and x_mse of equal shape but {c} channels (x_mse, "
                f"then side_channels={self.side_channels}), got {z_t.shape}, "
                f"{None if x_mse is None else x_mse.shape}"
            )
        m = 2 ** (self.cfg_levels - 1)
        if z_t.shape[1] % m or z_t.shape[2] % m:
            raise UNetInputError(f"height and width must be multiples of {m}, got {z_t.shape}")
        context = tuple(context or ())
        want = [
            (z_t.shape[0], z_t.shape[1] >> lv, z_t.shape[2] >> lv, cc)
            for lv, cc in enumerate(self.context_channels)
        ]
        if [tuple(f.shape) for f in context] != want:
            raise UNetInputError(
                f"expected context features of shapes {want}, got {[f.shape for f in context]}"
            )
        if training and self.dropout > 0 and dropout_rng is None:
            raise UNetInputError("training with dropout needs dropout_rng")
        counter = iter(range(10_000))

        def rng():  # a distinct dropout key per residual block
            return None if dropout_rng is None else jax.random.fold_in(dropout_rng, next(counter))

        b = z_t.shape[0]
        logsnr = jnp.broadcast_to(jnp.asarray(logsnr, jnp.float32), (b,))
        temb = fourier_features(logsnr, self.fourier_dim, self.fourier_scale)
        temb = self.temb2(jax.nn.silu(self.temb1(temb.astype(self.dtype))))

        h = self.conv_in(jnp.concatenate([z_t, x_mse], axis=-1).astype(self.dtype))
        hs = [h]
        for lv, level in enumerate(self.down):
            if lv < len(context):
                h = jnp.concatenate([h, context[lv].astype(h.dtype)], axis=-1)
            for i, block in enumerate(level.blocks):
                h = block(h, temb, training, rng())
                if len(level.attns):
                    h = level.attns[i](h)
                hs.append(h)
            if level.resample is not None:
                h = level.resample(h)
                hs.append(h)

        h = self.mid1(h, temb, training, rng())
        if self.mid_attn is not None:
            h = self.mid_attn(h)
        h = self.mid2(h, temb, training, rng())

        for level in self.up:
            for i, block in enumerate(level.blocks):
                h = block(jnp.concatenate([h, hs.pop()], axis=-1), temb, training, rng())
                if len(level.attns):
                    h = level.attns[i](h)
            if level.resample is not None:
                h = jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)
                h = level.resample(h)

        h = self.conv_out(jax.nn.silu(self.norm_out(h)))
        return h.astype(jnp.float32)


def param_count(cfg) -> int:
    """Parameters of ``UNet(cfg)`` from shapes only (``nnx.eval_shape``, no allocation)."""
    abstract = nnx.eval_shape(lambda: UNet(cfg, rngs=nnx.Rngs(0)))
    leaves = jax.tree.leaves(nnx.state(abstract, nnx.Param))
    return int(sum(math.prod(x.shape) for x in leaves))
