"""Fuzzing the decoder with payload mutations whose CRC is recomputed (issue 18).

The CRC catches random damage; a hostile file has a consistent CRC. Whatever
its payload (the section table and the entropy-coded sections), decoding must
end in the project's own error or an image of the header's size: never another
exception, a hang or a blow-up in memory. Seeded and bounded in time.
"""

import resource
import signal
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from hific_diffusion.coding import bitstream
from hific_diffusion.coding.bitstream import BitstreamError

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden_coding"
SECONDS = 4.0  # fuzzing time after the first (compiling) decode
MAX_CASES = 400
MAX_DECODE_SECONDS = 5.0
MAX_RSS_GROWTH_MB = 512


@pytest.fixture(scope="module")
def golden_codec():
    from hific_diffusion.pipeline import Codec

    return Codec.load(GOLDEN / "bundle"), (GOLDEN / "photo.hfd").read_bytes()


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def mutate(rng: np.random.Generator, data: bytes) -> bytes:
    """One payload mutation of a valid file, CRC recomputed; the fixed header is kept."""
    header, sections = bitstream.unpack(data)
    kind = int(rng.integers(7))
    if kind == 6:  # any payload byte, the section length varints included
        body = bytearray(data[:-4])
        pos = int(rng.integers(bitstream._FIXED.size, len(body)))
        body[pos] = int(rng.integers(256))
        return _with_crc(bytes(body))
    which = int(rng.integers(len(sections)))
    s = bytearray(sections[which])
    n = len(s)
    if kind == 0 and n:  # one bit
        pos = int(rng.integers(n))
        s[pos] ^= 1 << int(rng.integers(8))
    elif kind == 1 and n:  # one byte
        s[int(rng.integers(n))] = int(rng.integers(256))
    elif kind == 2 and n:  # a run of random bytes
        pos, k = int(rng.integers(n)), int(rng.integers(1, 17))
        s[pos : pos + k] = rng.integers(0, 256, min(k, n - pos), dtype=np.uint8).tobytes()
    elif kind == 3:  # cut
        s = s[: int(rng.integers(n + 1))]
    elif kind == 4:  # append
        s += rng.integers(0, 256, int(rng.integers(1, 65)), dtype=np.uint8).tobytes()
    else:  # insert a word
        pos = 4 * int(rng.integers(n // 4 + 1))
        s[pos:pos] = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
    sections[which] = bytes(s)
    return bitstream.pack(header, sections)


def _alarm(signum, frame):
    raise TimeoutError("decoding hung")


def test_payload_mutations_with_a_valid_crc_give_our_error_or_an_image_of_the_right_shape(
    golden_codec,
):
    from hific_diffusion.pipeline import CodecError

    codec, data = golden_codec
    header, _ = bitstream.unpack(data)
    shape = (header.height, header.width, 3)
    assert codec.decompress(data).shape == shape  # compiles once, outside the budget
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rng = np.random.default_rng(18)
    outcomes = {"rejected": 0, "decoded": 0}
    slowest = 0.0
    old = signal.signal(signal.SIGALRM, _alarm)
    start = time.perf_counter()
    try:
        for i in range(MAX_CASES):
            if time.perf_counter() - start > SECONDS:
                break
            bad = mutate(rng, data)
            if bad == data:  # e.g. a byte replaced by itself
                continue
            signal.alarm(int(MAX_DECODE_SECONDS * 6))  # a hang fails the test
            t0 = time.perf_counter()
            try:
                out = codec.decompress(bad)
            except (BitstreamError, CodecError):
                outcomes["rejected"] += 1
            except Exception as e:  # noqa: BLE001 - any other error is the finding
                pytest.fail(f"case {i}: {type(e).__name__}: {e} (payload {bad.hex()})")
            else:
                assert out.shape == shape and out.dtype == np.uint8, (i, out.shape)
                outcomes["decoded"] += 1
            finally:
                signal.alarm(0)
            slowest = max(slowest, time.perf_counter() - t0)
    finally:
        signal.signal(signal.SIGALRM, old)
    growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss0
    print(f"{outcomes}, slowest {slowest:.3f} s, peak RSS growth {growth:.0f} MB")
    assert sum(outcomes.values()) >= 30, outcomes  # the budget fuzzed something
    assert outcomes["rejected"] > 0, outcomes
    assert slowest < MAX_DECODE_SECONDS, slowest
    assert growth < MAX_RSS_GROWTH_MB, growth
