"""``Codec``: the one place that turns images into ``.hfd`` bytes and back.

HFD (arXiv 2305.18231) Sec. 3: the MSE autoencoder alone decides the bits of
the latents; the decoder side chooses how to render them: the MSE
reconstruction, a conditional diffusion model or a rectified flow conditioned
on it. Two decoders also read side information the encoder wrote for them
(``decoders.py``): HFD+ (an energy map) and CorrDiff (a factor per step). HiFiC's
GAN generator (``hific``) renders the same latents instead of g_s. Evaluation,
export and the CLI all call this class; nothing re-implements compress or
decompress on the side (DESIGN.md).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from hific_diffusion import container, images, installed
from hific_diffusion import decoders as decoders_
from hific_diffusion.coding import bitstream
from hific_diffusion.coding.bitstream import BitstreamError, Header, real_bpp  # noqa: F401 (API)
from hific_diffusion.decoders import CodecError  # noqa: F401 (API)
from hific_diffusion.errors import HfdError

GENERATIVE = decoders_.GENERATIVE  # the generative models a Codec can hold
MAX_STEPS_HINT = (1 << 16) - 1  # the header's steps field is 16 bits


if TYPE_CHECKING:
    import ml_collections


class GenerativeDecoder(NamedTuple):
    """One generative decoder of a Codec: the config section it was trained
    with and samples with (``config.diffusion`` of its run: steps, sampler,
    tiling, the U-Net's shape) and its module, split."""

    config: ml_collections.ConfigDict
    graphdef: object
    state: object


def _split_module(module):
    """An nnx.Module or a ``(graphdef, state)`` pair -> ``(graphdef, state)``."""
    if isinstance(module, tuple):
        return module
    from flax import nnx  # on use: flax takes ~0.7 s to import (see _coding)

    return nnx.split(module)


def _coding():
    # Imported on use so this module (and the CLI's error paths) load fast.
    from hific_diffusion.coding import coding

    return coding


def _bundle():
    # On use, as _coding: bundle.py imports the coding tables (scipy).
    from hific_diffusion import bundle

    return bundle


def _models():
    # On use, as _coding: builds modules with flax and jax.
    from hific_diffusion import models

    return models


class Codec:
    """Compress images to ``.hfd`` bytes and decompress with a chosen decoder.

    Args:
      config: a ConfigDict whose ``model`` section built ``autoencoder`` (an
        experiment config; a bundle's Codec has only that section).
      autoencoder: the ELIC ``nnx.Module`` (stage 1, decides the bits).
      diffusion, flow: optional U-Nets (``nnx.Module`` or ``(graphdef, state)``)
        for ``decoder="diffusion"`` / ``"flow"`` that sample with
        ``config.diffusion``; a shorthand for ``decoders``.
      tables: the entropy-coding tables ``{"z", "y"}`` the model was exported
        with (a bundle's); ``None`` derives them from the weights
        (``tables.derive_tables``).
      decoders: ``{name: (config section, module)}``: generative models
        ("diffusion", "flow", "hfdplus", each with its own ``diffusion``
        config section; "hific", HiFiC's generator, with its ``gan``
        section). ``corrdiff`` runs the diffusion model.

    A CDC Codec (``family == "cdc"``) is ``Codec(config, None,
    decoders={"cdc": (cdc section, CDC module)})``: the CDC model is both
    its coder (content encoder and hyperprior) and its one decoder; it reads
    and writes CDC files only (``bitstream.FAMILIES``).
    """

    def __init__(
        self, config, autoencoder, diffusion=None, flow=None, tables=None, *, decoders=None
    ):
        self.config = config
        self.family, autoencoder, decoders = decoders_.collect(
            config, autoencoder, diffusion, flow, decoders
        )
        self.autoencoder = autoencoder
        # name -> GenerativeDecoder, in GENERATIVE order.
        self.generative = {
            name: GenerativeDecoder(decoders[name][0], *_split_module(decoders[name][1]))
            for name in GENERATIVE
            if name in decoders
        }
        self.coding = _coding().prepare(autoencoder, tables)
        self.fingerprint = bytes(self.coding.fingerprint)
        self._container = container.Container(self.fingerprint, self.family)

    # ----------------------------------------------------------------- loading
    @classmethod
    def from_bundle(cls, path) -> Codec:
        """Loads a verified inference bundle (see ``hific_diffusion.bundle``);
        every fault is a ``bundle.BundleError`` naming the file and field."""
        bundle = _bundle()
        b = bundle.load_bundle(path)
        if set(b.tables) != {"z", "y"}:
            raise bundle.BundleError(
                f"bundle {path}: expected tables z and y, found {sorted(b.tables)}"
            )
        config, autoencoder, decoders = _models().from_bundle(b)
        # On use, as _coding: what coding.prepare raises for tables or weights
        # that cannot code together.
        from hific_diffusion.coding.intnet import IntegerPathError
        from hific_diffusion.coding.tables import TablesError

        try:
            codec = cls(config, autoencoder, tables=b.tables, decoders=decoders)
        except CodecError as e:  # a decoder section that cannot sample (decode.check_args)
            raise bundle.BundleError(f"bundle {path}: config.json: {e}") from None
        except (TablesError, IntegerPathError) as e:
            raise bundle.BundleError(
                f"bundle {path}: tables/z.bin and tables/y.bin cannot code with "
                f"weights/autoencoder.npz ({e})"
            ) from None
        if b.fingerprint is not None and codec.fingerprint.hex() != b.fingerprint:
            raise bundle.BundleError(
                f"bundle {path}: the rebuilt model's fingerprint differs from the manifest's"
            )
        return codec

    @classmethod
    def from_checkpoint(cls, workdir, which: str = "ema") -> Codec:
        """Builds a Codec from a training workdir (orbax, trainer branch).

        A stage-2 workdir (diffusion or flow) brings its autoencoder from
        ``config.train.autoencoder_checkpoint``.
        """
        config, autoencoder, decoders = _models().from_checkpoint(workdir, which)
        return cls(config, autoencoder, decoders=decoders)

    @classmethod
    def load(cls, path=None, *, quality: int | None = None) -> Codec:
        """A bundle directory, a training workdir, an installed ``quality``
        level (``installed.QUALITIES``), or (neither) the default model.

        The default is ``$HFD_DEFAULT_BUNDLE`` or the shipped bundle of
        ``installed.DEFAULT_QUALITY``; without one, a ``bundle.BundleError``
        says so, as it does for a directory that is neither a bundle (no
        ``manifest.json``) nor a workdir (no ``checkpoints/``).
        """
        bundle = _bundle()
        if quality is not None:
            if path is not None:
                raise CodecError("give a model path or a quality level, not both")
            return cls.from_bundle(installed.quality_path(quality))
        if path is None:
            path = installed.default_bundle_path()
            if not (path / "manifest.json").is_file():
                raise bundle.BundleError(f"no default model installed (looked in {path})")
        path = Path(path)
        if (path / "manifest.json").is_file() or not path.is_dir():
            return cls.from_bundle(path)
        if (path / "checkpoints").is_dir():
            return cls.from_checkpoint(path)
        empty = "" if any(path.iterdir()) else " (the directory is empty)"
        raise bundle.BundleError(
            f"{path} is neither a model bundle (no manifest.json) nor a training "
            f"workdir (no checkpoints/){empty}"
        )

    @classmethod
    def load_for(cls, data: bytes) -> Codec:
        """The installed model that wrote ``data`` (found by the header's
        fingerprint; ``BitstreamError`` for bytes that are not a valid file,
        ``BundleError`` when no installed model wrote it)."""
        header, _ = bitstream.unpack(data)
        path = installed.bundle_for(header.fingerprint)
        if path is None:
            raise _bundle().BundleError(
                f"no installed model wrote this file (model {header.fingerprint.hex()}; "
                f"installed qualities: {list(installed.installed_qualities())})"
            )
        return cls.from_bundle(path)

    def models(self) -> dict:
        """``{model name: (config section, nnx.State)}``: what a bundle stores
        (``bundle.save_codec``), the autoencoder first."""
        from flax import nnx  # on use, as in _split_module

        if self.family == "cdc":  # the one model codes and decodes
            return {"cdc": (self.generative["cdc"].config, self.generative["cdc"].state)}
        out = {"autoencoder": (self.config.model, nnx.state(self.autoencoder))}
        return out | {name: (d.config, d.state) for name, d in self.generative.items()}

    @property
    def decoders(self) -> tuple[str, ...]:
        """Decoders this Codec can run (corrdiff whenever it has diffusion)."""
        return decoders_.available(self.generative, self.family)

    @property
    def default_decoder(self) -> str:
        """The decoder a file of this model names when none is asked for:
        ``mse`` (HFD), ``cdc`` (CDC)."""
        return "cdc" if self.family == "cdc" else "mse"

    def model_digest(self) -> str:
        """Hex sha256 of everything that decides this Codec's outputs: the
        autoencoder's fingerprint (what bitstreams carry) and the weights of
        every generative decoder. Eval runs record it so that a resumed run
        never mixes two models' results."""
        if getattr(self, "_digest", None) is None:
            import jax  # on use, as in _split_module

            h = hashlib.sha256(self.fingerprint)
            for name, gen in self.generative.items():
                h.update(name.encode())
                for leaf in jax.tree_util.tree_leaves(gen.state):
                    a = np.asarray(leaf)
                    h.update(f"{a.dtype}{a.shape}".encode())
                    h.update(a.tobytes())
            self._digest = h.hexdigest()
        return self._digest

    # ------------------------------------------------------------- compressing
    def compress(self, image, *, decoder: str | None = None, steps: int = 0, seed: int = 0,
                 decoders=()) -> bytes:  # fmt: skip
        """Image (uint8 array, PIL image or path) -> ``.hfd`` bytes.

        ``decoder``, ``steps`` (0: the model's default) and ``seed`` are hints
        stored in the header; they cost no bits of image content. ``decoders``:
        names of decoders to write side information for (corrdiff, hfdplus;
        the others need none), as is the ``decoder`` hint's; each must be one
        this model has. Side information counts in the file's bytes (real bpp).
        CorrDiff's encoder runs the diffusion sampler (as slow as decoding).
        """
        decoder = self.default_decoder if decoder is None else decoder
        kinds = decoders_.side_kinds(self, decoders, decoder)
        if bitstream.family_of(decoder) != self.family:  # the header names the family
            raise CodecError(
                f"{decoder} is not a decoder of this {bitstream.FAMILY_NAMES[self.family]} "
                f"model (its decoders: {', '.join(bitstream.FAMILIES[self.family])})"
            )
        steps = 0 if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, int | np.integer):
            raise CodecError(f"steps must be an integer, got {steps!r}")
        if not 0 <= steps <= MAX_STEPS_HINT:
            raise CodecError(
                f"steps must be in [0, {MAX_STEPS_HINT}] (the header's 16-bit field), got {steps}"
            )
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise CodecError(f"seed must be an integer, got {seed!r}")
        decoders_.check_sampling(self, kinds, steps, int(seed) % (1 << 32))
        code = functools.partial(_coding().compress_latents, self.coding)
        x = images.as_uint8_rgb(image) if kinds else image
        data = self._container.encode(x, code, decoder=decoder, steps=steps, seed=seed, uint8=True)
        if not kinds:
            return data
        header, sections = bitstream.unpack(data)
        side = decoders_.make_side(self, kinds, x, data)
        return bitstream.pack(dataclasses.replace(header, side=side), sections)

    def estimate_bpp(self, image) -> float:
        """Likelihood estimate of the bits per original pixel (no header)."""
        x01, h, w = container.prepare(image)
        return float(_coding().estimate_bits(self.coding, x01)) / (h * w)

    # ----------------------------------------------------------- decompressing
    def read_header(self, data: bytes) -> tuple[Header, list[bytes]]:
        """Parses and verifies ``data`` and checks it was made by this model."""
        return self._container.unpack(data)

    def decompress_mse(self, data: bytes) -> tuple[Header, np.ndarray]:
        """Bytes -> (header, x_mse float32[1, H, W, 3] in [0, 1], cropped)."""
        header, sections = self.read_header(data)
        if self.family == "cdc":
            raise CodecError("a CDC model has no MSE reconstruction (its decoder is cdc)")
        return header, self._decode_mse(header, sections)

    def _decode_mse(self, header: Header, sections: list[bytes], uint8=False) -> np.ndarray:
        decode = functools.partial(_coding().decompress_latents, self.coding, uint8=uint8)
        return self._container.decode(header, sections, decode)

    def decompress(
        self,
        data: bytes,
        decoder: str | None = None,
        steps: int | None = None,
        seed: int | None = None,
        noise_level: float | None = None,
        tile: int | None = None,
        overlap: int | None = None,
        progress: bool = False,
        gamma_scale: float | None = None,
    ) -> np.ndarray:
        """``.hfd`` bytes -> uint8 HxWx3.

        ``decoder=None`` uses the header's hint; any other value must be one
        of ``bitstream.DECODERS`` (exactly; else ``CodecError``), and one the
        file has the side information for (corrdiff, hfdplus; else
        ``CodecError``). ``seed=None`` uses the header's seed, so the same
        bytes give the same image on the same platform; ``steps=None`` the
        header's hint, else the decoder's config. ``gamma_scale`` (corrdiff
        only, in [0, 1], default 1) scales CorrDiff's factors: 0 decodes as
        the diffusion decoder. ``hific`` runs no sampler: it ignores steps
        and seed and refuses noise_level, tile and overlap. Every argument is
        checked before any decoding.
        """
        if decoder is not None:
            decoders_.check_name(decoder)
        decoders_.check_gamma_scale(decoder, gamma_scale)
        header, sections = self.read_header(data)
        decoder = header.decoder if decoder is None else decoder
        decoders_.check_gamma_scale(decoder, gamma_scale)
        if decoder not in self.decoders:
            raise CodecError(
                f"this model has no {decoder} decoder (available: {', '.join(self.decoders)})"
            )
        if self.family == "cdc":
            return self._decode_cdc(header, sections, steps, seed)
        if decoder == "mse":
            # uint8 straight from g_s, tile by tile: no float image of its size.
            return self._decode_mse(header, sections, uint8=True)[0]
        if decoder in decoders_.GAN:
            decoders_.check_gan_args(decoder, noise_level, tile, overlap)

            def gan(sections, padded_hw):
                y_hat, _ = _coding().decode_latents(self.coding, sections, padded_hw)
                return decoders_.synthesize_gan(self, decoder, y_hat)

            return self._container.decode(header, sections, gan)[0]
        extra = decoders_.read_side(self, decoder, header)
        # None falls back to the header's hints, then to the decoder's config.
        kw = dict(
            steps=steps if steps is not None else (header.steps or None),
            seed=header.seed if seed is None else seed,
            noise_level=noise_level,
            tile=tile,
            overlap=overlap,
        )
        try:
            decoders_.check_sampler_args(self, decoder, header, kw, extra)
            x_mse = self._decode_mse(header, sections)
            out = decoders_.generate(self, decoder, header, x_mse, kw, extra, gamma_scale, progress)
        except (BitstreamError, CodecError):
            raise
        except HfdError as e:  # GenerateError, TilingError; a bare ValueError is a bug
            raise CodecError(f"{decoder} decoder: {e}") from None
        return container.to_uint8(out)

    def _decode_cdc(self, header: Header, sections, steps, seed) -> np.ndarray:
        """CDC: the exact y_hat from the sections, then DDIM from it."""
        from hific_diffusion.cdc import decode as cdc_decode  # on use: flax

        gen = self.generative["cdc"]
        steps = steps if steps is not None else (header.steps or None)
        seed = header.seed if seed is None else seed
        try:
            cdc_decode.sampler_settings(gen.config, steps)
        except HfdError as e:
            raise CodecError(f"cdc decoder: {e}") from None

        def decode(secs, padded_hw):
            y_hat, _ = _coding().decode_latents(self.coding, secs, padded_hw)
            return cdc_decode.generate(
                (gen.graphdef, gen.state), y_hat, gen.config, seed=seed, steps=steps
            )

        return container.to_uint8(self._container.decode(header, sections, decode))


DEFAULT_BUNDLE = installed.quality_dir(installed.DEFAULT_QUALITY)  # the shipped default


def read_file(path) -> bytes:
    """Reads a bitstream file, mapping OS errors to BitstreamError."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise BitstreamError(f"no such file: {path}")
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise BitstreamError(f"cannot read {path}: {e.strerror}") from None
