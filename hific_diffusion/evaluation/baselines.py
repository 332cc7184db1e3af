"""Classical codecs at a matched bitrate, the comparison HFD draws in Fig. 3.

Each codec is searched by bisection over its integer quality setting for the
highest quality whose real file size (bytes * 8 / pixels) does not exceed the
target bpp; if even the lowest quality is above the target, the lowest is
used and the result says so (``matched=False``). JPEG, WebP and AVIF run
through Pillow, JPEG XL through imagecodecs (``level`` = libjxl quality), BPG
through ``bpgenc``/``bpgdec`` and VVC through ``vvencapp``/``vvdecapp`` when
those programs are on PATH (VVC codes 8-bit YUV 4:2:0, converted here with
full-range BT.601; the conversion loss counts against VVC).
"""

from __future__ import annotations

import dataclasses
import io
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, features

from hific_diffusion.errors import HfdError


class BaselineError(HfdError, RuntimeError):
    """A baseline codec that is unavailable or failed."""


@dataclasses.dataclass(frozen=True)
class Baseline:
    name: str
    encode: Callable[[np.ndarray, int], bytes]
    decode: Callable[[bytes], np.ndarray]
    qualities: tuple[int, int]  # (lowest rate, highest rate) setting
    available: Callable[[], bool]
    missing: str  # how to get it when unavailable


@dataclasses.dataclass(frozen=True)
class Result:
    codec: str
    quality: int
    data: bytes
    image: np.ndarray
    bpp: float
    matched: bool  # bpp <= target


def _pil_codec(fmt: str, **kw):
    def encode(img, q):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format=fmt, quality=int(q), **kw)
        return buf.getvalue()

    def decode(data):
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))

    return encode, decode


def _jxl_encode(img, q):
    import imagecodecs

    return imagecodecs.jpegxl_encode(img, level=int(q))


def _jxl_decode(data):
    import imagecodecs

    return np.asarray(imagecodecs.jpegxl_decode(data))[..., :3]


def _jxl_available():
    try:
        import imagecodecs

        return bool(imagecodecs.JPEGXL.available)
    except (ImportError, AttributeError):
        return False


def _run(args, cwd):
    proc = subprocess.run(args, cwd=cwd, capture_output=True, timeout=600)
    if proc.returncode != 0:
        raise BaselineError(f"{args[0]} failed: {proc.stderr.decode(errors='replace')[-300:]}")


def _bpg_encode(img, q):
    # bpgenc's -q is a quantiser (0 best .. 51 worst); setting = 51 - qp so higher is more bits.
    with tempfile.TemporaryDirectory() as d:
        Image.fromarray(img).save(Path(d) / "in.png")
        _run(["bpgenc", "-q", str(51 - int(q)), "-o", "out.bpg", "in.png"], d)
        return (Path(d) / "out.bpg").read_bytes()


def _bpg_decode(data):
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "in.bpg").write_bytes(data)
        _run(["bpgdec", "-o", "out.png", "in.bpg"], d)
        return np.asarray(Image.open(Path(d) / "out.png").convert("RGB"))


