"""Integer probability tables for the range coder.

The Gaussian conditional of Balle et al. (2018, "Variational image compression
with a scale hyperprior", Sec. 3) codes ``q = round(y - mu)`` with a zero-mean
Gaussian of scale ``sigma`` convolved with a unit box, i.e.
``p(q) = Phi((q + 1/2) / sigma) - Phi((q - 1/2) / sigma)``. As in
tensorflow-compression, sigma is snapped to a log-spaced scale table and each
scale gets one integer pmf, built once from the parameters and serialized with
the model (never edited by hand).

Every row carries an *escape bin* after its in-support symbols, so any int32
symbol can be coded: an out-of-support symbol is coded as the escape bin
followed by its value in an Elias-gamma-like bypass code (see
``range_coder``).
"""

from __future__ import annotations

import dataclasses
import decimal
import hashlib
import io

import numpy as np
from scipy import special

from hific_diffusion.errors import HfdError

_MAGIC = b"HFDTAB1\0"


@dataclasses.dataclass(frozen=True, eq=False)
class DiscreteTables:
    """Integer pmfs, one row per table index.

    Attributes:
      pmfs: int32[K, Lmax + 1]. Row k holds ``lengths[k]`` in-support counts
        (symbol ``offsets[k] + j`` in column j), then the escape count in
        column ``lengths[k]``, then zeros. Each row sums to ``2**precision``
        and every in-support count and the escape count are >= 1.
      offsets: int32[K], the symbol value of column 0.
      lengths: int32[K], the number of in-support symbols per row.
      precision: bits of the fixed-point probabilities.
    """

    pmfs: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    precision: int

    def __post_init__(self):
        pmfs = np.ascontiguousarray(self.pmfs, dtype=np.int32)
        offsets = np.ascontiguousarray(self.offsets, dtype=np.int32)
        lengths = np.ascontiguousarray(self.lengths, dtype=np.int32)
        if pmfs.ndim != 2 or offsets.shape != (pmfs.shape[0],) or lengths.shape != offsets.shape:
            raise ValueError("tables: pmfs must be [K, L] with offsets and lengths of shape [K]")
        if not 1 <= int(self.precision) <= 24:
            raise ValueError(f"tables: precision {self.precision} not in [1, 24]")
        cols = np.arange(pmfs.shape[1])[None, :]
        live = cols <= lengths[:, None]
        if np.any(lengths < 1) or np.any(lengths + 1 > pmfs.shape[1]):
            raise ValueError("tables: every row needs >= 1 symbol and room for the escape bin")
        if np.any(pmfs[live] < 1) or np.any(pmfs[~live] != 0):
            raise ValueError("tables: live bins must be >= 1 and padding bins 0")
        if np.any(pmfs.astype(np.int64).sum(axis=1) != 1 << int(self.precision)):
            raise ValueError("tables: every row must sum to 2**precision")
        for a in (pmfs, offsets, lengths):
            a.setflags(write=False)
        object.__setattr__(self, "pmfs", pmfs)
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "lengths", lengths)
        object.__setattr__(self, "precision", int(self.precision))

    @property
    def num_tables(self) -> int:
        return int(self.pmfs.shape[0])

    def row(self, k: int) -> np.ndarray:
        """The live bins of row k (in-support counts then the escape count)."""
        return self.pmfs[k, : int(self.lengths[k]) + 1]

    @classmethod
    def from_float_pmfs(
        cls, pmf: np.ndarray, offsets, precision: int = 16, lengths=None
    ) -> DiscreteTables:
        """Quantizes float pmfs to integer counts summing to ``2**precision``.

        ``pmf[k, j]`` is the probability of symbol ``offsets[k] + j`` for
        ``j < lengths[k]`` (default: all L columns). The mass a row lacks
        (1 - sum) becomes the escape bin's probability. Every live bin gets at
        least one count; rounding error is absorbed by the largest bins, so
        the quantization is deterministic given the float64 input.
        """
        pmf = np.asarray(pmf, dtype=np.float64)
        if pmf.ndim != 2 or not np.all(np.isfinite(pmf)) or np.any(pmf < 0):
            raise ValueError("from_float_pmfs: pmf must be a finite, non-negative [K, L] array")
        k_rows, width = pmf.shape
        lengths = np.full(k_rows, width, np.int64) if lengths is None else np.asarray(lengths)
        if np.any(lengths < 1) or np.any(lengths > width):
            raise ValueError("from_float_pmfs: lengths must be in [1, L]")
        total = 1 << precision
        if width + 1 > total:
            raise ValueError(f"from_float_pmfs: {width + 1} bins do not fit precision {precision}")
        out = np.zeros((k_rows, width + 1), np.int64)
        for k in range(k_rows):
            n = int(lengths[k])
            p = pmf[k, :n]
            escape = max(0.0, 1.0 - float(p.sum()))
            probs = np.concatenate([p, [escape]])
            probs = probs / probs.sum()
            counts = _quantize_row(probs, total)
            out[k, : n + 1] = counts
        return cls(out.astype(np.int32), np.asarray(offsets, np.int32), lengths, precision)

    def to_bytes(self) -> bytes:
        """Deterministic serialization (fixed little-endian layout)."""
        buf = io.BytesIO()
        buf.write(_MAGIC)
        header = np.array([self.precision, *self.pmfs.shape], dtype="<u4")
        buf.write(header.tobytes())
        for a in (self.offsets, self.lengths, self.pmfs):
            buf.write(np.ascontiguousarray(a, dtype="<i4").tobytes())
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> DiscreteTables:
        if len(data) < 20 or data[:8] != _MAGIC:
            raise ValueError("tables: not a serialized DiscreteTables")
        precision, k_rows, width = (int(v) for v in np.frombuffer(data, "<u4", 3, 8))
        need = 20 + 4 * (2 * k_rows + k_rows * width)
        if len(data) != need:
            raise ValueError(f"tables: expected {need} bytes, got {len(data)}")
        arr = np.frombuffer(data, "<i4", offset=20).astype(np.int32)
        offsets, lengths = arr[:k_rows], arr[k_rows : 2 * k_rows]
        pmfs = arr[2 * k_rows :].reshape(k_rows, width)
        return cls(pmfs, offsets, lengths, precision)

    def digest(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()

    def __eq__(self, other) -> bool:
        return isinstance(other, DiscreteTables) and self.to_bytes() == other.to_bytes()

    def __hash__(self) -> int:
        return hash(self.digest())


def _quantize_row(probs: np.ndarray, total: int) -> np.ndarray:
    """Integer counts >= 1 summing to ``total``, close to ``probs * total``.

    Bins below one count are floored to 1 and the rest of the budget is
    shared among the others in proportion to their probability (so the
    floors cost every large bin the same relative amount, not the mode
    alone); the last few counts of rounding error go to the largest bins.
    """
    small = probs * total < 1.0
    for _ in range(4):  # rescaling can push a few more bins under one count
        budget = total - int(small.sum())
        scaled = probs * (budget / probs[~small].sum())
        grown = ~small & (scaled < 1.0)
        if not grown.any():
            break
        small |= grown
    counts = np.where(small, 1, np.maximum(1, np.round(scaled))).astype(np.int64)
    excess = int(counts.sum()) - total
    order = np.argsort(-counts, kind="stable")
    i = 0
    while excess != 0:
        j = order[i % order.size]
        step = min(excess, int(counts[j]) - 1) if excess > 0 else excess
        counts[j] -= step
        excess -= step
        i += 1
    return counts


def gaussian_scale_table(num_scales: int, scale_min: float, scale_max: float) -> np.ndarray:
    """Log-spaced scales (tensorflow-compression / Balle et al. 2018 convention).

    ``exp(log(min) + i * (log(max) - log(min)) / (num_scales - 1))``, evaluated
    in 40-digit decimal arithmetic (correctly rounded ``ln``/``exp``) and then
    rounded once to float64, so the table is the same on every machine: numpy's
    ``exp`` and ``log`` have CPU-specific SIMD versions that differ in the
    last bit, and the table feeds the coding constants (DESIGN.md, "Bit-exact
    decoding").
    """
    if num_scales < 1 or not 0 < scale_min <= scale_max:
        raise ValueError("gaussian_scale_table: need num_scales >= 1 and 0 < min <= max")
    if num_scales == 1:
        return np.array([scale_min], np.float64)
    with decimal.localcontext() as ctx:
        ctx.prec = 40
        lo, hi = decimal.Decimal(scale_min).ln(), decimal.Decimal(scale_max).ln()
        step = (hi - lo) / (num_scales - 1)
        return np.array([float((lo + i * step).exp()) for i in range(num_scales)], np.float64)


def quantized_gaussian_pmf(symbols: np.ndarray, scale: float) -> np.ndarray:
    """p(q) = Phi((q+1/2)/s) - Phi((q-1/2)/s), evaluated on the smaller tail
    (Balle et al. 2018 App. 6.2 trick) to keep precision far from zero."""
    q = -np.abs(np.asarray(symbols, np.float64))
    return special.ndtr((q + 0.5) / scale) - special.ndtr((q - 0.5) / scale)


def build_gaussian_tables(
    scale_table: np.ndarray, precision: int = 16, tail_mass: float = 1e-9
) -> DiscreteTables:
    """One zero-mean quantized-Gaussian table per scale (symbols round(y - mu)).

    The support is +-ceil(sigma * Phi^-1(1 - tail_mass / 2)); mass beyond it
    goes to the escape bin.
    """
    scale_table = np.asarray(scale_table, np.float64)
    half = np.ceil(scale_table * -special.ndtri(tail_mass / 2)).astype(np.int64)
    width = int(2 * half.max() + 1)
    pmf = np.zeros((len(scale_table), width), np.float64)
    for k, (s, h) in enumerate(zip(scale_table, half, strict=True)):
        pmf[k, : 2 * h + 1] = quantized_gaussian_pmf(np.arange(-h, h + 1), s)
    return DiscreteTables.from_float_pmfs(
        pmf, offsets=-half, precision=precision, lengths=2 * half + 1
    )


# ------------------------------------------------------- the tables of a model
PRECISION = 16  # bits of every coding table's counts


def derive_tables(model) -> dict[str, DiscreteTables]:
    """The entropy-coding tables of ``model``'s current weights: ``z`` (the
    learned factorized prior) and ``y`` (one quantized Gaussian per scale).

    These go through float ``exp``/``tanh``/``erf``, whose last bit can differ
    between CPUs, and a float pmf quantized to integer counts can then move a
    count. So tables are derived once, where a model is exported, and stored
    with it (bundles); every coder of that model uses the stored tables, never
    its own derivation. Everything else between z_hat and the coder (the
    integer network, the scale thresholds) is derived exactly.
    """
    pmf, offsets, lengths = model.prior.integer_pmfs()
    scales = gaussian_scale_table(model.num_scales, model.scale_min, model.scale_max)
    return {
        "z": DiscreteTables.from_float_pmfs(pmf, offsets, PRECISION, lengths=lengths),
        "y": build_gaussian_tables(scales, precision=PRECISION),
    }


class TablesError(HfdError, ValueError):
    """Stored coding tables that do not fit the model they are given with."""


def check_model_tables(model, tables) -> None:
    """Stored tables fit ``model``: both parts, its row counts, PRECISION bits."""
    missing = {"z", "y"} - set(tables)
    if missing:
        raise TablesError(f"coding tables lack {sorted(missing)}")
    z, y = tables["z"], tables["y"]
    if z.num_tables != model.n or y.num_tables != model.num_scales:
        raise TablesError(
            f"coding tables have {z.num_tables} z rows and {y.num_tables} y scales; "
            f"the model needs {model.n} and {model.num_scales}"
        )
    if z.precision != PRECISION or y.precision != PRECISION:
        raise TablesError(f"coding tables must have {PRECISION}-bit precision")
