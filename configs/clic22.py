"""Evaluation protocol: CLIC 2022 test set (30 images of about 2048 px), as reported in HFD.

Metrics: real bpp, PSNR, MS-SSIM, LPIPS per image; FID/256 and KID/256
over 256x256 patches (HiFiC protocol, Mentzer et al. 2020).
"""

from hific_diffusion import configs


def get_config(arg: str = ""):
    return configs.eval_protocol("clic22")
