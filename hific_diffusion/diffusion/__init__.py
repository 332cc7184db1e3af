"""x_mse -> image: the generative decoders of HFD (Sec. 3.2, 3.3).

``unet`` (the conditional U-Net), ``schedules`` / ``parameterization`` (log-SNR
schedules, v / eps / x and the rectified flow), ``losses`` (training losses),
``samplers`` (ancestral, DDIM, Euler steps), ``stepper`` (the one compiled
sampling loop), ``patches`` / ``grouped`` (tiled decoding: blended overlaps or
groups of non-neighbours), ``decode`` (the sampler spec and ``generate``, what
``pipeline.Codec`` calls), ``flops``.
"""
