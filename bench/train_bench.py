"""Training throughput per device, stage 1 and stage 2, as JSON.

    python bench/train_bench.py --config=tiny --tasks=autoencoder,flow --steps=5
    python bench/train_bench.py --config=elic_mse:0.25 --tasks=autoencoder --batch=16 --crop=256

Times the jitted step of the trainer (``train/step.py``) on all local
devices of the default backend, after one warm-up (compiling) step, with the
batch already on device so only the step is measured. Stage 2 conditions on a
freshly initialised autoencoder (weights do not change the cost).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hific_diffusion import configs  # noqa: E402
from hific_diffusion import sharding as shd  # noqa: E402
from hific_diffusion.train import state as train_state  # noqa: E402
from hific_diffusion.train import step, tasks  # noqa: E402


def bench_task(name: str, args) -> dict:
    config = configs.load(args.config)
    config.task = name
    devices = jax.devices()
    batch = args.batch or len(devices) * 2
    config.train.batch_size = batch
    config.train.sharding = args.sharding
    config.train.compute_dtype = args.dtype
    mesh = shd.make_mesh((), args.sharding, devices)
    task = tasks.get_task(name)
    s = train_state.setup(task, config, mesh)
    state = train_state.init(s, task, config)
    frozen_gd = frozen = frozen_sh = None
    if task.needs_autoencoder:
        ae = tasks.get_task("autoencoder").build(config, nnx.Rngs(0))
        frozen_gd, frozen = nnx.split(ae)
        frozen_sh = jax.tree.map(lambda _: shd.replicated(mesh), frozen)
        frozen = jax.device_put(frozen, frozen_sh)
    fn = step.jit_step(
        step.make_step_fn(task, config, s.graphdef, s.tx, frozen_gd), s, mesh, frozen_sh
    )
    rng = np.random.default_rng(0)
    host = rng.integers(0, 256, (batch, args.crop, args.crop, 3), dtype=np.uint8)
    x = shd.global_batch(host, mesh)
    t0 = time.perf_counter()
    state, m = fn(state, s.rest, x, frozen)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(args.steps):
        state, m = fn(state, s.rest, x, frozen)
    jax.block_until_ready(m)
    dt = (time.perf_counter() - t0) / args.steps
    params = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(s.abstract["params"]))
    return dict(
        task=name,
        config=config.name,
        params=params,
        global_batch=batch,
        crop=args.crop,
        devices=len(devices),
        sharding=args.sharding,
        compute_dtype=args.dtype,
        step_s=dt,
        steps_per_s=1.0 / dt,
        images_per_s=batch / dt,
        images_per_s_per_device=batch / dt / len(devices),
        first_step_s=compile_s,
        loss=float(m["loss"]),
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="tiny")
    p.add_argument("--tasks", default="autoencoder,diffusion")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch", type=int, default=0, help="global batch (default 2 per device)")
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--sharding", default="replicate", choices=["replicate", "fsdp"])
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--out", default="", help="JSON path (default: print only)")
    args = p.parse_args(argv)
    dev = jax.devices()[0]
    result = dict(
        bench="train",
        platform=dev.platform,
        device_kind=dev.device_kind,
        host=platform.node(),
        jax=jax.__version__,
        results=[bench_task(t, args) for t in args.tasks.split(",")],
    )
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
