"""Training throughput per device, stage 1 and stage 2, as JSON.

    python bench/train_bench.py --config=tiny --tasks=autoencoder,flow --steps=5
    python bench/train_bench.py --config=elic_mse:0.25 --tasks=autoencoder --batch=16 --crop=256

Times the jitted step of the trainer (``train/step.py``) on all local
devices of the default backend, after one warm-up (compiling) step, with the
batch already on device so only the step is measured. Stage 2 conditions on a
freshly initialised autoencoder (weights do not change the cost).

``--eager-init`` builds the initial state op by op instead of through the
trainer's jitted initialisers (whose XLA compile takes minutes on a CPU and
is not what is measured); the step is the same. Each result also has the loss
of every timed step (same seed, same batch: f32 and bf16 runs compare), the
compile time of the first step, and with ``--flops`` the forward FLOPs per
image (``diffusion.flops``) and the achieved TFLOP/s (3x forward per image).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from benchutil import CompileClock, maybe_trace  # noqa: E402

from hific_diffusion import configs  # noqa: E402
from hific_diffusion.diffusion import flops as flops_lib  # noqa: E402
from hific_diffusion.train import optim as optim_lib  # noqa: E402
from hific_diffusion.train import sharding as shd  # noqa: E402
from hific_diffusion.train import state as train_state  # noqa: E402
from hific_diffusion.train import step, tasks  # noqa: E402


def eager_setup(task, config, mesh):
    """``(Setup, state)`` as ``train_state.setup`` and ``init`` give, built op by op."""
    tx = optim_lib.make_optimizer(config.train)
    model = task.build(config, nnx.Rngs(jax.random.key(config.seed)))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    # A copy of every leaf: the step donates its state, and initial_state
    # shares one zero among several leaves (distinct buffers under jit).
    state = jax.tree.map(jnp.copy, train_state.initial_state(params.to_pure_dict(), tx))
    shardings = shd.tree_shardings(state, mesh, config.train.sharding)
    abstract = jax.tree.map(
        lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh), state, shardings
    )
    rest = jax.device_put(rest, jax.tree.map(lambda _: shd.replicated(mesh), rest))
    s = train_state.Setup(graphdef, rest, tx, abstract, shardings)
    return s, jax.device_put(state, shardings)


def forward_flops(task, config, s, crop: int) -> int:
    """FLOPs of the task's training forward (loss) on one ``crop``^2 image."""
    x = jax.ShapeDtypeStruct((1, crop, crop, 3), jnp.float32)
    params = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), s.abstract["params"])

    def loss(p, x):
        model = nnx.merge(s.graphdef, nnx.State(p), s.rest, copy=True)
        cond = x if task.needs_autoencoder else None
        return task.loss(model, x, cond, jax.random.key(0), config)[0]

    return flops_lib.count_flops(loss, params, x)


def bench_task(name: str, args) -> dict:
    config = configs.load(args.config, list(getattr(args, "set", None) or []))
    config.task = name
    devices = jax.devices()
    batch = args.batch or len(devices) * 2
    config.train.batch_size = batch
    config.train.sharding = args.sharding
    config.train.compute_dtype = args.dtype
    mesh = shd.make_mesh((), args.sharding, devices)
    task = tasks.get_task(name)
    if getattr(args, "eager_init", False):
        s, state = eager_setup(task, config, mesh)
    else:
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
    with CompileClock() as clock:
        state, m = fn(state, s.rest, x, frozen)
        jax.block_until_ready(m)
    first = {k: float(v) for k, v in m.items()}
    ms = []
    t0 = time.perf_counter()
    for _ in range(args.steps):
        state, m = fn(state, s.rest, x, frozen)
        ms.append(m)
    jax.block_until_ready(m)
    dt = (time.perf_counter() - t0) / args.steps
    carry = [state]

    def one_step():
        carry[0], out = fn(carry[0], s.rest, x, frozen)
        return out

    maybe_trace(f"train_{name}_{args.dtype}", one_step)
    params = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(s.abstract["params"]))
    extra = {}
    if getattr(args, "flops", False):
        fwd = forward_flops(task, config, s, args.crop)
        extra = dict(forward_gflop_per_image=fwd / 1e9, tflops=3 * fwd * batch / dt / 1e12)
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
        first_step_s=clock.wall_s,
        compile_s=clock.compile_s,
        loss=float(m["loss"]),
        first_step_metrics=first,
        losses=[first["loss"]] + [float(v["loss"]) for v in ms],
        **extra,
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
    p.add_argument("--set", action="append", default=[], help="config override key=value")
    p.add_argument("--eager-init", action="store_true", help="build the state op by op")
    p.add_argument("--flops", action="store_true", help="count forward FLOPs, report TFLOP/s")
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
