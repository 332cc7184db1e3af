"""Stage 2: the HFD conditional diffusion decoder (Hoogeboom et al. 2023).

Sources: HFD Sec. 3 and 4: v-prediction, cosine schedule shifted by
eta = 0.5 (logsnr + 2 log 2), U-Net conditioned on the MSE reconstruction.
HFD does not list its U-Net; ASSUMPTION: the ADM-style 256x256 shape
(widths 128-512 over six levels) with 3 residual blocks per level,
attention at the 16x16 and 8x8 levels and dropout 0.1 (Dhariwal & Nichol
2021, 256x256 models). ``diffusers_equiv`` is the peer-benchmark shape.

``--config=hfd:<bpp>`` picks the stage-1 rate point (one of ``elic_mse``'s):
the model section is that run's, and the frozen autoencoder is read from
``runs/elic_mse_<bpp>`` unless ``--config.train.autoencoder_checkpoint``
says otherwise. ASSUMPTION (not given in HFD): the stage-2 batch 32, lr 1e-4
and the trainer's default EMA 0.999 and warm-up.
"""

from hific_diffusion import configs


def get_config(arg: str = "0.12"):
    config = configs.load(f"elic_mse:{arg}")  # an unknown rate fails here
    config.name = f"hfd:{arg}"
    config.task = "diffusion"
    config.train.autoencoder_checkpoint = f"runs/elic_mse_{arg}"
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
    config.train.steps = 1_000_000
    config.data.source = "folder"
    config.data.crop = 256
    return config
