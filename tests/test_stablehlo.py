"""StableHLO export: the exported functions code exactly like the Python Codec."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from hific_diffusion import configs, stablehlo
from hific_diffusion.autoencoder.elic import ELIC
from hific_diffusion.coding import bitstream
from hific_diffusion.coding.bitstream import BitstreamError
from hific_diffusion.pipeline import Codec
from hific_diffusion.stablehlo import StableHLOCodec, StableHLOError

ROOT = Path(__file__).resolve().parents[1]


def _photo(h, w, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 50 * np.sin(xx / 9.0)[..., None] + 30 * np.cos(yy / 7.0)[..., None]
    return np.clip(base + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def codec():
    config = configs.load("tiny")
    return Codec(config, ELIC(config.model, rngs=nnx.Rngs(0)))


@pytest.fixture(scope="module")
def exported(codec, tmp_path_factory):
    return stablehlo.export_codec(codec, tmp_path_factory.mktemp("bundle") / "stablehlo")


def _copy(exported, tmp_path):
    dst = tmp_path / "stablehlo"
    shutil.copytree(exported, dst)
    return dst


def test_stablehlo_export_codes_exactly_like_python_without_model_classes(
    codec, exported, tmp_path
):
    """Python bitstream -> StableHLO decode == Python decode; StableHLO bytes == Python bytes.

    The StableHLO side runs in a fresh process that cannot import the model
    classes and sees only the export directory (no weights file).
    """
    x = _photo(63, 65)  # pads to 64 x 128: a != b in the symbolic shape
    data = codec.compress(x)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "py.hfd").write_bytes(data)
    only = _copy(exported, tmp_path / "alone")
    script = textwrap.dedent(
        f"""
        import sys
        for name in ("hific_diffusion.autoencoder.elic", "hific_diffusion.autoencoder.transforms",
                     "hific_diffusion.pipeline", "hific_diffusion.bundle"):
            sys.modules[name] = None  # importing a model class now fails
        import numpy as np
        from hific_diffusion.stablehlo import StableHLOCodec
        c = StableHLOCodec.load({str(only)!r})
        d = {str(tmp_path)!r}
        x = np.load(d + "/x.npy")
        np.save(d + "/shlo_decoded.npy", c.decompress(open(d + "/py.hfd", "rb").read()))
        open(d + "/shlo.hfd", "wb").write(c.compress(x))
        """
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    decoded = np.load(tmp_path / "shlo_decoded.npy")
    assert decoded.dtype == np.uint8 and decoded.shape == (63, 65, 3)
    assert np.array_equal(decoded, codec.decompress(data))
    assert (tmp_path / "shlo.hfd").read_bytes() == data


def test_one_artifact_serves_every_padded_size(exported):
    man = json.loads((exported / "manifest.json").read_text())
    exp = jax.export.deserialize(bytearray((exported / man["functions"]["analysis"]).read_bytes()))
    h, w = exp.in_avals[0].shape[1:3]
    # Symbolic dimensions, not integers: no per-size re-export.
    assert not isinstance(h, int) and not isinstance(w, int)
    assert str(h) == "64*a" and str(w) == "64*b"


@pytest.mark.slow
def test_stablehlo_round_trips_other_sizes(codec, exported):
    c = StableHLOCodec.load(exported)
    for shape in [(1, 1), (130, 70)]:
        x = _photo(*shape, seed=1)
        data = c.compress(x)
        assert data == codec.compress(x)
        assert np.array_equal(c.decompress(data), codec.decompress(data))


def test_manifest_records_fingerprint_and_every_file_hash(codec, exported):
    man = json.loads((exported / "manifest.json").read_text())
    assert man["fingerprint"] == codec.fingerprint.hex()
    on_disk = {p.name for p in exported.iterdir()} - {"manifest.json"}
    assert set(man["files"]) == on_disk
    assert {"z_tables.bin", "y_tables.bin", "analysis.stablehlo", "synthesis.stablehlo"} <= on_disk


@pytest.mark.parametrize("fault", ["missing", "altered", "manifest"])
def test_missing_or_altered_export_files_fail_to_load(exported, tmp_path, fault):
    d = _copy(exported, tmp_path)
    if fault == "missing":
        (d / "y_tables.bin").unlink()
        msg = "missing"
    elif fault == "altered":
        blob = bytearray((d / "hyper.stablehlo").read_bytes())
        blob[len(blob) // 2] ^= 1
        (d / "hyper.stablehlo").write_bytes(bytes(blob))
        msg = "altered"
    else:
        (d / "manifest.json").write_text("{not json")
        msg = "corrupt"
    with pytest.raises(StableHLOError, match=msg):
        StableHLOCodec.load(d)


def test_export_from_another_model_than_the_bundle_is_refused(exported, tmp_path):
    _copy(exported, tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"fingerprint": "00" * 32}))
    with pytest.raises(StableHLOError, match="another model"):
        StableHLOCodec.load(tmp_path)


def test_bitstream_of_another_model_is_refused(exported):
    c = StableHLOCodec.load(exported)
    header = bitstream.Header(height=8, width=8, fingerprint=b"\x01" * 8, decoder="mse")
    other = bitstream.pack(header, [b"", b""])
    with pytest.raises(BitstreamError, match="different model"):
        c.decompress(other)
    with pytest.raises(BitstreamError):
        c.decompress(b"not a bitstream")


def test_a_bug_while_decoding_is_not_reported_as_a_corrupt_bitstream(codec, exported, monkeypatch):
    from hific_diffusion.coding import coding

    data = codec.compress(_photo(16, 16))

    def broken(*args, **kwargs):
        raise IndexError("a bug")

    monkeypatch.setattr(coding, "_run_stages", broken)
    with pytest.raises(IndexError) as info:
        StableHLOCodec.load(exported).decompress(data)
    assert not isinstance(info.value, BitstreamError)
