"""train -> export -> compress -> decompress, through the command lines (issue 7)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flax import nnx

from hific_diffusion import bundle, configs
from hific_diffusion.bundle import BundleError
from hific_diffusion.codec.autoencoder import ELIC
from hific_diffusion.codec.bitstream import BitstreamError
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
