"""Multi-scale SSIM (Wang, Simoncelli, Bovik 2003), as used for HFD's and HiFiC's MS-SSIM.

Follows ``tf.image.ssim_multiscale`` (which HiFiC reports): uint8 inputs with
data range 255, K1 = 0.01, K2 = 0.03, an 11x11 Gaussian window with sigma 1.5
applied in 'valid' mode, 5 scales with weights (0.0448, 0.2856, 0.3001, 0.2363,
0.1333), 2x2 average pooling between scales (odd sizes padded by repeating the
last row/column first), contrast-structure terms of scales 1..4 and the full
SSIM of scale 5 clipped at 0, the product taken per channel, then averaged over
the RGB channels. Like TensorFlow, a window larger than a coarse scale is
shrunk to that scale's size (same sigma, renormalised).
"""

import numpy as np
from scipy import ndimage

from hific_diffusion.metrics.errors import check_pair

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
K1, K2 = 0.01, 0.03
WINDOW, SIGMA = 11, 1.5


def gaussian_window(size: int = WINDOW, sigma: float = SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian taps, centred (the 2-D window is their outer product)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable correlation over H and W of an HxWxC float64 array, 'valid' region only."""
    y = ndimage.correlate1d(x, taps, axis=0, mode="constant")
    y = ndimage.correlate1d(y, taps, axis=1, mode="constant")
    r = len(taps) // 2
    left, right = r, len(taps) - 1 - r
    return y[left : y.shape[0] - right, left : y.shape[1] - right]


def ssim_components(a: np.ndarray, b: np.ndarray, data_range: float = 255.0):
    """Mean SSIM and mean contrast-structure term per channel (Wang et al. 2004, Eq. 13).

    ``a``, ``b``: float64 HxWxC. Returns two float64[C] arrays.
    """
    size = min(WINDOW, a.shape[0], a.shape[1])
    taps = gaussian_window(size, SIGMA)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    mu_a, mu_b = _filter_valid(a, taps), _filter_valid(b, taps)
    var_a = _filter_valid(a * a, taps) - mu_a**2
    var_b = _filter_valid(b * b, taps) - mu_b**2
    cov = _filter_valid(a * b, taps) - mu_a * mu_b
    luminance = (2.0 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
    cs = (2.0 * cov + c2) / (var_a + var_b + c2)
    return (luminance * cs).mean(axis=(0, 1)), cs.mean(axis=(0, 1))


def _downsample(x: np.ndarray) -> np.ndarray:
    """2x2 average pooling; an odd size is first padded by repeating its last row/column."""
    pad = ((0, x.shape[0] % 2), (0, x.shape[1] % 2), (0, 0))
    x = np.pad(x, pad, mode="symmetric")
    return 0.25 * (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2])


def ms_ssim(a, b) -> float:
    """MS-SSIM of two uint8 HxWx3 images (Wang et al. 2003, Eq. 7), in [0, 1]."""
    a, b = check_pair(a, b, "ms_ssim")
    x, y = a.astype(np.float64), b.astype(np.float64)
    terms = []
    for scale, _ in enumerate(WEIGHTS):
        ssim, cs = ssim_components(x, y)
        terms.append(ssim if scale == len(WEIGHTS) - 1 else cs)
        if scale < len(WEIGHTS) - 1:
            x, y = _downsample(x), _downsample(y)
    terms = np.maximum(np.stack(terms), 0.0)  # [scales, C]
    per_channel = np.prod(terms ** np.asarray(WEIGHTS)[:, None], axis=0)
    return float(per_channel.mean())
