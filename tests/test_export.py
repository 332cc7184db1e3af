"""train -> export -> compress -> decompress, through the command lines (issue 7)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from hific_diffusion import bundle, configs, export
from hific_diffusion.autoencoder.elic import ELIC
from hific_diffusion.bundle import BundleError
from hific_diffusion.coding.bitstream import BitstreamError
from hific_diffusion.diffusion import decode
from hific_diffusion.diffusion.unet import UNet
from hific_diffusion.pipeline import Codec
from hific_diffusion.stablehlo import StableHLOCodec

ROOT = Path(__file__).resolve().parents[1]


def _env():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", *args], env=_env(), capture_output=True, text=True, timeout=1200
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    wd = tmp_path_factory.mktemp("train") / "run"
    overrides = ["steps=4", "ckpt_every=4", "log_every=1", "num_samples=0", "batch_size=2"]
    r = _run(
        "hific_diffusion.train",
        "--config=tiny:autoencoder",
        f"--workdir={wd}",
        *[f"--config.train.{o}" for o in overrides],
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return wd


@pytest.fixture(scope="module")
def exported(workdir, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "bundle"
    r = _run("hific_diffusion.export", f"--workdir={workdir}", f"--out={out}", "--stablehlo")
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def _photo(h, w):
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_trained_checkpoint_exports_to_a_bundle_that_round_trips(workdir, exported):
    codec = Codec.from_bundle(exported)
    assert codec.fingerprint == Codec.from_checkpoint(workdir).fingerprint
    x = _photo(40, 70)
    data = codec.compress(x)
    out = codec.decompress(data)
    assert out.shape == x.shape and out.dtype == np.uint8
    # The StableHLO export written beside it verifies and names the same model.
    assert StableHLOCodec.load(exported).fingerprint == codec.fingerprint


@pytest.mark.parametrize("fault", ["missing", "altered"])
def test_bundle_with_missing_or_altered_file_fails_clearly(exported, tmp_path, fault):
    b = tmp_path / "b"
    shutil.copytree(exported, b)
    if fault == "missing":
        (b / "weights" / "autoencoder.npz").unlink()
    else:
        cfg = json.loads((b / "config.json").read_text())
        cfg["seed"] = cfg.get("seed", 0) + 1
        (b / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BundleError, match=fault):
        Codec.from_bundle(b)


def test_bitstream_from_one_bundle_refuses_to_decode_with_another(exported, tmp_path):
    codec = Codec.from_bundle(exported)
    data = codec.compress(_photo(16, 16))
    config = configs.load("tiny")
    other = bundle.save_codec(
        tmp_path / "other", Codec(config, ELIC(config.model, rngs=nnx.Rngs(7)))
    )
    with pytest.raises(BitstreamError, match="different model"):
        Codec.from_bundle(other).decompress(data)


@pytest.mark.parametrize(
    "args, msg",
    [
        (["--workdir=/nonexistent/run"], "not a training workdir"),
        ([], "--workdir and --out are required"),
    ],
)
def test_export_errors_are_one_line_with_exit_status_2(tmp_path, args, msg):
    r = _run("hific_diffusion.export", *args, *([f"--out={tmp_path / 'b'}"] if args else []))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and msg in lines[0], r.stderr


def test_a_bad_decode_setting_is_one_line_exit_2_and_writes_no_bundle(workdir, tmp_path):
    out = tmp_path / "b"
    r = _run("hific_diffusion.export", f"--workdir={workdir}", f"--out={out}",
             "--decode=diffusion.steps=1")  # fmt: skip
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no diffusion decoder in the bundle (none)" in lines[0], r.stderr
    assert not out.exists()


def _stage2(task, steps, base_channels, seed):
    """A stage-2 run's config and U-Net: its own sampler steps and U-Net width."""
    config = configs.load(f"tiny:{task}")
    config.diffusion.steps = steps
    config.diffusion.unet.base_channels = base_channels
    return config, UNet(config.diffusion.unet, rngs=nnx.Rngs(seed))


