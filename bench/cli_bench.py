"""What a command-line user waits for -> JSON (issue #13 targets).

    python bench/cli_bench.py [--model BUNDLE] [--image PHOTO] [--size 768x512]
        [--other-size 868x600] [--repeats 2] [--out bench/results/cli_<date>.json]

Each row is a new process (``python -m hific_diffusion.cli``) against a fresh,
private compilation cache: ``compress_cold`` (empty cache), ``compress_seen``
(the same size again), ``compress_new_size`` (another size whose bucket was not
seen), ``decompress_seen`` (mse decoder). Then, in this process: the time of
``Codec.load()`` after imports and the warm compress / decompress (mse) times
(median of ``--repeats``). Run it on a quiet machine: other jobs inflate every
row.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _photo(path, wh):
    from PIL import Image

    if path:
        im = Image.open(path).convert("RGB")
    else:
        from skimage import data

        im = Image.fromarray(data.astronaut())
    return im.resize(wh, Image.BICUBIC)


def _cli(args, env) -> float:
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "hific_diffusion.cli", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="bundle (default: the shipped model)")
    p.add_argument("--image", default=None, help="photo (default: skimage astronaut)")
    p.add_argument("--size", default="768x512")
    p.add_argument("--other-size", default="868x600")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    wh = tuple(int(v) for v in args.size.split("x"))
    other = tuple(int(v) for v in args.other_size.split("x"))
    model = ["--model", args.model] if args.model else []
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = dict(os.environ, HFD_COMPILATION_CACHE=str(tmp / "jax"))
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        _photo(args.image, wh).save(tmp / "a.png")
        _photo(args.image, other).save(tmp / "b.png")
        rows["compress_cold_s"] = _cli(
            ["compress", str(tmp / "a.png"), str(tmp / "a.hfd"), *model], env
        )
        rows["compress_seen_s"] = min(
            _cli(["compress", str(tmp / "a.png"), str(tmp / "a.hfd"), *model], env)
            for _ in range(args.repeats)
        )
        dec = ["decompress", str(tmp / "a.hfd"), str(tmp / "out.png"), "--decoder", "mse", *model]
        _cli(dec, env)  # first decompress compiles g_s for this bucket
        rows["decompress_seen_s"] = min(_cli(dec, env) for _ in range(args.repeats))
        rows["compress_new_size_s"] = _cli(
            ["compress", str(tmp / "b.png"), str(tmp / "b.hfd"), *model], env
        )
        os.environ["HFD_COMPILATION_CACHE"] = str(tmp / "jax")
        t0 = time.perf_counter()
        from hific_diffusion import cache
        from hific_diffusion.pipeline import Codec

        cache.enable_compilation_cache()
        import jax  # noqa: F401  (imports counted apart from load)
        from flax import nnx  # noqa: F401

        rows["import_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        codec = Codec.load(args.model)
        rows["load_s"] = time.perf_counter() - t0
        img = np.asarray(_photo(args.image, wh))
        data = codec.compress(img)
        codec.decompress_mse(data)
        comp, deco = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            codec.compress(img)
            comp.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            codec.decompress_mse(data)
            deco.append(time.perf_counter() - t0)
        rows["warm_compress_s"] = statistics.median(comp)
        rows["warm_decompress_s"] = statistics.median(deco)
        rows["bpp"] = 8 * len(data) / (wh[0] * wh[1])
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    out = dict(
        bench="cli_bench",
        date=time.strftime("%Y-%m-%d"),
        commit=commit,
        device=platform.processor() or platform.machine(),
        cpus=os.cpu_count(),
        load_average=os.getloadavg(),
        args=vars(args),
        results={k: round(v, 3) for k, v in rows.items()},
    )
    text = json.dumps(out, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
