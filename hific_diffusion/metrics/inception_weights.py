"""Standard FID Inception weights: locate, download (when online), verify SHA-256, load.

The weights are pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``, a port
of TF's ``inception-2015-12-05`` graph that FID (Heusel et al. 2017) and
HiFiC's FID/256 use. The file is checked against its SHA-256 before anything
is read from it. It is a torch state dict; we read it WITHOUT torch (both the
zip and the legacy torch serialisation are plain pickles of tensor metadata
plus raw little-endian storages), or from a ``.npz`` with the same key names.

Lookup order: an explicit path, ``$HFD_FID_WEIGHTS``, the cache
(``$HFD_CACHE`` or ``~/.cache/hific_diffusion``), then a download into the cache.
"""

from __future__ import annotations

import io
import os
import pickle
import urllib.request
import zipfile
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from hific_diffusion.cache import cache_dir
from hific_diffusion.hashing import sha256_file
from hific_diffusion.metrics.errors import MetricError

URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
    "pt_inception-2015-12-05-6726825d.pth"
)
SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
FILENAME = "pt_inception-2015-12-05-6726825d.pth"


class WeightsError(MetricError):
    """FID Inception weights missing, unreadable or not the expected file."""


def verify(path: Path, expected: str = SHA256) -> Path:
    actual = sha256_file(path)
    if actual != expected:
        raise WeightsError(
            f"FID Inception weights {path} have sha256 {actual}, expected {expected}; "
            f"delete the file and fetch it again from {URL}"
        )
    return path


def locate(path: str | os.PathLike | None = None, *, download: bool = True) -> Path:
    """Return a verified weights file, downloading it into the cache if allowed."""
    candidates = [path, os.environ.get("HFD_FID_WEIGHTS"), cache_dir() / FILENAME]
    for c in candidates:
        if c and Path(c).is_file():
            # A .npz is a conversion of the verified .pth; its provenance is the user's.
            return Path(c) if str(c).endswith(".npz") else verify(Path(c))
        if c is path and path is not None:
            raise WeightsError(f"FID Inception weights not found at {path}")
    if not download:
        raise WeightsError(
            f"FID Inception weights not found (download disabled); place {FILENAME} "
            f"from {URL} in {cache_dir()} or set HFD_FID_WEIGHTS"
        )
    target = cache_dir() / FILENAME
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    try:
        with urllib.request.urlopen(URL, timeout=30) as response, open(partial, "wb") as f:
            while chunk := response.read(1 << 20):
                f.write(chunk)
    except OSError as e:
        partial.unlink(missing_ok=True)
        raise WeightsError(
            f"cannot download FID Inception weights ({e.__class__.__name__}: {e}); "
            f"place {FILENAME} from {URL} in {cache_dir()} or set HFD_FID_WEIGHTS"
        ) from None
    verify(partial)
    partial.rename(target)
    return target


# ---------------------------------------------------------------- torch reader

_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ByteStorage": np.uint8,
}  # fmt: skip


class _LazyStorage:
    """A legacy-format storage whose bytes follow the pickled object in the file."""

    def __init__(self, key):
        self.key = key


class _LazyTensor:
    def __init__(self, storage: _LazyStorage, args):
        self.storage, self.args = storage, args

    def resolve(self, storages):
        return _rebuild_tensor(storages[self.storage.key], *self.args)


def _rebuild_tensor(storage, offset, size, stride, *_):
    if isinstance(storage, _LazyStorage):
        return _LazyTensor(storage, (offset, size, stride))
    if not size:
        return storage[offset].copy()
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=tuple(size), strides=tuple(s * storage.itemsize for s in stride)
    )
    return np.array(view)


class _Unpickler(pickle.Unpickler):
    """Resolves only the names a torch state dict uses; anything else is refused."""

    def __init__(self, file, load_storage):
        super().__init__(file)
        self._load_storage = load_storage

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            import collections

            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _DTYPES:
            return _DTYPES[name]
        raise WeightsError(f"unexpected object {module}.{name} in the Inception weights file")

    def persistent_load(self, pid):
        _, dtype, key, _, numel = pid[:5]
        return self._load_storage(str(key), np.dtype(dtype), numel)


def read_torch_state_dict(path: Path) -> dict[str, np.ndarray]:
    """A torch ``state_dict`` file (zip or legacy format) -> {name: numpy array}."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            root = zf.namelist()[0].split("/")[0]

            def load(key, dtype, numel):
                return np.frombuffer(zf.read(f"{root}/data/{key}"), dtype)[:numel]

            with zf.open(f"{root}/data.pkl") as f:
                return dict(_Unpickler(io.BytesIO(f.read()), load).load())
    with open(path, "rb") as f:
        for _ in range(3):  # magic number, protocol version, system info
            pickle.load(f)
        layout = {}

        def record(key, dtype, numel):
            layout[key] = (dtype, numel)
            return _LazyStorage(key)

        raw = _Unpickler(f, record).load()
        storages = {}
        for key in pickle.load(f):
            dtype, numel = layout[key]
            count = int(np.frombuffer(f.read(8), "<i8")[0])
            storages[key] = np.frombuffer(f.read(count * dtype.itemsize), dtype)[:numel]
    return {k: v.resolve(storages) if isinstance(v, _LazyTensor) else v for k, v in raw.items()}


# ---------------------------------------------------------------- into the model

_BN = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def torch_name(path: tuple) -> str:
    *prefix, leaf = (str(p) for p in path)
    if prefix[-1] == "conv":
        return ".".join(prefix) + ".weight"
    return ".".join(prefix) + "." + _BN[leaf]


def load_into(model: nnx.Module, tensors: dict[str, np.ndarray]) -> None:
    """Copy a pytorch-fid state dict into ``FIDInceptionV3`` (conv OIHW -> HWIO)."""
    state = nnx.state(model)
    flat = nnx.to_flat_state(state)
    for path, var in flat:
        name = torch_name(path)
        if name not in tensors:
            raise WeightsError(f"Inception weights lack {name}")
        value = np.asarray(tensors[name], np.float32)
        if value.ndim == 4:
            value = value.transpose(2, 3, 1, 0)
        if value.shape != var.get_value().shape:
            raise WeightsError(f"{name}: shape {value.shape}, expected {var.get_value().shape}")
        var.set_value(jnp.asarray(value))
    nnx.update(model, state)


def load_file(path: Path) -> dict[str, np.ndarray]:
    if str(path).endswith(".npz"):
        with np.load(path) as z:
            return dict(z)
    try:
        return read_torch_state_dict(path)
    except (pickle.UnpicklingError, zipfile.BadZipFile, KeyError, EOFError) as e:
        raise WeightsError(f"cannot read Inception weights {path}: {e}") from None
