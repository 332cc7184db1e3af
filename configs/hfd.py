"""Stage 2: the HFD conditional diffusion decoder (Hoogeboom et al. 2023).

Sources: HFD Sec. 3 and 4: v-prediction, cosine schedule shifted by
eta = 0.5 (logsnr + 2 log 2), U-Net conditioned on the MSE reconstruction.
The U-Net widths below follow the common 256x256 ADM-style shape; HFD does
not list its exact U-Net, so its size is an ASSUMPTION.
"""

from hific_diffusion import configs


def get_config(arg: str = "0.12"):
    config = configs.base_config()
    config.name = f"hfd:{arg}"
    config.task = "diffusion"
    config.diffusion.eta = 0.5
    config.diffusion.parameterization = "v"
    config.train.batch_size = 32
    config.train.lr = 1e-4
    config.data.source = "folder"
    config.data.crop = 256
    return config
