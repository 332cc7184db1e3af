"""Run a convolutional network on a padded array and get, on the region that
matters, what it computes on that region alone (issue #13, "few shapes").

The coder runs its networks on a few padded sizes (buckets) instead of
compiling once per image size. Padding changes nothing inside the region only
if every spatial operation sees zeros outside it, as the zero padding of the
unpadded array would: so, inside :func:`region`, every convolution wider than
1x1 (float :class:`hific_diffusion.autoencoder.layers.Conv` and integer
:class:`hific_diffusion.coding.intnet.IntConv`) first zeroes its input outside
the region, at its own resolution. 1x1 convolutions and pointwise operations
cannot carry the padding's values into the region. For the integer path that
makes the result on the region identical bit for bit; for float networks
identical up to float rounding.

The region is given in pixels of the (padded) image, ``coded_hw`` (traced, so
one compilation serves every size in a bucket) out of ``bucket_hw`` (static);
an activation of height ``h`` keeps rows ``< coded_h * h // bucket_h``, exact
because both are multiples of 64 and activations are 1/2^k of the image.
"""

from __future__ import annotations

import contextlib
import contextvars

import jax
import jax.numpy as jnp

# Heights and widths the networks run at (issue #13): a coded size is padded up
# to the next side here (multiples of 1024 above the last), and
# region() makes the padding invisible (bit-exact in the integer path,
# float rounding in g_a / g_s). So a folder of photos compiles once per bucket
# pair, not once per size, at the price of computing some padding (at most
# 1.5x per side from 512 up; 768x512 and 512x768 are buckets themselves).
BUCKET_SIDES = (64, 128, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)


def bucket_side(n: int) -> int:
    for side in BUCKET_SIDES:
        if n <= side:
            return side
    return -(-n // 1024) * 1024


def bucket_hw(coded_hw) -> tuple[int, int]:
    """The (height, width) the networks run at for a coded (padded) size
    (and the metrics for an image of any size: ``metrics/lpips.py``)."""
    return bucket_side(int(coded_hw[0])), bucket_side(int(coded_hw[1]))


_REGION = contextvars.ContextVar("valid_region", default=None)


@contextlib.contextmanager
def region(bucket_hw, coded_hw):
    """Convolutions traced inside see only ``coded_hw`` (int32 [2], may be
    traced) of arrays laid out like an image of ``bucket_hw`` pixels."""
    token = _REGION.set((tuple(int(v) for v in bucket_hw), coded_hw))
    try:
        yield
    finally:
        _REGION.reset(token)


def mask(x: jax.Array) -> jax.Array:
    """``x`` (NHWC) with everything outside the current region zeroed; ``x``
    itself outside :func:`region`."""
    return fill_outside(x, 0)


def fill_outside(x: jax.Array, value) -> jax.Array:
    """``x`` (NHWC) with ``value`` outside the current region (e.g. likelihood
    1 there, so the padding costs no bits); ``x`` itself outside :func:`region`."""
    current = _REGION.get()
    if current is None:
        return x
    (bh, bw), coded = current
    h, w = x.shape[1], x.shape[2]
    if (h * 64) % bh or (w * 64) % bw:
        raise ValueError(f"activation {h}x{w} is not 1/2^k (k <= 6) of the {bh}x{bw} layout")
    vh = coded[0] * h // bh
    vw = coded[1] * w // bw
    rows = jax.lax.broadcasted_iota(jnp.int32, (1, h, w, 1), 1) < vh
    cols = jax.lax.broadcasted_iota(jnp.int32, (1, h, w, 1), 2) < vw
    return jnp.where(rows & cols, x, jnp.asarray(value, x.dtype))
