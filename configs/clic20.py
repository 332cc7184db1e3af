"""Evaluation protocol: the CLIC 2020 test set, professional (250) plus mobile
(178) images = 428, HiFiC's and HFD's main benchmark (HFD Fig. 3).

Metrics: real bpp, PSNR, MS-SSIM, LPIPS per image; FID/256 and KID/256
over 256x256 patches (HiFiC protocol, Mentzer et al. 2020).
"""

from hific_diffusion import configs


def get_config(arg: str = ""):
    return configs.eval_protocol("clic20")
