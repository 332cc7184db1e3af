"""Stage 1: the ELIC autoencoder trained for rate + MSE (HFD Sec. 3.1).

Usage: ``--config=elic_mse:<bpp>`` with <bpp> one of the target bitrates
below; each maps to a rate-distortion lambda in
``loss = bpp + lmbda * 255^2 * MSE``.

Sources: the architecture is ELIC (He et al., CVPR 2022; N=192, M=320,
groups [16, 16, 32, 64, M-128]). The lambda values are CompressAI's MSE
lambdas for its ELIC/mbt models; HFD does not publish its lambdas, so the
mapping from target bitrate to lambda is an ASSUMPTION, to be checked
against the bitrate a trained model actually reaches.
"""

from hific_diffusion import configs

# target bpp (approximate, CLIC-like images) -> lambda. ASSUMPTION (see above).
LAMBDAS = {
    "0.06": 0.0018,
    "0.12": 0.0035,
    "0.25": 0.0067,
    "0.40": 0.0130,
    "0.60": 0.0250,
}


def get_config(arg: str = "0.12"):
    if arg not in LAMBDAS:
        raise ValueError(f"elic_mse: unknown rate {arg!r}; choose one of {sorted(LAMBDAS)}")
    config = configs.base_config()
    config.name = f"elic_mse:{arg}"
    config.task = "autoencoder"
    config.model.lmbda = LAMBDAS[arg]
    # ELIC Sec. 4.1 trains with batch 16 on 256x256 crops, Adam 1e-4.
    config.train.batch_size = 16
    config.train.lr = 1e-4
    config.train.steps = 2_000_000
    config.data.source = "folder"
    config.data.crop = 256
    return config
