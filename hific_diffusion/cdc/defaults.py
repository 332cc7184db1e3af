"""Default ``cdc`` config section (Yang & Mandt 2023, CDC; the reference
design is github.com/buggyyang/CDC_compression, x-parameterization)."""

import ml_collections

from hific_diffusion.diffusion.defaults import unet_config


def cdc_config() -> ml_collections.ConfigDict:
    unet = unet_config()
    # The denoiser: widths 64..384 over six levels, no x_mse input, the
    # first four levels given the context features (64, 128, 192, 256
    # channels at full, 1/2, 1/4, 1/8 resolution).
    # ASSUMPTION: two residual blocks per level and attention at 16 px
    # (the project's U-Net blocks), not CDC's exact blocks.
    unet.base_channels = 64
    unet.channel_mult = (1, 2, 3, 4, 5, 6)
    unet.cond_channels = 0
    unet.context_channels = (64, 128, 192, 256)
    # The U-Net's scalar input is t in [0, 1] (time embedding of t / T);
    # 1000 spreads it over the Fourier frequencies like a DDPM step index.
    unet.fourier_scale = 1000.0
    return ml_collections.ConfigDict(
        dict(
            # Content encoder: one [ResNet block + stride-2 5x5 conv] stage
            # per width; y has the last width's channels at 1/16 resolution.
            # ASSUMPTION: 5x5 stride-2 convolutions (as ELIC's g_a), leaky
            # ReLU between stages, no normalisation layers.
            encoder_widths=(64, 128, 192, 256),
            # Hyperprior: h_a = 3 convs (3x3, two stride-2 5x5) to 1/64, N
            # channels; h_s = two stride-2 transposed 5x5 and a 3x3 conv giving
            # (scale, mean) of every channel of y. ASSUMPTION: N = 256.
            hyper_channels=256,
            prior_filters=(3, 3, 3),
            # Scale table of the Gaussian conditional; the floor 0.1 is CDC's.
            num_scales=64,
            scale_min=0.1,
            scale_max=256.0,
            int_frac_bits=8,
            # Context network: [ResNet block + 4x4 stride-2 transposed conv]
            # per width, y_hat -> features at 1/8, 1/4, 1/2, 1 of the image.
            context_widths=(256, 192, 128, 64),
            unet=unet,
            # Loss: beta * bpp + (1 - rho) * min(SNR, snr_max) * x-MSE
            # + rho * LPIPS(x, x0_pred) (CDC Eq. 9); rho in {0, 0.9}.
            # ASSUMPTION: beta = 0.0128 (one of the paper's range), the MSE
            # on [-1, 1] images averaged per pixel.
            beta=0.0128,
            perceptual_weight=0.0,
            perceptual_net="vgg16",
            snr_max=5.0,
            # Cosine schedule (eta = 1: unshifted), log-SNR clipped for finite ends.
            eta=1.0,
            logsnr_min=-15.0,
            logsnr_max=15.0,
            train_t=(0.0, 1.0),
            # Decoding: DDIM, 65 steps, the starting noise scaled by 0.8, x0 clipped.
            sampler="ddim",
            steps=65,
            init_scale=0.8,
            clip_x=True,
            noise_level=0.0,
        )
    )
