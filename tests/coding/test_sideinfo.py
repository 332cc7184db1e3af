"""Side-information sections: the container's framing (format version 2) and
each type's payload (coding/sideinfo.py)."""

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from hific_diffusion.coding import bitstream, sideinfo
from hific_diffusion.coding.bitstream import BitstreamError, Header, SideInfo

FP = bitstream.short_fingerprint(b"some model")
V1_FILE = Path(__file__).resolve().parents[1] / "fixtures" / "format_v1" / "chelsea.hfd"


def _recrc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def _energy(shape=(5, 7, 3), levels=8, seed=0):
    return np.random.default_rng(seed).integers(0, levels, shape)


# _with_side's layout: 25 header bytes, 2 one-byte section lengths, then the
# side-information count and its entries (tag, version, one-byte length).
COUNT_AT, FIRST_TAG_AT = 27, 28


def _with_side(*side, sections=(b"zz", b"y" * 40)):
    h = Header(height=70, width=100, fingerprint=FP, decoder="corrdiff", steps=4, side=side)
    return h, bitstream.pack(h, list(sections))


def test_a_file_without_side_information_is_written_in_version_1_byte_for_byte():
    """The fixture was written before side information existed: parsing and
    packing it again gives the same bytes, and its header says version 1."""
    data = V1_FILE.read_bytes()
    header, sections = bitstream.unpack(data)
    assert header.version == 1 and header.side == () and data[4] == 1
    assert bitstream.pack(header, sections) == data


def test_side_information_round_trips_in_version_2_and_counts_in_real_bpp():
    g = sideinfo.pack_gammas([0.5, 0.25, 1.0, 0.0])
    e = sideinfo.pack_energy(_energy(), 16, 8)
    h, data = _with_side(g, e)
    h2, sections = bitstream.unpack(data)
    assert h2 == h and h2.version == 2 and sections == [b"zz", b"y" * 40]
    assert h2.side_info("corrdiff") == g and h2.side_info("hfdplus") == e
    _, plain = _with_side()
    extra = len(data) - len(plain)
    # the payloads plus 1 count byte and 3 framing bytes per section
    assert extra == len(g.payload) + len(e.payload) + 1 + 2 * 3
    assert bitstream.real_bpp(data) == len(data) * 8 / (70 * 100)


def test_unknown_side_information_type_is_one_clear_line():
    g = sideinfo.pack_gammas([0.5])
    _, data = _with_side(g)
    body = bytearray(data[:-4])
    assert body[FIRST_TAG_AT : FIRST_TAG_AT + 3] == bytes([1, 1, 2])  # corrdiff, v1, 2 bytes
    body[FIRST_TAG_AT] = 9
    with pytest.raises(BitstreamError, match="unknown side-information type 9") as e:
        bitstream.unpack(_recrc(bytes(body)))
    assert "\n" not in str(e.value)


def test_two_sections_of_one_kind_are_refused_both_ways():
    g = sideinfo.pack_gammas([0.5])
    with pytest.raises(ValueError, match="one side-information section per kind"):
        _with_side(g, g)
    _, data = _with_side(g, sideinfo.pack_energy(_energy(), 16, 8))
    body = bytearray(data[:-4])
    assert body[FIRST_TAG_AT + 3] == 2  # the hfdplus tag becomes a second corrdiff
    body[FIRST_TAG_AT + 3] = 1
    with pytest.raises(BitstreamError, match="two corrdiff"):
        bitstream.unpack(_recrc(bytes(body)))


@pytest.mark.parametrize("count", [0, 17])
def test_side_section_count_out_of_range_is_corrupt(count):
    _, data = _with_side(sideinfo.pack_gammas([0.5]))
    body = bytearray(data[:-4])
    assert body[COUNT_AT] == 1
    body[COUNT_AT] = count
    with pytest.raises(BitstreamError, match="side-information sections"):
        bitstream.unpack(_recrc(bytes(body)))


