"""Codec latency and entropy-coding throughput -> JSON (issue 3 benchmark).

    python bench/codec_bench.py --config tiny [--model BUNDLE] [--sizes 768x512,2048x1344]
        [--repeats 3] [--out bench/results/codec_<device>.json]

Compress and decompress go through ``pipeline.Codec`` (entropy coding and
the container included). The first call at each size compiles; it is
reported apart: ``*_compile_s`` is JAX's own compile time during the first
call, ``*_compile_estimate_s`` the first call minus the steady median.
Entropy-coding throughput codes Gaussian symbols grouped by scale index with
``range_coder`` alone.

Side by side with CompressAI on the CPU (issue #13 item 6):

    python bench/codec_bench.py --vs-compressai [--N 192,64 --M 320,160]
        [--sizes 768x512] [--repeats 3] [--photo astronaut]
        [--torch-python .venv-torch/bin/python] [--compressai-weights CKPT.pth]
        [--note "machine busy with ..."] [--out FILE.json]

For each (N, M) pair, a worker in the torch venv (``bench/compressai_worker.py``;
CompressAI pins numpy < 2, see ``trainer_vs_compressai.py`` for the venv)
builds ``Elic2022Official(N, M)`` (PyTorch's default initialisation under
``--seed``, or ``--compressai-weights``), runs ``update(force=True)`` and saves
its state dict; we import it exactly (``autoencoder/compressai_import.py``) into our
ELIC and ``pipeline.Codec``. Both then code the same natural photo
(``skimage.data.<photo>``, centre-cropped to the aspect ratio and resized to
each WxH): ours ``Codec.compress`` / ``Codec.decompress`` (MSE decoder, uint8
out), theirs ``net.compress`` / ``net.decompress`` (uint8 in and out, edge
padded to a multiple of 64 like ours; timed inside the worker, so the pipe is
not counted). One thread each: ``torch.set_num_threads(1)``, XLA without its
Eigen thread pool, nothing pinned. Calls alternate (ours, theirs, ours, ...)
so machine noise hits both. Per size: the cold call (first in the process at
that size: for ours JAX compilation included, ``compile_s`` of it; CompressAI
compiles nothing) and the median of ``--repeats`` warm calls, wall and
process CPU seconds, ratios ours / theirs, real bpp (bytes * 8 / pixels; ours
is the whole ``.hfd`` file with its header, theirs the bare strings with no
shape) and PSNR against the photo and between the two reconstructions.
``import_s`` and ``setup_s`` (model build, tables, integer path; theirs:
build and ``update``) per side complete the picture of a new process. The
untrained default initialisation codes few bits, so entropy coding weighs
less than with trained weights; pass ``--compressai-weights`` for those.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TORCH_PY = ROOT / ".venv-torch" / "bin" / "python"
TORCH_PY_ENV = "HFD_TORCH_PYTHON"  # overrides DEFAULT_TORCH_PY when set
sys.path.insert(0, str(ROOT))
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
    from hific_diffusion.coding import range_coder, tables

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


# ------------------------------------------------------- side by side: CompressAI


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="tiny", help="config name (random init) if no --model")
    p.add_argument("--model", default=None, help="inference bundle (overrides --config)")
    p.add_argument(
        "--sizes", default=None, help="WxH list (default 768x512,2048x1344; vs CompressAI 768x512)"
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--symbols", type=int, default=2_000_000)
    p.add_argument("--out", default=None, help="JSON path (default: stdout)")
    g = p.add_argument_group("side by side with CompressAI's Elic2022Official (--vs-compressai)")
    g.add_argument("--vs-compressai", action="store_true", help="run this mode instead")
    g.add_argument("--N", default="192", help="N, or a comma list paired with --M")
    g.add_argument("--M", default="320", help="M, or a comma list paired with --N")
    g.add_argument("--photo", default="astronaut", help="skimage.data image name")
    g.add_argument("--seed", type=int, default=0, help="torch.manual_seed of the initialisation")
    g.add_argument("--compressai-weights", default=None, help="an Elic2022Official state dict")
    g.add_argument(
        "--torch-python",
        default=os.environ.get(TORCH_PY_ENV) or str(DEFAULT_TORCH_PY),
        help=f"interpreter with torch + compressai (default ${TORCH_PY_ENV} or .venv-torch)",
    )
    g.add_argument("--note", action="append", default=[], help="appended to the JSON's notes")
    args = p.parse_args(argv)
    if args.sizes is None:
        args.sizes = "768x512" if args.vs_compressai else "768x512,2048x1344"
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]

    if args.vs_compressai:
        # One core each: XLA without its Eigen pool, before jax is imported.
        os.environ["XLA_FLAGS"] = (
            "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1 "
            + os.environ.get("XLA_FLAGS", "")
        ).strip()
        from vs_compressai import bench_vs_compressai

        _emit(bench_vs_compressai(args, sizes), args.out)
        return

    import jax
    from flax import nnx

    from hific_diffusion import configs
    from hific_diffusion.pipeline import Codec

    t0 = time.perf_counter()
    if args.model:
        codec = Codec.from_bundle(args.model)
        model_desc = args.model
    else:
        from hific_diffusion.autoencoder.elic import ELIC

        config = configs.load(args.config)
        codec = Codec(config, ELIC(config.model, rngs=nnx.Rngs(0)))
        model_desc = f"{args.config} (random init)"
    setup_s = time.perf_counter() - t0  # model build + tables + integer path
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
    _emit(result, args.out)


def _emit(result, out):
    text = json.dumps(result, indent=1)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
