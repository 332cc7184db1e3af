"""Image loading and conversion rules at the API boundary (uint8 HxWx3).

Conversion rules (applied in this order):

1. EXIF orientation is applied (``PIL.ImageOps.exif_transpose``), so the
   array is upright as a viewer shows it.
2. 16-bit and 32-bit integer data (PIL modes ``I;16*``, ``I``), 16-bit colour
   PNG and TIFF files (read at full depth with ``imagecodecs``: PIL would
   truncate them to the high byte) and 16-bit arrays map to 8 bits by
   ``round(x / 257)`` (65535 -> 255); float arrays are taken as [0, 1] and
   mapped by ``round(255 x)``.
3. Grayscale (``L``, ``1``, 2-D arrays) is replicated into R, G and B.
4. Palette images (``P``) are expanded to RGB (or RGBA if the palette has
   transparency, then rule 5).
5. Alpha (``RGBA``, ``LA``, ``PA``) is composited over white: a learned
   codec has no alpha channel, and white is what most viewers show.
6. CMYK, YCbCr, LAB, HSV are converted by PIL to RGB.
7. An animated or multi-page file (GIF, APNG, TIFF, ...) gives its first
   frame, with a warning (``ImageWarning``).

Size limit (the one the ``.hfd`` header can carry, ``bitstream.size_problem``):
1 to 65535 pixels per side and at most 2**28 pixels in all (e.g. 16384 x
16384). It is checked from the file header, before any pixel is decoded and
instead of PIL's decompression-bomb check, so an oversized file costs no
memory and gets this project's message.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings

import numpy as np
from PIL import Image, ImageOps

from hific_diffusion import atomic
from hific_diffusion.coding.bitstream import size_problem
from hific_diffusion.errors import HfdError


class ImageError(HfdError, ValueError):
    """An input that is not a usable image (missing, unreadable, wrong shape)."""


class ImageWarning(UserWarning):
    """An input that is used, but not all of it (e.g. the first frame of an animation)."""


# The file suffixes every entry point reads as images (CLI inputs, training
# folders, evaluation folders): whatever Pillow opens that holds photographs.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")


def to_uint8(x01) -> np.ndarray:
    """Float image(s) in [0, 1] -> uint8: clipped, rounded to nearest (the one
    rule for every model output and float input in the project). Converts a
    block of rows at a time, so a large image needs no float temporaries of
    its own size."""
    x = np.asarray(x01)
    out = np.empty(x.shape, np.uint8)
    if x.ndim < 2:
        out[...] = _to_uint8_block(x)
        return out
    rows, rows_out = x.reshape((-1,) + x.shape[-2:]), out.reshape((-1,) + x.shape[-2:])
    for r in range(0, rows.shape[0], _UINT8_ROWS):
        rows_out[r : r + _UINT8_ROWS] = _to_uint8_block(rows[r : r + _UINT8_ROWS])
    return out


_UINT8_ROWS = 256


def to_unit(x_uint8) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1] (``x / 255``), the one rule for
    model inputs; one float copy, no temporaries."""
    x = np.asarray(x_uint8).astype(np.float32)
    x /= 255.0
    return x


def _to_uint8_block(x) -> np.ndarray:
    t = np.array(x, np.float32)  # a copy: clipped and scaled in place
    np.clip(t, 0.0, 1.0, out=t)
    t *= 255.0
    return np.round(t, out=t)


def _check_size(h: int, w: int) -> None:
    problem = size_problem(h, w)
    if problem:
        raise ImageError(f"image size {h}x{w} unsupported ({problem})")


# PIL's decompression-bomb check would fire first, with its own limit and
# message; while this module opens and decodes a file it is off, and
# _check_size (same limit as the bitstream) decides. Other threads see PIL's
# check off for that time, so the switch is serialized.
_PIL_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _our_size_limit():
    with _PIL_LIMIT_LOCK:
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = old


_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _deep_colour_rawmode(img: Image.Image) -> bool:
    """Whether PIL would read ``img`` (RGB, RGBA, LA) dropping the low byte of 16-bit samples."""
    if img.format not in ("PNG", "TIFF") or not img.tile:
        return False
    args = img.tile[0].args
    rawmode = args if isinstance(args, str) else (args[0] if args else "")
    base, _, bits = str(rawmode).partition(";")
    return base in ("RGB", "RGBA", "LA") and bits.startswith("16")


def _read_deep_colour(path: str, img: Image.Image) -> np.ndarray:
    """A 16-bit colour PNG or TIFF at full depth -> uint8 HxWx3 by round(x / 257)."""
    import imagecodecs

    with open(path, "rb") as f:
        data = f.read()
    try:
        decode = imagecodecs.png_decode if img.format == "PNG" else imagecodecs.tiff_decode
        arr = np.asarray(decode(data))
    except Exception as e:  # noqa: BLE001 - imagecodecs raises its own error types
        raise ImageError(f"cannot read 16-bit image {path}: {e}") from None
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[:2] != (img.height, img.width) or arr.dtype != np.uint16:
        raise ImageError(
            f"cannot read 16-bit image {path}: decoded {arr.dtype} {arr.shape}, "
            f"header says {img.height}x{img.width}"
        )
    rgb = Image.fromarray(to_uint8_rgb(arr))
    method = _ORIENTATION.get(img.getexif().get(0x0112))
    if method is not None:
        rgb = rgb.transpose(method)
    return np.ascontiguousarray(np.asarray(rgb, np.uint8))


