"""Image -> latents -> x_mse: the float ELIC autoencoder that stage 1 trains.

First step of the data flow (DESIGN.md): an image goes through g_a to the
latents y, through h_a to the hyper-latents z; g_s turns the decoded latents
back into the MSE reconstruction x_mse, which the generative decoders
(``diffusion/``) start from. Everything here is float and differentiable.

``layers`` (convolutions, residual bottleneck and attention blocks),
``transforms`` (g_a / g_s / h_a / h_s), ``priors`` (the factorized prior of
z), ``context`` (channel groups + checkerboard, the one ``group_params``),
``quantize`` (training's quantization proxies), ``entropy_model`` (Gaussian
likelihoods of y), ``elic`` (``ELIC``, the rate-distortion loss), ``valid``
(size buckets and the masked region every convolution honours),
``defaults`` (the ``model`` config section, pixels per latent),
``compressai_import`` (CompressAI ELIC weights into ``ELIC``).

``coding/`` turns these latents into bits and back, exactly; it imports this
package, never the reverse (``compressai_import`` alone checks a CompressAI
scale table against ``coding.tables``).
"""
