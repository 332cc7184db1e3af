"""The default model's recipe, trained on the photo corpus (Debian-packaged
photographs + the scikit-image / scikit-learn photos; held-out split never
trained on). ``--config=photos:<task>:<rate>`` with task ``autoencoder``,
``diffusion`` or ``flow`` and rate one of ``RATES``.

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
        raise ValueError(f"photos: unknown rate {rate!r}; choose one of {sorted(RATES)}")
    config = configs.base_config()
    config.name = f"photos:{task}:{rate}"
    config.task = task
    m = config.model
    m.N, m.M = 64, 160
    m.groups = (16, 16, 32, 32, 64)
    m.channel_context = (96, 64)
    m.res_blocks = 1
    m.lmbda = RATES[rate]
    t = config.train
    t.steps = 200_000
    t.batch_size = 8
    t.lr = 3e-4
    t.warmup_steps = 0
    t.grad_clip = 1.0
    t.ema_decay = 0.999
    t.log_every = 100
    t.ckpt_every = 1000
    t.num_samples = 1
    config.data.source = "folder"
    config.data.path = os.path.join(DATA, "train")
    config.data.crop = 128
    config.eval.dataset = "folder"
    config.eval.data_dir = os.path.join(DATA, "heldout")
    return config
