"""HiFiC's GAN decoder (Mentzer et al., NeurIPS 2020) on the frozen autoencoder's latents.

``models``: the generator (g_s's architecture, warm-started from the frozen
autoencoder's g_s) and the conditional PatchGAN discriminator with spectral
normalisation (``layers``); ``losses``: HiFiC's generator and discriminator
losses; ``defaults``: the ``gan`` config section; ``decode``: the generator at
a size bucket or in tiles, as g_s runs.
"""
