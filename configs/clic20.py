"""Evaluation protocol: CLIC 2020 professional test set (428 images), HFD's main benchmark (Fig. 3).

Metrics: real bpp, PSNR, MS-SSIM, LPIPS per image; FID/256 and KID/256
over 256x256 patches (HiFiC protocol, Mentzer et al. 2020).
"""

from hific_diffusion import configs


def get_config(arg: str = ""):
    config = configs.base_config()
    config.name = "clic20"
    config.eval.dataset = "clic20"
    config.eval.decoders = ("mse", "diffusion", "flow")
    return config