_BT601 = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def _to_yuv420(img):
    h, w = img.shape[:2]
    yuv = img.astype(np.float64) @ _BT601.T + np.array([0.0, 128.0, 128.0])
    ph, pw = h + h % 2, w + w % 2
    yuv = np.pad(yuv, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    y = yuv[..., 0]
    uv = yuv[..., 1:].reshape(ph // 2, 2, pw // 2, 2, 2).mean(axis=(1, 3))
    planes = [y, uv[..., 0], uv[..., 1]]
    return b"".join(np.clip(np.round(p), 0, 255).astype(np.uint8).tobytes() for p in planes), ph, pw


def _from_yuv420(raw, h, w, ph, pw):
    buf = np.frombuffer(raw, np.uint8)
    y = buf[: ph * pw].reshape(ph, pw).astype(np.float64)
    c = buf[ph * pw :].reshape(2, ph // 2, pw // 2).astype(np.float64)
    uv = np.repeat(np.repeat(c, 2, axis=1), 2, axis=2).transpose(1, 2, 0) - 128.0
    rgb = np.concatenate([y[..., None], uv], axis=-1) @ np.linalg.inv(_BT601).T
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)[:h, :w]


def _vvc_encode(img, q):
    raw, ph, pw = _to_yuv420(img)
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "in.yuv").write_bytes(raw)
        args = ["vvencapp", "-i", "in.yuv", "-s", f"{pw}x{ph}", "-c", "yuv420", "-r", "1"]
        _run([*args, "-f", "1", "--qp", str(63 - int(q)), "-o", "out.266"], d)
        header = np.array([img.shape[0], img.shape[1]], "<u4").tobytes()
        return header + (Path(d) / "out.266").read_bytes()


def _vvc_decode(data):
    h, w = (int(v) for v in np.frombuffer(data[:8], "<u4"))
    ph, pw = h + h % 2, w + w % 2
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "in.266").write_bytes(data[8:])
        _run(["vvdecapp", "-b", "in.266", "-o", "out.yuv"], d)
        return _from_yuv420((Path(d) / "out.yuv").read_bytes(), h, w, ph, pw)


def _on_path(*names):
    return lambda: all(shutil.which(n) for n in names)


BASELINES = {
    "jpeg": Baseline("jpeg", *_pil_codec("JPEG"), (1, 95), lambda: True, ""),
    "webp": Baseline(
        "webp", *_pil_codec("WEBP", method=6), (0, 100), lambda: features.check("webp"),
        "Pillow built with libwebp",
    ),
    "avif": Baseline(
        "avif", *_pil_codec("AVIF", speed=6), (0, 100), lambda: features.check("avif"),
        "Pillow >= 11.2 built with libavif",
    ),
    "jpegxl": Baseline(
        "jpegxl", _jxl_encode, _jxl_decode, (1, 99), _jxl_available, "imagecodecs with JPEG XL"
    ),
    "bpg": Baseline(
        "bpg", _bpg_encode, _bpg_decode, (0, 51), _on_path("bpgenc", "bpgdec"),
        "bpgenc and bpgdec on PATH (https://bellard.org/bpg/)",
    ),
    "vvc": Baseline(
        "vvc", _vvc_encode, _vvc_decode, (0, 63), _on_path("vvencapp", "vvdecapp"),
        "vvencapp and vvdecapp on PATH (https://github.com/fraunhoferhhi/vvenc)",
    ),
}  # fmt: skip


def available(names=None) -> tuple[list[str], dict[str, str]]:
    """Split ``names`` (default: all) into runnable ones and {name: what is missing}."""
    names = list(BASELINES) if names is None else list(names)
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise BaselineError(f"unknown baselines {unknown}; choose from {list(BASELINES)}")
    ok = [n for n in names if BASELINES[n].available()]
    return ok, {n: BASELINES[n].missing for n in names if n not in ok}


def at_bpp(name: str, image: np.ndarray, target_bpp: float) -> Result:
    """Encode ``image`` with codec ``name`` at the highest setting with bpp <= target."""
    codec = BASELINES[name]
    if not codec.available():
        raise BaselineError(f"baseline {name} unavailable: needs {codec.missing}")
    pixels = image.shape[0] * image.shape[1]
    cache = {}

    def bpp(q):
        if q not in cache:
            cache[q] = codec.encode(image, q)
        return len(cache[q]) * 8.0 / pixels

    lo, hi = codec.qualities
    if bpp(lo) > target_bpp:
        best, matched = lo, False
    else:
        while lo < hi:  # invariant: bpp(lo) <= target
            mid = (lo + hi + 1) // 2
            if bpp(mid) <= target_bpp:
                lo = mid
            else:
                hi = mid - 1
        best, matched = lo, True
    data = cache[best] if best in cache else codec.encode(image, best)
    return Result(name, best, data, codec.decode(data), len(data) * 8.0 / pixels, matched)
