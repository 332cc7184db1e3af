"""The payloads of the ``.hfd`` side-information sections, bit-exact on every machine.

``bitstream.py`` frames a side-information section (type tag, payload
version, length); this module writes and reads each type's payload:

* ``corrdiff`` (version 1): CorrDiff's correction factors, one IEEE float16
  (little-endian) per sampler step: ``2 * steps`` bytes.
* ``hfdplus`` (version 1): HFD+'s residual-energy map, integer levels in
  ``[0, levels)`` of shape ``[ceil(H / block), ceil(W / block), 3]``: one byte
  ``block``, one byte ``levels``, then the levels range coded (constriction,
  queue semantics) channel by channel in row-major order, each channel with
  its own adaptive categorical model. The model's counts are integers and
  its probabilities exact multiples of ``2^-PRECISION`` (no float arithmetic
  that could round differently on another machine), so every machine reads
  the same levels.

Every fault is a one-line ``BitstreamError``, like any bad section; the
decoder re-encodes what it read and refuses a payload that is not exactly
what the encoder writes for it (truncated, padded, altered).
"""

from __future__ import annotations

import constriction
import numpy as np

from hific_diffusion.coding.bitstream import BitstreamError, SideInfo

VERSIONS = {"corrdiff": 1, "hfdplus": 1}  # the payload version each kind is written in
PRECISION = 12  # the adaptive model's probabilities are multiples of 2**-PRECISION
MAX_LEVELS = 64
# ASSUMPTION (ours): the adaptive model starts from one count per level and
# adds INCREMENT per coded symbol, halving every count above RESCALE_AT.
INCREMENT = 16
RESCALE_AT = 1 << 16

_cmodel = constriction.stream.model
_queue = constriction.stream.queue


def _check_version(side: SideInfo) -> None:
    want = VERSIONS[side.kind]
    if side.version != want:
        raise BitstreamError(
            f"unsupported {side.kind} side-information version {side.version} "
            f"(this build reads {want})"
        )


# ------------------------------------------------------------------ corrdiff
def pack_gammas(gammas) -> SideInfo:
    """Per-step correction factors -> a ``corrdiff`` section (float16 each)."""
    g = np.asarray(gammas, np.float32).reshape(-1)
    if not g.size or not np.all(np.isfinite(g)):
        raise ValueError("corrdiff needs at least one finite correction factor")
    return SideInfo("corrdiff", VERSIONS["corrdiff"], g.astype("<f2").tobytes())


def unpack_gammas(side: SideInfo) -> np.ndarray:
    """A ``corrdiff`` section -> float32 ``[steps]`` (the float16 values, exactly)."""
    _check_version(side)
    data = side.payload
    if not data or len(data) % 2:
        raise BitstreamError(
            f"corrupt corrdiff side information ({len(data)} bytes, not float16 factors)"
        )
    g = np.frombuffer(data, "<f2").astype(np.float32)
    if not np.all(np.isfinite(g)):
        raise BitstreamError("corrupt corrdiff side information (a factor is not finite)")
    return g


# ------------------------------------------------------------------ hfdplus
def map_shape(height: int, width: int, block: int) -> tuple[int, int, int]:
    """The energy map's shape for an ``height x width`` image."""
    return -(-height // block), -(-width // block), 3


def _pmf(counts: np.ndarray) -> np.ndarray:
    """Integer counts -> probabilities that are exact multiples of 2^-PRECISION,
    each at least one unit (integer arithmetic only)."""
    total, n = int(counts.sum()), len(counts)
    q = 1 + counts * ((1 << PRECISION) - n) // total
    q[int(np.argmax(counts))] += (1 << PRECISION) - int(q.sum())
    return q.astype(np.float64) / float(1 << PRECISION)


class _Adaptive:
    """The adaptive categorical model of one channel."""

    def __init__(self, levels: int):
        self.counts = np.ones(levels, np.int64)

    def model(self):
        return _cmodel.Categorical(_pmf(self.counts), perfect=False)

    def update(self, symbol: int) -> None:
        self.counts[symbol] += INCREMENT
        if self.counts.sum() > RESCALE_AT:
            self.counts = (self.counts + 1) // 2


def _code_levels(q: np.ndarray, levels: int) -> bytes:
    enc = _queue.RangeEncoder()
    for c in range(q.shape[-1]):
        adaptive = _Adaptive(levels)
        for s in q[..., c].reshape(-1).tolist():
            enc.encode(s, adaptive.model())
            adaptive.update(s)
    return enc.get_compressed().astype("<u4").tobytes()


def _check_map_params(block: int, levels: int) -> None:
    if not 1 <= block <= 255 or not 2 <= levels <= MAX_LEVELS:
        raise ValueError(f"block must be 1..255 and levels 2..{MAX_LEVELS}")


def pack_energy(q, block: int, levels: int) -> SideInfo:
    """Energy levels ``int[h, w, 3]`` in ``[0, levels)`` -> an ``hfdplus`` section."""
    _check_map_params(block, levels)
    q = np.asarray(q)
    if q.ndim != 3 or q.shape[-1] != 3 or q.size == 0:
        raise ValueError(f"energy levels must be [h, w, 3], got shape {q.shape}")
    if q.min() < 0 or q.max() >= levels:
        raise ValueError(f"energy levels must be in [0, {levels})")
    payload = bytes([block, levels]) + _code_levels(q.astype(np.int64), levels)
    return SideInfo("hfdplus", VERSIONS["hfdplus"], payload)


def unpack_energy(side: SideInfo, height: int, width: int, block: int, levels: int) -> np.ndarray:
    """An ``hfdplus`` section of an ``height x width`` image, made for a
    decoder whose map has ``block`` and ``levels`` -> levels ``int32[h, w, 3]``."""
    _check_version(side)
    data = side.payload
    if len(data) < 2 or (len(data) - 2) % 4:
        raise BitstreamError(f"corrupt hfdplus side information ({len(data)} bytes)")
    if (data[0], data[1]) != (block, levels):
        raise BitstreamError(
            f"hfdplus side information of block {data[0]} and {data[1]} levels; this "
            f"model's hfdplus decoder reads block {block} and {levels} levels"
        )
    shape = map_shape(height, width, block)
    try:
        dec = _queue.RangeDecoder(np.frombuffer(data[2:], "<u4").astype(np.uint32))
        q = np.zeros(shape, np.int32)
        for c in range(3):
            adaptive = _Adaptive(levels)
            flat = np.zeros(shape[0] * shape[1], np.int32)
            for i in range(flat.size):
                flat[i] = s = dec.decode(adaptive.model())
                adaptive.update(s)
            q[..., c] = flat.reshape(shape[:2])
    except (ValueError, RuntimeError, AssertionError) as e:  # constriction's own
        raise BitstreamError(f"corrupt hfdplus side information ({e})") from None
    if _code_levels(q.astype(np.int64), levels) != data[2:]:
        raise BitstreamError("corrupt or truncated hfdplus side information")
    return q
