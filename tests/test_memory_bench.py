"""bench/memory_bench.py: peak RSS of compress / decompress per size -> JSON
(issue #18 item 9). Slow (four CLI processes): ``--runslow``."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_memory_bench_reports_peak_rss_per_size(tmp_path):
    out = tmp_path / "mem.json"
    cmd = [sys.executable, str(ROOT / "bench" / "memory_bench.py"), "--sizes", "128,256"]
    subprocess.run(cmd + ["--out", str(out)], check=True, capture_output=True, timeout=900)
    rows = json.loads(out.read_text())["rows"]
    assert [r["side"] for r in rows] == [128, 256]
    for r in rows:
        assert r["decoded_shape_ok"] and r["file_bytes"] > 0
        # A real process's peak: jax alone is well above 100 MB, and a small image far below 8 GB.
        assert 100 < r["decompress"]["peak_rss_mb"] < 8000
        assert 100 < r["compress"]["peak_rss_mb"] < 8000
    assert rows[0]["decompress_rss_vs_first"] == 1.0
