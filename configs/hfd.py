"""Stage 2: the HFD conditional diffusion decoder (Hoogeboom et al. 2023).

Sources: HFD Sec. 3 and 4: v-prediction, cosine schedule shifted by
eta = 0.5 (logsnr + 2 log 2), U-Net conditioned on the MSE reconstruction.
HFD does not list its U-Net; ASSUMPTION: the ADM-style 256x256 shape
(widths 128-512 over six levels) with 3 residual blocks per level,
attention at the 16x16 and 8x8 levels and dropout 0.1 (Dhariwal & Nichol
2021, 256x256 models). ``diffusers_equiv`` is the peer-benchmark shape.
"""

from hific_diffusion import configs


def get_config(arg: str = "0.12"):
    config = configs.base_config()
    config.name = f"hfd:{arg}"
    config.task = "diffusion"
    config.diffusion.eta = 0.5
    config.diffusion.parameterization = "v"
    u = config.diffusion.unet
    u.base_channels = 128
    u.channel_mult = (1, 1, 2, 2, 4, 4)
    u.num_res_blocks = 3
    u.attn_resolutions = (16, 8)
    u.resolution = 256
    u.dropout = 0.1
    u.compute_dtype = "bfloat16"
    config.diffusion.steps = 250
    config.diffusion.tile = 256
    config.diffusion.overlap = 64
    config.train.batch_size = 32
    config.train.lr = 1e-4
    config.data.source = "folder"
    config.data.crop = 256
    return config
