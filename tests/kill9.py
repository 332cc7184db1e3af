"""Helpers shared by the kill -9 resume tests (train, hific, cdc): training
subprocesses through the CLI, killed with SIGKILL after a checkpoint."""

import json
import signal
import subprocess
import time
from pathlib import Path


def losses(workdir, key: str | None = "loss") -> dict:
    """``{step: record[key]}`` from a workdir's metrics.jsonl (the whole
    record for ``key=None``); later lines win: after a resume, steps are
    logged again."""
    lines = (Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return {rec["step"]: rec if key is None else rec[key] for rec in map(json.loads, lines)}


def committed_steps(workdir) -> list[int]:
    d = Path(workdir) / "checkpoints"
    return sorted(int(p.name) for p in d.glob("*") if p.name.isdigit()) if d.is_dir() else []


def kill9_after_a_checkpoint(cmd, env, workdir, timeout: float = 600) -> int:
    """Starts ``cmd`` (training into ``workdir``) and kills it with SIGKILL
    once it has logged a step past a committed checkpoint; asserts it was
    killed (not finished) and returns the last committed step."""
    workdir = Path(workdir)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        done = committed_steps(workdir)
        if done and (workdir / "metrics.jsonl").exists() and max(losses(workdir)) > done[-1]:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    return committed_steps(workdir)[-1]


def rerun(cmd, env, resumed_from: int) -> None:
    """Reruns the killed ``cmd`` to the end; it must say where it resumed."""
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"resumed from step {resumed_from}" in out.stdout
