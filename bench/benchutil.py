"""Shared by the benchmarks: compile time from JAX's own events, optional traces,
the CompressAI worker process.

``CompileClock`` sums JAX's compile-event durations (tracing, lowering to
MLIR, backend compile) reported through ``jax.monitoring``, so a single call
splits into compile and run time without a second call.

``maybe_trace(label, fn)`` runs ``fn`` once more under ``jax.profiler.trace``
into ``$HFD_BENCH_TRACE_DIR/<label>`` when that variable is set (the GPU
suite sets it); otherwise it does nothing. It never fails a measurement: a
profiler error is printed and skipped, and once a process has spent
``$HFD_BENCH_TRACE_BUDGET_S`` (default 15) seconds tracing it traces no more.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

TRACE_ENV = "HFD_BENCH_TRACE_DIR"
_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_total = [0.0]
_registered = [False]
_traced_s = [0.0]


def _listener(event, duration, **_):
    if event in _COMPILE_EVENTS:
        _total[0] += duration


def compile_seconds_so_far() -> float:
    """Seconds this process has spent compiling since the first call of this."""
    if not _registered[0]:
        import jax

        jax.monitoring.register_event_duration_secs_listener(_listener)
        _registered[0] = True
    return _total[0]


class CompileClock:
    """``with CompileClock() as c: ...``; then ``c.compile_s`` and ``c.wall_s``."""

    def __enter__(self):
        self._c0 = compile_seconds_so_far()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall_s = time.perf_counter() - self._t0
        self.compile_s = compile_seconds_so_far() - self._c0
        return False


def maybe_trace(label: str, fn, iters: int = 1) -> str | None:
    """Profiles ``iters`` more calls of ``fn`` if ``$HFD_BENCH_TRACE_DIR`` is set."""
    root = os.environ.get(TRACE_ENV)
    if not root or _traced_s[0] > float(os.environ.get("HFD_BENCH_TRACE_BUDGET_S", 15)):
        return None
    import jax

    out = Path(root) / label
    t0 = time.perf_counter()
    try:
        with jax.profiler.trace(str(out)):
            for _ in range(iters):
                jax.block_until_ready(fn())
    except Exception as e:  # a trace is a bonus, never the reason a figure is lost
        print(f"maybe_trace({label}): {type(e).__name__}: {e}", file=sys.stderr)
        return None
    finally:
        _traced_s[0] += time.perf_counter() - t0
    return str(out)


class CompressAIWorker:
    """``bench/compressai_worker.py`` in the torch interpreter, one JSON line each way."""

    def __init__(self, python: str):
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        env.pop("PYTHONPATH", None)  # the worker needs nothing of ours
        worker = Path(__file__).with_name("compressai_worker.py")
        self.proc = subprocess.Popen(
            [python, str(worker)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=env,
        )  # fmt: skip

    def __call__(self, **msg):
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"error: the CompressAI worker died (exit {self.proc.wait()})")
        return json.loads(line)

    def close(self):
        try:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
