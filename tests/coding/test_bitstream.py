import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hific_diffusion.coding import bitstream
from hific_diffusion.coding.bitstream import BitstreamError, Header

FP = bitstream.short_fingerprint(b"some model")


def _valid(sections=(b"zzzz", b"y" * 300, b"")):
    h = Header(height=63, width=65, fingerprint=FP, decoder="flow", steps=12, seed=7)
    return h, list(sections), bitstream.pack(h, list(sections))


def _recrc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def test_unpack_inverts_pack():
    h, sections, data = _valid()
    h2, s2 = bitstream.unpack(data)
    assert h2 == h and s2 == sections


def test_header_overhead_is_small():
    h, _, data = _valid(sections=[b"abcd"])
    assert len(data) == 24 + 1 + 1 + 4 + 4


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"\x89HF", "truncated"),
        (b"GIF89a" + b"\0" * 40, "foreign"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "foreign"),
    ],
)
def test_empty_truncated_and_foreign_inputs_are_rejected(data, message):
    with pytest.raises(BitstreamError, match=message):
        bitstream.unpack(data)


def test_other_format_version_is_rejected():
    _, _, data = _valid()
    body = bytearray(data[:-4])
    body[4] = bitstream.FORMAT_VERSION + 1
    with pytest.raises(BitstreamError, match="version"):
        bitstream.unpack(_recrc(bytes(body)))


def test_crc_mismatch_is_rejected():
    _, _, data = _valid()
    bad = bytearray(data)
    bad[40] ^= 1
    with pytest.raises(BitstreamError, match="CRC32"):
        bitstream.unpack(bytes(bad))


@pytest.mark.parametrize("h, w", [(0, 5), (5, 0), (65535, 65535)])
def test_absurd_dimensions_are_rejected_even_with_a_valid_crc(h, w):
    _, _, data = _valid()
    body = bytearray(data[:-4])
    struct.pack_into("<HH", body, 12, h, w)
    with pytest.raises(BitstreamError, match="absurd"):
        bitstream.unpack(_recrc(bytes(body)))


def test_inconsistent_section_lengths_are_rejected_even_with_a_valid_crc():
    _, _, data = _valid()
    body = bytearray(data[:-4])
    body[25] += 1  # first section length
    with pytest.raises(BitstreamError, match="sections declare"):
        bitstream.unpack(_recrc(bytes(body)))


def test_pack_refuses_absurd_header():
    with pytest.raises(BitstreamError):
        bitstream.pack(Header(height=0, width=3, fingerprint=FP), [])
    with pytest.raises(ValueError):
        bitstream.pack(Header(height=3, width=3, fingerprint=b"short"), [])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    cut=st.integers(min_value=0, max_value=400),
)
def test_mutated_or_truncated_files_always_raise_bitstream_error(data, cut):
    _, _, valid = _valid()
    buf = bytearray(valid)
    n_mut = data.draw(st.integers(min_value=0, max_value=4))
    for _ in range(n_mut):
        i = data.draw(st.integers(min_value=0, max_value=len(buf) - 1))
        buf[i] = data.draw(st.integers(min_value=0, max_value=255))
    if data.draw(st.booleans()):
        buf = buf[: min(cut, len(buf) - 1)]
    mutated = bytes(buf)
    if mutated == valid:
        return
    with pytest.raises(BitstreamError):
        bitstream.unpack(mutated)


@pytest.mark.parametrize(
    "h, w, ok",
    [(16384, 16384, True), (65535, 1, True), (16385, 16384, False), (1, 65536, False)],
)
def test_headers_and_images_share_one_size_limit(h, w, ok):
    """One documented limit (README: 1..65535 per side, at most 2^28 pixels)."""
    from hific_diffusion import images

    assert (bitstream.size_problem(h, w) is None) == ok
    for check, error in (
        (bitstream.check_dimensions, BitstreamError),
        (images._check_size, ValueError),
    ):
        if ok:
            check(h, w)
        else:
            with pytest.raises(error, match=bitstream.size_problem(h, w).replace("^", r"\^")):
                check(h, w)
