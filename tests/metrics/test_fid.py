"""FID/KID statistics, FID/256 patching and the Flax FID Inception port."""

import io
import pickle
import sys
import types
import zipfile

import numpy as np
import pytest
import scipy.linalg
from flax import nnx

from hific_diffusion.metrics import fid, inception, inception_weights


def _gaussian_features(n, d, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ a + shift


def test_frechet_distance_matches_independent_scipy_computation():
    x = _gaussian_features(400, 32, 0)
    y = _gaussian_features(500, 32, 1, shift=0.3)
    got = fid.fid_from_features(x, y)
    # Independent: the symmetric form Tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), eigh-based roots.
    m1, m2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x.T), np.cov(y.T)
    w, v = np.linalg.eigh(s1)
    r1 = (v * np.sqrt(w)) @ v.T
    inner = scipy.linalg.sqrtm(r1 @ s2 @ r1).real
    ref = np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(inner)
    assert got == pytest.approx(ref, rel=1e-6)
    assert got > 1.0


def test_fid_of_a_set_against_itself_is_zero():
    x = _gaussian_features(300, 16, 2)
    assert abs(fid.fid_from_features(x, x)) < 1e-6


def test_kid_is_near_zero_for_same_distribution_and_positive_for_shift():
    x = _gaussian_features(400, 16, 3)
    y = _gaussian_features(400, 16, 4)
    same, _ = fid.kid(x, y, subsets=20, subset_size=200)
    far, _ = fid.kid(x, y + 1.0, subsets=20, subset_size=200)
    assert abs(same) < 0.05 * far and far > 0


@pytest.mark.parametrize(
    "h,w,expected",
    [
        (256, 256, 1),  # one grid only: shifted grid needs H, W >= 384
        (383, 1000, 3),
        (384, 384, 1 + 1),
        (512, 768, 6 + 2),  # Kodak: 2x3 + 1x2
        (1365, 2048, 5 * 8 + 4 * 7),  # a CLIC-sized image
        (100, 300, 0),
    ],
)
def test_fid256_patch_counts_follow_hific_protocol(h, w, expected):
    img = np.zeros((h, w, 3), np.uint8)
    p = fid.patches(img, 256)
    assert p.shape == (expected, 256, 256, 3)
    assert fid.num_patches(h, w) == expected


def test_fid256_shifted_grid_starts_at_128():
    img = np.arange(384 * 384 * 3, dtype=np.int64).reshape(384, 384, 3)
    img = (img % 251).astype(np.uint8)
    p = fid.patches(img, 256)
    np.testing.assert_array_equal(p[1], img[128:384, 128:384])


def test_inception_port_is_structurally_complete():
    model = inception.abstract_model()  # shapes only: no 22 M-parameter init in the test
    params = nnx.state(model, nnx.Param)
    # torchvision inception_v3 has 27,161,264 parameters; minus AuxLogits (3,326,696)
    # and the 1000-way fc (2,049,000) leaves the FID trunk: 21,785,568.
    assert sum(x.size for x in nnx.to_flat_state(params).leaves) == 21_785_568
    names = {inception_weights.torch_name(p) for p, _ in nnx.to_flat_state(nnx.state(model))}
    assert "Mixed_7c.branch3x3dbl_3b.bn.running_var" in names and len(names) == 94 * 5


def test_inception_features_are_2048_d_for_any_input_size():
    feats = fid.InceptionFeatures("random", batch_size=2)
    rng = np.random.default_rng(0)
    out = feats(rng.integers(0, 256, (3, 40, 56, 3), dtype=np.uint8))
    assert out.shape == (3, inception.FEATURES) and out.dtype == np.float64
    assert np.isfinite(out).all() and np.ptp(out, axis=0).max() > 0


def test_preprocess_resizes_to_299_in_minus_one_one():
    x = np.full((1, 256, 256, 3), 255, np.uint8)
    y = np.asarray(inception.preprocess(x))
    assert y.shape == (1, 299, 299, 3) and np.allclose(y, 1.0)