def test_truncated_or_mutated_files_with_side_information_raise_bitstream_error():
    _, data = _with_side(sideinfo.pack_gammas([0.5, 0.7]), sideinfo.pack_energy(_energy(), 16, 8))
    for cut in range(1, len(data)):
        with pytest.raises(BitstreamError):
            bitstream.unpack(data[:cut])
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x21
        with pytest.raises(BitstreamError):
            bitstream.unpack(bytes(bad))


def test_payload_cut_short_behind_a_valid_crc_is_rejected_by_its_parser():
    side = sideinfo.pack_gammas([0.5, 0.7])
    with pytest.raises(BitstreamError, match="corrupt corrdiff"):
        sideinfo.unpack_gammas(SideInfo("corrdiff", 1, side.payload[:3]))
    with pytest.raises(BitstreamError, match="corrupt corrdiff"):
        sideinfo.unpack_gammas(SideInfo("corrdiff", 1, b""))
    with pytest.raises(BitstreamError, match="not finite"):
        sideinfo.unpack_gammas(SideInfo("corrdiff", 1, np.float16([np.inf]).tobytes()))
    with pytest.raises(BitstreamError, match="unsupported corrdiff side-information version 2"):
        sideinfo.unpack_gammas(SideInfo("corrdiff", 2, side.payload))


def test_gammas_are_stored_as_float16_exactly():
    g = np.float32([0.123456, 1.0, 0.0, -0.5])
    back = sideinfo.unpack_gammas(sideinfo.pack_gammas(g))
    np.testing.assert_array_equal(back, g.astype(np.float16).astype(np.float32))
    assert len(sideinfo.pack_gammas(np.zeros(16)).payload) == 32  # 16 bits a step


def test_energy_map_round_trips_exactly():
    for seed, levels in ((0, 8), (1, 2), (2, 64)):
        q = _energy((9, 4, 3), levels, seed)
        side = sideinfo.pack_energy(q, 16, levels)
        got = sideinfo.unpack_energy(side, 9 * 16 - 5, 4 * 16, 16, levels)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, q)


def test_a_constant_energy_map_costs_a_few_bytes():
    """768x512 at 16x16 blocks: 4608 levels, all equal, cost under 12 bytes;
    random levels cost about 3 bits each (8 levels)."""
    for level in (0, 5):
        side = sideinfo.pack_energy(np.full((32, 48, 3), level), 16, 8)
        assert len(side.payload) <= 12
        np.testing.assert_array_equal(sideinfo.unpack_energy(side, 512, 768, 16, 8), level)
    noisy = sideinfo.pack_energy(_energy((32, 48, 3)), 16, 8)
    assert 0.9 * 32 * 48 * 3 * 3 / 8 < len(noisy.payload) < 1.1 * 32 * 48 * 3 * 3 / 8


def test_energy_payload_truncated_padded_or_altered_is_rejected():
    q = _energy((6, 6, 3))
    data = sideinfo.pack_energy(q, 16, 8).payload
    for payload in (data[:-4], data + b"\0\0\0\0", data[:2], data[:-1]):
        with pytest.raises(BitstreamError, match="hfdplus"):
            sideinfo.unpack_energy(SideInfo("hfdplus", 1, payload), 96, 96, 16, 8)
    bad = bytearray(data)
    bad[5] ^= 0x40
    try:
        got = sideinfo.unpack_energy(SideInfo("hfdplus", 1, bytes(bad)), 96, 96, 16, 8)
    except BitstreamError:
        pass
    else:  # a flipped bit that still decodes must decode to other levels
        assert not np.array_equal(got, q)
    with pytest.raises(BitstreamError, match="this model's hfdplus decoder reads block 8"):
        sideinfo.unpack_energy(SideInfo("hfdplus", 1, data), 96, 96, 8, 8)


def test_pack_refuses_bad_side_information():
    with pytest.raises(ValueError):
        SideInfo("gan", 1, b"")
    with pytest.raises(ValueError):
        sideinfo.pack_energy(np.full((2, 2, 3), 8), 16, 8)
    with pytest.raises(ValueError):
        sideinfo.pack_gammas([np.nan])
