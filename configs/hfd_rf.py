"""Stage 2 variant: a rectified flow from the MSE reconstruction to the image.

Sources: HFD Sec. 3.3 (flow decoder, strongest at few Euler steps). Same
U-Net and training settings as ``hfd`` (loaded from it); ASSUMPTION: a
source noise of 0.1 (in [-1, 1] units) around x_mse.
"""

from hific_diffusion import configs


def get_config(arg: str = "0.12"):
    config = configs.load(f"hfd:{arg}")
    config.name = f"hfd_rf:{arg}"
    config.task = "flow"
    config.diffusion.sampler = "euler"
    config.diffusion.steps = 8
    config.diffusion.flow_noise = 0.1
    return config
