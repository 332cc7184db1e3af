"""Codec latency and entropy-coding throughput -> JSON (issue 3 benchmark).

    python bench/codec_bench.py --config tiny [--model BUNDLE] [--sizes 768x512,2048x1344]
        [--repeats 3] [--out bench/results/codec_<device>.json]

Compress and decompress go through ``pipeline.Codec`` (entropy coding and
the container included). The first call at each size compiles; it is
reported apart: ``*_compile_s`` is JAX's own compile time during the first
call, ``*_compile_estimate_s`` the first call minus the steady median.
Entropy-coding throughput codes Gaussian symbols grouped by scale index with
``range_coder`` alone.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchutil import CompileClock, maybe_trace  # noqa: E402


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    # Smooth content with some texture: codes like a photo, not like noise.
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 127 + 60 * np.sin(xx / 37.0)[..., None] * np.cos(yy / 23.0)[..., None]
    img = base + rng.normal(0, 8, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _timed(fn, repeats: int, label: str = ""):
    """(output, first call s, median of the next ``repeats`` s, their list, compile s).

    Compile seconds are JAX's own compile events during the first call; with
    ``$HFD_BENCH_TRACE_DIR`` set one more call is profiled under ``label``.
    """
    with CompileClock() as clock:
        out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    if label:
        maybe_trace(label, fn)
    return out, clock.wall_s, statistics.median(times), times, clock.compile_s


def bench_latency(codec, sizes, repeats):
    rows = []
    for w, h in sizes:
        x = _image(h, w)
        tag = f"{w}x{h}"
        data, c_first, c_med, c_all, c_comp = _timed(
            lambda x=x: codec.compress(x), repeats, f"codec_compress_{tag}"
        )
        out, d_first, d_med, d_all, d_comp = _timed(
            lambda d=data: codec.decompress(d), repeats, f"codec_decompress_{tag}"
        )
        assert out.shape == x.shape
        rows.append(
            dict(
                width=w,
                height=h,
                bytes=len(data),
                real_bpp=len(data) * 8 / (h * w),
                compress_s=c_med,
                decompress_s=d_med,
                compress_first_call_s=c_first,
                decompress_first_call_s=d_first,
                compress_compile_estimate_s=max(0.0, c_first - c_med),
                decompress_compile_estimate_s=max(0.0, d_first - d_med),
                compress_compile_s=c_comp,
                decompress_compile_s=d_comp,
                compress_runs_s=c_all,
                decompress_runs_s=d_all,
            )
        )
    return rows


def bench_entropy_coding(n: int, num_scales: int = 64):
    from hific_diffusion.codec import range_coder, tables

    scales = tables.gaussian_scale_table(num_scales, 0.11, 256.0)
    t = tables.build_gaussian_tables(scales)
    rng = np.random.default_rng(0)
    # Mostly small scales, as in a trained model's latents.
    idx = np.minimum(rng.geometric(0.08, n) - 1, num_scales - 1)
    sym = np.round(rng.normal(0, scales[idx])).astype(np.int32)
    # Wall time is what users see; process (CPU) time is also reported
    # because shared hosts make wall time noisy. Best of 3.
    wall_e = wall_d = cpu_e = cpu_d = float("inf")
    for _ in range(3):
        w0, c0 = time.perf_counter(), time.process_time()
        enc = range_coder.Encoder(t)
        enc.encode(sym, idx)
        data = enc.finish()
        w1, c1 = time.perf_counter(), time.process_time()
        out = range_coder.Decoder(t, data).decode(idx)
        w2, c2 = time.perf_counter(), time.process_time()
        assert np.array_equal(out, sym)
        wall_e, wall_d = min(wall_e, w1 - w0), min(wall_d, w2 - w1)
        cpu_e, cpu_d = min(cpu_e, c1 - c0), min(cpu_d, c2 - c1)
    return dict(
        symbols=n,
        bits_per_symbol=8 * len(data) / n,
        encode_symbols_per_s=n / wall_e,
        decode_symbols_per_s=n / wall_d,
        encode_symbols_per_cpu_s=n / cpu_e,
        decode_symbols_per_cpu_s=n / cpu_d,
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="tiny", help="config name (random init) if no --model")
    p.add_argument("--model", default=None, help="inference bundle (overrides --config)")
    p.add_argument("--sizes", default="768x512,2048x1344", help="WxH list")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--symbols", type=int, default=2_000_000)
    p.add_argument("--out", default=None, help="JSON path (default: stdout)")
    args = p.parse_args(argv)

    import jax
    from flax import nnx

    from hific_diffusion import configs
    from hific_diffusion.pipeline import Codec

    t0 = time.perf_counter()
    if args.model:
        codec = Codec.from_bundle(args.model)
        model_desc = args.model
    else:
        from hific_diffusion.codec.autoencoder import ELIC

        config = configs.load(args.config)
        codec = Codec(config, ELIC(config.model, rngs=nnx.Rngs(0)))
        model_desc = f"{args.config} (random init)"
    setup_s = time.perf_counter() - t0  # model build + tables + integer path
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    result = dict(
        benchmark="codec",
        model=model_desc,
        device=str(jax.devices()[0]),
        platform=platform.platform(),
        jax=jax.__version__,
        setup_s=setup_s,
        latency=bench_latency(codec, sizes, args.repeats),
        entropy_coding=bench_entropy_coding(args.symbols),
    )
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
