"""Latent coding: image -> [z section, y section] -> image (ELIC Sec. 3, coding order).

Order: z first, coded with integer tables of the learned factorized prior
(one row per channel); then y group by group, anchors before non-anchors,
each stage's (mu, scale index) computed by the integer path
(:mod:`hific_diffusion.coding.intnet`) from what is already decoded, through
the same :func:`hific_diffusion.autoencoder.context.group_params` that training
uses. Symbols are ``q = round(y - mu)`` against the fixed-point mu; the
decoder rebuilds ``y_hat = q + mu`` exactly. Encoder and decoder share one
stage driver (:func:`_run_stages`); only the per-stage coding callback differs.

The integer network is derived exactly from the weights (integer rounding of
float32 values times powers of two, exact rational thresholds), so it is the
same on every machine. The entropy-coding tables go through float
transcendental functions; they are derived once, stored with an exported
model and used as stored (:func:`tables.derive_tables`). Both are cached under a hash
of the weights and tables, so they can never be stale.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hific_diffusion.autoencoder import context, tiles, valid
from hific_diffusion.autoencoder.defaults import Y_STRIDE, Z_STRIDE
from hific_diffusion.coding import intnet
from hific_diffusion.coding.bitstream import BitstreamError
from hific_diffusion.coding.params import (
    banded_hyper,
    banded_params,
    jit_channel_context,
    jit_hyper,
    jit_stage_params,
)
from hific_diffusion.coding.range_coder import Decoder, Encoder
from hific_diffusion.coding.tables import (
    DiscreteTables,
    check_model_tables,
    derive_tables,
    gaussian_scale_table,
)

FORMAT = b"hfd-latents-v1"  # bump when the coding order or integer path changes
_CACHE_SIZE = 4
_cache: collections.OrderedDict = collections.OrderedDict()


@dataclasses.dataclass(frozen=True)
class CodingModel:
    """What coding needs, derived from one set of weights."""

    graphdef: object
    state: object
    net: intnet.IntNet
    z_tables: DiscreteTables
    y_tables: DiscreteTables
    groups: tuple
    fingerprint: bytes
    n: int
    m: int
    halo: int  # latents of context around a tile (tiles.halo)

    @property
    def tables(self) -> dict[str, DiscreteTables]:
        return {"z": self.z_tables, "y": self.y_tables}


def _weights_digest(model) -> bytes:
    h = hashlib.sha256(FORMAT)
    meta = (
        model.n,
        model.m,
        model.groups,
        model.num_scales,
        model.scale_min,
        model.scale_max,
        model.int_frac_bits,
    )
    h.update(repr(meta).encode())
    leaves = jax.tree_util.tree_leaves_with_path(nnx.state(model, nnx.Param))
    for path, leaf in sorted(leaves, key=lambda kv: jax.tree_util.keystr(kv[0])):
        a = np.asarray(leaf, np.float32)
        h.update(jax.tree_util.keystr(path).encode() + repr(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.digest()


def prepare(model, tables: dict[str, DiscreteTables] | None = None) -> CodingModel:
    """Tables + integer path for ``model``'s current weights.

    ``tables`` (``{"z": ..., "y": ...}``, e.g. a bundle's) are used as given;
    without them they are derived (:func:`tables.derive_tables`). Results are cached
    under a hash of the weights and the tables, so they can never be stale.
    """
    key = _weights_digest(model)
    if tables is not None:
        check_model_tables(model, tables)
        key += (tables["z"].digest() + tables["y"].digest()).encode()
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    if tables is None:
        tables = derive_tables(model)
    scales = gaussian_scale_table(model.num_scales, model.scale_min, model.scale_max)
    net = intnet.build(model, scales)
    h = hashlib.sha256(_weights_digest(model))
    h.update(tables["z"].digest().encode() + tables["y"].digest().encode())
    for leaf in jax.tree_util.tree_leaves(net):
        h.update(np.ascontiguousarray(np.asarray(leaf, np.int32)).tobytes())
    graphdef, state = nnx.split(model)
    cm = CodingModel(
        graphdef,
        state,
        net,
        tables["z"],
        tables["y"],
        tuple(model.groups),
        h.digest(),
        int(model.n),
        int(model.m),
        tiles.halo(model.res_blocks),
    )
    _cache[key] = cm
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return cm


def _coding_model(model_or_cm) -> CodingModel:
    """A :class:`CodingModel` as given, or :func:`prepare` of an ELIC module."""
    return model_or_cm if isinstance(model_or_cm, CodingModel) else prepare(model_or_cm)


def model_fingerprint(model) -> bytes:
    """sha256 of the weights, the model sizes, the integer path and both tables."""
    return _coding_model(model).fingerprint


# ------------------------------------------------------------ size buckets
# The networks run at a size bucket (valid.bucket_hw) of the coded size.


@jax.jit
def _likelihood_bits(graphdef, state, x01, coded_hw):
    with valid.region(x01.shape[1:3], coded_hw):
        out = nnx.merge(graphdef, state)(x01, training=False)
    return out["y_bits"] + out["z_bits"]


@dataclasses.dataclass(frozen=True)
class LatentCoder:
    """What the coding order needs, as plain callables (no model classes).

    ``hyper(z_hat int32) -> hyper features`` and
    ``stage_params(hyper, y_fixed, k, stage) -> (mu fixed point, scale index)``;
    the Python path binds them to the jitted integer network, the StableHLO
    path (:mod:`hific_diffusion.stablehlo`) to exported functions.
    """

    hyper: object
    stage_params: object
    z_tables: DiscreteTables
    y_tables: DiscreteTables
    groups: tuple
    frac_bits: int


def latent_coder(cm: CodingModel) -> LatentCoder:
    """The jitted integer path, run at the bucket of the coded size."""
    net = cm.net

    def hyper(z_hat):
        coded = (z_hat.shape[1] * Z_STRIDE, z_hat.shape[2] * Z_STRIDE)
        if tiles.tiled(coded, tiles.TILE):
            return banded_hyper(net, z_hat)
        z = tiles.pad_to(z_hat, valid.bucket_hw(coded), Z_STRIDE)
        return jit_hyper(net, jnp.asarray(z), tiles.coded(coded))

    channel = {}  # group k -> its channel context, computed at the anchor stage

    def params(hyper, y_fixed, k, stage):
        _, h, w, _ = y_fixed.shape
        if tiles.tiled((h * Y_STRIDE, w * Y_STRIDE), tiles.TILE):
            return banded_params(net, hyper, y_fixed, k, stage)
        coded = tiles.coded((h * Y_STRIDE, w * Y_STRIDE))
        bucket = valid.bucket_hw((h * Y_STRIDE, w * Y_STRIDE))
        y = jnp.asarray(tiles.pad_to(y_fixed, bucket, Y_STRIDE).astype(np.int32))
        if stage == context.ANCHOR or k not in channel:
            channel.clear()
            channel[k] = jit_channel_context(net, y, k, coded) if k else None
        mu, idx = jit_stage_params(net, hyper, y, k, jnp.int32(stage), coded, channel[k])
        return mu[:, :h, :w], idx[:, :h, :w]

    return LatentCoder(
        hyper=hyper,
        stage_params=params,
        z_tables=cm.z_tables,
        y_tables=cm.y_tables,
        groups=cm.groups,
        frac_bits=net.frac_bits,
    )


def _run_stages(coder: LatentCoder, hyper, y_shape, code_stage):
    """The coding-order loop shared by encoder and decoder.

    ``code_stage(k, sel, mu, idx) -> q`` codes (or decodes) the symbols of
    one stage: ``sel`` [h, w] marks its positions, ``mu`` (fixed point) and
    ``idx`` are int32 [P, c_k]. Returns (y_hat float32, y_fixed int16: the
    fixed-point latents saturate to [ACT_MIN, ACT_MAX], the int16 range; the
    programs get them as int32).
    """
    _, h, w, m = y_shape
    f = coder.frac_bits
    assert (intnet.ACT_MIN, intnet.ACT_MAX) == (-(1 << 15), (1 << 15) - 1)
    y_fixed = np.zeros((1, h, w, m), np.int16)
    y_hat = np.zeros((1, h, w, m), np.float32)
    start = 0
    for k, c_k in enumerate(coder.groups):
        for stage in (context.ANCHOR, context.NONANCHOR):
            mu, idx = coder.stage_params(hyper, y_fixed, k, stage)
            sel = context.checkerboard(h, w, stage)[0, :, :, 0]
            mu_s = np.asarray(mu)[0][sel].astype(np.int64)
            idx_s = np.asarray(idx)[0][sel]
            q = np.asarray(code_stage(k, sel, mu_s, idx_s), np.int64).reshape(mu_s.shape)
            fixed = np.clip(q, -(1 << 16), 1 << 16) * (1 << f) + mu_s
            y_fixed[0, sel, start : start + c_k] = np.clip(fixed, intnet.ACT_MIN, intnet.ACT_MAX)
            y_hat[0, sel, start : start + c_k] = q + mu_s / float(1 << f)
        start += c_k
    return y_hat, y_fixed


def _z_indices(shape):
    return np.broadcast_to(np.arange(shape[-1], dtype=np.int32), shape)


def check_padded_input(x) -> None:
    if (
        x.ndim != 4
        or x.shape[0] != 1
        or x.shape[-1] != 3
        or x.shape[1] % Z_STRIDE
        or x.shape[2] % Z_STRIDE
    ):
        raise ValueError(
            f"expected float32[1, H, W, 3] with H, W multiples of {Z_STRIDE}, got {x.shape}"
        )


def encode_analysis(coder: LatentCoder, y, z):
    """(y, z - median) of g_a / h_a -> (sections, y_hat, z symbols)."""
    y = np.asarray(y)  # float32; each stage's symbols in float64 (exact widening)
    z_hat = np.clip(np.round(np.asarray(z, np.float64)), -(2**31), 2**31 - 1).astype(np.int32)
    z_enc = Encoder(coder.z_tables)
    z_enc.encode(z_hat, _z_indices(z_hat.shape))
    y_enc = Encoder(coder.y_tables)
    starts = np.cumsum((0,) + tuple(coder.groups))
    f = coder.frac_bits

    def encode_stage(k, sel, mu, idx):
        y_s = y[0, :, :, starts[k] : starts[k + 1]][sel].astype(np.float64)
        q = np.floor(y_s - mu / float(1 << f) + 0.5)
        q = np.clip(q, -(2**31), 2**31 - 1).astype(np.int64)
        y_enc.encode(q, idx)
        return q

    hyper = coder.hyper(z_hat)
    y_hat, _ = _run_stages(coder, hyper, y.shape, encode_stage)
    return [z_enc.finish(), y_enc.finish()], y_hat, z_hat


def decode_sections(coder: LatentCoder, sections, padded_hw, n: int, m: int):
    """Inverse of :func:`encode_analysis`: (y_hat, z_hat) from the sections."""
    if len(sections) != 2:
        raise BitstreamError(f"expected 2 latent sections (z, y), got {len(sections)}")
    ph, pw = (int(v) for v in padded_hw)
    if ph <= 0 or pw <= 0 or ph % Z_STRIDE or pw % Z_STRIDE:
        raise BitstreamError(f"padded size {ph}x{pw} is not a positive multiple of {Z_STRIDE}")
    z_shape = (1, ph // Z_STRIDE, pw // Z_STRIDE, int(n))
    z_dec = Decoder(coder.z_tables, bytes(sections[0]), "z")
    z_hat = z_dec.decode(_z_indices(z_shape))
    z_dec.finish()  # the whole section, nothing more: before any network runs on z_hat
    y_dec = Decoder(coder.y_tables, bytes(sections[1]), "y")
    hyper = coder.hyper(z_hat)
    y_shape = (1, ph // Y_STRIDE, pw // Y_STRIDE, int(m))
    y_hat, _ = _run_stages(coder, hyper, y_shape, lambda k, sel, mu, idx: y_dec.decode(idx))
    y_dec.finish()
    return y_hat, z_hat


def encode_latents(model, x01_padded):
    """Returns (sections, y_hat, z_hat): the bytes and the exact latents they carry.

    ``model`` is an ELIC module or a :class:`CodingModel` (e.g. with stored tables).
    ``x01_padded``: float [1, H, W, 3] in [0, 1], or uint8 pixels (converted
    tile by tile by ``images.to_unit``, the same values).
    """
    x = np.asarray(x01_padded)
    if x.dtype != np.uint8:
        x = x.astype(np.float32, copy=False)
    check_padded_input(x)
    cm = _coding_model(model)
    y, z = analyze(cm, x)
    return encode_analysis(latent_coder(cm), y, z)


def analyze(model, x01_padded):
    """(y, z - median) of g_a / h_a, float32 numpy (whole or in tiles: autoencoder/tiles.py)."""
    return tiles.analyze(_coding_model(model), x01_padded)


def synthesize(model, y_hat, *, uint8: bool = False) -> np.ndarray:
    """g_s(y_hat) clipped to [0, 1] (whole or in tiles: autoencoder/tiles.py);
    ``uint8``: converted by ``images.to_uint8`` tile by tile."""
    return tiles.synthesize(_coding_model(model), y_hat, uint8=uint8)


def decode_latents(model, sections, padded_hw):
    """Inverse of :func:`encode_latents`: (y_hat, z_hat) from the sections."""
    cm = _coding_model(model)
    return decode_sections(latent_coder(cm), sections, padded_hw, cm.n, cm.m)


def compress_latents(model, x01_padded) -> list[bytes]:
    """float32[1, H, W, 3] in [0, 1], H and W multiples of Z_STRIDE -> [z bytes, y bytes]."""
    return encode_latents(model, x01_padded)[0]


def decompress_latents(model, sections, padded_hw, *, uint8: bool = False):
    """[z bytes, y bytes] -> x_mse float32[1, H, W, 3] in [0, 1] (padded size;
    ``uint8``: as uint8, see :func:`synthesize`)."""
    cm = _coding_model(model)
    y_hat, _ = decode_latents(cm, sections, padded_hw)
    return synthesize(cm, y_hat, uint8=uint8)


def estimate_bits(model, x01_padded) -> float:
    """Float likelihood estimate (-log2 P of the hard-quantized latents), in bits."""
    cm = _coding_model(model)
    ph, pw = x01_padded.shape[1:3]
    xb = jnp.asarray(tiles.pad_to(x01_padded, valid.bucket_hw((ph, pw)), 1), jnp.float32)
    bits = _likelihood_bits(cm.graphdef, cm.state, xb, tiles.coded((ph, pw)))
    return float(np.sum(np.asarray(bits)))
