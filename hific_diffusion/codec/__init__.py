"""Image -> bits -> x_mse: the ELIC autoencoder and its bit-exact coding path.

Float model (trained, HFD Sec. 3.1): ``layers`` (convolutions, residual bottleneck
and attention blocks), ``transforms`` (g_a / g_s / h_a / h_s), ``priors`` (factorized prior of
z), ``context`` (channel groups + checkerboard), ``quantize``,
``entropy_model`` (Gaussian likelihoods), ``autoencoder`` (``ELIC``, the RD loss).

Coding path (exact on every machine): ``intnet`` (the hyper/context networks in
integer fixed point), ``tables`` (quantized CDFs), ``range_coder``,
``bitstream`` (the .hfd container), ``valid`` (size buckets and the masked
region), ``coding`` (encode / decode latents, the fingerprint), ``rate`` (rate breakdown).
``compressai_import`` loads CompressAI ELIC weights. DESIGN.md has the data flow.
"""
