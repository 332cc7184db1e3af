"""A Codec's decoders by name: the model each runs, the side information it
needs, how the encoder makes it and how the decoder reads it.

* ``mse``: g_s alone. ``diffusion``, ``flow``: their own U-Nets.
* ``corrdiff`` (``diffusion/corrdiff.py``): the diffusion decoder's U-Net,
  corrected at every step by a factor the encoder fitted; available whenever
  ``diffusion`` is; side information ``corrdiff`` (16 bits a step).
* ``hfdplus`` (``diffusion/hfdplus.py``): its own U-Net, conditioned on the
  residual-energy map; side information ``hfdplus``.
* ``hific`` (``gan/``): HiFiC's generator on the latents y_hat (not on
  x_mse); no sampler (deterministic: steps, seed and noise level do not
  apply), no side information.
* ``cdc`` (``cdc/``): the CDC family's one decoder, CDC's own model (its
  content coder writes the latents; DDIM from y_hat). A CDC Codec runs only
  it, an HFD Codec never (``bitstream.FAMILIES``).

``pipeline.Codec`` calls these; they raise ``CodecError`` for a request the
model cannot serve and ``BitstreamError`` for side information that is corrupt.
"""

from __future__ import annotations

import numpy as np

from hific_diffusion import images
from hific_diffusion.coding import bitstream, sideinfo
from hific_diffusion.errors import HfdError

# decoder -> the generative model it runs (None: the autoencoder's g_s)
MODEL = {"mse": None, "diffusion": "diffusion", "flow": "flow", "corrdiff": "diffusion",
         "hfdplus": "hfdplus", "cdc": "cdc", "hific": "hific"}  # fmt: skip
# decoder -> the side-information kind it needs
NEEDS = {"corrdiff": "corrdiff", "hfdplus": "hfdplus"}
# generative model -> its sampler kind (decode.KINDS) and its U-Net's side channels
# (the GAN decoder has neither: it runs no sampler and no U-Net)
KIND = {"diffusion": "diffusion", "flow": "flow", "hfdplus": "diffusion"}
GAN = ("hific",)
# the generative models a Codec can hold, in the order it keeps them
GENERATIVE = ("diffusion", "flow", "hfdplus", "cdc", "hific")
SIDE_CHANNELS = {"diffusion": 0, "flow": 0, "hfdplus": 3}
assert set(MODEL) == set(bitstream.DECODERS)


class CodecError(HfdError, ValueError):
    """A request the Codec cannot serve (e.g. a decoder it was built without)."""


def check_name(decoder) -> None:
    if not isinstance(decoder, str) or decoder not in bitstream.DECODERS:
        raise CodecError(
            f"unknown decoder {decoder!r}; choose one of {', '.join(bitstream.DECODERS)}"
        )


def available(models, family: str = "hfd") -> tuple[str, ...]:
    """The decoders a Codec of ``family`` with generative ``models`` can run,
    in ``DECODERS`` order."""
    names = bitstream.FAMILIES[family]
    return tuple(d for d in names if MODEL[d] is None or MODEL[d] in models)


def collect(config, autoencoder, diffusion=None, flow=None, decoders=None):
    """``Codec.__init__``'s arguments -> ``(family, autoencoder, {name:
    (config section, module)})``, every generative model checked against its
    decoder: a decoder whose config names an unknown sampler, tile mode or
    target fails when the model loads, not at its first use. ``diffusion``
    and ``flow`` are shorthands that sample with ``config.diffusion``. A
    CDC model is its own coder: the family ``cdc``, its module the
    autoencoder."""
    decoders = dict(decoders or {})
    family = "cdc" if "cdc" in decoders else "hfd"
    if family == "cdc":
        if autoencoder is not None or diffusion is not None or flow is not None:
            raise CodecError("a CDC Codec is its CDC model alone (no autoencoder, no U-Nets)")
        if set(decoders) != {"cdc"}:
            raise CodecError(f"a CDC Codec holds no HFD decoders, got {sorted(decoders)}")
        autoencoder = decoders["cdc"][1]
    for name, module in (("diffusion", diffusion), ("flow", flow)):
        if module is not None:
            if name in decoders:
                raise CodecError(f"{name} decoder given twice")
            decoders[name] = (config.diffusion, module)
    unknown = sorted(set(decoders) - set(GENERATIVE))
    if unknown:
        raise CodecError(f"unknown generative decoders {unknown}; known: {GENERATIVE}")
    for name, (section, _) in decoders.items():
        _check_sampler_config(name, section)
        if name != "cdc":
            check_model(name, section, int(autoencoder.m))
    return family, autoencoder, decoders