def _composite_on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha.astype(np.float64)[..., None] / 255.0
    return np.round(rgb.astype(np.float64) * a + 255.0 * (1.0 - a)).astype(np.uint8)


def from_pil(img: Image.Image) -> np.ndarray:
    """A PIL image -> uint8 HxWx3 by the module's rules."""
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not lose the pixels
        pass
    _check_size(img.height, img.width)
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img)
        return to_uint8_rgb(arr.astype(np.uint32) if mode != "I" else arr.astype(np.int64))
    if mode == "F":
        return to_uint8_rgb(np.asarray(img, np.float32))
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = np.asarray(img.convert("RGBA"))
        return _composite_on_white(rgba[..., :3], rgba[..., 3])
    if mode in ("L", "1"):
        g = np.asarray(img.convert("L"))
        return np.repeat(g[..., None], 3, axis=-1)
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), np.uint8))


def to_uint8_rgb(arr) -> np.ndarray:
    """A numpy array (HxW, HxWx1/2/3/4; uint8, uint16, int or float) -> uint8 HxWx3."""
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 2, 3, 4):
        raise ImageError(f"expected an HxW or HxWxC (C in 1..4) image array, got shape {arr.shape}")
    _check_size(arr.shape[0], arr.shape[1])
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ImageError("float image contains NaN or infinity")
        arr = to_uint8(arr)
    elif arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.integer):
            raise ImageError(f"unsupported image dtype {arr.dtype}")
        if arr.min() < 0 or arr.max() > 65535:
            raise ImageError("integer image values must lie in [0, 65535]")
        arr = np.round(arr.astype(np.float64) / 257.0).astype(np.uint8)
    c = arr.shape[-1]
    if c in (2, 4):
        color = arr[..., :-1]
        alpha = arr[..., -1]
        arr = _composite_on_white(np.broadcast_to(color, (*color.shape[:2], c - 1)), alpha)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.ascontiguousarray(arr, dtype=np.uint8)


def load(path) -> np.ndarray:
    """Reads an image file -> uint8 HxWx3; ImageError if it is not one."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ImageError(f"no such file: {path}")
    if os.path.isdir(path):
        raise ImageError(f"is a directory, not an image: {path}")
    try:
        with _our_size_limit(), Image.open(path) as img:
            _check_size(img.height, img.width)  # from the header: no pixel decoded yet
            animated = bool(getattr(img, "is_animated", False))
            if _deep_colour_rawmode(img):
                out = _read_deep_colour(path, img)
            else:
                img.load()
                out = from_pil(img)
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        raise ImageError(
            f"cannot read image {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from None
    if animated:
        warnings.warn(
            f"{path} has several frames (animated or multi-page); using the first",
            ImageWarning,
            stacklevel=2,
        )
    return out


def as_uint8_rgb(image) -> np.ndarray:
    """Path, PIL image or array -> uint8 HxWx3 (the pipeline's single entry)."""
    if isinstance(image, str | os.PathLike):
        return load(image)
    if isinstance(image, Image.Image):
        return from_pil(image)
    if isinstance(image, np.ndarray) or hasattr(image, "__array__"):
        return to_uint8_rgb(np.asarray(image))
    raise ImageError(f"expected a path, PIL image or array, got {type(image).__name__}")


def save(path, image: np.ndarray) -> None:
    """Writes uint8 HxWx3 atomically (``atomic.atomic_write``): ``path`` holds the
    complete image or its previous content, never a partial file. The format
    follows the file extension (PNG if none known)."""
    path = os.fspath(path)
    img = Image.fromarray(np.asarray(image, np.uint8))
    fmt = Image.registered_extensions().get(os.path.splitext(path)[1].lower(), "PNG")
    try:
        with atomic.atomic_write(path) as f:
            img.save(f, format=fmt)
    except (OSError, ValueError) as e:
        raise ImageError(f"cannot write image {path}: {e}") from None


def pad_to_multiple(x: np.ndarray, multiple: int = 64) -> np.ndarray:
    """Edge-pads the two spatial axes before the channel axis up to a multiple.

    Works on HxWxC and NxHxWxC arrays; ``crop(pad_to_multiple(x), h, w)`` is x.
    Edge padding (not zeros) keeps the padded border cheap to code.
    """
    x = np.asarray(x)
    h, w = x.shape[-3], x.shape[-2]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not ph and not pw:
        return x
    pad = [(0, 0)] * x.ndim
    pad[-3] = (0, ph)
    pad[-2] = (0, pw)
    return np.pad(x, pad, mode="edge")


def crop(x, height: int, width: int):
    """Crops the spatial axes (-3, -2) back to ``height`` x ``width``."""
    return x[..., :height, :width, :]
