"""Default config section for the stage-2 generative decoder (HFD Sec. 3)."""

import ml_collections


def unet_config() -> ml_collections.ConfigDict:
    """The conditional U-Net (HFD Sec. 3; layout after Ho et al. 2020 / ADM).

    The default shape equals the diffusers ``UNet2DModel`` the peer figures
    use (block widths 128,128,256,256,512,512, 2 blocks per level, attention
    at the 16x16 level of a 256x256 input): 113.7 M parameters.

    ASSUMPTION: x_mse conditions the U-Net by channel concatenation with z_t
    (``unet.py``), not from a cited source.
    """
    return ml_collections.ConfigDict(
        dict(
            base_channels=128,
            channel_mult=(1, 1, 2, 2, 4, 4),
            num_res_blocks=2,
            # Feature-map sizes (for an input of ``resolution`` pixels) that
            # get self-attention; a tile of another size keeps the same levels.
            attn_resolutions=(16,),
            resolution=256,
            mid_attention=True,
            head_dim=64,
            norm_groups=32,
            dropout=0.0,
            # Scale of log-SNR before the sinusoidal Fourier features, so the
            # usual [-15, 15] range spans the frequencies like t in [0, 1000].
            fourier_scale=1000.0 / 30.0,
            out_channels=3,
            # Extra conditioning channels after x_mse: 0 (HFD) or 3 (HFD+'s
            # per-channel residual-energy map, task "hfdplus").
            side_channels=0,
            # Image channels the noisy input is concatenated with: 3 (x_mse, HFD)
            # or 0 (CDC: the U-Net sees z_t alone and is conditioned through
            # context_channels).
            cond_channels=3,
            # CDC (Yang & Mandt 2023): the first len(context_channels) levels
            # concatenate a context feature of their resolution (that many
            # channels, level 0 = full resolution) to their input. () = none.
            context_channels=(),
            compute_dtype="bfloat16",
            param_dtype="float32",
        )
    )


def diffusion_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            # HFD: eta = 0.5 -> logsnr shift = 2 log(1/eta) = +1.386 (SNR x4).
            eta=0.5,
            logsnr_min=-15.0,
            logsnr_max=15.0,
            parameterization="v",
            # What the diffusion models, in [-1, 1] model space: "image" (HFD:
            # the image x itself, conditioned on x_mse) or "residual" (the
            # scaled residual (x - x_mse) / residual_scale, as in Yang & Mandt's
            # CDC: x_mse then fixes the coarse content exactly and the model
            # only generates detail; the sampler's clip_x is then not applied).
            target="image",
            residual_scale=0.25,
            # Weight of the per-example v-MSE: "v" (1), "x" (sigma^2, i.e. the
            # x-MSE), "eps" (alpha^2, i.e. the eps-MSE), "snr_trunc"
            # (max(SNR, 1) * x-MSE, Salimans & Ho 2022).
            # ASSUMPTION: "v" (unit weight) is our choice, not from a cited source.
            loss_weighting="v",
            # rho of CDC (Yang & Mandt 2023, Eq. 9): the stage-2 loss becomes
            # (1 - rho) * (its MSE) + rho * LPIPS(x, x0_pred), with x0_pred the
            # image the network's output implies at that noise level, and
            # LPIPS on ``perceptual_net`` ("alexnet" | "vgg16"; CDC: VGG).
            # 0 is HFD's plain loss.
            perceptual_weight=0.0,
            perceptual_net="vgg16",
            # Training draws t ~ U(lo, hi) (t = 1: pure noise for diffusion; t = 0:
            # the flow's source). A sampler of few steps visits only large
            # diffusion t (small flow t): e.g. (0.8, 1.0) for a 1-2 step
            # diffusion decoder spends the training there. (0, 1) is HFD's.
            train_t=(0.0, 1.0),
            unet=unet_config(),
            # "ddpm" (ancestral) | "ddim" for task diffusion; the flow always
            # uses "euler". Any other name is an error when the section is read
            # (decode.SamplerSpec). ASSUMPTION: "ddpm", and clip_x below, are our
            # choices, not from a cited source.
            sampler="ddpm",
            # ASSUMPTION for the flow: its step count (configs/hfd_rf: 8) is ours,
            # not from a cited source.
            steps=250,
            # 0: posterior variance (lower bound), 1: forward-process variance
            # (upper bound); log-space interpolation (Nichol & Dhariwal 2021).
            # ASSUMPTION: the value 0 is ours, not from a cited source.
            noise_level=0.0,
            clip_x=True,
            # Rectified flow (HFD Sec. 3.3): source = x_mse + flow_noise * N(0, I)
            # in [-1, 1] model space.
            flow_noise=0.1,
            # Patch-parallel decode: tile 0 = the whole image as one tile.
            # ASSUMPTION: tile 256 / overlap 64 are ours, not from a cited source.
            tile=256,
            overlap=64,
            tile_chunk=16,
            # "overlap": all tiles denoised together every step, merged with a
            # smooth window; "grouped": tiles in groups of non-neighbours,
            # later groups conditioned on the already generated neighbours.
            tile_mode="overlap",
            # HFD+ (task "hfdplus", with unet.side_channels = 3): the map of
            # residual energy sent as side information (hfdplus.py).
            # ASSUMPTION (the paper's construction was not available): per
            # channel the mean |x - x_mse| (in [0, 1] pixel units) over
            # block x block pixels, quantized on a log scale to ``levels``
            # levels: 0 below min_energy, then one level per factor ``ratio``.
            hfdplus=ml_collections.ConfigDict(
                dict(block=16, levels=8, min_energy=1.0 / 255.0, ratio=2.0)
            ),
        )
    )
