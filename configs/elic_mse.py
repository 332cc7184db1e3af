"""Stage 1: the ELIC autoencoder trained for rate + MSE (HFD Sec. 3.1).

Usage: ``--config=elic_mse:<bpp>`` with <bpp> one of the target bitrates
below; each maps to a rate-distortion lambda in
``loss = bpp + lmbda * 255^2 * MSE``.

Sources and assumptions (checked 2026-11-23):
- Architecture: ELIC (He et al., CVPR 2022): N=192, M=320, groups
  [16, 16, 32, 64, M-128], 3 residual bottleneck blocks per stage.
- Lambdas: the first five of CompressAI's MSE grid
  (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.18; the grid of
  Balle et al. 2018 / Minnen et al. 2018, used by CompressAI's ELIC and mbt
  training scripts), in the same units as our loss (lambda * 255^2 * MSE).
  ELIC trains its own grid of lambdas that we could not verify offline.
- The target-bpp labels are an ASSUMPTION (not measured here): HFD does not
  publish its lambdas, so the label-to-lambda mapping is a guess that the
  rate grows with lambda. Check the rate a trained model reaches
  (``Codec.estimate_bpp`` / real bpp in the evaluation) before quoting a label.
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
        raise configs.ConfigError(
            f"elic_mse: unknown rate {arg!r}; choose one of {sorted(LAMBDAS)}"
        )
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
