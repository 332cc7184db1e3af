"""The ``.hfd`` container: a small header, entropy-coded sections, a CRC32.

Layout (all integers little-endian)::

    offset  size  field
    0       4     magic b"\\x89HFD"
    4       1     format version: 1 without side information, 2 with it
    5       1     default decoder (an index into DECODERS: 0 mse, 1 diffusion,
                  2 flow, 3 corrdiff, 4 hfdplus, 5 cdc, 6 hific; new names are only
                  appended); it also names the model family (FAMILIES)
    6       2     sampler steps hint (0: the model's default)
    8       4     sampler seed
    12      2     original height H (1..MAX_SIDE)
    14      2     original width W (1..MAX_SIDE)
    16      8     model fingerprint (first 8 bytes of sha256 of the model's fingerprint)
    24      1     number of sections n (<= MAX_SECTIONS)
    25      ...   n section lengths, unsigned LEB128 varints
    (version 2 only)
    ...     1     number of side-information sections m (1..MAX_SIDE_SECTIONS)
    ...     ...   m entries: type tag (1 byte, SIDE_TYPES), the type's own
                  payload version (1 byte), payload length (varint)
    ...     ...   the sections, concatenated, then the m side payloads
    end-4   4     CRC32 of every preceding byte

Side information (``SideInfo``: HFD+'s residual-energy map, CorrDiff's
correction factors) is what one generative decoder needs besides the latents;
the container only frames it: a type it does not know is an error, each
payload is parsed (and its version checked) by ``coding/sideinfo.py``. A file
without side information is written in version 1, byte for byte as before
side information existed, so every reader of version 1 still reads it.
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
FORMAT_VERSION = 2  # the newest version written; READ_VERSIONS are read
READ_VERSIONS = (1, 2)
# The one size limit of the project (README "Image rules"): 1..MAX_SIDE pixels
# per side (what the header's 16-bit fields carry) and at most MAX_PIXELS in
# all (2**28, e.g. 16384 x 16384: beyond it decoding would need tens of GB).
MAX_SIDE = 65535
MAX_PIXELS = 1 << 28
MAX_SECTIONS = 64
FINGERPRINT_BYTES = 8
# The header's decoder byte is an index into this tuple: append, never reorder.
DECODERS = ("mse", "diffusion", "flow", "corrdiff", "hfdplus", "cdc", "hific")
# The model family whose files a decoder reads: HFD (an ELIC autoencoder and
# its decoders) or CDC (its own content coder and diffusion decoder). A
# file's header decoder names its family, so a model of the other family
# refuses it in one line before anything is decoded.
FAMILIES = {
    "hfd": ("mse", "diffusion", "flow", "corrdiff", "hfdplus", "hific"),
    "cdc": ("cdc",),
}
FAMILY_NAMES = {"hfd": "HFD", "cdc": "CDC"}


def family_of(decoder: str) -> str:
    """The family (``FAMILIES`` key) of a decoder name in ``DECODERS``."""
    return next(f for f, names in FAMILIES.items() if decoder in names)


# Side-information types by tag; a tag is never reused for another meaning.
SIDE_TYPES = {1: "corrdiff", 2: "hfdplus"}
MAX_SIDE_SECTIONS = 16

_FIXED = struct.Struct("<4sBBHIHH8sB")
_CRC_BYTES = 4


class BitstreamError(HfdError, ValueError):
    """Any decode-side failure: bad, truncated, foreign or mismatched bytes."""


@dataclasses.dataclass(frozen=True)
class SideInfo:
    """One side-information section: its type (a ``SIDE_TYPES`` name), the
    version of that type's payload format and the payload."""

    kind: str
    version: int
    payload: bytes

    def __post_init__(self):
        if self.kind not in SIDE_TYPES.values():
            raise ValueError(f"side-information kind must be one of {tuple(SIDE_TYPES.values())}")
        if not 0 <= self.version < 256:
            raise ValueError(f"side-information version must be in [0, 255], got {self.version}")


_SIDE_TAGS = {name: tag for tag, name in SIDE_TYPES.items()}


