"""Peak memory of compressing and decoding large images -> JSON (issue #18 item 9).

    python bench/memory_bench.py [--sizes 1024,4096,8192] [--model BUNDLE]
        [--out bench/results/<date>_cpu_memory_bench.json]

Each size is a smooth synthetic photo-like image (gradients plus mild
texture: a "flat" image, so the file is small and the cost is the networks').
``compress`` and ``decompress --decoder mse`` each run the command line's own
``main`` in a fresh process and report that process's peak resident memory
(``ru_maxrss``), so imports and the compiled code are included, as a user
sees them. The must-hold: the 4096^2 and 8192^2 decodes within 2x of the
1024^2 decode (above 1536^2 pixels g_a / g_s run in tiles: autoencoder/tiles.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
_CHILD = """
import json, resource, sys
from hific_diffusion import cli
rc = cli.main(sys.argv[1:])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
print("MAXRSS " + json.dumps({"rc": rc, "peak_rss_mb": peak}))
"""


def synthetic_photo(side: int, seed: int = 0) -> np.ndarray:
    """uint8 [side, side, 3]: colour gradients with low-amplitude texture, made
    a block of rows at a time (the bench must not be what uses the memory)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, side, dtype=np.float32)
    out = np.empty((side, side, 3), np.uint8)
    for r in range(0, side, 512):
        tr = t[r : r + 512, None]
        block = np.empty((len(tr), side, 3), np.float32)
        block[..., 0] = 0.2 + 0.6 * t[None, :]
        block[..., 1] = 0.3 + 0.5 * tr
        block[..., 2] = 0.5 + 0.3 * np.sin(6.0 * tr) * np.cos(4.0 * t)[None, :]
        block += 0.02 * rng.standard_normal(block.shape, np.float32)
        out[r : r + 512] = np.clip(block, 0, 1) * 255 + 0.5
    return out


def _run(args) -> dict:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path)
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, *args], env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    line = [s for s in out.stdout.splitlines() if s.startswith("MAXRSS ")]
    if out.returncode or not line:
        raise SystemExit(f"{args[0]} failed:\n{out.stderr[-2000:]}")
    rec = json.loads(line[-1][len("MAXRSS ") :])
    if rec["rc"]:
        raise SystemExit(f"{args[0]} exited {rec['rc']}:\n{out.stderr[-2000:]}")
    return dict(peak_rss_mb=round(rec["peak_rss_mb"], 1), wall_s=round(wall, 2))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1024,4096,8192")
    p.add_argument("--model", default=None, help="bundle directory (default: the bundled one)")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    from PIL import Image

    sizes = [int(s) for s in a.sizes.split(",")]
    model = ["--model", a.model] if a.model else []
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for side in sizes:
            png, hfd, dec = (os.path.join(tmp, f"{side}.{e}") for e in ("png", "hfd", "out.png"))
            Image.fromarray(synthetic_photo(side)).save(png)
            c = _run(["compress", png, hfd, *model])
            d = _run(["decompress", hfd, dec, "--decoder", "mse", *model])
            ok = np.asarray(Image.open(dec)).shape == (side, side, 3)
            row = dict(side=side, file_bytes=os.path.getsize(hfd), compress=c, decompress=d)
            row["decoded_shape_ok"] = bool(ok)
            rows.append(row)
            print(json.dumps(row), flush=True)
    base = rows[0]["decompress"]["peak_rss_mb"]
    for r in rows:
        r["decompress_rss_vs_first"] = round(r["decompress"]["peak_rss_mb"] / base, 3)
    result = dict(
        bench="memory",
        date=datetime.date.today().isoformat(),
        commit=subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        device=f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        rows=rows,
    )
    text = json.dumps(result, indent=1)
    if a.out:
        Path(a.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
