"""Evaluation protocol: MS-COCO 30k (30,000 images of val2014), FID over whole images.

HFD reports FID on MS-COCO 30k besides CLIC. ASSUMPTION: the table and the
exact preprocessing (resizing, crop) could not be checked offline; images are
evaluated whole, as given.

Metrics: real bpp, PSNR, MS-SSIM, LPIPS per image; FID and KID over whole
images (``eval.fid_patch = 0``).
"""

from hific_diffusion import configs


def get_config(arg: str = ""):
    return configs.eval_protocol("coco30k", fid_patch=0)
