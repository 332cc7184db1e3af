"""Stage 2 variant: a rectified flow from the MSE reconstruction to the image.

Sources: HFD Sec. 3.3 (flow decoder, strongest at few Euler steps). Same
U-Net as ``hfd``; ASSUMPTION: the same width and training schedule.
"""

from hific_diffusion import configs


def get_config(arg: str = "0.12"):
    config = configs.base_config()
    config.name = f"hfd_rf:{arg}"
    config.task = "flow"
    config.diffusion.sampler = "euler"
    config.diffusion.steps = 8
    config.train.batch_size = 32
    config.data.source = "folder"
    config.data.crop = 256
    return config
