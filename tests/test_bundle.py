import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from flax import nnx

from hific_diffusion import bundle, configs, models
from hific_diffusion.bundle import BundleError
from hific_diffusion.coding import tables


@pytest.fixture()
def saved(tmp_path):
    config = configs.load("tiny")
    lin = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    t = tables.build_gaussian_tables(tables.gaussian_scale_table(4, 0.11, 8.0))
    path = bundle.save_bundle(
        tmp_path / "b",
        {
            "autoencoder": (config.model, nnx.state(lin)),
            "flow": (config.diffusion, {"w": np.ones((2, 2), np.float32)}),
        },
        t,
        fingerprint=b"\x01\x02",
    )
    return path, config, lin, t


def test_saved_bundle_loads_with_config_weights_tables_and_fingerprint(saved):
    path, config, lin, t = saved
    b = bundle.load_bundle(path)
    ae = b.models["autoencoder"]
    assert ae.config.groups == config.model.groups  # tuples survive JSON
    assert ae.config.to_dict() == config.model.to_dict()
    assert b.models["flow"].config.to_dict() == config.diffusion.to_dict()
    assert b.tables == {"y": t} and b.fingerprint == "0102" and b.version == bundle.VERSION
    assert np.array_equal(ae.params["kernel"], np.asarray(lin.kernel[...]))
    assert list(b.models) == ["autoencoder", "flow"]


def test_loaded_weights_can_be_assigned_back_into_a_fresh_module(saved):
    path, _, lin, _ = saved
    fresh = nnx.Linear(3, 2, rngs=nnx.Rngs(1))
    flat = bundle.load_bundle(path).models["autoencoder"].params
    models.assign_flat(fresh, flat)
    assert np.array_equal(np.asarray(fresh.kernel[...]), np.asarray(lin.kernel[...]))
    with pytest.raises(BundleError, match="shape"):
        models.assign_flat(nnx.Linear(4, 2, rngs=nnx.Rngs(1)), flat)


def test_missing_file_is_refused(saved):
    path = saved[0]
    (path / "weights" / "flow.npz").unlink()
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


# ----------------------------------------------------- faults behind valid hashes
# A version-1 bundle (one experiment config.json for all models): the faults
# below test that layout; the current one's follow them.
GOLDEN_BUNDLE = Path(__file__).resolve().parent / "fixtures" / "golden_coding" / "bundle"


def _rehash(path):
    """Makes the manifest match whatever the files now hold (a careful forger)."""
    m = json.loads((path / "manifest.json").read_text())
    m["files"] = {rel: hashlib.sha256((path / rel).read_bytes()).hexdigest() for rel in m["files"]}
    (path / "manifest.json").write_text(json.dumps(m))


def _assert_refused(source, tmp_path, tamper, fragments):
    """A copy of bundle ``source``, tampered and re-hashed (so only the
    content is wrong), fails to load with one line naming ``fragments``."""
    from hific_diffusion.pipeline import Codec

    path = tmp_path / "b"
    shutil.copytree(source, path)
    tamper(path)
    _rehash(path)
    with pytest.raises(BundleError) as e:
        Codec.load(path)
    assert type(e.value) is BundleError
    assert all(f in str(e.value) for f in fragments), str(e.value)
    assert "\n" not in str(e.value)


def _edit_config(fn):
    def edit(path):
        c = json.loads((path / "config.json").read_text())
        fn(c)
        (path / "config.json").write_text(json.dumps(c))

    return edit


