"""The cdc task in the one trainer: kill -9 and resume like the other tasks.

Subprocesses through the CLI, as ``tests/train/test_resume_and_hosts.py``;
a compilation cache shared by them keeps the later runs' compiles short.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tests import kill9

ROOT = Path(__file__).resolve().parents[2]
CACHE = os.path.join(tempfile.gettempdir(), "hfd_test_jax_cache")


def _env():
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.setdefault("JAX_COMPILATION_CACHE_DIR", CACHE)
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    return env


def _cmd(workdir, *overrides):
    base = ["train.log_every=1", "train.num_samples=0", "train.steps=8", "train.ckpt_every=2"]
    return [
        sys.executable,
        "-m",
        "hific_diffusion.train",
        "--config=cdc:tiny",
        f"--workdir={workdir}",
        *[f"--config.{o}" for o in base + list(overrides)],
    ]


def test_cdc_kill9_then_rerun_resumes_with_identical_losses(tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    done = subprocess.run(_cmd(ref), env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    want = kill9.losses(ref, key=None)
    # The cdc task logs CDC's terms: the rate and the x-loss.
    assert {"loss", "bpp", "x_loss", "x_mse"} <= set(want[8])
    resumed_from = kill9.kill9_after_a_checkpoint(_cmd(run), _env(), run)
    assert resumed_from < 8
    kill9.rerun(_cmd(run), _env(), resumed_from)
    got = kill9.losses(run)
    for k in range(resumed_from + 1, 9):
        np.testing.assert_allclose(got[k], want[k]["loss"], rtol=1e-6)


@pytest.mark.slow  # a CDC bundle's real-bytes round trip runs by default: test_cdc_codec.py
def test_cdc_train_export_compress_decompress_round_trip(tmp_path):
    # The one trainer's cdc run (the same program as above: compiled once,
    # from the cache), exported as a CDC bundle, codes real bytes and decodes them.
    from hific_diffusion import export
    from hific_diffusion.coding import bitstream
    from hific_diffusion.pipeline import Codec

    work = tmp_path / "work"
    done = subprocess.run(_cmd(work), env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    path = export.export([str(work)], tmp_path / "bundle")
    codec = Codec.load(path)
    assert codec.family == "cdc"
    img = np.random.default_rng(0).integers(0, 256, (40, 72, 3), dtype=np.uint8)
    data = codec.compress(img)
    assert bitstream.unpack(data)[0].decoder == "cdc"
    out = codec.decompress(data)
    assert out.shape == img.shape and out.dtype == np.uint8
    # The workdir's Codec (its own tables) reads the bundle's file, latents exact.
    from_work = Codec.load(work)
    assert from_work.fingerprint == codec.fingerprint
    np.testing.assert_array_equal(from_work.decompress(data), out)
