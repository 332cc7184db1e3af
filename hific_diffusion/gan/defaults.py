"""Default ``gan`` config section: HiFiC's decoder (generator, discriminator, losses)."""

import ml_collections

# tfc models/hific/configs.py ("hific"): Loss = C * (R / lambda + CD * D) + CP * GAN
# + lpips_weight * LPIPS, with D the MSE of images in [0, 255], C = 0.1 * 2^-5,
# CD = 0.75 (so k_M = C * CD = 0.075 * 2^-5), CP (the GAN weight) = 0.15,
# lpips_weight = 1.
K_M_255 = 0.075 * 2.0**-5


def gan_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            # Generator: g_s's architecture (autoencoder/transforms.py), so it
            # starts from the frozen autoencoder's g_s; these must equal the
            # autoencoder's model.N, model.M and model.res_blocks.
            N=192,
            M=320,
            res_blocks=3,
            # Discriminator (tfc archs.py _PatchDiscriminatorCompareGANImpl):
            # the latent through a 3x3 conv to latent_channels, LeakyReLU,
            # nearest-upsampled to the image and concatenated to it; then
            # disc_layers 4x4 stride-2 convs from disc_channels (doubling, at
            # most 512), a 4x4 stride-1 conv and a 4x4 conv to one logit per
            # patch; spectral norm on every conv, power_iterations per step.
            disc_channels=64,
            disc_layers=3,
            latent_channels=12,
            power_iterations=1,
            # Generator loss: mse_weight * MSE + lpips_weight * LPIPS +
            # gan_weight * (non-saturating GAN loss), images in [0, 1].
            # ASSUMPTION: tfc's weights with its [0, 255] MSE rescaled to
            # [0, 1] images (k_M * 255^2 = 152.4), so the three terms keep
            # tfc's balance; no rate term (the autoencoder is frozen).
            mse_weight=K_M_255 * 255.0**2,
            lpips_weight=1.0,
            gan_weight=0.15,
            # LPIPS network of the loss: HiFiC's is AlexNet.
            lpips_net="alexnet",
        )
    )
