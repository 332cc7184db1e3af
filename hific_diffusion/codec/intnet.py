"""Fixed-point mirror of h_s and the context networks (DESIGN.md "Bit-exact decoding").

At coding time everything between z_hat and the table indices runs on int32
with a fixed, order-independent result, so encoder and decoder agree on any
platform (integer addition is associative; float convolution is not). This
is the idea of Balle et al., "Integer networks for data compression with
latent-variable models" (ICLR 2019), in a simple form:

* Activations are fixed point with ``F`` fractional bits (``int_frac_bits``,
  default 8), saturated to int16: ``x_int = clip(round(x * 2^F), -2^15, 2^15 - 1)``.
* Each convolution is an im2col (patch extraction by slicing) followed by an
  int32 ``dot_general``; weights of output channel c are ``W = round(w * 2^s_c)``
  and the bias ``B = round(b * 2^(F + s_c))``, then the accumulator is rescaled
  by a rounding arithmetic right shift ``(acc + 2^(s_c - 1)) >> s_c`` and
  saturated again. ReLU is ``max(x, 0)``, exact on integers.
* Scale indices come from comparing the fixed-point sigma with integer
  thresholds (geometric midpoints of the scale table) by binary search; mu is
  kept as fixed point and the symbol is ``round(y - mu)`` against it.

Overflow bound (checked for every output channel when a layer is built,
:func:`_choose_shift`): with ``|x| <= 2^15`` for every input,

    |acc_c + 2^(s_c - 1)| <= 2^15 * sum_k |W_kc| + |B_c| + 2^(s_c - 1) <= 2^31 - 1,

so no int32 intermediate ever wraps; ``s_c`` is the largest shift (<= 20)
that satisfies it. Zero padding adds no terms.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from hific_diffusion.codec.context import chain

ACT_MAX = (1 << 15) - 1
ACT_MIN = -(1 << 15)
INT32_MAX = (1 << 31) - 1
MAX_SHIFT = 20


class IntegerPathError(ValueError):
    """Weights that cannot be represented in the integer path without overflow."""


def _choose_shift(w: np.ndarray, b: float, frac_bits: int) -> tuple[int, np.ndarray, int]:
    """Largest shift s <= MAX_SHIFT whose integer weights/bias satisfy the int32 bound."""
    for s in range(MAX_SHIFT, -1, -1):
        wq = np.round(w * 2.0**s).astype(np.int64)
        bq = int(np.round(b * 2.0 ** (frac_bits + s)))
        half = (1 << (s - 1)) if s else 0
        if (ACT_MAX + 1) * int(np.abs(wq).sum()) + abs(bq) + half <= INT32_MAX:
            return s, wq, bq
    raise IntegerPathError("a convolution's weights are too large for the int32 path")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class IntConv:
    """Integer version of :class:`hific_diffusion.codec.layers.Conv` (same geometry)."""

    weight: jax.Array  # int32 [k*k*cin, cout]
    bias: jax.Array  # int32 [cout]
    shift: jax.Array  # int32 [cout]
    k: int = dataclasses.field(metadata=dict(static=True))
    strides: tuple = dataclasses.field(metadata=dict(static=True))
    padding: tuple = dataclasses.field(metadata=dict(static=True))
    dilation: tuple = dataclasses.field(metadata=dict(static=True))

    @classmethod
    def from_conv(cls, conv, frac_bits: int) -> IntConv:
        w = np.asarray(conv.effective_kernel(), np.float64)
        b = np.asarray(conv.bias[...], np.float64)
        k, _, cin, cout = w.shape
        w = w.reshape(k * k * cin, cout)
        wq = np.zeros(w.shape, np.int32)
        bq = np.zeros(cout, np.int32)
        shift = np.zeros(cout, np.int32)
        for c in range(cout):
            shift[c], wq[:, c], bq[c] = _choose_shift(w[:, c], float(b[c]), frac_bits)
        strides, padding, dilation = conv.geometry()
        return cls(
            jnp.asarray(wq),
            jnp.asarray(bq),
            jnp.asarray(shift),
            k,
            tuple(strides),
            tuple(map(tuple, padding)),
            tuple(dilation),
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        (plo, phi), (qlo, qhi) = self.padding
        sh, sw = self.strides
        xp = jax.lax.pad(
            x,
            jnp.int32(0),
            (
                (0, 0, 0),
                (plo, phi, self.dilation[0] - 1),
                (qlo, qhi, self.dilation[1] - 1),
                (0, 0, 0),
            ),
        )
        n, hp, wp, _ = xp.shape
        ho, wo = (hp - self.k) // sh + 1, (wp - self.k) // sw + 1
        patches = jnp.concatenate(
            [
                xp[:, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw, :]
                for i in range(self.k)
                for j in range(self.k)
            ],
            axis=-1,
        )
        acc = (
            jax.lax.dot_general(
                patches, self.weight, (((3,), (0,)), ((), ())), preferred_element_type=jnp.int32
            )
            + self.bias
        )
        half = jnp.where(self.shift > 0, jnp.left_shift(1, jnp.maximum(self.shift - 1, 0)), 0)
        out = jnp.right_shift(acc + half, self.shift)
        return jnp.clip(out, ACT_MIN, ACT_MAX)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class IntContext:
    """Integer mirror of :class:`hific_diffusion.codec.context.SpaceChannelContext`."""

    spatial: list
    channel: list
    aggregate: list
    groups: tuple = dataclasses.field(metadata=dict(static=True))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class IntNet:
    """Everything the coder needs between z_hat and (mu, scale index)."""

    h_s: list
    context: IntContext
    thresholds: jax.Array  # int32 [num_scales - 1], ascending
    frac_bits: int = dataclasses.field(metadata=dict(static=True))

    def hyper(self, z_hat: jax.Array) -> jax.Array:
        """h_s on integer z_hat, in fixed point."""
        return chain(self.h_s, to_fixed(z_hat, self.frac_bits))

    def scale_index(self, sigma: jax.Array) -> jax.Array:
        """Index of the log-nearest table scale: #thresholds strictly below sigma."""
        flat = sigma.reshape(-1)
        return (
            jnp.searchsorted(self.thresholds, flat, side="left")
            .astype(jnp.int32)
            .reshape(sigma.shape)
        )


