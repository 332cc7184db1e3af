"""FID and KID over InceptionV3 pool3 features, with HiFiC's FID/256 patching.

* Frechet distance (Heusel et al. 2017, Eq. 6) between Gaussians fitted to the
  two feature sets, computed in float64 with ``scipy.linalg.sqrtm``.
* KID (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel
  k(x, y) = (x.y / d + 1)^3, averaged over random subsets.
* FID/256 (Mentzer et al. 2020, HiFiC Sec. 4 / App. A.7, used by HFD Sec. 5):
  each image is cut into non-overlapping 256x256 patches, and when both H and
  W are at least 384 a second grid shifted by 128 in both directions is added;
  partial patches at the borders are dropped. Patches (uint8) are resized to
  the Inception input as ``inception.preprocess`` states. COCO-30k uses the
  whole image instead (``patch=0``), as in HFD Table 2.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from flax import nnx

from hific_diffusion.metrics import inception, inception_weights
from hific_diffusion.metrics.errors import MetricError


def patches(image: np.ndarray, size: int = 256) -> np.ndarray:
    """FID/256 patches of one uint8 HxWx3 image -> uint8 [P, size, size, 3] (P may be 0)."""
    h, w = image.shape[:2]
    out = []
    offsets = [0] + ([size // 2] if h >= size + size // 2 and w >= size + size // 2 else [])
    for off in offsets:
        for y in range(off, h - size + 1, size):
            for x in range(off, w - size + 1, size):
                out.append(image[y : y + size, x : x + size])
    if not out:
        return np.zeros((0, size, size, 3), np.uint8)
    return np.stack(out)


def num_patches(h: int, w: int, size: int = 256) -> int:
    """Closed form of ``len(patches(...))`` for an HxW image (HiFiC protocol)."""
    n = (h // size) * (w // size)
    if h >= size + size // 2 and w >= size + size // 2:
        n += ((h - size // 2) // size) * ((w - size // 2) // size)
    return n


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of [N, D] features, float64."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise MetricError(f"FID needs at least 2 feature vectors, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), float64 (Heusel et al. 2017)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        # Singular product (fewer samples than dimensions): regularise as pytorch-fid does.
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    return frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))


def kid(real, fake, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0):
    """Kernel Inception Distance: (mean, std) of unbiased MMD^2 over random subsets."""
    x, y = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    m = min(subset_size, len(x), len(y))
    if m < 2:
        raise MetricError(f"KID needs at least 2 samples per set, got {len(x)} and {len(y)}")
    d = x.shape[1]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        a = x[rng.choice(len(x), m, replace=False)]
        b = y[rng.choice(len(y), m, replace=False)]
        kxx = (a @ a.T / d + 1) ** 3
        kyy = (b @ b.T / d + 1) ** 3
        kxy = (a @ b.T / d + 1) ** 3
        mmd = (
            (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
            + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2.0 * kxy.mean()
        )
        values.append(mmd)
    return float(np.mean(values)), float(np.std(values))


class InceptionFeatures:
    """pool3 features of uint8 images. ``weights``: path, None (standard lookup) or "random"."""

    def __init__(self, weights: str | None = None, *, batch_size: int = 16, download=True):
        if weights == "random":
            model = inception.random_model()
            self.source = "random init (numbers NOT comparable to published FID)"
        else:
            path = inception_weights.locate(weights, download=download)
            model = inception.abstract_model()
            inception_weights.load_into(model, inception_weights.load_file(path))
            self.source = str(path)
        self.graphdef, self.state = nnx.split(model)
        self.batch_size = batch_size

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] -> float64 [N, 2048]; fixed-size batches avoid recompiles."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise MetricError(f"Inception wants uint8 [N,H,W,3], got {images.dtype} {images.shape}")
        out = []
        for i in range(0, len(images), self.batch_size):
            chunk = images[i : i + self.batch_size]
            pad = self.batch_size - len(chunk)
            batch = np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)]) if pad else chunk
            feats = inception.pool3_features(self.graphdef, self.state, jnp.asarray(batch))
            out.append(np.asarray(jax.device_get(feats), np.float64)[: len(chunk)])
        if not out:
            return np.zeros((0, inception.FEATURES), np.float64)
        return np.concatenate(out)


def try_features(weights: str | None, **kw) -> InceptionFeatures | None:
    """The feature extractor, or None with a warning when the weights cannot be had."""
    try:
        return InceptionFeatures(weights, **kw)
    except inception_weights.WeightsError as e:
        warnings.warn(f"FID/KID skipped: {e}", stacklevel=2)
        return None
