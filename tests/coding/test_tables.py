import math

import numpy as np
import pytest

from hific_diffusion.coding import tables


def _reference_pmf(q: int, s: float) -> float:
    phi = lambda x: 0.5 * math.erfc(-x / math.sqrt(2))
    return phi((q + 0.5) / s) - phi((q - 0.5) / s)


def test_rows_sum_to_two_to_the_precision_with_positive_live_bins():
    t = tables.build_gaussian_tables(tables.gaussian_scale_table(16, 0.11, 64.0))
    assert np.all(t.pmfs.astype(np.int64).sum(1) == 1 << 16)
    for k in range(t.num_tables):
        assert np.all(t.row(k) >= 1)
        assert np.all(t.pmfs[k, t.lengths[k] + 1 :] == 0)


def test_scale_table_is_log_spaced_between_bounds():
    s = tables.gaussian_scale_table(64, 0.11, 256.0)
    assert s[0] == pytest.approx(0.11) and s[-1] == pytest.approx(256.0)
    assert np.allclose(np.diff(np.log(s)), np.log(256 / 0.11) / 63)


@pytest.mark.parametrize("scale", [0.11, 0.7, 3.0, 40.0])
def test_gaussian_table_matches_float64_reference_pmf(scale):
    t = tables.build_gaussian_tables(np.array([scale]), precision=16)
    row = t.row(0)[:-1] / 2.0**16
    q = np.arange(t.lengths[0]) + t.offsets[0]
    ref = np.array([_reference_pmf(int(v), scale) for v in q])
    # Each bin is within one count plus the small share paid for the one-count
    # floors of the far tails; the code-length overhead (KL) is tiny.
    assert np.all(np.abs(row - ref) <= 1.0 / 2**16 + 0.01 * ref)
    assert np.sum(ref * np.log2(ref / row)) < 5e-3  # bits/symbol
    assert t.offsets[0] == -(t.lengths[0] // 2)  # symmetric, zero-centred support
    assert ref.sum() > 1 - 1e-8


def test_serialization_round_trips_and_is_deterministic():
    a = tables.build_gaussian_tables(tables.gaussian_scale_table(8, 0.11, 20.0))
    b = tables.build_gaussian_tables(tables.gaussian_scale_table(8, 0.11, 20.0))
    assert a.to_bytes() == b.to_bytes() and a.digest() == b.digest()
    c = tables.DiscreteTables.from_bytes(a.to_bytes())
    assert c == a and c.digest() == a.digest()
    assert np.array_equal(c.pmfs, a.pmfs) and np.array_equal(c.offsets, a.offsets)
    other = tables.build_gaussian_tables(tables.gaussian_scale_table(8, 0.11, 21.0))
    assert other.digest() != a.digest()


def test_from_bytes_rejects_truncated_data():
    data = tables.build_gaussian_tables(np.array([1.0, 2.0])).to_bytes()
    with pytest.raises(ValueError):
        tables.DiscreteTables.from_bytes(data[:-4])
    with pytest.raises(ValueError):
        tables.DiscreteTables.from_bytes(b"junk" + data)


def test_from_float_pmfs_gives_missing_mass_to_the_escape_bin():
    t = tables.DiscreteTables.from_float_pmfs(np.array([[0.25, 0.25, 0.25]]), [5], precision=8)
    assert list(t.row(0)) == [64, 64, 64, 64]
    assert t.offsets[0] == 5 and t.lengths[0] == 3


def test_invalid_rows_are_rejected():
    with pytest.raises(ValueError):
        tables.DiscreteTables(np.array([[3, 0]]), np.array([0]), np.array([1]), 2)
