"""Multi-host setup fails fast and clearly; launchers check their inputs."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hific_diffusion.train import distributed

ROOT = Path(__file__).resolve().parents[2]


def test_detect_reads_explicit_coordinator_from_env(monkeypatch):
    monkeypatch.setenv("HFD_COORDINATOR", "10.0.0.1:1234")
    monkeypatch.setenv("HFD_NUM_PROCESSES", "4")
    monkeypatch.setenv("HFD_PROCESS_ID", "3")
    assert distributed.detect() == dict(
        coordinator_address="10.0.0.1:1234", num_processes=4, process_id=3
    )
    monkeypatch.setenv("HFD_PROCESS_ID", "4")
    with pytest.raises(distributed.DistributedError, match="outside"):
        distributed.detect()


def test_detect_single_host_and_cluster_envs(monkeypatch):
    for key in ("HFD_COORDINATOR", "SLURM_NTASKS", "TPU_WORKER_HOSTNAMES", "HFD_MULTIHOST"):
        monkeypatch.delenv(key, raising=False)
    assert distributed.detect() is None
    monkeypatch.setenv("SLURM_NTASKS", "2")
    assert distributed.detect() == {}


def test_unreachable_coordinator_fails_with_clear_error_after_timeout(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, HFD_COORDINATOR=f"127.0.0.1:{port}", HFD_NUM_PROCESSES="2")
    env.update(HFD_PROCESS_ID="1", PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-m", "hific_diffusion.train", "--config=tiny"]
    cmd += [f"--workdir={tmp_path}", "--config.train.init_timeout=3"]
    t0 = time.time()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "error: could not join the run (coordinator 127.0.0.1" in out.stderr
    assert "Traceback" not in out.stderr
    assert time.time() - t0 < 90


@pytest.mark.parametrize("script", ["tpu_pod.sh", "slurm_gpu.sbatch"])
def test_launchers_refuse_bad_invocations_clearly(script):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    out = subprocess.run(
        ["bash", str(ROOT / "launch" / script)], env=env, capture_output=True, text=True
    )
    assert out.returncode != 0 and "error: usage" in out.stderr
    if script == "slurm_gpu.sbatch":
        out = subprocess.run(
            ["bash", str(ROOT / "launch" / script), "tiny", "/tmp/w"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert "run me with sbatch" in out.stderr
