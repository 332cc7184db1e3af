import json

import numpy as np
import pytest
from flax import nnx

from hific_diffusion import bundle, configs
from hific_diffusion.bundle import BundleError
from hific_diffusion.codec import tables


@pytest.fixture()
def saved(tmp_path):
    config = configs.load("tiny")
    lin = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    t = tables.build_gaussian_tables(tables.gaussian_scale_table(4, 0.11, 8.0))
    path = bundle.save_bundle(
        tmp_path / "b",
        config,
        {"autoencoder": nnx.state(lin), "unet_flow": {"w": np.ones((2, 2), np.float32)}},
        t,
        fingerprint=b"\x01\x02",
    )
    return path, config, lin, t


def test_saved_bundle_loads_with_config_weights_tables_and_fingerprint(saved):
    path, config, lin, t = saved
    b = bundle.load_bundle(path)
    assert b.config.model.groups == config.model.groups  # tuples survive JSON
    assert b.config.to_dict() == config.to_dict()
    assert b.tables == {"y": t} and b.fingerprint == "0102"
    assert np.array_equal(b.params["autoencoder"]["kernel"], np.asarray(lin.kernel[...]))
    assert set(b.params) == {"autoencoder", "unet_flow"}


def test_loaded_weights_can_be_assigned_back_into_a_fresh_module(saved):
    path, _, lin, _ = saved
    fresh = nnx.Linear(3, 2, rngs=nnx.Rngs(1))
    bundle.assign_flat(fresh, bundle.load_bundle(path).params["autoencoder"])
    assert np.array_equal(np.asarray(fresh.kernel[...]), np.asarray(lin.kernel[...]))
    with pytest.raises(BundleError, match="shape"):
        bundle.assign_flat(
            nnx.Linear(4, 2, rngs=nnx.Rngs(1)), bundle.load_bundle(path).params["autoencoder"]
        )


def test_missing_file_is_refused(saved):
    path = saved[0]
    (path / "weights" / "unet_flow.npz").unlink()
    with pytest.raises(BundleError, match="missing"):
        bundle.load_bundle(path)


def test_altered_file_is_refused(saved):
    path = saved[0]
    data = bytearray((path / "tables" / "y.bin").read_bytes())
    data[-1] ^= 1
    (path / "tables" / "y.bin").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="altered"):
        bundle.load_bundle(path)


def test_missing_or_corrupt_manifest_and_non_directories_are_refused(saved, tmp_path):
    path = saved[0]
    with pytest.raises(BundleError, match="not a directory"):
        bundle.load_bundle(tmp_path / "nowhere")
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="corrupt"):
        bundle.load_bundle(path)
    (path / "manifest.json").unlink()
    with pytest.raises(BundleError, match="missing"):
        bundle.load_bundle(path)


def test_manifest_path_escape_is_refused(saved):
    path = saved[0]
    m = json.loads((path / "manifest.json").read_text())
    m["files"]["../outside"] = "0" * 64
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="missing"):
        bundle.load_bundle(path)
