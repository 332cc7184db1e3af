"""Input pipeline throughput (images/s) against the training step, as JSON.

    python bench/input_bench.py --source=synthetic --crop=64 --batch=8
    python bench/input_bench.py --source=folder --path=/data/clic --crop=256 --batch=16 \
        --workers=0,8 --train-json=bench/results/train_bench_gpu.json

Reads ``--batches`` host batches through ``data.pipeline.make_dataset`` for
each worker count and reports images/s. With ``--train-json`` (output of
``train_bench.py``) it also reports the training step's images/s and the
ratio: above 1 the input pipeline outruns training.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hific_diffusion import configs  # noqa: E402
from hific_diffusion.data import pipeline  # noqa: E402


def measure(data_cfg, batch: int, batches: int) -> dict:
    it = iter(pipeline.make_dataset(data_cfg, batch, 0, pipeline.shard_options(0, 1)))
    t0 = time.perf_counter()
    next(it)  # start-up (workers spawn, first decode)
    startup = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    dt = time.perf_counter() - t0
    return dict(
        workers=int(data_cfg.num_workers),
        images_per_s=batches * batch / dt,
        batch_s=dt / batches,
        startup_s=startup,
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default="synthetic")
    p.add_argument("--path", default="")
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--workers", default="0", help="comma-separated worker counts")
    p.add_argument("--train-json", default="", help="train_bench.py output to compare with")
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    cfg = configs.load("tiny").data
    cfg.update(dict(source=args.source, path=args.path, crop=args.crop))
    runs = []
    for w in (int(x) for x in args.workers.split(",")):
        cfg.num_workers = w
        runs.append(measure(cfg, args.batch, args.batches))
    result = dict(bench="input", source=args.source, crop=args.crop, batch=args.batch, runs=runs)
    if args.train_json:
        train = json.loads(Path(args.train_json).read_text())
        need = max(r["images_per_s"] for r in train["results"])
        best = max(r["images_per_s"] for r in runs)
        result.update(train_images_per_s=need, input_over_train=best / need)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
