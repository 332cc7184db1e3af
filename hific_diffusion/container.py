"""The one path between an image and a model's coding functions, in both directions.

``pipeline.Codec`` (the model classes) and ``stablehlo.StableHLOCodec`` (the
exported functions) differ only in how they turn a padded image into latent
sections and back. Everything around that is here: the image rules and the
padding to a multiple of 64, the ``.hfd`` header with the model's fingerprint,
the check that a bitstream was made by this model, the crop back to the
original size and the conversion to uint8.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from hific_diffusion import images
from hific_diffusion.autoencoder.defaults import Z_STRIDE
from hific_diffusion.coding import bitstream
from hific_diffusion.coding.bitstream import BitstreamError, Header

PAD_MULTIPLE = Z_STRIDE  # total down-sampling of g_a then h_a (ELIC: 16 x 4)


def prepare(image, *, uint8: bool = False) -> tuple[np.ndarray, int, int]:
    """Image (uint8 array, PIL image or path) -> (float32[1, Hp, Wp, 3] in [0, 1]
    padded by edge to a multiple of ``PAD_MULTIPLE``, H, W). ``uint8``: the
    padded pixels as uint8 instead; the coder converts them
    (``images.to_unit``) tile by tile, so a large image is never held as floats."""
    x = images.as_uint8_rgb(image)
    h, w = x.shape[:2]
    x = images.pad_to_multiple(x, PAD_MULTIPLE)
    return (x if uint8 else images.to_unit(x))[None], h, w


def padded_size(header: Header) -> tuple[int, int]:
    """The padded size the sections of ``header``'s image were coded at."""
    return (
        header.height + (-header.height) % PAD_MULTIPLE,
        header.width + (-header.width) % PAD_MULTIPLE,
    )


def to_uint8(x) -> np.ndarray:
    """float [1, H, W, 3] in [0, 1] -> uint8 HxWx3 (``images.to_uint8``'s rule)."""
    return images.to_uint8(np.asarray(x)[0])


class Container:
    """The ``.hfd`` container of one model (its ``fingerprint``).

    ``encode`` codes an image with ``code(x01) -> sections``; ``unpack``
    reads bytes made by this model; ``decode`` runs
    ``decode(sections, padded_hw) -> float[1, Hp, Wp, 3]`` and crops.
    """

    def __init__(self, fingerprint: bytes, family: str = "hfd"):
        self.fingerprint = bytes(fingerprint)
        self.short_fingerprint = bitstream.short_fingerprint(self.fingerprint)
        self.family = family  # bitstream.FAMILIES: which files this model reads

    def encode(
        self,
        image,
        code: Callable[[np.ndarray], Sequence[bytes]],
        *,
        decoder: str = "mse",
        steps: int = 0,
        seed: int = 0,
        uint8: bool = False,
    ) -> bytes:
        """Image -> ``.hfd`` bytes; ``decoder``, ``steps``, ``seed`` are header
        hints; ``code`` gets the padded image as float32 in [0, 1] (``uint8``:
        as uint8, see :func:`prepare`)."""
        x, h, w = prepare(image, uint8=uint8)
        sections = code(x)
        header = Header(
            height=h,
            width=w,
            fingerprint=self.short_fingerprint,
            decoder=decoder,
            steps=int(steps),
            seed=int(seed) % (1 << 32),
        )
        return bitstream.pack(header, list(sections))

    def unpack(self, data: bytes) -> tuple[Header, list[bytes]]:
        """Parses and verifies ``data`` and checks it was made by this model
        (first its family: an HFD model refuses a CDC file and vice versa)."""
        header, sections = bitstream.unpack(data)
        family = bitstream.family_of(header.decoder)
        if family != self.family:
            names = bitstream.FAMILY_NAMES
            raise BitstreamError(
                f"this is a {names[family]} file ({header.decoder} decoder); this model is "
                f"{names[self.family]}: decode it with a {names[family]} model (--model BUNDLE)"
            )
        if header.fingerprint != self.short_fingerprint:
            raise BitstreamError(
                f"bitstream was made by a different model (fingerprint "
                f"{header.fingerprint.hex()}, this model {self.short_fingerprint.hex()})"
            )
        return header, sections

    def decode(
        self,
        header: Header,
        sections: list[bytes],
        decode: Callable[[list[bytes], tuple[int, int]], np.ndarray],
    ) -> np.ndarray:
        """Sections -> ``decode``'s [1, H, W, 3] (float32 in [0, 1], or uint8),
        cropped to the header's size.

        Corrupt sections raise BitstreamError from the range coder itself; any
        other exception from ``decode`` is a bug and keeps its traceback."""
        x = decode(sections, padded_size(header))
        return images.crop(np.asarray(x), header.height, header.width)
