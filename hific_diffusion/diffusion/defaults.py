"""Default config section for the stage-2 generative decoder (HFD Sec. 3)."""

import ml_collections


def diffusion_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            # HFD: eta = 0.5 -> logsnr shift = 2 log(1/eta) = +1.386 (SNR x4).
            eta=0.5,
            logsnr_min=-15.0,
            logsnr_max=15.0,
            parameterization="v",
            unet=ml_collections.ConfigDict(
                dict(
                    base_channels=128,
                    channel_mult=(1, 1, 2, 2, 4, 4),
                    num_res_blocks=2,
                    attn_resolutions=(16,),
                    dropout=0.0,
                    compute_dtype="bfloat16",
                )
            ),
            sampler="ddpm",
            steps=250,
            noise_level=0.0,
            tile=256,
            overlap=64,
            tile_chunk=16,
        )
    )