def _check_sampler_config(name: str, section) -> None:
    try:
        if name == "cdc":
            from hific_diffusion.cdc import decode as cdc_decode  # on use: flax

            cdc_decode.sampler_settings(section)
        elif name in KIND:
            from hific_diffusion.diffusion import decode  # on use: imports flax

            decode.check_args(section, KIND[name])
    except HfdError as e:
        raise CodecError(f"{name} decoder config: {e}") from None


def check_model(name: str, section, latent_channels: int) -> None:
    """A generative model's config section fits its decoder (side channels,
    HFD+'s map parameters; the GAN generator's input is the autoencoder's
    ``latent_channels``); CodecError otherwise."""
    if name in GAN:
        if section.M != latent_channels:
            raise CodecError(
                f"{name} decoder: its generator reads {section.M} latent channels, the "
                f"autoencoder writes {latent_channels}"
            )
        return
    have = section.unet.side_channels
    if have != SIDE_CHANNELS[name]:
        raise CodecError(
            f"{name} decoder: its U-Net has {have} side channels, the decoder feeds "
            f"{SIDE_CHANNELS[name]}"
        )
    if name == "hfdplus":
        from hific_diffusion.diffusion import hfdplus  # on use: imports jax

        try:
            hfdplus.params(section)
        except HfdError as e:
            raise CodecError(f"hfdplus decoder config: {e}") from None


def side_kinds(codec, decoders, hint: str) -> tuple[str, ...]:
    """The side-information kinds ``compress(decoders=..., decoder=hint)``
    writes, checked against what the Codec can run (CodecError). The hint
    alone may name a decoder this model lacks (another may decode the file),
    unless it needs side information."""
    if isinstance(decoders, str):
        decoders = (decoders,)
    if not isinstance(decoders, tuple | list):
        raise CodecError(f"decoders must be a list of decoder names, got {decoders!r}")
    names = list(decoders) + [hint]
    for d in names:
        check_name(d)
    names = list(decoders) + ([hint] if hint in NEEDS else [])
    missing = [d for d in names if d not in codec.decoders]
    if missing:
        raise CodecError(
            f"this model has no {missing[0]} decoder (available: {', '.join(codec.decoders)})"
        )
    return tuple(dict.fromkeys(NEEDS[d] for d in names if d in NEEDS))


def check_sampling(codec, kinds, steps: int, seed: int) -> None:
    """The sampler the encoder will run for ``kinds`` can run (before any work)."""
    if "corrdiff" in kinds:
        from hific_diffusion.diffusion import corrdiff  # on use: imports flax

        try:
            corrdiff.check_args(codec.generative["diffusion"].config, steps or None, seed)
        except HfdError as e:
            raise CodecError(f"corrdiff decoder: {e}") from None


def make_side(codec, kinds, image_u8: np.ndarray, data: bytes) -> tuple:
    """The side-information sections of ``kinds`` for the image ``image_u8``
    (HxWx3) whose latents are ``data``: from the x_mse the decoder will see."""
    header, x_mse = codec.decompress_mse(data)
    x = images.to_unit(image_u8)[None]
    out = []
    for kind in kinds:
        if kind == "corrdiff":
            from hific_diffusion.diffusion import corrdiff  # on use, as above

            gen = codec.generative["diffusion"]
            _, gammas = corrdiff.generate(
                gen.graphdef, gen.state, x_mse, cfg=gen.config, x_true01=x,
                steps=header.steps or None, seed=header.seed,
            )  # fmt: skip
            out.append(sideinfo.pack_gammas(gammas))
        else:
            from hific_diffusion.diffusion import hfdplus  # on use, as above

            cfg = codec.generative["hfdplus"].config
            block, levels, _, _ = hfdplus.params(cfg)
            q = np.asarray(hfdplus.levels_of(x, x_mse, cfg))[0]
            out.append(sideinfo.pack_energy(q, block, levels))
    return tuple(out)


