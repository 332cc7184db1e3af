"""InceptionV3 as used for FID (Heusel et al. 2017), in Flax NNX.

Structurally identical to the network in pytorch-fid (``FIDInceptionA/C/E``
blocks, themselves a port of TF's ``inception-2015-12-05`` graph): the
average-pool branches exclude padding from the count, the last block pools
with max instead of average, and batch norm uses eps = 1e-3. Attribute names
follow pytorch-fid's state-dict names (``Mixed_5b.branch1x1.conv.weight``) so
loading is a mechanical transpose. Only pool3 (2048-d) is computed; the
1008-way logits layer of the weights file is not used by FID.

Input convention (``preprocess``): uint8 NHWC -> float in [0, 1] -> bilinear
resize to 299x299 (half-pixel centres, no antialiasing, as
``torch.nn.functional.interpolate(align_corners=False)`` in pytorch-fid) ->
scaled to [-1, 1].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

INPUT_SIZE = 299
FEATURES = 2048


def preprocess(x_uint8: jax.Array) -> jax.Array:
    """uint8 [N, H, W, 3] -> float32 [N, 299, 299, 3] in [-1, 1] (see module docstring)."""
    x = x_uint8.astype(jnp.float32) / 255.0
    if x.shape[1:3] != (INPUT_SIZE, INPUT_SIZE):
        shape = (x.shape[0], INPUT_SIZE, INPUT_SIZE, 3)
        x = jax.image.resize(x, shape, method="bilinear", antialias=False)
    return 2.0 * x - 1.0


def _max_pool(x, size=3, stride=2, pad=0):
    return nnx.max_pool(x, (size, size), (stride, stride), ((pad, pad), (pad, pad)))


def _avg_pool_exclude_pad(x):
    """3x3 stride-1 average pool, padding 1, padded zeros not counted (count_include_pad=False)."""
    window, strides, pad = (1, 3, 3, 1), (1, 1, 1, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pad)
    ones = jnp.ones((1, *x.shape[1:3], 1), x.dtype)
    count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, strides, pad)
    return total / count


class BasicConv(nnx.Module):
    """Conv (no bias) + batch norm (eps 1e-3, running statistics) + ReLU."""

    def __init__(self, cin, cout, kernel, *, stride=1, padding=(0, 0), rngs: nnx.Rngs):
        kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
        padding = (padding, padding) if isinstance(padding, int) else padding
        self.conv = nnx.Conv(
            cin, cout, kernel, strides=stride, padding=[(p, p) for p in padding],
            use_bias=False, rngs=rngs,
        )  # fmt: skip
        self.bn = nnx.BatchNorm(cout, epsilon=1e-3, use_running_average=True, rngs=rngs)

    def __call__(self, x):
        return jax.nn.relu(self.bn(self.conv(x)))


class InceptionA(nnx.Module):
    def __init__(self, cin, pool_features, *, rngs):
        self.branch1x1 = BasicConv(cin, 64, 1, rngs=rngs)
        self.branch5x5_1 = BasicConv(cin, 48, 1, rngs=rngs)
        self.branch5x5_2 = BasicConv(48, 64, 5, padding=2, rngs=rngs)
        self.branch3x3dbl_1 = BasicConv(cin, 64, 1, rngs=rngs)
        self.branch3x3dbl_2 = BasicConv(64, 96, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3 = BasicConv(96, 96, 3, padding=1, rngs=rngs)
        self.branch_pool = BasicConv(cin, pool_features, 1, rngs=rngs)

    def __call__(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool_exclude_pad(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nnx.Module):
    def __init__(self, cin, *, rngs):
        self.branch3x3 = BasicConv(cin, 384, 3, stride=2, rngs=rngs)
        self.branch3x3dbl_1 = BasicConv(cin, 64, 1, rngs=rngs)
        self.branch3x3dbl_2 = BasicConv(64, 96, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3 = BasicConv(96, 96, 3, stride=2, rngs=rngs)

    def __call__(self, x):
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return jnp.concatenate([b3, bd, _max_pool(x)], axis=-1)


class InceptionC(nnx.Module):
    def __init__(self, cin, c7, *, rngs):
        self.branch1x1 = BasicConv(cin, 192, 1, rngs=rngs)
        self.branch7x7_1 = BasicConv(cin, c7, 1, rngs=rngs)
        self.branch7x7_2 = BasicConv(c7, c7, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch7x7_3 = BasicConv(c7, 192, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7dbl_1 = BasicConv(cin, c7, 1, rngs=rngs)
        self.branch7x7dbl_2 = BasicConv(c7, c7, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7dbl_3 = BasicConv(c7, c7, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch7x7dbl_4 = BasicConv(c7, c7, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7dbl_5 = BasicConv(c7, 192, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch_pool = BasicConv(cin, 192, 1, rngs=rngs)

    def __call__(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                      self.branch7x7dbl_4, self.branch7x7dbl_5):  # fmt: skip
            bd = layer(bd)
        bp = self.branch_pool(_avg_pool_exclude_pad(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nnx.Module):
    def __init__(self, cin, *, rngs):
        self.branch3x3_1 = BasicConv(cin, 192, 1, rngs=rngs)
        self.branch3x3_2 = BasicConv(192, 320, 3, stride=2, rngs=rngs)
        self.branch7x7x3_1 = BasicConv(cin, 192, 1, rngs=rngs)
        self.branch7x7x3_2 = BasicConv(192, 192, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch7x7x3_3 = BasicConv(192, 192, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7x3_4 = BasicConv(192, 192, 3, stride=2, rngs=rngs)

    def __call__(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        return jnp.concatenate([b3, b7, _max_pool(x)], axis=-1)


class InceptionE(nnx.Module):
    """``max_pool_branch``: FID's Mixed_7c pools with max, Mixed_7b with average (pad excluded)."""

    def __init__(self, cin, *, max_pool_branch: bool, rngs):
        self.max_pool_branch = max_pool_branch
        self.branch1x1 = BasicConv(cin, 320, 1, rngs=rngs)
        self.branch3x3_1 = BasicConv(cin, 384, 1, rngs=rngs)
        self.branch3x3_2a = BasicConv(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
        self.branch3x3_2b = BasicConv(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
        self.branch3x3dbl_1 = BasicConv(cin, 448, 1, rngs=rngs)
        self.branch3x3dbl_2 = BasicConv(448, 384, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3a = BasicConv(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
        self.branch3x3dbl_3b = BasicConv(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
        self.branch_pool = BasicConv(cin, 192, 1, rngs=rngs)

    def __call__(self, x):
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = jnp.concatenate([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], axis=-1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = jnp.concatenate([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], axis=-1)
        pooled = _max_pool(x, 3, 1, 1) if self.max_pool_branch else _avg_pool_exclude_pad(x)
        return jnp.concatenate([b1, b3, bd, self.branch_pool(pooled)], axis=-1)


class FIDInceptionV3(nnx.Module):
    """``model(x)`` for x in [-1, 1], [N, 299, 299, 3] -> pool3 features float32[N, 2048]."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.Conv2d_1a_3x3 = BasicConv(3, 32, 3, stride=2, rngs=rngs)
        self.Conv2d_2a_3x3 = BasicConv(32, 32, 3, rngs=rngs)
        self.Conv2d_2b_3x3 = BasicConv(32, 64, 3, padding=1, rngs=rngs)
        self.Conv2d_3b_1x1 = BasicConv(64, 80, 1, rngs=rngs)
        self.Conv2d_4a_3x3 = BasicConv(80, 192, 3, rngs=rngs)
        self.Mixed_5b = InceptionA(192, 32, rngs=rngs)
        self.Mixed_5c = InceptionA(256, 64, rngs=rngs)
        self.Mixed_5d = InceptionA(288, 64, rngs=rngs)
        self.Mixed_6a = InceptionB(288, rngs=rngs)
        self.Mixed_6b = InceptionC(768, 128, rngs=rngs)
        self.Mixed_6c = InceptionC(768, 160, rngs=rngs)
        self.Mixed_6d = InceptionC(768, 160, rngs=rngs)
        self.Mixed_6e = InceptionC(768, 192, rngs=rngs)
        self.Mixed_7a = InceptionD(768, rngs=rngs)
        self.Mixed_7b = InceptionE(1280, max_pool_branch=False, rngs=rngs)
        self.Mixed_7c = InceptionE(2048, max_pool_branch=True, rngs=rngs)

    def __call__(self, x):
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = _max_pool(x)
        x = _max_pool(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)))
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a,
                      self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e,
                      self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):  # fmt: skip
            x = block(x)
        return jnp.mean(x, axis=(1, 2))


def abstract_model() -> FIDInceptionV3:
    """The model with shape-only variables (cheap; for inspection and loading)."""
    return nnx.eval_shape(lambda: FIDInceptionV3(rngs=nnx.Rngs(0)))


def random_model(seed: int = 0) -> FIDInceptionV3:
    """Random weights drawn in numpy (He-scaled kernels, unit batch norm), for tests.

    Much faster on CPU than running the 94 Flax initialisers one by one.
    """
    model = abstract_model()
    rng = np.random.default_rng(seed)
    state = nnx.state(model)
    for path, var in nnx.to_flat_state(state):
        shape, leaf = var.get_value().shape, path[-1]
        if leaf == "kernel":
            fan_in = shape[0] * shape[1] * shape[2]
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        elif leaf in ("scale", "var"):
            value = np.ones(shape)
        else:
            value = np.zeros(shape)
        var.set_value(jnp.asarray(value, jnp.float32))
    nnx.update(model, state)
    return model


@jax.jit
def pool3_features(graphdef, state, x_uint8):
    """Jitted hot path: uint8 [N, H, W, 3] -> float32 [N, 2048]."""
    model = nnx.merge(graphdef, state)
    return model(preprocess(x_uint8))
