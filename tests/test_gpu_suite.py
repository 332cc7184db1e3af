"""bench/gpu_suite.py (issue #17) on the CPU: its dry run takes every code path
of the GPU run with tiny configs and shapes, so the script cannot rot while no
GPU is at hand; setup failures are one line and exit 2; a section that fails
is recorded while the others still run."""

import json
import math
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "bench" / "gpu_suite.py"
SECTIONS = ["crossdevice", "codec", "train", "unet", "memory", "decode"]
# Shared with the trainer tests' compilation cache: a second run compiles nothing.
CACHE = Path(tempfile.gettempdir()) / "hfd_test_jax_cache"


def _env(**extra):
    drop = ("XLA_FLAGS", "JAX_PLATFORMS", "JAX_COMPILATION_CACHE_DIR", "HFD_BENCH_TRACE_DIR")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _suite(*args, env=None, timeout=900):
    cmd = [sys.executable, str(SUITE), *args, "--cache-dir", str(CACHE)]
    return subprocess.run(
        cmd, env=env or _env(), capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def _num(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("gpu_suite") / "results"
    proc = _suite(str(results), "--dry-run")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    report = json.loads((results / "gpu_results.json").read_text())
    return report, results


def test_dry_run_measures_every_section(dry_run):
    report, _ = dry_run
    secs = report["sections"]
    assert list(secs) == SECTIONS
    assert all(s["status"] == "ok" and not s.get("error") for s in secs.values()), secs
    r = {name: s["result"] for name, s in secs.items()}
    for row in r["codec"]["latency"].values():
        for key in ("compress_s", "decompress_s", "compress_compile_s", "decompress_compile_s"):
            assert _num(row[key]) and row[key] > 0, (key, row)
    assert r["codec"]["entropy_coding"]["encode_symbols_per_s"] > 0
    for dtype in ("float32", "bfloat16"):
        t = r["train"][dtype]
        assert t["images_per_s"] > 0 and t["tflops"] > 0 and t["compute_dtype"] == dtype
        assert len(t["losses"]) == 3 and all(_num(v) for v in t["losses"])
    assert _num(r["train"]["bf16_rd_cost"]["rel_loss_diff_step0"])
    assert r["unet"]["matmul"]["tflops"] > 0
    assert set(r["unet"]["configs"]) == {"diffusers_equiv", "hfd"}
    for cfg in r["unet"]["configs"].values():
        assert cfg["forward_gflop_per_image"] > 0
        for part in ("train", "sample"):
            assert cfg[part]["images_per_s"] > 0 and cfg[part]["tflops"] > 0
    assert len(r["memory"]["sides"]) == 2
    for side in r["memory"]["sides"].values():  # no device memory stats on a CPU
        assert side["peak_rss_bytes"] > 0 and side["wall_s"] > 0
    d = r["decode"]["decode"]
    assert d["complete"] and d["decode_s"] > 0 and d["tiles"] > 1
    summary = r["crossdevice"]["summary"]
    assert summary["latents_identical"] is True and r["crossdevice"]["golden_file_latents_match"]
    assert summary["photos"] == 2 and _num(summary["image_max_abs_diff"])


def test_dry_run_reports_every_figure_beside_peers_and_targets(dry_run):
    report, results = dry_run
    rows = report["figures"]
    assert {r["section"] for r in rows} == set(SECTIONS)
    missing = [r["name"] for r in rows if r["value"] is None]
    assert not missing, missing
    targets = [r for r in rows if r["target"] is not None]
    assert len(targets) >= 9 and all(_num(r["gap"]) for r in targets)
    assert all(r["meets"] for r in rows if r["must"])
    assert report["largest_gap"]["gap"] > 0
    for key in ("device", "date", "commit", "jax"):
        assert report[key], key
    md = (results / "gpu_results.md").read_text()
    assert "| section | figure | ours | peer | target | meets |" in md
    table = [ln for ln in md.splitlines() if ln.startswith("| ") and "---" not in ln]
    assert {ln.split(" | ")[0][2:] for ln in table} >= set(SECTIONS)
    assert report["trace"] and (results / report["trace"]).stat().st_size > 0


def test_a_section_out_of_time_is_recorded_and_the_next_still_runs(tmp_path):
    proc = _suite(str(tmp_path), "--dry-run", "--sections", "memory,decode", "--budget", "memory=1")
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    secs = json.loads((tmp_path / "gpu_results.json").read_text())["sections"]
    assert secs["memory"]["status"] == "timeout" and "budget" in secs["memory"]["error"]
    assert secs["decode"]["status"] == "ok" and secs["decode"]["result"]["decode"]["decode_s"] > 0
    assert "| memory | timeout |" in (tmp_path / "gpu_results.md").read_text()


@pytest.mark.parametrize("case", ["missing", "no_gpu"])
def test_setup_failures_are_one_line_and_exit_2(tmp_path, case):
    env = _env()
    if case == "missing":  # a constriction that cannot be imported
        fake = tmp_path / "fake"
        fake.mkdir()
        (fake / "constriction.py").write_text("raise ImportError('simulated')\n")
        env["PYTHONPATH"] = f"{fake}{os.pathsep}{ROOT}"
        env["JAX_PLATFORMS"] = "cpu"
    args = [str(tmp_path / "res"), "--no-install"] + (["--dry-run"] * (case == "missing"))
    proc = _suite(*args, env=env, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = [ln for ln in proc.stdout.splitlines() if "FAILED" in ln]
    want = "missing constriction (ImportError: simulated)" if case == "missing" else "no GPU"
    assert want in line
    report = json.loads((tmp_path / "res" / "gpu_results.json").read_text())
    assert want in report["setup"]["error"] and report["sections"] == {}


def test_install_puts_the_wheels_first_on_the_path(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    import gpu_suite

    wheels = tmp_path / "whl"
    wheels.mkdir()
    dist = "hfd_probe-1.0.dist-info"
    with zipfile.ZipFile(wheels / "hfd_probe-1.0-py3-none-any.whl", "w") as z:
        z.writestr("hfd_probe.py", "VALUE = 17\n")
        z.writestr(f"{dist}/METADATA", "Metadata-Version: 2.1\nName: hfd-probe\nVersion: 1.0\n")
        wheel = "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        z.writestr(f"{dist}/WHEEL", wheel)
        z.writestr(f"{dist}/RECORD", "")
    env = {"PYTHONPATH": "/elsewhere"}
    out = gpu_suite.install(wheels, tmp_path / "site", env)
    assert out["installed"] == ["hfd_probe-1.0-py3-none-any.whl"], out
    assert env["PYTHONPATH"].split(os.pathsep) == [str(tmp_path / "site"), "/elsewhere"]
    probe = [sys.executable, "-c", "import hfd_probe; print(hfd_probe.VALUE)"]
    got = subprocess.run(probe, env=dict(os.environ, **env), capture_output=True, text=True)
    assert got.stdout.strip() == "17", got.stderr
