"""The default model's recipe, trained on the photo corpus (Debian-packaged
photographs + the scikit-image / scikit-learn photos; held-out split never
trained on). ``--config=photos:<task>:<rate>`` with task ``autoencoder``,
``diffusion``, ``flow``, ``hfdplus`` or ``hific`` (HiFiC's GAN decoder) and
rate one of ``RATES``.

Gather the photos first (offline copies of Debian packages, sha256-pinned):

    python -m hific_diffusion.data.photo_corpus --out ~/.cache/hific_diffusion/photos

Sized for 2 CPU cores (one core per run): ELIC with one residual block per
stage, N=64, M=160 (quality per CPU-hour; ASSUMPTION: chosen by step time, not
by a sweep). The rate points are separate models: the middle one trains from
scratch, the others start from it (fine-tuning to another lambda converges
far faster than a new run; ``train.init_from``).
"""

import os

from hific_diffusion import configs

# target real bpp on the held-out photos -> lambda (loss = bpp + lmbda * 255^2 * MSE).
# ASSUMPTION: starting values from CompressAI's grid; check the real bpp.
RATES = {"0.15": 0.0035, "0.3": 0.0090, "0.6": 0.0250}
DATA = os.environ.get("HFD_PHOTOS", os.path.expanduser("~/.cache/hific_diffusion/photos"))


def get_config(arg: str = "autoencoder:0.3"):
    task, _, rate = arg.partition(":")
    rate = rate or "0.3"
    if rate not in RATES:
        raise configs.ConfigError(f"photos: unknown rate {rate!r}; choose one of {sorted(RATES)}")
    config = configs.base_config()
    config.name = f"photos:{task}:{rate}"
    config.task = task
    m = config.model
    m.N, m.M = 64, 160
    m.groups = (16, 16, 32, 32, 64)
    m.channel_context = (96, 64)
    m.res_blocks = 1
    m.lmbda = RATES[rate]
    # photos:hific:<rate>: the generator has this autoencoder's g_s shape
    # (it starts from it); a three-level discriminator at half HiFiC's width.
    # ASSUMPTION: sized for 2 CPU cores (64 px crops, batch 8), not a sweep.
    g = config.gan
    g.N, g.M, g.res_blocks = m.N, m.M, m.res_blocks
    g.disc_channels = 32
    g.disc_layers = 3
    t = config.train
    t.steps = 200_000
    t.batch_size = 8
    t.lr = 3e-4
    t.warmup_steps = 0
    t.grad_clip = 1.0
    t.ema_decay = 0.999
    t.ema_warmup = 10  # short runs: an unwarmed EMA still holds init weights
    t.log_every = 100
    t.ckpt_every = 1000
    t.num_samples = 1
    config.data.source = "folder"
    config.data.path = os.path.join(DATA, "train")
    config.data.crop = 128
    # Stage 2 (``diffusion`` / ``flow``): a small three-level U-Net on 64 px
    # crops of the photos, conditioned on the frozen autoencoder of the same
    # rate (``train.autoencoder_checkpoint``, default runs/photos/ae_<rate>).
    # ASSUMPTION: the demo's U-Net size (one core ~1 step/s); the diffusion
    # models the scaled residual (x - x_mse) / residual_scale (CDC-style):
    # x_mse then fixes the content and the model only has detail to learn.
    d = config.diffusion
    d.target = "residual"
    d.residual_scale = 0.25
    u = d.unet
    u.base_channels = 32
    u.channel_mult = (1, 2, 2)
    u.num_res_blocks = 1
    u.attn_resolutions = ()
    u.mid_attention = False
    u.norm_groups = 8
    u.resolution = 64
    u.compute_dtype = "float32"  # CPU: bf16 is emulated and slower
    # photos:hfdplus:<rate>: HFD+, the diffusion decoder also given the
    # residual-energy map (side information; diffusion/hfdplus.py).
    u.side_channels = 3 if task == "hfdplus" else 0
    d.steps = 16
    d.tile = 64
    d.overlap = 16
    d.tile_chunk = 16
    if task != "autoencoder":
        config.data.crop = 64
        t.lr = 2e-4
        t.warmup_steps = 100
        t.autoencoder_checkpoint = os.path.join("runs", "photos", f"ae_{rate}")
    if task == "hific":
        t.lr = 1e-4  # ASSUMPTION: HiFiC's Adam rate (tfc configs.py) for both players
    config.eval.dataset = "folder"
    config.eval.data_dir = os.path.join(DATA, "heldout")
    return config
