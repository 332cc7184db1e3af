"""Image quality metrics on uint8 HxWx3 images: PSNR, MS-SSIM, LPIPS, FID/KID.

``metrics.psnr`` and ``metrics.ms_ssim`` are imported here; ``metrics.lpips``
and ``metrics.fid`` load networks and are imported on use.
"""

from hific_diffusion.metrics.errors import MetricError
from hific_diffusion.metrics.ms_ssim import ms_ssim
from hific_diffusion.metrics.psnr import psnr

__all__ = ["MetricError", "ms_ssim", "psnr"]
