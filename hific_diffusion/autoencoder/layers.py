"""Convolution building blocks of the ELIC transforms (He et al., CVPR 2022, Fig. 4).

Every convolution here is one ``lax.conv_general_dilated`` call on NHWC
activations with an HWIO kernel, so the integer coding path
(:mod:`hific_diffusion.coding.intnet`) can mirror it exactly: a transposed
convolution is stored as the kernel of its equivalent zero-dilated forward
convolution (PyTorch ``ConvTranspose2d(k, stride=2, padding=k//2,
output_padding=1)`` semantics: output = 2 x input).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hific_diffusion import skeleton
from hific_diffusion.autoencoder import valid

_JAX_INIT = nnx.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")

# How new Conv layers are initialised (config.model.init); see conv_init.
CONV_INITS = ("pytorch", "lecun")
_CONV_INIT = contextvars.ContextVar("conv_init", default="pytorch")


@contextlib.contextmanager
def conv_init(scheme: str):
    """Initialisation of the :class:`Conv` layers built inside the block.

    * ``"pytorch"``: PyTorch's default (``kaiming_uniform_(a=sqrt(5))``):
      kernel and bias ~ U(+-1/sqrt(fan_in)), fan_in = cin * k * k, and for a
      transposed convolution cout * k * k (``ConvTranspose2d`` counts its
      weight's second axis). CompressAI's ``Elic2022Official`` trains from it.
    * ``"lecun"``: truncated normal with variance 1 / fan_in, zero bias (3x
      PyTorch's variance). Side by side with CompressAI (same crops, batch 8,
      Adam 3e-4, 520 steps) it started at 1.3-2.0 bpp instead of 0.8-1.1 and
      its loss stayed 16-20% higher (issue #12).
    """
    if scheme not in CONV_INITS:
        raise ValueError(f"model.init must be one of {CONV_INITS}, got {scheme!r}")
    token = _CONV_INIT.set(scheme)
    try:
        yield
    finally:
        _CONV_INIT.reset(token)


def _numpy_rng(key) -> np.random.Generator:
    return np.random.default_rng(np.asarray(jax.random.key_data(key)).tolist())


def fan_in_init(rngs: nnx.Rngs, shape) -> jax.Array:
    """Truncated normal (+-2 std) with variance 1 / fan_in (LeCun; flax variance_scaling).

    Eagerly the draw is done in numpy: one XLA compile per weight shape costs
    minutes on a busy CPU for the ~200 convolutions of ELIC. Under tracing
    (``nnx.eval_shape``, a jitted init) it uses the equivalent flax initializer.
    """
    if skeleton.active():
        return skeleton.zeros(shape)
    key = rngs.params()
    if isinstance(key, jax.core.Tracer):
        return _JAX_INIT(key, shape, jnp.float32)
    rng = _numpy_rng(key)
    x = rng.standard_normal(shape)
    bad = np.abs(x) > 2
    while bad.any():
        x[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(x) > 2
    # 0.8796 = std of a unit normal truncated to [-2, 2].
    fan_in = int(np.prod(shape[:-1]))
    return jnp.asarray(x * np.sqrt(1.0 / fan_in) / 0.87962566103423978, jnp.float32)


def uniform_init(rngs: nnx.Rngs, shape, lo: float, hi: float) -> jax.Array:
    """U(lo, hi), drawn like :func:`fan_in_init` (numpy eagerly, jax when traced)."""
    if skeleton.active():
        return skeleton.zeros(shape)
    key = rngs.params()
    if isinstance(key, jax.core.Tracer):
        return jax.random.uniform(key, shape, jnp.float32, lo, hi)
    return jnp.asarray(_numpy_rng(key).uniform(lo, hi, shape), jnp.float32)


class Conv(nnx.Module):
    """``k x k`` convolution, stride ``s``, symmetric padding ``k // 2`` (PyTorch style).

    ``transpose=True`` makes it the upsampling transposed convolution used by
    g_s and h_s (ELIC Fig. 4): a stride-1 convolution over the input dilated
    by ``s`` with padding ``(k-1-k//2, k-1-k//2+s-1)``.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        k: int,
        *,
        stride: int = 1,
        transpose: bool = False,
        rngs: nnx.Rngs,
    ):
        shape = (k, k, cin, cout)
        if _CONV_INIT.get() == "pytorch":
            bound = 1.0 / np.sqrt((cout if transpose else cin) * k * k)
            self.kernel = nnx.Param(uniform_init(rngs, shape, -bound, bound))
            self.bias = nnx.Param(uniform_init(rngs, (cout,), -bound, bound))
        else:
            self.kernel = nnx.Param(fan_in_init(rngs, shape))
            zero = skeleton.zeros((cout,)) if skeleton.active() else jnp.zeros((cout,))
            self.bias = nnx.Param(zero)
        self.k, self.stride, self.transpose = k, stride, transpose

    def geometry(self):
        """(window strides, padding, lhs dilation) of the equivalent forward conv."""
        k, s, p = self.k, self.stride, self.k // 2
        if self.transpose:
            lo, hi = k - 1 - p, k - 1 - p + s - 1
            return (1, 1), ((lo, hi), (lo, hi)), (s, s)
        return (s, s), ((p, p), (p, p)), (1, 1)

    def effective_kernel(self, kernel=None):
        """The HWIO kernel actually applied (subclasses may mask it); of
        ``kernel`` (e.g. a float64 numpy copy) when given."""
        return self.kernel[...] if kernel is None else kernel

    def __call__(self, x: jax.Array) -> jax.Array:
        strides, padding, dilation = self.geometry()
        kernel = self.effective_kernel().astype(x.dtype)
        if self.k > 1:
            x = valid.mask(x)
        if self.transpose:
            y = subpixel_conv(x, kernel, self.stride, padding[0][0])
        elif self.stride > 1:
            y = strided_conv(x, kernel, self.stride, padding[0][0])
        else:
            y = _conv(x, kernel, strides, padding)
        return y + self.bias[...].astype(x.dtype)


def _conv(x, kernel, strides, padding, lhs_dilation=(1, 1)):
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        strides,
        padding,
        lhs_dilation=lhs_dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


def subpixel_conv(x: jax.Array, kernel: jax.Array, s: int, lo: int) -> jax.Array:
    """The transposed convolution of :class:`Conv` without multiplying zeros.

    Mathematically ``conv(dilate(x, s), kernel)`` with padding ``(lo, k + s - 2 - lo)``
    (output ``s`` times the input size). Output pixel ``s*m + r`` only meets
    input pixels ``m + d`` through kernel tap ``a = s*d + lo - r``, so each of
    the ``s*s`` output phases is an ordinary stride-1 convolution of the
    undilated input; the phases are computed as one convolution with
    ``s*s*cout`` outputs and interleaved (depth-to-space, Shi et al. 2016).
    Same result up to float rounding, a quarter of the multiplications, and
    no input-dilated convolution, which XLA's CPU backend runs on a slow
    generic path (forward + backward of one 64-channel 5x5 layer at 64x64,
    batch 8, one core: 4.3 s dilated, 0.22 s this way).
    """
    k, _, cin, cout = kernel.shape
    # Input offsets d with a valid tap for some phase r.
    ds = [d for r in range(s) for d in range(-k, k + 1) if 0 <= s * d + lo - r < k]
    dmin, taps = min(ds), max(ds) - min(ds) + 1
    # idx[t, r]: the kernel tap phase r applies at offset dmin + t; k = none (zero).
    idx = np.array(
        [
            [a if 0 <= (a := s * (dmin + t) + lo - r) < k else k for r in range(s)]
            for t in range(taps)
        ]
    )
    padded = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
    phases = padded[idx[:, :, None, None], idx[None, None, :, :]]  # [T, s, T, s, cin, cout]
    phases = phases.transpose(0, 2, 4, 1, 3, 5).reshape(taps, taps, cin, s * s * cout)
    pad = (-dmin, taps - 1 + dmin)
    y = _conv(x, phases, (1, 1), (pad, pad))
    b, h, w, _ = y.shape
    y = y.reshape(b, h, w, s, s, cout).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(b, h * s, w * s, cout)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def strided_conv(x: jax.Array, kernel: jax.Array, s: int, p: int) -> jax.Array:
    """``_conv`` with stride ``s`` and padding ``p``, whose input gradient runs
    as :func:`subpixel_conv`.

    The forward pass is the plain strided convolution (so inference is
    unchanged to the bit). Its input gradient is a transposed convolution of
    the cotangent, which JAX lowers to an input-dilated convolution: XLA's
    CPU backend runs those on a slow generic path (a 64-channel 5x5 stride-2
    layer at 64x64, batch 8, one core: 126 ms for the input gradient vs 20 ms
    forward). The same gradient as sub-pixel phases costs about a forward pass.
    """
    return _conv(x, kernel, (s, s), ((p, p), (p, p)))


def _strided_fwd(x, kernel, s, p):
    return strided_conv(x, kernel, s, p), (x, kernel)


def _strided_bwd(s, p, res, g):
    x, kernel = res
    k = kernel.shape[0]
    h, w = x.shape[1:3]
    _, vjp_kernel = jax.vjp(lambda kk: _conv(x, kk, (s, s), ((p, p), (p, p))), kernel)
    # Small maps (h_a's) are faster the usual way (8x8 cotangent: 7 vs 13 ms).
    if h == s * g.shape[1] and w == s * g.shape[2] and g.shape[1] * g.shape[2] >= 256:
        # d/dx: conv(dilate(g, s), flipped kernel, in/out swapped), padding
        # (k - 1 - p, k + s - 2 - (k - 1 - p)): exactly subpixel_conv's geometry.
        flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
        dx = subpixel_conv(g, flipped, s, k - 1 - p)
    else:  # sizes that are not multiples of s: JAX's own gradient
        _, vjp_x = jax.vjp(lambda xx: _conv(xx, kernel, (s, s), ((p, p), (p, p))), x)
        dx = vjp_x(g)[0]
    return dx, vjp_kernel(g)[0]


strided_conv.defvjp(_strided_fwd, _strided_bwd)


class ResidualBottleneck(nnx.Module):
    """ELIC residual bottleneck block: 1x1 (N -> N/2), 3x3, 1x1 (N/2 -> N), identity skip."""

    def __init__(self, n: int, *, rngs: nnx.Rngs):
        h = max(n // 2, 1)
        self.c1 = Conv(n, h, 1, rngs=rngs)
        self.c2 = Conv(h, h, 3, rngs=rngs)
        self.c3 = Conv(h, n, 1, rngs=rngs)

    def __call__(self, x):
        h = jax.nn.relu(self.c1(x))
        h = jax.nn.relu(self.c2(h))
        return x + self.c3(h)


class _ResidualUnit(ResidualBottleneck):
    """Residual unit of the simplified attention block (Cheng et al. 2020,
    Fig. 3): the bottleneck block with a ReLU after the skip."""

    def __call__(self, x):
        return jax.nn.relu(super().__call__(x))


class Attention(nnx.Module):
    """Simplified attention (Cheng et al. 2020, Sec. 3.3; used by ELIC Fig. 4).

    ``out = x + trunk(x) * sigmoid(mask(x))``, trunk = 3 residual units,
    mask = 3 residual units + 1x1 conv; no non-local block.
    """

    def __init__(self, n: int, *, rngs: nnx.Rngs):
        self.trunk = nnx.List([_ResidualUnit(n, rngs=rngs) for _ in range(3)])
        self.mask = nnx.List([_ResidualUnit(n, rngs=rngs) for _ in range(3)])
        self.mask_out = Conv(n, n, 1, rngs=rngs)

    def __call__(self, x):
        a, b = x, x
        for unit in self.trunk:
            a = unit(a)
        for unit in self.mask:
            b = unit(b)
        return x + a * jax.nn.sigmoid(self.mask_out(b))
