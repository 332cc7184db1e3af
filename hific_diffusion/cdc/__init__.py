"""CDC (Yang & Mandt, "Lossy Image Compression with Conditional Diffusion
Models", NeurIPS 2023): a content latent learned end to end with a
conditional diffusion decoder (x-parameterization). ``model.py`` holds the
network and its loss, ``decode.py`` the DDIM decoder, ``defaults.py`` the
``cdc`` config section."""
