"""Default config section for the stage-1 autoencoder (ELIC, He et al. 2022)."""

import ml_collections

# Pixels per latent: g_a downsamples by 16 (y), h_a by 4 more (z). An image is
# padded to a multiple of Z_STRIDE before coding (``container.py``).
Y_STRIDE = 16
Z_STRIDE = 64


def model_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            # ELIC Sec. 4.1: N=192 channels in the transforms, M=320 latent channels.
            N=192,
            M=320,
            # ELIC Sec. 3.2: uneven channel groups; the last is M - 128.
            groups=(16, 16, 32, 64, 192),
            # Hidden widths of the channel context g_ch^(k) (three 5x5 convs;
            # ELIC / CompressAI Elic2022Official: 224, 128).
            channel_context=(224, 128),
            # ELIC Fig. 4: residual bottleneck blocks per stage of g_a / g_s.
            res_blocks=3,
            # Hidden widths of the factorized prior of z (Balle et al. 2018's
            # density model, as CompressAI's EntropyBottleneck: filters 3,3,3).
            prior_filters=(3, 3, 3),
            # Rate-distortion trade-off: loss = bpp + lmbda * 255^2 * MSE.
            lmbda=0.0130,
            # Gaussian scale table for the integer coding path. sigma is
            # bounded below by scale_min (also in training); indices pick the
            # log-nearest table scale. 128 log-spaced scales keep the table
            # quantization cost small (ratio 1.063 between neighbours).
            num_scales=128,
            scale_min=0.11,
            scale_max=256.0,
            # Integer entropy-parameter path (coding/intnet.py): activations are
            # fixed point with this many fractional bits, saturated to int16.
            int_frac_bits=8,
            compute_dtype="float32",
            # Initialisation of the convolutions (autoencoder/layers.py conv_init):
            # "pytorch" (PyTorch's default, what CompressAI's ELIC trains from)
            # or "lecun". ASSUMPTION: neither paper states one; "pytorch"
            # learned faster per step in our side-by-side run (bench/).
            init="pytorch",
        )
    )
