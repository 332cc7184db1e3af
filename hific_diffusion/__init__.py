"""hific_diffusion: learned image compression with score-based generative decoders.

After Hoogeboom et al., "High-Fidelity Image Compression with Score-based
Generative Models", arXiv 2305.18231 (HFD).
"""

__version__ = "0.1.0"
