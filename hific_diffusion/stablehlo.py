"""StableHLO export of the coding-time functions (``jax.export``), and a codec that runs them.

``export_codec(codec, out_dir)`` serializes, with the autoencoder's weights
and integer network baked in as constants:

* ``analysis``: x float32[1, 64a, 64b, 3] -> (y [1, 4a, 4b, M], z - median [1, a, b, N])
  (g_a then h_a, HFD Sec. 3 / ELIC Fig. 4);
* ``hyper``: z symbols int32[1, a, b, N] -> fixed-point h_s features int32[1, 4a, 4b, 2N];
* ``stage_<k>`` per channel group k: (hyper, y_fixed int32[1, 4a, 4b, M],
  stage int32[]) -> (mu fixed point, scale index), each int32[1, 4a, 4b, c_k]
  (ELIC Sec. 3.2-3.3 space-channel context, integer path of ``coding.intnet``);
* ``synthesis``: y_hat float32[1, 4a, 4b, M] -> x_mse in [0, 1], [1, 64a, 64b, 3].

Shapes are symbolic in ``a`` and ``b`` (the padded size in units of 64), so
one artifact serves every image size. The checkerboard mask the context
network needs is built from iotas inside the traced function
(``context.checkerboard_traced``) rather than passed in, so it follows the
symbolic size. The entropy coding itself (range coder, tables, the stage
order) is not a StableHLO computation: :class:`StableHLOCodec` drives the
exported functions with the same stage loop as the Python codec
(``coding.encode_analysis`` / ``coding.decode_sections``) and the tables
written beside them, so its bitstreams are byte-identical to ``Codec``'s.

``out_dir/manifest.json`` (``hashing.write_manifest``, as a bundle's)
records the sha256 of every file, the model sizes and the codec fingerprint;
:meth:`StableHLOCodec.load` refuses a directory whose files are missing or
altered. Padding, the header, the fingerprint check and the crop are
``container``'s, shared with ``pipeline.Codec``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hific_diffusion import container, hashing
from hific_diffusion.coding import coding, params
from hific_diffusion.coding.tables import DiscreteTables
from hific_diffusion.errors import HfdError

FORMAT = "hific_diffusion-stablehlo"
VERSION = 1
WHAT = "StableHLO export"  # in messages
DEFAULT_PLATFORMS = ("cpu",)


class StableHLOError(HfdError, ValueError):
    """A StableHLO export directory that is missing, altered or inconsistent."""


def _exported_functions(cm: coding.CodingModel, n: int, m: int):
    """{name: (jitted fn with weights closed over, argument specs)}."""

    a, b = jax.export.symbolic_shape("a, b")
    graphdef, state, net = cm.graphdef, cm.state, cm.net

    def analysis(x01):
        model = nnx.merge(graphdef, state)
        return model.analyze_for_coding(x01)

    def synthesis(y_hat):
        return jnp.clip(nnx.merge(graphdef, state).synthesis(y_hat), 0.0, 1.0)

    spec = jax.ShapeDtypeStruct
    hyper_spec = spec((1, 4 * a, 4 * b, 2 * n), jnp.int32)
    y_fixed_spec = spec((1, 4 * a, 4 * b, m), jnp.int32)
    fns = {
        "analysis": (analysis, [spec((1, 64 * a, 64 * b, 3), jnp.float32)]),
        "hyper": (net.hyper, [spec((1, a, b, n), jnp.int32)]),
        "synthesis": (synthesis, [spec((1, 4 * a, 4 * b, m), jnp.float32)]),
    }
    for k in range(len(cm.groups)):

        def stage(hyper, y_fixed, stage_id, k=k):
            return params.stage_params(net, hyper, y_fixed, k, stage_id)

        fns[f"stage_{k}"] = (stage, [hyper_spec, y_fixed_spec, spec((), jnp.int32)])
    return fns


def export_codec(codec, out_dir, platforms=DEFAULT_PLATFORMS) -> Path:
    """Writes the exported functions, both tables and ``manifest.json`` into ``out_dir``.

    ``codec`` is a :class:`hific_diffusion.pipeline.Codec`; only its
    autoencoder is exported (the generative decoders are not coding-time
    functions).
    """
    model = codec.autoencoder
    cm = codec.coding
    n, m = int(model.n), int(model.m)
    files = {
        "z_tables.bin": cm.z_tables.to_bytes(),
        "y_tables.bin": cm.y_tables.to_bytes(),
    }
    functions = {}
    for name, (fn, specs) in _exported_functions(cm, n, m).items():
        exp = jax.export.export(jax.jit(fn), platforms=tuple(platforms))(*specs)
        rel = f"{name}.stablehlo"
        files[rel] = bytes(exp.serialize())
        functions[name] = rel
    return hashing.write_manifest(
        out_dir, files, FORMAT, VERSION,
        fingerprint=bytes(codec.fingerprint).hex(), n=n, m=m, groups=list(cm.groups),
        frac_bits=int(cm.net.frac_bits), platforms=list(platforms), functions=functions,
    )  # fmt: skip


def _read_manifest(path: Path) -> dict:
    manifest = hashing.read_manifest(path, FORMAT, (VERSION,), StableHLOError, WHAT)
    mpath = path / hashing.MANIFEST
    try:
        functions = dict(manifest["functions"])
        groups = tuple(int(g) for g in manifest["groups"])
        n, m, f = int(manifest["n"]), int(manifest["m"]), int(manifest["frac_bits"])
        fingerprint = bytes.fromhex(manifest["fingerprint"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise StableHLOError(f"corrupt {WHAT} manifest: {mpath}") from None
    needed = {"analysis", "hyper", "synthesis"} | {f"stage_{k}" for k in range(len(groups))}
    if set(functions) != needed or sum(groups) != m:
        raise StableHLOError(f"inconsistent {WHAT} manifest: {mpath}")
    return dict(
        files=manifest["files"], functions=functions, groups=groups, n=n, m=m, f=f,
        fingerprint=fingerprint,
    )  # fmt: skip


class StableHLOCodec:
    """``compress`` / ``decompress`` (MSE decoder) from exported functions only.

    Uses no model class: the weights live inside the StableHLO modules. The
    bitstreams are the ``.hfd`` container of :mod:`hific_diffusion.coding.bitstream`
    and byte-identical to :class:`hific_diffusion.pipeline.Codec`'s.
    """

    def __init__(self, fns, z_tables, y_tables, groups, n, m, frac_bits, fingerprint):
        self._fns = fns
        self.n, self.m = n, m
        self.fingerprint = fingerprint
        self._container = container.Container(fingerprint)
        stages = [fns[f"stage_{k}"] for k in range(len(groups))]
        self._coder = coding.LatentCoder(
            hyper=lambda z_hat: fns["hyper"].call(jnp.asarray(z_hat, jnp.int32)),
            stage_params=lambda hyper, y_fixed, k, stage: stages[k].call(
                hyper, jnp.asarray(y_fixed, jnp.int32), jnp.int32(stage)
            ),
            z_tables=z_tables,
            y_tables=y_tables,
            groups=tuple(groups),
            frac_bits=frac_bits,
        )

    @classmethod
    def load(cls, path) -> StableHLOCodec:
        """From a bundle directory (its ``stablehlo/``) or an export directory itself."""
        path = Path(os.fspath(path))
        if (path / "stablehlo").is_dir():
            bundle_manifest, path = path / "manifest.json", path / "stablehlo"
        else:
            bundle_manifest = None
        info = _read_manifest(path)
        hashing.verify_files(path, info["files"], StableHLOError, WHAT)
        data = {rel: (path / rel).read_bytes() for rel in info["files"]}
        if bundle_manifest is not None and bundle_manifest.is_file():
            try:
                bundle_fp = json.loads(bundle_manifest.read_text()).get("fingerprint")
            except (ValueError, AttributeError, UnicodeDecodeError):
                raise StableHLOError(f"corrupt bundle manifest: {bundle_manifest}") from None
            if bundle_fp is not None and bundle_fp != info["fingerprint"].hex():
                raise StableHLOError(
                    f"{path} was exported from another model than the bundle holds"
                )
        try:
            z_tables = DiscreteTables.from_bytes(data["z_tables.bin"])
            y_tables = DiscreteTables.from_bytes(data["y_tables.bin"])
            fns = {
                name: jax.export.deserialize(bytearray(data[rel]))
                for name, rel in info["functions"].items()
            }
        except KeyError as e:
            raise StableHLOError(f"StableHLO manifest does not list {e}") from None
        except (ValueError, TypeError) as e:
            raise StableHLOError(f"cannot read the StableHLO export in {path}: {e}") from None
        platform = jax.default_backend()
        platform = "cuda" if platform == "gpu" else platform
        for name, fn in fns.items():
            if platform not in fn.platforms:
                raise StableHLOError(
                    f"{name} was exported for {', '.join(fn.platforms)}, not {platform}"
                )
        return cls(
            fns, z_tables, y_tables, info["groups"], info["n"], info["m"], info["f"],
            info["fingerprint"],
        )  # fmt: skip

    def compress(self, image) -> bytes:
        """Image (uint8 array, PIL image or path) -> ``.hfd`` bytes (MSE decoder hint)."""
        return self._container.encode(image, self._code)

    def _code(self, x01) -> list[bytes]:
        y, z = self._fns["analysis"].call(jnp.asarray(x01))
        return coding.encode_analysis(self._coder, y, z)[0]

    def _decode(self, sections, padded_hw) -> np.ndarray:
        y_hat, _ = coding.decode_sections(self._coder, sections, padded_hw, self.n, self.m)
        return np.asarray(self._fns["synthesis"].call(jnp.asarray(y_hat)))

    def decompress(self, data: bytes, decoder: str | None = None) -> np.ndarray:
        """``.hfd`` bytes -> uint8 HxWx3 through the MSE decoder (g_s)."""
        if decoder not in (None, "mse"):
            raise StableHLOError(f"the StableHLO export only has the mse decoder, not {decoder!r}")
        header, sections = self._container.unpack(data)
        return container.to_uint8(self._container.decode(header, sections, self._decode))
