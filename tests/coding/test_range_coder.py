import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hific_diffusion.coding import range_coder, tables
from hific_diffusion.coding.bitstream import BitstreamError


@pytest.fixture(scope="module")
def gauss():
    return tables.build_gaussian_tables(tables.gaussian_scale_table(32, 0.11, 256.0))


def _sample(t, n, rng):
    idx = rng.integers(0, t.num_tables, n)
    scales = tables.gaussian_scale_table(32, 0.11, 256.0)[idx]
    sym = np.round(rng.normal(0, scales)).astype(np.int32)
    return sym, idx


def test_decode_inverts_encode_exactly_including_int32_outliers(gauss):
    rng = np.random.default_rng(0)
    sym, idx = _sample(gauss, 20000, rng)
    extremes = np.array([2**31 - 1, -(2**31), 1, -1, 0, 100000, -77777, 65536, -65537])
    pos = rng.choice(sym.size, extremes.size, replace=False)
    sym[pos] = extremes
    sym = sym.reshape(100, 200)
    idx = idx.reshape(100, 200)
    enc = range_coder.Encoder(gauss)
    enc.encode(sym, idx)
    data = enc.finish()
    out = range_coder.Decoder(gauss, data).decode(idx)
    assert out.dtype == np.int32 and out.shape == sym.shape
    assert np.array_equal(out, sym)


def test_every_symbol_escaped_still_round_trips(gauss):
    rng = np.random.default_rng(1)
    sym = rng.integers(-(2**31), 2**31, 500, dtype=np.int64).astype(np.int32)
    idx = np.zeros(500, np.int64)
    enc = range_coder.Encoder(gauss)
    enc.encode(sym, idx)
    assert np.array_equal(range_coder.Decoder(gauss, enc.finish()).decode(idx), sym)


def test_code_length_is_within_one_percent_of_ideal(gauss):
    rng = np.random.default_rng(2)
    sym, idx = _sample(gauss, 200000, rng)
    enc = range_coder.Encoder(gauss)
    enc.encode(sym, idx)
    bits = 8 * len(enc.finish())
    p = (
        np.array([gauss.pmfs[k, s - gauss.offsets[k]] for s, k in zip(sym, idx, strict=True)])
        / 2.0**16
    )
    ideal = -np.log2(p).sum()
    assert ideal <= bits <= 1.01 * ideal + 64


def test_stages_decode_in_encoding_order(gauss):
    rng = np.random.default_rng(3)
    stages = [_sample(gauss, n, rng) for n in (7, 3000, 1, 500)]
    enc = range_coder.Encoder(gauss)
    for s, i in stages:
        enc.encode(s, i)
    dec = range_coder.Decoder(gauss, enc.finish())
    for s, i in stages:
        assert np.array_equal(dec.decode(i), s)


def test_encoding_is_deterministic(gauss):
    rng = np.random.default_rng(4)
    sym, idx = _sample(gauss, 5000, rng)
    a, b = range_coder.Encoder(gauss), range_coder.Encoder(gauss)
    a.encode(sym, idx)
    b.encode(sym, idx)
    assert a.finish() == b.finish()


def test_empty_stage_round_trips(gauss):
    enc = range_coder.Encoder(gauss)
    enc.encode(np.zeros(0, np.int32), np.zeros(0, np.int32))
    enc.encode(np.array([3]), np.array([5]))
    dec = range_coder.Decoder(gauss, enc.finish())
    assert dec.decode(np.zeros(0, np.int32)).size == 0
    assert dec.decode(np.array([5]))[0] == 3


def test_bad_data_raises_bitstream_error(gauss):
    with pytest.raises(BitstreamError):
        range_coder.Decoder(gauss, b"abc")
    idx = np.zeros(1000, np.int64)
    with pytest.raises(BitstreamError):
        range_coder.Decoder(gauss, b"\xff" * 8).decode(idx)


def test_data_no_encoder_wrote_is_a_bitstream_error_naming_the_section(gauss):
    """constriction signals it with an AssertionError, mapped where it is raised."""
    with pytest.raises(BitstreamError, match="y section is invalid entropy-coded data"):
        range_coder.Decoder(gauss, b"\xff" * 8, "y").decode(np.zeros(1000, np.int64))


@pytest.mark.parametrize("bug", [AssertionError, IndexError, KeyError, ValueError])
def test_a_bug_in_the_decoder_is_not_reported_as_corrupt_data(gauss, monkeypatch, bug):
    """Only the coder's verdict on the data is a BitstreamError; an exception
    from the decoder's own code is a bug and reaches the caller as it is."""
    enc = range_coder.Encoder(gauss)
    enc.encode(np.array([3]), np.array([5]))
    data = enc.finish()

    def broken(*args):
        raise bug("a bug")

    monkeypatch.setattr(range_coder, "_groups", broken)
    with pytest.raises(bug) as info:
        range_coder.Decoder(gauss, data).decode(np.array([5]))
    assert not isinstance(info.value, BitstreamError)


def test_table_index_out_of_range_is_rejected(gauss):
    with pytest.raises(ValueError):
        range_coder.Encoder(gauss).encode(np.array([0]), np.array([gauss.num_tables]))


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=0, max_size=256), n=st.integers(0, 300), k=st.integers(0, 31))
def test_garbage_data_decodes_to_int32_or_raises_bitstream_error(gauss, data, n, k):
    data = data[: len(data) - len(data) % 4]
    idx = np.full(n, k)
    try:
        out = range_coder.Decoder(gauss, data).decode(idx)
    except BitstreamError:
        return
    assert out.shape == (n,) and out.dtype == np.int32


def _stages(gauss, seed=5):
    rng = np.random.default_rng(seed)
    stages = [_sample(gauss, n, rng) for n in (300, 1, 2000)]
    stages[0][0][:3] = [2**31 - 1, -(2**31), 90000]  # escapes are re-encoded too
    enc = range_coder.Encoder(gauss)
    for s, i in stages:
        enc.encode(s, i)
    return stages, enc.finish()


def _decode_all(gauss, data, stages):
    dec = range_coder.Decoder(gauss, data)
    out = [dec.decode(i) for _, i in stages]
    dec.finish()
    return out


def test_finish_accepts_exactly_the_encoded_section(gauss):
    stages, data = _stages(gauss)
    out = _decode_all(gauss, data, stages)
    assert all(np.array_equal(o, s) for o, (s, _) in zip(out, stages, strict=True))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: b"",
        lambda d: d[:-4],
        lambda d: d[:4],
        lambda d: d + b"\0\0\0\0",
        lambda d: d + b"\xff\xff\xff\xff",
        lambda d: d + d,
    ],
    ids=["empty", "last_word_cut", "one_word_left", "zero_word_added", "ones_added", "doubled"],
)
def test_sections_emptied_shortened_or_lengthened_are_rejected(gauss, mutate):
    """constriction reads missing words as zeros and never looks past what it
    needs: without ``finish`` these would decode to something."""
    stages, data = _stages(gauss)
    with pytest.raises(BitstreamError):
        _decode_all(gauss, mutate(data), stages)
