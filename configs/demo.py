"""The bundled default model: trained on the offline photos that
scikit-image and scikit-learn ship, a few held out for evaluation.

Small enough to ship in the repository and run on a 2-core CPU.
"""

from hific_diffusion import configs


def get_config(arg: str = "autoencoder"):
    config = configs.base_config()
    config.name = f"demo:{arg}"
    config.task = arg
    config.model.N = 64
    config.model.M = 96
    config.model.groups = (8, 8, 16, 32, 32)
    config.diffusion.unet.base_channels = 32
    config.diffusion.unet.channel_mult = (1, 2, 2)
    config.diffusion.unet.num_res_blocks = 1
    config.diffusion.unet.attn_resolutions = ()
    config.diffusion.unet.resolution = 128
    config.diffusion.steps = 16
    config.diffusion.tile = 128
    config.diffusion.overlap = 32
    config.train.steps = 20_000
    config.train.batch_size = 8
    config.data.source = "offline_photos"
    config.data.crop = 128
    config.eval.dataset = "demo"
    config.eval.decoders = ("mse", "diffusion", "flow")
    return config
