"""Peak signal-to-noise ratio on uint8 images (data range 255), as reported in HFD Sec. 5."""

import numpy as np

from hific_diffusion.metrics.errors import check_pair


def psnr(a, b) -> float:
    """PSNR in dB of two uint8 HxWx3 images: 10 log10(255^2 / MSE) over all pixels and channels.

    Identical images give ``inf``. Computed in float64 so the result does not
    depend on the platform.
    """
    a, b = check_pair(a, b, "psnr")
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(255.0**2 / mse))
