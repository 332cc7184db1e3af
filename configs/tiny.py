"""Seconds-scale CPU config for tests: small transforms, small U-Net, synthetic data."""

from hific_diffusion import configs


def get_config(arg: str = "autoencoder"):
    config = configs.base_config()
    config.name = f"tiny:{arg}"
    config.task = arg
    config.model.N = 16
    config.model.M = 24
    config.model.groups = (4, 4, 8, 8)
    config.model.channel_context = (16, 16)
    # One residual block per stage (ELIC has 3): halves the CPU compile time.
    config.model.res_blocks = 1
    # tiny:hific: the generator has the autoencoder's g_s shape; a small
    # two-level discriminator.
    config.gan.N, config.gan.M, config.gan.res_blocks = 16, 24, 1
    config.gan.disc_channels = 8
    config.gan.disc_layers = 2
    config.gan.latent_channels = 4
    config.diffusion.unet.base_channels = 16
    config.diffusion.unet.channel_mult = (1, 2)
    config.diffusion.unet.num_res_blocks = 1
    config.diffusion.unet.attn_resolutions = (16,)
    config.diffusion.unet.resolution = 32
    config.diffusion.unet.compute_dtype = "float32"
    config.diffusion.unet.side_channels = 3 if arg == "hfdplus" else 0
    config.diffusion.steps = 4
    config.diffusion.tile = 32
    config.diffusion.overlap = 8
    config.diffusion.tile_chunk = 4
    config.train.steps = 20
    config.train.batch_size = 4
    config.train.lr = 1e-3
    config.train.warmup_steps = 2
    config.train.log_every = 5
    config.train.ckpt_every = 10
    config.data.source = "synthetic"
    config.data.crop = 64
    config.eval.dataset = "synthetic"
    config.eval.decoders = ("mse",)
    config.eval.random_init = True  # without --bundle/--workdir: plumbing run, numbers meaningless
    config.eval.fid_patch = 32  # the synthetic images are smaller than 256
    config.eval.baselines = ("jpeg", "webp")
    config.eval.kid_subset_size = 50
    return config