def test_weights_with_wrong_hash_are_refused(tmp_path):
    bad = tmp_path / inception_weights.FILENAME
    bad.write_bytes(b"not the inception weights")
    with pytest.raises(inception_weights.WeightsError, match="sha256"):
        inception_weights.locate(bad)


def test_missing_weights_offline_give_clear_error_and_fid_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("HFD_CACHE", str(tmp_path))
    monkeypatch.delenv("HFD_FID_WEIGHTS", raising=False)
    with pytest.raises(inception_weights.WeightsError, match="HFD_FID_WEIGHTS"):
        inception_weights.locate(None, download=False)
    with pytest.warns(UserWarning, match="FID/KID skipped"):
        assert fid.try_features(None, download=False) is None


def _fake_torch_zip(path, tensors):
    """Write a torch-style zip state dict without torch, via stand-in modules."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*a):
        raise AssertionError("never called while pickling")

    FloatStorage.__module__, _rebuild_tensor_v2.__module__ = "torch", "torch._utils"
    FloatStorage.__qualname__ = "FloatStorage"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    torch.FloatStorage, utils._rebuild_tensor_v2 = FloatStorage, _rebuild_tensor_v2
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:

        class T:
            def __init__(self, key, arr):
                self.key, self.arr = key, arr

            def __reduce__(self):
                stride = tuple(s // 4 for s in self.arr.strides)
                storage = ("storage", self.key)
                return (_rebuild_tensor_v2, (storage, 0, self.arr.shape, stride, False, {}))

        class P(pickle.Pickler):
            def persistent_id(self, obj):
                if isinstance(obj, tuple) and obj and obj[0] == "storage":
                    return ("storage", FloatStorage, obj[1], "cpu", arrays[obj[1]].size)
                return None

        values = tensors.values()
        arrays = {str(i): np.ascontiguousarray(v, np.float32) for i, v in enumerate(values)}
        import collections

        sd = collections.OrderedDict((k, T(str(i), arrays[str(i)])) for i, k in enumerate(tensors))
        buf = io.BytesIO()
        P(buf, protocol=2).dump(sd)
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/data.pkl", buf.getvalue())
            for k, a in arrays.items():
                zf.writestr(f"archive/data/{k}", a.tobytes())
    finally:
        del sys.modules["torch"], sys.modules["torch._utils"]


def test_reads_torch_zip_state_dict_without_torch(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"a.conv.weight": rng.normal(size=(4, 3, 2, 2)), "a.bn.bias": rng.normal(size=5)}
    path = tmp_path / "w.pth"
    _fake_torch_zip(path, tensors)
    got = inception_weights.read_torch_state_dict(path)
    assert set(got) == set(tensors)
    for k, v in tensors.items():
        np.testing.assert_array_equal(got[k], v.astype(np.float32))


def test_loader_maps_torch_layout_into_the_flax_model():
    model = inception.random_model(seed=1)
    rng = np.random.default_rng(0)
    tensors = {}
    for path, var in nnx.to_flat_state(nnx.state(model)):
        shape = var.get_value().shape
        torch_shape = (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else shape
        tensors[inception_weights.torch_name(path)] = rng.normal(size=torch_shape)
    inception_weights.load_into(model, tensors)
    k = np.asarray(model.Mixed_6b.branch7x7_2.conv.kernel[...])  # (1, 7) kernel, HWIO
    t = tensors["Mixed_6b.branch7x7_2.conv.weight"]  # OIHW
    np.testing.assert_allclose(k, t.transpose(2, 3, 1, 0).astype(np.float32))
    np.testing.assert_allclose(
        np.asarray(model.Mixed_5b.branch_pool.bn.var[...]),
        tensors["Mixed_5b.branch_pool.bn.running_var"].astype(np.float32),
    )