def to_fixed(x_int: jax.Array, frac_bits: int) -> jax.Array:
    """Integers -> saturated fixed point (exact: a clip and a shift)."""
    lim = ACT_MAX >> frac_bits
    return jnp.left_shift(jnp.clip(x_int.astype(jnp.int32), -lim - 1, lim), frac_bits)


def scale_thresholds(scale_table: np.ndarray, frac_bits: int) -> np.ndarray:
    """Fixed-point geometric midpoints between neighbouring table scales.

    sigma_int <= t_0 -> index 0 (this also applies the lower bound scale_min).
    """
    s = np.asarray(scale_table, np.float64)
    mid = np.sqrt(s[:-1] * s[1:]) * 2.0**frac_bits
    return np.floor(mid).astype(np.int32)


def build(model, scale_table: np.ndarray) -> IntNet:
    """Derive the integer path from a float ELIC model's current weights."""
    f = int(model.int_frac_bits)
    if not 0 <= f <= 12:
        raise IntegerPathError(f"int_frac_bits={f} must be in [0, 12]")
    conv = lambda layers: [IntConv.from_conv(c, f) for c in layers]  # noqa: E731
    ctx = model.context
    int_ctx = IntContext(
        [conv(s) for s in ctx.spatial],
        [conv(c) for c in ctx.channel],
        [conv(a) for a in ctx.aggregate],
        tuple(ctx.groups),
    )
    return IntNet(conv(model.h_s.convs), int_ctx, jnp.asarray(scale_thresholds(scale_table, f)), f)


def worst_case_accumulator(layer: IntConv, frac_bits: int) -> int:
    """The bound of the module docstring for one layer (for tests and reports)."""
    w = np.abs(np.asarray(layer.weight, np.int64)).sum(0)
    s = np.asarray(layer.shift, np.int64)
    half = np.where(s > 0, 1 << np.maximum(s - 1, 0), 0)
    return int(np.max((ACT_MAX + 1) * w + np.abs(np.asarray(layer.bias, np.int64)) + half))


def fixed_to_float(x_int, frac_bits: int):
    return np.asarray(x_int, np.float64) / 2.0**frac_bits
