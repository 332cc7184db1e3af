"""bench/codec_bench.py --vs-compressai (issue #13 item 6) at a tiny size: the
CompressAI worker and our imported ELIC code the same photo, and the JSON
holds both sides' timings, bpp and PSNR. Needs the torch + CompressAI venv
(``.venv-torch``, or ``$HFD_TORCH_PYTHON``); skipped without it."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "codec_bench.py"


def _torch_python() -> str:
    py = os.environ.get("HFD_TORCH_PYTHON") or str(ROOT / ".venv-torch" / "bin" / "python")
    if not Path(py).is_file():
        pytest.skip(f"no torch + CompressAI interpreter at {py} (set $HFD_TORCH_PYTHON)")
    probe = subprocess.run(
        [py, "-c", "import compressai.models"], capture_output=True, text=True, timeout=120
    )
    if probe.returncode:
        pytest.skip(f"{py} cannot import compressai: {probe.stderr.strip()[-200:]}")
    return py


def _env():
    drop = ("XLA_FLAGS", "JAX_PLATFORMS", "JAX_COMPILATION_CACHE_DIR", "HFD_BENCH_TRACE_DIR")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = str(ROOT)
    return env


def _pos(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


def test_vs_compressai_codes_the_same_photo_with_both(tmp_path):
    torch_py = _torch_python()
    out = tmp_path / "vs.json"
    cmd = [
        sys.executable, str(BENCH), "--vs-compressai", "--N", "32", "--M", "160",
        "--sizes", "64x64", "--repeats", "2", "--torch-python", torch_py,
        "--note", "test run", "--out", str(out),
    ]  # fmt: skip
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["benchmark"] == "codec_vs_compressai"
    assert res["versions"]["compressai"] and res["versions"]["jax"]
    assert "test run" in res["notes"]
    assert "--xla_cpu_multi_thread_eigen=false" in res["xla_flags"]
    (run,) = res["runs"]
    assert (run["N"], run["M"], run["groups"]) == (32, 160, [16, 16, 32, 64, 32])
    assert run["threads"]["torch"] == 1
    # Every CompressAI parameter imported; ours has one median per z channel more.
    assert run["params"]["ours"] == run["params"]["theirs"] + 32
    (size,) = run["sizes"]
    assert (size["width"], size["height"]) == (64, 64)
    for side in ("ours", "theirs"):
        s = size[side]
        assert s["bytes"] > 0 and s["real_bpp"] == s["bytes"] * 8 / (64 * 64)
        assert _pos(s["psnr"])
        for op in ("compress", "decompress"):
            t = s[op]
            assert _pos(t["cold_s"]) and _pos(t["warm_s"]) and len(t["warm_runs_s"]) == 2
    assert _pos(size["ours"]["compress"]["cold_compile_s"])
    ratios = size["ratios_ours_over_theirs"]
    assert set(ratios) == {
        "compress_cold", "compress_warm", "decompress_cold", "decompress_warm", "bytes",
    }  # fmt: skip
    assert all(_pos(v) for v in ratios.values())
    # The same weights: the two reconstructions agree far better than either
    # matches the photo (untrained weights reconstruct it poorly).
    agree = size["psnr_ours_vs_theirs"]
    assert agree is None or agree > max(size["ours"]["psnr"], size["theirs"]["psnr"]) + 20


def test_vs_compressai_without_the_torch_venv_is_a_clear_error(tmp_path):
    cmd = [sys.executable, str(BENCH), "--vs-compressai", "--torch-python", str(tmp_path / "no")]
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode != 0
    assert "no CompressAI interpreter" in r.stderr