def read_side(codec, decoder: str, header) -> dict:
    """What ``decoder`` needs from the file's side information, as sampler
    arguments: ``{}``, ``{"gammas": ...}`` or ``{"side": ...}``. CodecError
    when the file lacks it; BitstreamError when it is corrupt."""
    kind = NEEDS.get(decoder)
    if kind is None:
        return {}
    side = header.side_info(kind)
    if side is None:
        raise CodecError(
            f"this file has no {kind} side information, which the {decoder} decoder needs "
            f"(compress with --for {decoder})"
        )
    if kind == "corrdiff":
        return {"gammas": sideinfo.unpack_gammas(side)}
    from hific_diffusion.diffusion import hfdplus  # on use, as above

    cfg = codec.generative["hfdplus"].config
    block, levels, _, _ = hfdplus.params(cfg)
    q = sideinfo.unpack_energy(side, header.height, header.width, block, levels)
    return {"side": np.asarray(hfdplus.conditioning(q[None], header.height, header.width, cfg))}


def check_gamma_scale(decoder: str | None, gamma_scale) -> None:
    if gamma_scale is None:
        return
    if decoder is not None and decoder != "corrdiff":
        raise CodecError(f"gamma_scale applies to the corrdiff decoder only, not {decoder}")
    ok = isinstance(gamma_scale, int | float | np.number) and not isinstance(gamma_scale, bool)
    if not ok or not 0.0 <= float(gamma_scale) <= 1.0:
        raise CodecError(f"gamma_scale must be a number in [0, 1], got {gamma_scale!r}")


def generate(codec, decoder: str, header, x_mse, kw: dict, extra: dict, gamma_scale, progress):
    """Runs generative ``decoder`` on ``x_mse`` (float [1, H, W, 3]) with the
    sampler arguments ``kw`` and the side information ``extra``."""
    from hific_diffusion.diffusion import corrdiff, decode  # on use, as above

    gen = codec.generative[MODEL[decoder]]
    if decoder == "corrdiff":
        scale = 1.0 if gamma_scale is None else float(gamma_scale)
        out, _ = corrdiff.generate(gen.graphdef, gen.state, x_mse, cfg=gen.config,
                                   gamma_scale=scale, progress=progress, **extra, **kw)  # fmt: skip
        return out
    return decode.generate(gen.graphdef, gen.state, x_mse, kind=KIND[MODEL[decoder]],
                           cfg=gen.config, progress=progress, **extra, **kw)  # fmt: skip


def check_sampler_args(codec, decoder: str, header, kw: dict, extra: dict) -> None:
    """The sampler arguments ``kw`` fit ``decoder`` and the file (before the
    latents are decoded). CorrDiff replays the encoder's sampler: its step
    count is the number of factors, its seed the file's, and noise level
    and tiling the model's (the factors were fitted to that trajectory)."""
    from hific_diffusion.diffusion import corrdiff, decode  # on use, as above

    gen = codec.generative[MODEL[decoder]]
    if decoder != "corrdiff":
        decode.check_args(gen.config, KIND[MODEL[decoder]], **kw)
        return
    if kw["seed"] != header.seed:
        raise CodecError(
            f"corrdiff replays the sampler the encoder ran: seed must stay {header.seed} "
            f"(the file's), got {kw['seed']}"
        )
    for name in ("noise_level", "tile", "overlap"):
        if kw[name] is not None and kw[name] != gen.config[name]:
            raise CodecError(
                f"corrdiff replays the sampler the encoder ran: {name} must stay "
                f"{gen.config[name]} (the model's), got {kw[name]}"
            )
    steps = corrdiff.check_args(gen.config, **kw)[0]
    n = len(extra["gammas"])
    if steps != n:
        raise CodecError(
            f"this file's corrdiff side information has {n} factors, one per step of the "
            f"sampler it was made for; got {steps} steps"
        )


def check_gan_args(decoder: str, noise_level, tile, overlap) -> None:
    """The GAN decoder runs no sampler: sampler settings are an error (steps
    and seed are hints any decoder may ignore)."""
    for name, value in (("noise_level", noise_level), ("tile", tile), ("overlap", overlap)):
        if value is not None:
            raise CodecError(f"the {decoder} decoder runs no sampler; {name} does not apply")


def synthesize_gan(codec, decoder: str, y_hat) -> np.ndarray:
    """The GAN generator on the decoded latents y_hat [1, h, w, M] (padded
    size): uint8 [1, H, W, 3], whole or in tiles, as g_s runs."""
    from hific_diffusion.gan import decode  # on use, as above

    gen = codec.generative[MODEL[decoder]]
    return decode.synthesize(gen.graphdef, gen.state, y_hat, uint8=True)
