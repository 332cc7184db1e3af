"""Import CompressAI ``Elic2022Official`` weights into our ELIC (He et al., CVPR 2022).

Our transforms are laid out like CompressAI's (``g_a``/``g_s`` layer ``i`` is
its ``nn.Sequential`` index ``i``; residual bottleneck ``conv1..3`` ->
``c1..c3``; attention ``conv_a`` -> ``trunk``, ``conv_b[:3]`` -> ``mask``,
``conv_b[3]`` -> ``mask_out``), so most tensors map one to one:

* ``nn.Conv2d`` weight OIHW -> our HWIO kernel (transpose (2, 3, 1, 0)).
* ``nn.ConvTranspose2d(k, stride s, padding k//2, output_padding s-1)``
  weight [I, O, kh, kw] -> the kernel of the equivalent forward convolution
  over the s-dilated input, which is the spatially flipped, in/out swapped
  weight: ``W[h, w, i, o] = Wt[i, o, k-1-h, k-1-w]`` (our ``Conv(transpose=True)``
  pads ``(k-1-k//2, k-1-k//2+s-1)``, the same output grid). CompressAI's last
  h_s layer is a stride-1 transposed 3x3, which is exactly our plain 3x3 conv
  with that flipped kernel.
* Factorized prior (Balle et al. 2018, Appendix 6.1): ``matrices.{i}`` [C, out,
  in] as is, ``biases.{i}`` / ``factors.{i}`` [C, out, 1] squeezed. CompressAI
  1.2.8 uses 4 hidden layers of 3 (``filters=(3, 3, 3, 3)``); our default is
  (3, 3, 3), so :func:`config_for` sets ``prior_filters`` from the state dict.
* Checkerboard spatial context (``context_prediction``): the masked 5x5
  kernel (weight * mask; both use the (di + dj) odd mask).
* Channel context g_ch^(k) (``channel_context.y{k}``, three 5x5 convs with
  224 and 128 hidden channels) and parameter aggregation
  (``entropy_parameters``, a linear channel ramp) have the same layout in our
  ``SpaceChannelContext``, including the input order [spatial, channel,
  hyper] and the output order (scales, means); :func:`config_for` reads the
  channel-context widths.
* The EntropyBottleneck's learned medians (``quantiles[:, 0, 1]``) become our
  prior's ``median``: z is quantized as ``round(z - median) + median`` in
  both.
* The Gaussian conditional's ``scale_table`` must equal our log-spaced table
  (``num_scales``, ``scale_min``, ``scale_max``); :func:`config_for` reads it.

At coding time our h_s and context networks run in fixed point
(``coding/intnet.py``), so coded bits differ slightly from CompressAI's float
path; the float forward pass matches it (tests/autoencoder/test_compressai_import.py).

``strict=True`` (default) refuses a partial import; ``strict=False`` returns a
model whose unmapped parts keep their initialisation (to fine-tune).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
from flax import nnx

from hific_diffusion.autoencoder.elic import ELIC
from hific_diffusion.autoencoder.layers import Attention, ResidualBottleneck
from hific_diffusion.coding.tables import gaussian_scale_table
from hific_diffusion.errors import HfdError
from hific_diffusion.flatstate import flatten_state
from hific_diffusion.flatstate import key as flat_key

RES_BLOCKS = 3  # CompressAI's Elic2022Official uses 3 blocks per stage


class CompressAIImportError(HfdError, ValueError):
    """A state dict that cannot be imported into the configured ELIC."""


@dataclasses.dataclass
class ImportReport:
    mapped: dict[str, str]  # our flat key -> CompressAI key
    unmapped: dict[str, str]  # our flat key -> why it has no CompressAI counterpart
    unused: list[str]  # CompressAI parameters that were not imported


def read_state_dict(path_or_dict) -> dict[str, np.ndarray]:
    """A state dict as numpy arrays, from a dict, a ``.npz`` or a torch ``.pt``/``.pth``."""
    if isinstance(path_or_dict, dict):
        sd = path_or_dict
    else:
        path = Path(os.fspath(path_or_dict))
        if not path.is_file():
            raise CompressAIImportError(f"no such state dict file: {path}")
        if path.suffix == ".npz":
            try:
                with np.load(path, allow_pickle=False) as z:
                    sd = {k: z[k] for k in z.files}
            except (ValueError, OSError) as e:
                raise CompressAIImportError(f"cannot read {path}: {e}") from None
        else:
            try:
                import torch  # optional: only .pt/.pth files need it
            except ImportError:
                raise CompressAIImportError(
                    f"{path} is a torch file; install torch, or save the state dict as .npz"
                ) from None
            sd = torch.load(path, map_location="cpu", weights_only=True)
            sd = sd.get("state_dict", sd) if isinstance(sd, dict) else sd
    out = {}
    for k, v in sd.items():
        v = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
        out[str(k)] = v
    return out


def _find_prefix(sd, suffix: str) -> str:
    hits = [k[: -len(suffix)] for k in sd if k.endswith(suffix)]
    if len(hits) != 1:
        raise CompressAIImportError(
            f"not an Elic2022Official state dict ({len(hits)} keys end with {suffix!r})"
        )
    return hits[0]


def _conv(w):
    return np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)))


def _deconv(w):
    return np.ascontiguousarray(np.transpose(w[:, :, ::-1, ::-1], (2, 3, 0, 1)))


def config_for(state_dict, model_config):
    """A copy of ``model_config`` with N, M, groups and the scale table read from the state dict."""
    sd = read_state_dict(state_dict)
    cfg = model_config.copy_and_resolve_references()
    n = sd["g_a.0.weight"].shape[0] if "g_a.0.weight" in sd else None
    if n is None:
        raise CompressAIImportError("not an Elic2022Official state dict (no g_a.0.weight)")
    cfg.N, cfg.M = int(n), int(sd["g_a.13.weight"].shape[0])
    y = _find_prefix(sd, "y0.context_prediction.weight")
    groups, k = [], 0
    while f"{y}y{k}.context_prediction.weight" in sd:
        groups.append(int(sd[f"{y}y{k}.context_prediction.weight"].shape[1]))
        k += 1
    cfg.groups = tuple(groups)
    cfg.res_blocks = RES_BLOCKS
    if len(groups) > 1:
        cc = _find_prefix(sd, "channel_context.y1.0.weight") + "channel_context.y1."
        cfg.channel_context = tuple(int(sd[f"{cc}{i}.weight"].shape[0]) for i in (0, 2))
    eb = _find_prefix(sd, "entropy_bottleneck.matrices.0") + "entropy_bottleneck."
    filters, i = [], 0
    while f"{eb}matrices.{i + 1}" in sd:
        filters.append(int(sd[f"{eb}matrices.{i}"].shape[1]))
        i += 1
    cfg.prior_filters = tuple(filters)
    table = [v for key, v in sd.items() if key.endswith("gaussian_conditional.scale_table")]
    if table:
        t = np.asarray(table[0], np.float64)
        cfg.num_scales, cfg.scale_min, cfg.scale_max = len(t), float(t[0]), float(t[-1])
        ours = gaussian_scale_table(cfg.num_scales, cfg.scale_min, cfg.scale_max)
        if not np.allclose(ours, t, rtol=1e-5):
            raise CompressAIImportError("CompressAI's scale table is not log-spaced")
    return cfg


def _pairs_block(ours: str, theirs: str):
    return [(f"{ours}/c{i}", f"{theirs}.conv{i}") for i in (1, 2, 3)]


def _pairs_attention(ours: str, theirs: str):
    out = []
    for i in range(3):
        for part_o, part_t in (("trunk", "conv_a"), ("mask", "conv_b")):
            for j, t in zip((1, 2, 3), (0, 2, 4), strict=True):
                out.append((f"{ours}/{part_o}/{i}/c{j}", f"{theirs}.{part_t}.{i}.conv.{t}"))
    out.append((f"{ours}/mask_out", f"{theirs}.conv_b.3"))
    return out


def _layer_pairs(model, n: int, m: int, groups, sd):
    """[(our conv prefix, CompressAI module prefix, kind)]; kind: conv, deconv, masked."""
    pairs = []
    for name in ("g_a", "g_s"):
        for i, layer in enumerate(getattr(model, name).layers):
            o, t = f"{name}/layers/{i}", f"{name}.{i}"
            if isinstance(layer, ResidualBottleneck):
                pairs += [(a, b, "conv") for a, b in _pairs_block(o, t)]
            elif isinstance(layer, Attention):
                pairs += [(a, b, "conv") for a, b in _pairs_attention(o, t)]
            else:
                pairs.append((o, t, "deconv" if layer.transpose else "conv"))
    hyper = _find_prefix(sd, "h_a.0.weight")
    pairs += [(f"h_a/c{j}", f"{hyper}h_a.{i}", "conv") for j, i in ((1, 0), (2, 2), (3, 4))]
    pairs += [(f"h_s/convs/{j}", f"{hyper}h_s.{i}", "deconv") for j, i in ((0, 0), (1, 2), (2, 4))]
    y = _find_prefix(sd, "y0.context_prediction.weight")
    pairs += [
        (f"context/spatial/{k}/0", f"{y}y{k}.context_prediction", "masked")
        for k in range(len(groups))
    ]
    for k in range(len(groups)):
        pairs += [
            (f"context/aggregate/{k}/{j}", f"{y}y{k}.entropy_parameters.{2 * j}", "conv")
            for j in range(3)
        ]
    if len(groups) > 1:
        cc = _find_prefix(sd, "channel_context.y1.0.weight") + "channel_context."
        for k in range(1, len(groups)):
            pairs += [(f"context/channel/{k}/{j}", f"{cc}y{k}.{2 * j}", "conv") for j in range(3)]
    return pairs


def convert(state_dict, model, strict: bool = True):
    """(flat arrays keyed like ``flatstate.flatten_state``, ImportReport) for ``model``."""
    sd = read_state_dict(state_dict)
    n, m, groups = model.n, model.m, tuple(model.groups)
    targets = flatten_state(nnx.state(model, nnx.Param))
    flat, mapped, used = {}, {}, set()

    def put(ours, theirs, value):
        want = targets[ours].shape
        if value.shape != want:
            raise CompressAIImportError(
                f"{theirs} has shape {value.shape} after conversion, {ours} needs {want}"
            )
        flat[ours] = value.astype(np.float32)
        mapped[ours] = theirs
        used.add(theirs)

    for ours, theirs, kind in _layer_pairs(model, n, m, groups, sd):
        w, b = sd.get(f"{theirs}.weight"), sd.get(f"{theirs}.bias")
        if w is None or b is None:
            continue  # left unmapped (strict refuses below)
        if kind == "masked":
            mask = sd.get(f"{theirs}.mask", 1.0)
            used.add(f"{theirs}.mask")
            w = w * mask
        # A stride-1 transposed conv (h_s's last) is our plain conv with the same
        # flipped kernel: padding k//2 on both sides either way.
        kernel = _deconv(w) if kind == "deconv" else _conv(w)
        put(f"{ours}/kernel", f"{theirs}.weight", kernel)
        put(f"{ours}/bias", f"{theirs}.bias", b)
    eb = _find_prefix(sd, "entropy_bottleneck.matrices.0") + "entropy_bottleneck."
    for i in range(len(model.prior.matrices)):
        put(f"prior/matrices/{i}", f"{eb}matrices.{i}", sd[f"{eb}matrices.{i}"])
        put(f"prior/biases/{i}", f"{eb}biases.{i}", sd[f"{eb}biases.{i}"][..., 0])
        if i < len(model.prior.factors):
            put(f"prior/factors/{i}", f"{eb}factors.{i}", sd[f"{eb}factors.{i}"][..., 0])
    if f"{eb}quantiles" in sd:
        put("prior/median", f"{eb}quantiles", sd[f"{eb}quantiles"][:, 0, 1])
    unmapped = {key: "no counterpart in the state dict" for key in sorted(set(targets) - set(flat))}
    unused = sorted(
        k
        for k, v in sd.items()
        if k not in used and v.dtype.kind == "f" and k.endswith(("weight", "bias"))
    )
    report = ImportReport(mapped, unmapped, unused)
    if strict and unmapped:
        keys = sorted(unmapped)
        raise CompressAIImportError(
            f"exact import impossible: {len(keys)} parameters have no counterpart in the "
            f"state dict (e.g. {', '.join(keys[:3])}); pass strict=False to import the rest"
        )
    return flat, report


def load_compressai_state_dict(path_or_dict, config_model, *, strict: bool = True, seed: int = 0):
    """ELIC (``config_model`` sizes) holding CompressAI ``Elic2022Official`` weights.

    ``config_model`` must agree with the state dict on N, M, groups,
    res_blocks=3 and the scale table (:func:`config_for` builds such a
    config). Returns the model; ``model.compressai_import_report`` tells what
    was imported and what was not.
    """
    sd = read_state_dict(path_or_dict)
    want = config_for(sd, config_model)
    defaults = dict(prior_filters=(3, 3, 3), channel_context=(224, 128))
    for field in ("N", "M", "groups", "res_blocks", "num_scales", *defaults):
        if field not in want:
            continue
        have = config_model.get(field, defaults.get(field))
        if tuple(np.atleast_1d(have)) != tuple(np.atleast_1d(want[field])):
            raise CompressAIImportError(
                f"config.model.{field}={config_model.get(field)} "
                f"but the state dict has {want[field]}"
            )
    for field in ("scale_min", "scale_max"):
        if not np.isclose(float(config_model[field]), float(want[field]), rtol=1e-5):
            raise CompressAIImportError(
                f"config.model.{field}={config_model[field]} but the state dict's scale table "
                f"gives {want[field]}"
            )
    model = ELIC(config_model, rngs=nnx.Rngs(seed))
    flat, report = convert(sd, model, strict=strict)
    state = nnx.state(model, nnx.Param)
    for path, var in nnx.to_flat_state(state):
        key = flat_key(path)
        if key in flat:
            var.set_value(np.asarray(flat[key]))
    nnx.update(model, state)
    model.compressai_import_report = report
    return model
