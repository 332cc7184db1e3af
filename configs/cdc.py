"""CDC (Yang & Mandt, NeurIPS 2023): a content latent learned end to end
with a conditional diffusion decoder, x0-prediction (task ``cdc``).

    --config=cdc          paper scale (encoder 64..256, U-Net 64..384 over
                          six levels), 256 px crops; for an accelerator
    --config=cdc:demo     CPU scale: narrow networks, 64 px crops, a few
                          thousand steps on 2 cores
    --config=cdc:tiny     seconds-scale plumbing config for the tests

    python -m hific_diffusion.train --config=cdc:demo --workdir=runs/cdc/demo
    python -m hific_diffusion.export --workdir=runs/cdc/demo --out=runs/cdc/bundle

``--config.cdc.beta`` sets the rate (CDC's lambda), ``--config.cdc.perceptual_weight``
rho (0 or 0.9 in the paper).
"""

from hific_diffusion import configs
from hific_diffusion.errors import UsageError

VARIANTS = ("paper", "demo", "tiny")


def get_config(arg: str = "paper"):
    if arg not in VARIANTS:
        raise UsageError(f"cdc:{arg}: expected one of {', '.join(VARIANTS)}")
    config = configs.base_config()
    config.name = f"cdc:{arg}"
    config.task = "cdc"
    cdc = config.cdc
    # eval --bundle <a CDC bundle>: its one decoder (the HFD ones are not its).
    config.eval.decoders = ("cdc",)
    if arg == "paper":
        # ASSUMPTION: batch 8 of 256 px crops, lr 1e-4, 1M steps (the
        # paper's training length was not available to us).
        config.data.crop = 256
        config.train.batch_size = 8
        config.train.lr = 1e-4
        config.train.steps = 1_000_000
        return config
    # CPU scales: every width cut; the shapes keep CDC's structure (4 encoder
    # and 4 context stages, context on the U-Net's first levels).
    cdc.unet.compute_dtype = "float32"  # CPU: bf16 is emulated and slower
    cdc.unet.mid_attention = False
    cdc.unet.attn_resolutions = ()
    if arg == "demo":
        cdc.encoder_widths = (32, 48, 64, 64)
        cdc.hyper_channels = 48
        cdc.context_widths = (64, 48, 32, 16)
        cdc.unet.base_channels = 16
        cdc.unet.channel_mult = (1, 2, 3, 4)
        cdc.unet.context_channels = (16, 32, 48, 64)
        cdc.unet.num_res_blocks = 1
        cdc.unet.norm_groups = 8
        cdc.unet.resolution = 64
        cdc.steps = 16  # ASSUMPTION: fewer than CDC's 65 to decode on a CPU
        config.data.source = "offline_photos"
        config.data.crop = 64
        config.train.batch_size = 8
        config.train.lr = 2e-4
        config.train.warmup_steps = 50
        config.train.schedule = "cosine"
        config.train.min_lr_ratio = 0.1
        config.train.ema_decay = 0.995
        config.train.steps = 3000
        config.train.log_every = 50
        config.train.ckpt_every = 250
        config.train.num_samples = 1
        config.eval.dataset = "demo"
        return config
    # tiny
    cdc.encoder_widths = (8, 8, 16, 16)
    cdc.hyper_channels = 8
    cdc.prior_filters = (3, 3)
    cdc.num_scales = 16
    cdc.context_widths = (16, 8, 8, 8)
    cdc.unet.base_channels = 8
    cdc.unet.channel_mult = (1, 2)
    cdc.unet.context_channels = (8, 8)
    cdc.unet.num_res_blocks = 1
    cdc.unet.norm_groups = 4
    cdc.unet.resolution = 64
    cdc.steps = 3
    config.data.source = "synthetic"
    config.data.crop = 64
    config.train.steps = 6
    config.train.batch_size = 2
    config.train.lr = 1e-3
    config.train.warmup_steps = 1
    config.train.log_every = 2
    config.train.ckpt_every = 3
    config.train.num_samples = 0
    return config
