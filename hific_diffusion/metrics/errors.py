"""The one exception metric code raises for unusable inputs."""

from hific_diffusion.errors import HfdError


class MetricError(HfdError, ValueError):
    """Inputs a metric cannot be computed on (wrong dtype, shape mismatch, missing weights)."""


def check_pair(a, b, name: str):
    """Validate two uint8 HxWx3 images of the same shape; return them as numpy arrays."""
    import numpy as np

    a, b = np.asarray(a), np.asarray(b)
    for x in (a, b):
        if x.dtype != np.uint8:
            raise MetricError(f"{name} expects uint8 images, got {x.dtype}")
        if x.ndim != 3 or x.shape[-1] != 3:
            raise MetricError(f"{name} expects HxWx3 images, got shape {x.shape}")
    if a.shape != b.shape:
        raise MetricError(f"{name}: image shapes differ, {a.shape} vs {b.shape}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise MetricError(f"{name}: empty image {a.shape}")
    return a, b
