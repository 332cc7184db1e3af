"""The ``.hfd`` container: a small header, entropy-coded sections, a CRC32.

Layout (all integers little-endian)::

    offset  size  field
    0       4     magic b"\\x89HFD"
    4       1     format version (FORMAT_VERSION)
    5       1     default decoder (0 mse, 1 diffusion, 2 flow)
    6       2     sampler steps hint (0: the model's default)
    8       4     sampler seed
    12      2     original height H (1..MAX_SIDE)
    14      2     original width W (1..MAX_SIDE)
    16      8     model fingerprint (first 8 bytes of sha256 of the model's fingerprint)
    24      1     number of sections n (<= MAX_SECTIONS)
    25      ...   n section lengths, unsigned LEB128 varints
    ...     ...   the sections, concatenated
    end-4   4     CRC32 of every preceding byte

Real bpp counts all of it (DESIGN.md): ``len(data) * 8 / (H * W)``.
Every failure to read raises ``BitstreamError`` with a one-line message and
nothing is allocated in proportion to a header field before it is checked.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
import zlib

from hific_diffusion.errors import HfdError

MAGIC = b"\x89HFD"
FORMAT_VERSION = 1
# The one size limit of the project (README "Image rules"): 1..MAX_SIDE pixels
# per side (what the header's 16-bit fields carry) and at most MAX_PIXELS in
# all (2**28, e.g. 16384 x 16384: beyond it decoding would need tens of GB).
MAX_SIDE = 65535
MAX_PIXELS = 1 << 28
MAX_SECTIONS = 64
FINGERPRINT_BYTES = 8
DECODERS = ("mse", "diffusion", "flow")

_FIXED = struct.Struct("<4sBBHIHH8sB")
_CRC_BYTES = 4


class BitstreamError(HfdError, ValueError):
    """Any decode-side failure: bad, truncated, foreign or mismatched bytes."""


@dataclasses.dataclass(frozen=True)
class Header:
    """What a decoder needs besides the sections."""

    height: int
    width: int
    fingerprint: bytes
    decoder: str = "mse"
    steps: int = 0
    seed: int = 0
    version: int = FORMAT_VERSION


def short_fingerprint(fingerprint: bytes) -> bytes:
    """The 8 bytes of a model fingerprint that a bitstream carries."""
    return hashlib.sha256(bytes(fingerprint)).digest()[:FINGERPRINT_BYTES]


def encode_varint(n: int) -> bytes:
    """Unsigned LEB128 (the protobuf varint): 7 bits a byte, low bits first."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end:
            raise BitstreamError("truncated bitstream (section table cut short)")
        if shift > 35:
            raise BitstreamError("corrupt bitstream (section length varint too long)")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos


def size_problem(height: int, width: int) -> str | None:
    """What is wrong with an image size under the project's limit, or None."""
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        return f"each side must be 1..{MAX_SIDE} pixels"
    if height * width > MAX_PIXELS:
        return f"more than {MAX_PIXELS} = 2^28 pixels"
    return None


def check_dimensions(height: int, width: int) -> None:
    problem = size_problem(height, width)
    if problem:
        raise BitstreamError(f"absurd image size {height}x{width} ({problem})")


def pack(header: Header, sections: list[bytes]) -> bytes:
    """Serializes a header and sections; validates what it writes."""
    check_dimensions(header.height, header.width)
    if header.decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {header.decoder!r}")
    if not 0 <= header.steps < 1 << 16:
        raise ValueError(f"steps must be in [0, 65535], got {header.steps}")
    if not 0 <= header.seed < 1 << 32:
        raise ValueError(f"seed must be in [0, 2**32), got {header.seed}")
    if len(header.fingerprint) != FINGERPRINT_BYTES:
        raise ValueError(f"fingerprint must be {FINGERPRINT_BYTES} bytes (use short_fingerprint)")
    if len(sections) > MAX_SECTIONS:
        raise ValueError(f"at most {MAX_SECTIONS} sections")
    body = bytearray(
        _FIXED.pack(
            MAGIC,
            FORMAT_VERSION,
            DECODERS.index(header.decoder),
            header.steps,
            header.seed,
            header.height,
            header.width,
            bytes(header.fingerprint),
            len(sections),
        )
    )
    for s in sections:
        body += encode_varint(len(s))
    for s in sections:
        body += bytes(s)
    body += struct.pack("<I", zlib.crc32(body))
    return bytes(body)


def unpack(data: bytes) -> tuple[Header, list[bytes]]:
    """Parses and verifies a container; raises BitstreamError on any fault."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise BitstreamError(f"bitstream must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise BitstreamError("empty bitstream")
    if not data.startswith(MAGIC[: min(len(data), len(MAGIC))]):
        raise BitstreamError("not an .hfd bitstream (foreign magic bytes)")
    if len(data) < _FIXED.size + _CRC_BYTES:
        raise BitstreamError(f"truncated bitstream ({len(data)} bytes)")
    magic, version, dec, steps, seed, height, width, fp, n = _FIXED.unpack_from(data)
    if version != FORMAT_VERSION:
        raise BitstreamError(
            f"unsupported .hfd format version {version} (this build reads {FORMAT_VERSION})"
        )
    (crc,) = struct.unpack_from("<I", data, len(data) - _CRC_BYTES)
    if zlib.crc32(data[: len(data) - _CRC_BYTES]) != crc:
        raise BitstreamError("corrupt or truncated bitstream (CRC32 mismatch)")
    if dec >= len(DECODERS):
        raise BitstreamError(f"corrupt bitstream (unknown decoder id {dec})")
    check_dimensions(height, width)
    if n > MAX_SECTIONS:
        raise BitstreamError(f"corrupt bitstream ({n} sections, at most {MAX_SECTIONS})")
    end = len(data) - _CRC_BYTES
    pos = _FIXED.size
    lengths = []
    for _ in range(n):
        length, pos = _read_varint(data, pos, end)
        lengths.append(length)
    if sum(lengths) != end - pos:
        raise BitstreamError(
            f"corrupt bitstream (sections declare {sum(lengths)} bytes, {end - pos} present)"
        )
    sections = []
    for length in lengths:
        sections.append(data[pos : pos + length])
        pos += length
    header = Header(
        height=height,
        width=width,
        fingerprint=fp,
        decoder=DECODERS[dec],
        steps=steps,
        seed=seed,
        version=version,
    )
    return header, sections


def real_bpp(data: bytes, height: int | None = None, width: int | None = None) -> float:
    """File bytes * 8 / (H * W) of the original image, header included (the
    one definition of the rate every report uses; H, W from the header if not
    given)."""
    if height is None or width is None:
        header, _ = unpack(data)
        height, width = header.height, header.width
    return len(data) * 8.0 / (height * width)