def _corrupt_middle(path):
    w = path / "weights" / "autoencoder.npz"
    b = bytearray(w.read_bytes())
    b[len(b) // 2 : len(b) // 2 + 64] = bytes(64)
    w.write_bytes(bytes(b))


def _nan_weight(path):
    w = path / "weights" / "autoencoder.npz"
    with np.load(w) as z:
        arrays = {k: z[k] for k in z.files}
    key = sorted(k for k in arrays if arrays[k].dtype.kind == "f")[0]
    arrays[key] = np.full_like(arrays[key], np.nan)
    with open(w, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize(
    "tamper, fragments",
    [
        (_edit_config(lambda c: c["model"].update(M=96)), ["config.json model", "M=96"]),
        (_edit_config(lambda c: c.pop("model")), ["config.json", "'model'"]),
        (_edit_config(lambda c: c.update(model=None)), ["config.json", "model is null"]),
        (_edit_config(lambda c: c["model"].update(num_scales="x")), ["model.num_scales"]),
        (_edit_config(lambda c: c["model"].update(N=7)), ["weights/autoencoder.npz", "model"]),
        (_corrupt_middle, ["weights/autoencoder.npz"]),
        (lambda p: (p / "weights" / "autoencoder.npz").write_bytes(b"PK"), ["autoencoder.npz"]),
        (_nan_weight, ["autoencoder.npz", "NaN"]),
        (lambda p: (p / "tables" / "z.bin").write_bytes(b"HFDTAB1\0"), ["tables/z.bin"]),
    ],
    ids=[
        "model_M_96", "no_model_key", "model_null", "num_scales_string", "weights_of_other_N",
        "npz_corrupted", "npz_not_a_zip", "nan_weight", "table_cut",
    ],
)  # fmt: skip
def test_faults_behind_matching_hashes_are_bundle_errors_naming_file_and_field(
    tmp_path, tamper, fragments
):
    _assert_refused(GOLDEN_BUNDLE, tmp_path, tamper, fragments)


def test_a_unet_bundle_whose_config_has_no_unet_section_is_refused(saved):
    path = saved[0]
    _edit_config(lambda c: c["flow"].update(unet=None))(path)
    _rehash(path)
    with pytest.raises(BundleError, match=r"config.json: flow.unet is null"):
        bundle.load_bundle(path)


@pytest.fixture(scope="module")
def golden_v2(tmp_path_factory):
    """The golden bundle written in the current layout: same weights and tables."""
    from hific_diffusion.pipeline import Codec

    path = tmp_path_factory.mktemp("v2") / "b"
    bundle.save_codec(path, Codec.from_bundle(GOLDEN_BUNDLE))
    return path


def _add_file(rel, source):
    def add(path):
        shutil.copy(path / source, path / rel)
        m = json.loads((path / "manifest.json").read_text())
        m["files"][rel] = ""
        (path / "manifest.json").write_text(json.dumps(m))

    return add


_FLOW = configs.load("tiny").diffusion.to_dict()


@pytest.mark.parametrize(
    "tamper, fragments",
    [
        (_edit_config(lambda c: c["autoencoder"].update(M=96)),
         ["config.json autoencoder", "M=96"]),
        (_edit_config(lambda c: c.pop("autoencoder")), ["config.json", "'autoencoder'"]),
        (_edit_config(lambda c: c.update(autoencoder=None)),
         ["config.json", "autoencoder is null"]),
        (_edit_config(lambda c: c["autoencoder"].update(N=7)),
         ["weights/autoencoder.npz", "config.json autoencoder"]),
        (_edit_config(lambda c: c.update(gan={})), ["config.json", "unknown models ['gan']"]),
        (_edit_config(lambda c: c.update(flow=_FLOW)), ["lacks weights/flow.npz", "flow model"]),
        (_add_file("weights/flow.npz", "weights/autoencoder.npz"),
         ["config.json", "no 'flow' section", "weights/flow.npz"]),
    ],
    ids=[
        "model_M_96", "no_autoencoder_key", "autoencoder_null", "weights_of_other_N",
        "unknown_model", "config_without_weights", "weights_without_config",
    ],
)  # fmt: skip
def test_faults_in_the_current_layout_are_bundle_errors_naming_file_and_field(
    golden_v2, tmp_path, tamper, fragments
):
    _assert_refused(golden_v2, tmp_path, tamper, fragments)


def test_a_version_1_bundle_rewritten_in_the_current_layout_is_the_same_model(golden_v2):
    from hific_diffusion.pipeline import Codec

    old, new = Codec.from_bundle(GOLDEN_BUNDLE), Codec.from_bundle(golden_v2)
    assert bundle.load_bundle(GOLDEN_BUNDLE).version == 1
    assert bundle.load_bundle(golden_v2).version == bundle.VERSION
    assert new.fingerprint == old.fingerprint
    assert new.config.model.to_dict() == old.config.model.to_dict()


# ------------------------------------------- sections a model cannot be built from
@pytest.fixture(scope="module")
def golden_diffusion(tmp_path_factory):
    """The golden bundle in the current layout plus a diffusion decoder: the
    tiny U-Net with zero weights (only its config section is at stake)."""
    from hific_diffusion import skeleton
    from hific_diffusion.diffusion.unet import UNet
    from hific_diffusion.pipeline import Codec

    ae = Codec.from_bundle(GOLDEN_BUNDLE)
    section = configs.load("tiny").diffusion
    with skeleton.skeleton():
        unet = UNet(section.unet, rngs=nnx.Rngs(0))
    codec = Codec(
        ae.config, ae.autoencoder, tables=ae.coding.tables, decoders={"diffusion": (section, unet)}
    )
    path = tmp_path_factory.mktemp("diffusion") / "b"
    bundle.save_codec(path, codec)
    return path


def _edit_unet(**fields):
    return _edit_config(lambda c: c["diffusion"]["unet"].update(fields))


@pytest.mark.parametrize(
    "tamper, fragments",
    [
        (_edit_config(lambda c: c["autoencoder"].update(N=0)),
         ["config.json autoencoder cannot build the autoencoder", "model.N is 0"]),
        (_edit_config(lambda c: c["autoencoder"].update(groups=[4, 4, 8])),
         ["config.json autoencoder", "model.groups (4, 4, 8) must sum to M=24"]),
        (_edit_config(lambda c: c["autoencoder"].update(scale_min=-1.0)),
         ["config.json autoencoder", "model.scale_min is -1.0"]),
        (_edit_config(lambda c: c["autoencoder"].update(compute_dtype="float64")),
         ["config.json autoencoder", "model.compute_dtype is 'float64'"]),
        (_edit_unet(base_channels=0),
         ["config.json diffusion.unet cannot build the diffusion decoder", "unet.base_channels"]),
        (_edit_unet(head_dim=10), ["config.json diffusion.unet", "32 channels", "attention heads"]),
        (_edit_unet(compute_dtype="int8"), ["config.json diffusion.unet", "unet.compute_dtype"]),
        (_edit_unet(channel_mult=[]), ["config.json diffusion.unet", "unet.channel_mult is ()"]),
        (_edit_config(lambda c: c["diffusion"].update(sampler="dpm++")),
         ["config.json: diffusion decoder config", "dpm++"]),
    ],
    ids=[
        "N_0", "groups_not_M", "scale_min_negative", "compute_dtype_float64", "unet_no_channels",
        "unet_heads", "unet_int_dtype", "unet_no_levels", "unknown_sampler",
    ],
)  # fmt: skip
def test_sections_that_cannot_build_their_model_are_bundle_errors_naming_field(
    golden_diffusion, tmp_path, tamper, fragments
):
    _assert_refused(golden_diffusion, tmp_path, tamper, fragments)


def test_a_bug_while_building_a_model_is_not_reported_as_a_bad_bundle(golden_v2, monkeypatch):
    """Only the constructors' ModelConfigError means a bad section; a plain
    IndexError (a bug) keeps its type and traceback, also in the coder."""
    from hific_diffusion.coding import coding
    from hific_diffusion.pipeline import Codec

    def buggy(section):
        raise IndexError("list index out of range")

    monkeypatch.setattr(models, "_SKELETONS", {})  # so the constructor really runs
    monkeypatch.setitem(models.MODULES, "model", (buggy, None))
    with pytest.raises(IndexError, match="out of range"):
        Codec.load(golden_v2)
    monkeypatch.undo()
    monkeypatch.setattr(coding, "prepare", lambda *args, **kwargs: [][0])
    with pytest.raises(IndexError):
        Codec.load(golden_v2)
