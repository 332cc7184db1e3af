"""Evaluation protocol: MS-COCO 30k (val 2014 captions subset), full-image FID as in HFD Table 2.

Metrics: real bpp, PSNR, MS-SSIM, LPIPS per image; FID/256 and KID/256
over 256x256 patches (HiFiC protocol, Mentzer et al. 2020).
"""

from hific_diffusion import configs


def get_config(arg: str = ""):
    config = configs.base_config()
    config.name = "coco30k"
    config.eval.dataset = "coco30k"
    config.eval.decoders = ("mse", "diffusion", "flow")
    return config
