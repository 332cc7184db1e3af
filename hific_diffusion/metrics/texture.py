"""A texture statistic: how much fine detail an image has, relative to the
original (issue #12: a generative decoder must add detail, and detail that is
not just noise).

``highpass_energy`` is the mean squared 4-neighbour Laplacian of the luma
(grey = mean of R, G, B; in [0, 1]). ``texture_ratio(original, recon)`` is
the reconstruction's energy over the original's: an MSE reconstruction at a
low rate is blurred (ratio well below 1), a decoder that restores texture
brings it towards 1, and one that adds noise pushes it above 1. Reported per
image by the evaluation beside PSNR and LPIPS, which catch the other half
(noise lowers PSNR, wrong texture raises LPIPS).
"""

from __future__ import annotations

import numpy as np

from hific_diffusion.metrics.errors import MetricError, check_pair


def highpass_energy(img) -> float:
    """Mean squared Laplacian of the luma of a uint8 HxWx3 image (>= 3x3)."""
    g = np.asarray(img, np.float64).mean(-1) / 255.0
    if min(g.shape) < 3:
        raise MetricError(f"highpass_energy needs at least 3x3 pixels, got {g.shape}")
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return float(np.mean(lap**2))


def texture_ratio(original, recon) -> float:
    """``highpass_energy(recon) / highpass_energy(original)``; inf for a flat original."""
    a, b = check_pair(original, recon, "texture_ratio")
    ref = highpass_energy(a)
    return highpass_energy(b) / ref if ref > 0 else float("inf")
