"""U-Net and generative-decode benchmark -> JSON.

Measures, per U-Net config (default: ``diffusers_equiv`` and the paper-scale
``hfd``):
  * training step (v-loss, AdamW, bf16 compute / f32 params) at ``size``^2,
    in images/s and achieved TFLOP/s (3x the forward FLOPs per image);
  * sampling forward throughput (images/s, TFLOP/s);
  * full decode time (``decode.generate``, tiled) of a ``--decode-size`` image
    at ``--steps`` steps (compile time reported apart);
  * peak device memory of a tiled decode at several sizes, each in a fresh
    process (``device.memory_stats()["peak_bytes_in_use"]``; null on CPU).
FLOPs come from the traced program (``diffusion.flops``: every conv and
matmul, 2 per multiply-add), which counts on any backend; XLA's GPU cost
analysis leaves out cuDNN convolutions.

Sizes default to multiples of the config's ``unet.resolution`` (256 for the
big configs: decode 2048x1344, memory at 1024^2, 2048^2, 4096^2), so
``--config=tiny --steps=2`` runs in a minute on a CPU.

  python bench/unet_bench.py --config=diffusers_equiv,hfd --steps=250 --out=bench/results/h100.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

# Runnable as a script from any directory, against this checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchutil import CompileClock, compile_seconds_so_far, maybe_trace  # noqa: E402

from hific_diffusion import configs  # noqa: E402
from hific_diffusion.diffusion import decode, flops, losses, unet  # noqa: E402


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="diffusers_equiv,hfd", help="comma-separated config names")
    p.add_argument("--steps", type=int, default=250, help="sampling steps of the full decode")
    p.add_argument("--size", type=int, default=0, help="train/sample side (0: unet.resolution)")
    p.add_argument("--train-batch", type=int, default=32)
    p.add_argument("--sample-batch", type=int, default=64)
    p.add_argument("--iters", type=int, default=5, help="timed iterations after one warm-up")
    p.add_argument("--decode-size", default="", help="HxW (default 8r x 5.25r: 2048x1344)")
    p.add_argument("--memory-sizes", default="", help="comma list of sides (default 4r,8r,16r)")
    p.add_argument("--memory-steps", type=int, default=2)
    p.add_argument("--parts", default="train,sample,decode,memory")
    p.add_argument("--out", default="", help="JSON file (default: stdout)")
    p.add_argument("--memory-one", dest="_memory_one", default="", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _model(cfg):
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: unet.UNet(cfg, rngs=nnx.Rngs(0))))
    state = jax.jit(lambda: nnx.state(unet.UNet(cfg, rngs=nnx.Rngs(0))))()
    return graphdef, state


def _timed(fn, iters, label=""):
    out = jax.block_until_ready(fn())  # warm-up and compile
    t = time.perf_counter()
    for _ in range(iters):
        out = fn()
    jax.block_until_ready(out)
    sec = (time.perf_counter() - t) / iters
    if label:
        maybe_trace(label, fn)
    return sec


def bench_matmul(n=8192, iters=10, dtype=jnp.bfloat16):
    """The bf16 matmul ceiling (n^3), the denominator of "% of peak"."""
    a = jnp.ones((n, n), dtype)
    f = jax.jit(lambda a, b: a @ b)
    sec = _timed(lambda: f(a, a), iters)
    return dict(n=n, dtype=jnp.dtype(dtype).name, step_s=sec, tflops=2 * n**3 / sec / 1e12)


def bench_train(graphdef, state, dcfg, size, batch, iters, fwd_flops, label=""):
    opt = optax.adamw(1e-4)
    opt_state = opt.init(state)
    rng = np.random.default_rng(0)
    data = {
        "image": jnp.asarray(rng.uniform(size=(batch, size, size, 3)), jnp.float32),
        "x_mse": jnp.asarray(rng.uniform(size=(batch, size, size, 3)), jnp.float32),
    }

    @jax.jit
    def step(params, opt_state, key):
        def pure(params):
            unet = nnx.merge(graphdef, params)
            return losses.diffusion_loss(unet, data["image"], data["x_mse"], key, dcfg)

        (loss, _), g = jax.value_and_grad(pure, has_aux=True)(params)
        updates, opt_state = opt.update(g, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    carry = [state, opt_state]

    def run():
        carry[0], carry[1], loss = step(carry[0], carry[1], jax.random.PRNGKey(0))
        return loss

    sec = _timed(run, iters, label)
    return dict(
        batch=batch, step_s=sec, images_per_s=batch / sec, tflops=3 * fwd_flops * batch / sec / 1e12
    )


def bench_sample(graphdef, state, size, batch, iters, fwd_flops, label=""):
    z = jnp.asarray(np.random.default_rng(1).normal(size=(batch, size, size, 3)), jnp.float32)
    fwd = jax.jit(lambda s, z: nnx.merge(graphdef, s)(z, z, jnp.full((batch,), 1.0)))
    sec = _timed(lambda: fwd(state, z), iters, label)
    return dict(
        batch=batch, step_s=sec, images_per_s=batch / sec, tflops=fwd_flops * batch / sec / 1e12
    )


def bench_decode(graphdef, state, dcfg, hw, steps):
    x = np.random.default_rng(2).uniform(size=(1, *hw, 3)).astype(np.float32)
    t = time.perf_counter()
    decode.generate(graphdef, state, x, kind="diffusion", cfg=dcfg, steps=steps, seed=0)
    first = time.perf_counter() - t
    t = time.perf_counter()
    decode.generate(graphdef, state, x, kind="diffusion", cfg=dcfg, steps=steps, seed=1)
    sec = time.perf_counter() - t
    return dict(
        height=hw[0],
        width=hw[1],
        steps=steps,
        tile=dcfg.tile,
        overlap=dcfg.overlap,
        tile_chunk=dcfg.tile_chunk,
        decode_s=sec,
        compile_s=max(first - sec, 0.0),
    )


def bench_decode_chunked(graphdef, state, dcfg, hw, steps, time_limit_s=float("inf")):
    """One decode of an ``hw`` image at ``steps`` steps, timed chunk by chunk.

    The decode runs as ~20 calls of one compiled function (``progress=True``);
    the first includes the compile (JAX's compile events, reported apart).
    Past ``time_limit_s`` it stops after the current chunk and the rest is
    extrapolated from the steady chunks (``complete: false``).
    """
    # The diffusion decoder (overlap mode) runs CorrDiff's step loop with
    # every factor 0 (decode.generate): that is the function timed here.
    from hific_diffusion.diffusion import corrdiff, patches

    steps = int(steps or dcfg.steps)
    per = max(1, steps // 20)
    times, runs, orig = [], [], corrdiff.run_steps

    class _Stop(Exception):
        pass

    def timed(*a, **k):
        if len(times) >= 2 and sum(times) > time_limit_s:
            raise _Stop
        c0, t0 = compile_seconds_so_far(), time.perf_counter()
        z = jax.block_until_ready(orig(*a, **k))
        times.append(time.perf_counter() - t0)
        runs.append(max(times[-1] - (compile_seconds_so_far() - c0), 0.0))
        return z

    x = np.random.default_rng(2).uniform(size=(1, *hw, 3)).astype(np.float32)
    corrdiff.run_steps = timed
    try:
        with CompileClock() as clock:
            decode.generate(
                graphdef, state, x, kind="diffusion", cfg=dcfg, steps=steps, seed=0, progress=True
            )
        complete = True
    except _Stop:
        complete = False
    finally:
        corrdiff.run_steps = orig
    # Run time of the chunks (compile taken out); an early stop extrapolates
    # the steady chunks (after the first) to the remaining steps.
    done = min(len(runs) * per, steps)
    rest = sum(runs[1:]) / max(done - per, 1) * (steps - per) if len(runs) > 1 else 0.0
    sec = sum(runs) if complete else runs[0] + rest
    m = 2 ** (len(dcfg.unet.channel_mult) - 1)
    pad = [(v + m - 1) // m * m for v in hw]
    tiles = patches.make_layout(*pad, dcfg.tile, dcfg.overlap, multiple=m).num_tiles
    return dict(
        height=hw[0],
        width=hw[1],
        steps=steps,
        steps_run=done,
        complete=complete,
        tiles=tiles,
        tile=dcfg.tile,
        overlap=dcfg.overlap,
        tile_chunk=dcfg.tile_chunk,
        decode_s=sec,
        compile_s=clock.compile_s,
        wall_s=clock.wall_s,
        tile_evals_per_s=tiles * steps / sec if sec > 0 else None,
    )


def _peak_bytes():
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def memory_one(name, side, steps):
    dcfg = configs.load(name).diffusion
    graphdef, state = _model(dcfg.unet)
    x = np.random.default_rng(3).uniform(size=(1, side, side, 3)).astype(np.float32)
    t = time.perf_counter()
    decode.generate(graphdef, state, x, kind="diffusion", cfg=dcfg, steps=steps, seed=0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    return dict(
        side=side,
        steps=steps,
        peak_bytes=_peak_bytes(),
        peak_rss_bytes=rss,
        wall_s=time.perf_counter() - t,
    )


def bench_memory(name, sides, steps):
    out = []
    for side in sides:
        cmd = [
            sys.executable,
            __file__,
            f"--config={name}",
            f"--memory-steps={steps}",
            f"--memory-one={side}",
        ]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode:
            out.append(dict(side=side, error=res.stderr.strip().splitlines()[-1:]))
        else:
            out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return out


def bench_config(name, args, overrides=None, label=None, on_part=None):
    """All ``args.parts`` of one config; ``on_part(res)`` after each (partial results)."""
    config = configs.load(name, overrides)
    label = label or name
    on_part = on_part or (lambda res: None)
    dcfg, ucfg = config.diffusion, config.diffusion.unet
    r = args.size or ucfg.resolution
    parts = set(args.parts.split(","))
    graphdef, state = _model(ucfg)
    shape = jax.ShapeDtypeStruct((1, r, r, 3), jnp.float32)
    fwd_flops = flops.count_flops(lambda s, x: nnx.merge(graphdef, s)(x, x, 0.0), state, shape)
    res = dict(
        params=unet.param_count(ucfg),
        size=r,
        compute_dtype=ucfg.compute_dtype,
        forward_gflop_per_image=fwd_flops / 1e9,
    )
    on_part(res)
    if "train" in parts:
        res["train"] = bench_train(
            graphdef, state, dcfg, r, args.train_batch, args.iters, fwd_flops, f"unet_train_{label}"
        )
        on_part(res)
    if "sample" in parts:
        res["sample"] = bench_sample(
            graphdef, state, r, args.sample_batch, args.iters, fwd_flops, f"unet_sample_{label}"
        )
        on_part(res)
    if "decode" in parts:
        base = ucfg.resolution
        hw = (
            tuple(int(v) for v in args.decode_size.split("x"))
            if args.decode_size
            else (8 * base, round(5.25 * base))
        )
        res["decode"] = bench_decode(graphdef, state, dcfg, hw, args.steps)
    if "memory" in parts:
        sides = (
            [int(v) for v in args.memory_sizes.split(",")]
            if args.memory_sizes
            else [4 * ucfg.resolution, 8 * ucfg.resolution, 16 * ucfg.resolution]
        )
        res["memory"] = bench_memory(name, sides, args.memory_steps)
    return res


def main(argv=None):
    args = _parse(argv)
    if args._memory_one:
        print(json.dumps(memory_one(args.config, int(args._memory_one), args.memory_steps)))
        return None
    dev = jax.devices()[0]
    report = dict(
        device=f"{dev.platform}:{getattr(dev, 'device_kind', '')}",
        jax=jax.__version__,
        host=platform.node(),
        time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        args={k: v for k, v in vars(args).items() if not k.startswith("_")},
        configs={name: bench_config(name, args) for name in args.config.split(",")},
    )
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    else:
        print(text)
    return report


if __name__ == "__main__":
    main()