def test_each_decoder_is_exported_and_decoded_with_its_own_config(tmp_path, monkeypatch):
    """A diffusion and a flow decoder of other U-Net shapes and step counts
    (as ``hfd`` with 250 steps and ``hfd_rf`` with 8) go through one bundle,
    and each decodes with its own steps and weights (issue #16)."""
    ae_config = configs.load("tiny")
    ae = ELIC(ae_config.model, rngs=nnx.Rngs(0))
    runs = {"diffusion": _stage2("diffusion", 3, 8, 1), "flow": _stage2("flow", 2, 16, 2)}
    codecs = [Codec(ae_config, ae)] + [
        Codec(config, ae, **{kind: unet}) for kind, (config, unet) in runs.items()
    ]
    path = bundle.save_codec(tmp_path / "b", export.combine(codecs))
    saved = json.loads((path / "config.json").read_text())
    assert sorted(saved) == ["autoencoder", "diffusion", "flow"]
    codec = Codec.from_bundle(path)

    used = {}
    real = decode.generate

    def spy(graphdef, state, x_mse01, *, kind, cfg, **kw):
        steps = decode.check_args(cfg, kind, **{k: v for k, v in kw.items() if k != "progress"})
        widths = {tuple(a.shape) for a in jax.tree_util.tree_leaves(state)}
        used[kind] = (steps[0], widths)
        return real(graphdef, state, x_mse01, kind=kind, cfg=cfg, **kw)

    monkeypatch.setattr(decode, "generate", spy)
    data = codec.compress(_photo(16, 16))
    for kind, (config, unet) in runs.items():
        out = codec.decompress(data, decoder=kind)
        assert out.shape == (16, 16, 3) and out.dtype == np.uint8
        trained = {tuple(a.shape) for a in jax.tree_util.tree_leaves(nnx.state(unet, nnx.Param))}
        assert used[kind][0] == config.diffusion.steps
        assert trained <= used[kind][1]  # this run's U-Net, not the other one
    assert used["diffusion"][0] == 3 and used["flow"][0] == 2
    assert not used["diffusion"][1] <= used["flow"][1]  # the two shapes differ


def _codec_with_diffusion():
    ae_config = configs.load("tiny")
    ae = ELIC(ae_config.model, rngs=nnx.Rngs(0))
    config, unet = _stage2("diffusion", 3, 8, 1)
    return Codec(config, ae, diffusion=unet)


def test_decode_settings_change_how_the_bundle_samples_not_what_it_is(tmp_path):
    """``--decode diffusion.steps=1`` makes the bundle's default decode the
    one an explicit ``steps=1`` gives the original, with the same fingerprint
    (files stay decodable) and the same weights."""
    codec = _codec_with_diffusion()
    tuned = export.with_decode_settings(codec, ["diffusion.steps=1", "diffusion.tile=0"])
    path = bundle.save_codec(tmp_path / "b", tuned)
    loaded = Codec.from_bundle(path)
    assert loaded.fingerprint == codec.fingerprint
    section = loaded.generative["diffusion"].config
    assert (section.steps, section.tile) == (1, 0)
    assert codec.generative["diffusion"].config.steps == 3  # the original is unchanged
    data = codec.compress(_photo(16, 16))
    want = codec.decompress(data, decoder="diffusion", steps=1, tile=0, seed=0)
    assert np.array_equal(loaded.decompress(data, decoder="diffusion", seed=0), want)
    assert not np.array_equal(codec.decompress(data, decoder="diffusion", seed=0), want)


@pytest.mark.parametrize(
    "setting, msg",
    [
        ("diffusion.unet.base_channels=4", "not a sampling setting"),
        ("diffusion.base_channels=4", "not a sampling setting"),
        ("flow.steps=2", "no flow decoder in the bundle"),
        ("diffusion.steps=two", "'two' is not a int"),
        ("diffusion.steps=0", "steps must be a positive integer"),
        ("diffusion.tile=9", "tile must be a multiple"),
        ("diffusion.sampler=heun", "heun"),
        ("diffusion.tile_chunk=0", "tile_chunk must be a positive integer"),
        ("steps=2", "expected NAME.FIELD=VALUE"),
    ],
)
def test_bad_decode_settings_are_refused_with_the_reason(setting, msg):
    with pytest.raises(export.ExportError, match=msg):
        export.with_decode_settings(_codec_with_diffusion(), [setting])


def test_float16_weights_halve_the_bundle_and_are_the_rounded_model_exactly(tmp_path):
    """``--weights_dtype=float16``: the bundle stores every float weight in
    half precision and is the model rounded to it, to the bit: its
    fingerprint (tables derived from the rounded weights) is the rounded
    Codec's, its files decode as that Codec does; unrounded float32 weights
    are refused rather than silently rounded on save."""
    codec = _codec_with_diffusion()
    full = bundle.save_codec(tmp_path / "f32", codec)
    with pytest.raises(BundleError, match="not exactly representable in float16"):
        bundle.save_codec(tmp_path / "bad", codec, weights_dtype="float16")
    half = export.rounded(codec, "float16")
    path = bundle.save_codec(tmp_path / "f16", half, weights_dtype="float16")
    size = lambda p: sum(f.stat().st_size for f in (p / "weights").iterdir())  # noqa: E731
    assert size(path) < 0.6 * size(full)  # the .npz headers of a tiny model: not quite half
    with np.load(path / "weights" / "autoencoder.npz") as z:
        kinds = {z[k].dtype for k in z.files if z[k].dtype.kind == "f"}
    assert kinds == {np.dtype("float16")}
    loaded = Codec.from_bundle(path)
    assert loaded.fingerprint == half.fingerprint
    x = _photo(24, 40)
    data = half.compress(x)
    assert loaded.compress(x) == data
    assert np.array_equal(loaded.decompress(data, decoder="mse"), half.decompress(data))
    want = half.decompress(data, decoder="diffusion", seed=0)
    assert np.array_equal(loaded.decompress(data, decoder="diffusion", seed=0), want)
