"""ELIC space-channel context model (He et al., CVPR 2022, Sec. 3.2-3.3, Fig. 5).

y is split into uneven channel groups (``config.model.groups``, e.g. 16, 16,
32, 64, M-128). Group k is coded after groups 0..k-1 (channel context), and
inside the group the checkerboard split of He et al. 2021 applies: anchors
(``(i + j)`` even) are coded first with no spatial context, non-anchors then
see the anchors through a masked 5x5 convolution. Spatial context, channel
context and hyper features meet in a stack of 1x1 convolutions (parameter
aggregation) that outputs (sigma, mu) for the group. The widths and orders
are those of CompressAI's ``Elic2022Official``.

:func:`group_params` is the ONE definition of this computation. It is
duck-typed over the network object: training passes the float
:class:`SpaceChannelContext`, coding passes its fixed-point mirror
(:class:`hific_diffusion.coding.intnet.IntContext`), which has the same
``spatial``/``channel``/``aggregate`` lists of convolutions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hific_diffusion.autoencoder.layers import Conv

ANCHOR, NONANCHOR = 0, 1


def checkerboard(h: int, w: int, which: int) -> np.ndarray:
    """Bool [1, h, w, 1]: anchors are (i + j) even, non-anchors (i + j) odd."""
    ij = np.add.outer(np.arange(h), np.arange(w))
    return ((ij % 2) == which)[None, :, :, None]


def checkerboard_traced(h, w, which: int) -> jax.Array:
    """:func:`checkerboard` built from iotas, so h and w may be symbolic
    (``jax.export`` shape polymorphism; see :mod:`hific_diffusion.stablehlo`)."""
    i = jax.lax.broadcasted_iota(jnp.int32, (1, h, w, 1), 1)
    j = jax.lax.broadcasted_iota(jnp.int32, (1, h, w, 1), 2)
    return (i + j) % 2 == which


class MaskedConv(Conv):
    """5x5 conv that only sees the anchor neighbours of a non-anchor position.

    From a non-anchor centre, the anchors sit at offsets with (di + dj) odd.
    """

    def __init__(self, cin, cout, k, *, rngs):
        super().__init__(cin, cout, k, rngs=rngs)
        d = np.arange(k) - k // 2
        self.mask = (np.add.outer(d, d) % 2 == 1).astype(np.float32)[:, :, None, None]

    def effective_kernel(self, kernel=None):
        if kernel is None:
            return self.kernel[...] * self.mask
        return kernel * np.asarray(self.mask)


def chain(convs, x):
    """Convolutions with ReLU between them (works on float and fixed-point ints)."""
    for i, conv in enumerate(convs):
        x = conv(x)
        if i < len(convs) - 1:
            x = jnp.maximum(x, 0)
    return x


def aggregation_widths(cin: int, cout: int, floor: int) -> tuple[int, ...]:
    """Widths of the 3-layer parameter aggregation: a linear ramp from ``cin``
    to ``cout`` (rounded down), hidden widths at least ``floor`` (= 2N).

    The layout of CompressAI's ``Elic2022Official`` (``sequential_channel_ramp``),
    so its trained weights import exactly (autoencoder/compressai_import.py).
    """
    ramp = [(cin * (3 - i) + cout * i) // 3 for i in range(4)]
    return (cin, max(ramp[1], floor), max(ramp[2], floor), cout)


def _convs(dims, k: int, rngs) -> nnx.List:
    return nnx.List([Conv(a, b, k, rngs=rngs) for a, b in zip(dims[:-1], dims[1:], strict=True)])


class SpaceChannelContext(nnx.Module):
    """Float context networks of ELIC (Fig. 5), laid out like CompressAI's
    ``Elic2022Official``:

    * spatial g_sp^(k): masked 5x5 conv, c_k -> 2 c_k;
    * channel g_ch^(k), k > 0: three 5x5 convs, sum(c_<k) -> ``channel_widths``
      -> 2 c_k (ELIC and CompressAI: 224, 128);
    * aggregation: three 1x1 convs over [spatial, channel, hyper (2N)], widths
      from :func:`aggregation_widths`, output (scale, mean) for 2 c_k channels.
    """

    def __init__(self, n: int, m: int, groups, channel_widths=(224, 128), *, rngs: nnx.Rngs):
        # Positive groups summing to M, positive widths: elic.check_config.
        groups = tuple(int(g) for g in groups)
        widths = tuple(int(w) for w in channel_widths)
        self.groups = groups
        self.spatial, self.channel, self.aggregate = nnx.List(), nnx.List(), nnx.List()
        for k, c in enumerate(groups):
            self.spatial.append(nnx.List([MaskedConv(c, 2 * c, 5, rngs=rngs)]))
            if k > 0:
                dims = (sum(groups[:k]), *widths, 2 * c)
                self.channel.append(_convs(dims, 5, rngs))
            else:
                self.channel.append(nnx.List())
            cin = 2 * c + (2 * c if k > 0 else 0) + 2 * n
            dims = aggregation_widths(cin, 2 * c, 2 * n)
            self.aggregate.append(_convs(dims, 1, rngs))


class MeanScale(nnx.Module):
    """No context at all: the mean-scale hyperprior of Minnen et al. 2018
    (without its autoregressive part), as CDC's content coder uses it.

    One group of all M channels with empty spatial, channel and aggregation
    networks; :func:`group_params` then reads (scale, mean) straight from the
    hyper features (h_s outputs 2M channels). The same coding order, integer
    path (``coding/intnet.py``) and tables as ELIC's context serve it; the
    checkerboard's two stages simply get the same parameters.
    """

    def __init__(self, m: int):
        self.groups = (int(m),)
        self.spatial = nnx.List([nnx.List()])
        self.channel = nnx.List([nnx.List()])
        self.aggregate = nnx.List([nnx.List()])


def split_groups(y, groups):
    return jnp.split(y, np.cumsum(groups)[:-1], axis=-1)


def channel_context(net, k: int, y_prev):
    """g_ch^(k)(y_hat of groups < k); None for k = 0. The same for both
    checkerboard stages of group k, so a coder computes it once per group."""
    return chain(net.channel[k], y_prev) if k > 0 else None


def group_params(net, k: int, hyper, y_prev, y_anchor, channel=None):
    """(mu, sigma_raw) of group k at every position (ELIC Eq. 6-8).

    ``hyper``: h_s output (2N channels); ``y_prev``: y_hat of groups < k
    concatenated (ignored for k = 0); ``y_anchor``: y_hat of group k with the
    non-anchors zeroed (anything, e.g. zeros, when only anchors are wanted:
    the anchors' parameters never depend on it). Non-anchor entries are only
    valid once ``y_anchor`` holds the decoded anchors. ``channel``: the
    :func:`channel_context` of ``y_prev`` if already computed.
    """
    if not len(net.aggregate[k]):  # MeanScale: the hyper features are (scale, mean)
        sigma, mu = jnp.split(hyper, 2, axis=-1)
        return mu, sigma
    h, w = hyper.shape[1:3]
    nonanchor = checkerboard_traced(h, w, NONANCHOR)
    spatial = chain(net.spatial[k], jnp.where(nonanchor, 0, y_anchor))
    # Input order [spatial, channel, hyper] and output order (scale, mean)
    # as in CompressAI, so imported aggregation weights line up.
    parts = [jnp.where(nonanchor, spatial, 0), hyper]
    if k > 0:
        parts.insert(1, channel_context(net, k, y_prev) if channel is None else channel)
    out = chain(net.aggregate[k], jnp.concatenate(parts, axis=-1))
    sigma, mu = jnp.split(out, 2, axis=-1)
    return mu, sigma


def training_params(net, hyper, y, quantize):
    """Parameters for all of y in coding order, as the training forward pass needs them.

    ``quantize(y_k, mu_k) -> y_hat_k`` is applied stage by stage (anchors, then
    non-anchors of each group), so every stage sees exactly what a decoder
    would have decoded before it. Returns (mu, sigma, y_hat), each like y.
    """
    h, w = y.shape[1:3]
    anchor = jnp.asarray(checkerboard(h, w, ANCHOR))
    mus, sigmas, y_hats = [], [], []
    for k, y_k in enumerate(split_groups(y, net.groups)):
        y_prev = jnp.concatenate(y_hats, axis=-1) if k else None
        mu_a, s_a = group_params(net, k, hyper, y_prev, jnp.zeros(y_k.shape, hyper.dtype))
        y_hat_a = jnp.where(anchor, quantize(y_k, mu_a), 0)
        mu_n, s_n = group_params(net, k, hyper, y_prev, y_hat_a)
        mu = jnp.where(anchor, mu_a, mu_n)
        sigma = jnp.where(anchor, s_a, s_n)
        mus.append(mu)
        sigmas.append(sigma)
        y_hats.append(jnp.where(anchor, y_hat_a, quantize(y_k, mu_n)))
    cat = lambda xs: jnp.concatenate(xs, axis=-1)  # noqa: E731
    return cat(mus), cat(sigmas), cat(y_hats)
