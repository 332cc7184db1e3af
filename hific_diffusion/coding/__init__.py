"""Latents <-> bits, bit-exact on every machine: the second step of the data flow.

Between the float analysis (``autoencoder/``: image -> y, z) and the float
synthesis (y_hat -> x_mse) sits everything that must agree bit for bit
between encoder and decoder (DESIGN.md, "What is exact, and what is float"):
``intnet`` (h_s and the context networks in integer fixed point), ``tables``
(the scale table and the quantized pmfs a model's coder uses), ``range_coder``
(constriction, with the escape code), ``coding`` (encode / decode latents in
coding order, the model fingerprint), ``bitstream`` (the ``.hfd`` container:
header, sections, CRC32) and ``rate`` (where the bits go: float estimate vs
integer path vs coded bytes).

Imports ``autoencoder/`` (the model it codes, its context and masked region);
``container.py`` and ``pipeline.Codec`` sit on top.
"""
