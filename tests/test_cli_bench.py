"""bench/cli_bench.py: new-process command-line timings -> JSON (issue #13).

Slow (about ten CLI processes with the default model): ``--runslow``."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_cli_bench_writes_every_timing(tmp_path):
    out = tmp_path / "cli.json"
    cmd = [sys.executable, str(ROOT / "bench" / "cli_bench.py"), "--size", "128x64"]
    cmd += ["--other-size", "200x150", "--repeats", "1", "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    r = json.loads(out.read_text())["results"]
    keys = ["compress_cold_s", "compress_seen_s", "decompress_seen_s", "compress_new_size_s"]
    keys += ["import_s", "load_s", "warm_compress_s", "warm_decompress_s"]
    assert all(r[k] > 0 for k in keys)
    # The cache works: a size seen before compresses faster than the first, cold run.
    assert r["compress_seen_s"] < r["compress_cold_s"]
    assert 0 < r["bpp"] < 24