@dataclasses.dataclass(frozen=True)
class Header:
    """What a decoder needs besides the latent sections. ``side``: the
    side-information sections (at most one per kind); ``version``: the
    format version a parsed file had (not compared: it follows from ``side``)."""

    height: int
    width: int
    fingerprint: bytes
    decoder: str = "mse"
    steps: int = 0
    seed: int = 0
    version: int = dataclasses.field(default=FORMAT_VERSION, compare=False)
    side: tuple[SideInfo, ...] = ()

    def side_info(self, kind: str) -> SideInfo | None:
        """The side-information section of ``kind``, or None."""
        return next((s for s in self.side if s.kind == kind), None)


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
    """Serializes a header, its side information and the latent sections
    (format version 1 without side information, 2 with); validates what it writes."""
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
    side = tuple(header.side)
    if len(side) > MAX_SIDE_SECTIONS:
        raise ValueError(f"at most {MAX_SIDE_SECTIONS} side-information sections")
    if len({s.kind for s in side}) != len(side):
        raise ValueError("at most one side-information section per kind")
    body = bytearray(
        _FIXED.pack(
            MAGIC,
            2 if side else 1,
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
    if side:
        body.append(len(side))
        for s in side:
            body += bytes([_SIDE_TAGS[s.kind], s.version]) + encode_varint(len(s.payload))
    for s in sections:
        body += bytes(s)
    for s in side:
        body += bytes(s.payload)
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
    if version not in READ_VERSIONS:
        raise BitstreamError(
            f"unsupported .hfd format version {version} (this build reads "
            f"{READ_VERSIONS[0]} to {READ_VERSIONS[-1]})"
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
    side_table, pos = _read_side_table(data, pos, end) if version == 2 else ([], pos)
    declared = sum(lengths) + sum(length for _, _, length in side_table)
    if declared != end - pos:
        raise BitstreamError(
            f"corrupt bitstream (sections declare {declared} bytes, {end - pos} present)"
        )
    sections = []
    for length in lengths:
        sections.append(data[pos : pos + length])
        pos += length
    side = []
    for kind, side_version, length in side_table:
        side.append(SideInfo(kind, side_version, data[pos : pos + length]))
        pos += length
    header = Header(
        height=height,
        width=width,
        fingerprint=fp,
        decoder=DECODERS[dec],
        steps=steps,
        seed=seed,
        version=version,
        side=tuple(side),
    )
    return header, sections


def _read_side_table(data: bytes, pos: int, end: int):
    """Version 2's side-information table -> ([(kind, version, length)], pos)."""
    if pos >= end:
        raise BitstreamError("truncated bitstream (side-information table cut short)")
    m = data[pos]
    pos += 1
    if not 1 <= m <= MAX_SIDE_SECTIONS:
        raise BitstreamError(
            f"corrupt bitstream ({m} side-information sections, expected 1 to {MAX_SIDE_SECTIONS})"
        )
    table = []
    for _ in range(m):
        if pos + 2 > end:
            raise BitstreamError("truncated bitstream (side-information table cut short)")
        tag, side_version = data[pos], data[pos + 1]
        kind = SIDE_TYPES.get(tag)
        if kind is None:
            known = ", ".join(f"{t} {k}" for t, k in SIDE_TYPES.items())
            raise BitstreamError(
                f"unknown side-information type {tag} (this build reads {known}); "
                "the file needs a newer hific_diffusion"
            )
        if any(k == kind for k, _, _ in table):
            raise BitstreamError(f"corrupt bitstream (two {kind} side-information sections)")
        length, pos = _read_varint(data, pos + 2, end)
        table.append((kind, side_version, length))
    return table, pos


def real_bpp(data: bytes, height: int | None = None, width: int | None = None) -> float:
    """File bytes * 8 / (H * W) of the original image, header included (the
    one definition of the rate every report uses; H, W from the header if not
    given)."""
    if height is None or width is None:
        header, _ = unpack(data)
        height, width = header.height, header.width
    return len(data) * 8.0 / (height * width)
