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
import datetime
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
DEFAULT_TORCH_PY = ROOT / ".venv-torch" / "bin" / "python"
TORCH_PY_ENV = "HFD_TORCH_PYTHON"  # overrides DEFAULT_TORCH_PY when set
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchutil import CompileClock, CompressAIWorker, maybe_trace  # noqa: E402


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


def _photo(w: int, h: int, name: str) -> np.ndarray:
    """``skimage.data.<name>`` centre-cropped to the aspect ratio w:h, resized to HxW uint8."""
    import skimage.data
    from PIL import Image

    img = np.asarray(getattr(skimage.data, name)())
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    img = img[..., :3]
    ih, iw = img.shape[:2]
    if iw * h > ih * w:  # too wide
        cw = round(ih * w / h)
        img = img[:, (iw - cw) // 2 : (iw - cw) // 2 + cw]
    else:
        ch = round(iw * h / w)
        img = img[(ih - ch) // 2 : (ih - ch) // 2 + ch]
    return np.asarray(Image.fromarray(img).resize((w, h), Image.LANCZOS), np.uint8)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str:
    out = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _finite(x):
    return float(x) if np.isfinite(x) else None  # JSON has no inf (identical images)


def _ours_timed(fn):
    """(output, wall s, process CPU s, JAX compile s) of one call."""
    c0 = time.process_time()
    with CompileClock() as clock:
        out = fn()
    return out, clock.wall_s, time.process_time() - c0, clock.compile_s


def _summary(cold, warm, cold_compile=None):
    """cold: (wall, cpu); warm: [(wall, cpu)] -> dict."""
    out = dict(
        cold_s=cold[0],
        cold_cpu_s=cold[1],
        warm_s=statistics.median(t for t, _ in warm),
        warm_cpu_s=statistics.median(c for _, c in warm),
        warm_runs_s=[t for t, _ in warm],
    )
    if cold_compile is not None:
        out["cold_compile_s"] = cold_compile
    return out


def _vs_one_size(codec, worker, img, repeats, tmp: Path):
    from hific_diffusion.metrics.psnr import psnr

    h, w = img.shape[:2]
    np.save(tmp / "image.npy", img)
    worker(cmd="image", path=str(tmp / "image.npy"))
    recon_theirs = tmp / "recon_theirs.npy"
    # Cold: the first call at this size in each process, interleaved.
    data, oc_wall, oc_cpu, oc_comp = _ours_timed(lambda: codec.compress(img))
    tc = worker(cmd="compress")
    x_ours, od_wall, od_cpu, od_comp = _ours_timed(lambda: codec.decompress(data))
    td = worker(cmd="decompress", out=str(recon_theirs))
    x_theirs = np.load(recon_theirs)
    o_c, o_d, t_c, t_d = [], [], [], []
    for _ in range(repeats):
        d2, wall, cpu, _ = _ours_timed(lambda: codec.compress(img))
        assert d2 == data, "our compress is not deterministic"
        o_c.append((wall, cpu))
        r = worker(cmd="compress")
        assert r["bytes"] == tc["bytes"]
        t_c.append((r["seconds"], r["cpu_seconds"]))
        _, wall, cpu, _ = _ours_timed(lambda: codec.decompress(data))
        o_d.append((wall, cpu))
        r = worker(cmd="decompress")
        t_d.append((r["seconds"], r["cpu_seconds"]))
    assert x_ours.shape == x_theirs.shape == img.shape
    ours = dict(
        bytes=len(data),
        real_bpp=len(data) * 8 / (h * w),
        psnr=_finite(psnr(img, x_ours)),
        compress=_summary((oc_wall, oc_cpu), o_c, oc_comp),
        decompress=_summary((od_wall, od_cpu), o_d, od_comp),
    )
    theirs = dict(
        bytes=tc["bytes"],
        real_bpp=tc["bytes"] * 8 / (h * w),
        psnr=_finite(psnr(img, x_theirs)),
        compress=_summary((tc["seconds"], tc["cpu_seconds"]), t_c),
        decompress=_summary((td["seconds"], td["cpu_seconds"]), t_d),
    )
    ratios = {
        f"{op}_{kind}": ours[op][f"{kind}_s"] / theirs[op][f"{kind}_s"]
        for op in ("compress", "decompress")
        for kind in ("cold", "warm")
    }
    ratios["bytes"] = ours["bytes"] / theirs["bytes"]
    return dict(
        width=w,
        height=h,
        ours=ours,
        theirs=theirs,
        ratios_ours_over_theirs=ratios,
        psnr_ours_vs_theirs=_finite(psnr(x_ours, x_theirs)),
    )


def bench_vs_compressai_model(args, n: int, m: int, sizes, tmp: Path, import_s: float):
    """One (N, M): the worker builds Elic2022Official, we import it; both code every size."""
    import jax
    from flax import nnx

    from hific_diffusion import configs
    from hific_diffusion.autoencoder import compressai_import
    from hific_diffusion.pipeline import Codec

    worker = CompressAIWorker(args.torch_python)
    try:
        sd_path = tmp / f"elic_{n}_{m}.npz"
        theirs = worker(
            cmd="codec_init", N=n, M=m, seed=args.seed, state_dict=str(sd_path),
            weights=args.compressai_weights,
        )  # fmt: skip
        t0 = time.perf_counter()
        sd = compressai_import.read_state_dict(sd_path)
        config = configs.base_config()
        config.task = "autoencoder"
        config.model = compressai_import.config_for(sd, config.model)
        model = compressai_import.load_compressai_state_dict(sd, config.model, seed=args.seed)
        codec = Codec(config, model)
        setup_s = time.perf_counter() - t0
        report = model.compressai_import_report
        if report.unmapped or report.unused:
            raise SystemExit(f"error: inexact import: {report.unmapped or report.unused}")
        params = sum(int(np.size(v)) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))
        rows = []
        for w, h in sizes:
            img = _photo(w, h, args.photo)
            rows.append(_vs_one_size(codec, worker, img, args.repeats, tmp))
            r = rows[-1]
            print(
                f"N={n} M={m} {w}x{h}: compress warm ours {r['ours']['compress']['warm_s']:.2f} s "
                f"theirs {r['theirs']['compress']['warm_s']:.2f} s, decompress warm ours "
                f"{r['ours']['decompress']['warm_s']:.2f} s theirs "
                f"{r['theirs']['decompress']['warm_s']:.2f} s",
                file=sys.stderr,
                flush=True,
            )
    finally:
        worker.close()
    cfg = config.model
    return dict(
        N=cfg.N,
        M=cfg.M,
        groups=list(cfg.groups),
        weights=args.compressai_weights or f"PyTorch default init, torch.manual_seed({args.seed})",
        params=dict(ours=params, theirs=theirs["params"]),  # ours: + the prior's medians
        imported_tensors=len(report.mapped),
        threads=dict(torch=theirs["threads"], torch_interop=theirs["interop_threads"]),
        ours=dict(import_s=import_s, setup_s=setup_s),
        theirs=dict(import_s=theirs["import_s"], setup_s=theirs["setup_s"]),
        sizes=rows,
    ), theirs


def bench_vs_compressai(args, sizes):
    if not Path(args.torch_python).is_file():
        raise SystemExit(
            f"error: no CompressAI interpreter at {args.torch_python} (see bench/"
            "trainer_vs_compressai.py for the venv; --torch-python or $HFD_TORCH_PYTHON)"
        )
    ns = [int(v) for v in str(args.N).split(",")]
    ms = [int(v) for v in str(args.M).split(",")]
    if len(ns) != len(ms):
        raise SystemExit("error: --N and --M need the same number of values")
    t0 = time.perf_counter()
    import flax
    import jax
    import jaxlib

    import hific_diffusion.pipeline  # noqa: F401

    import_s = time.perf_counter() - t0
    load0 = os.getloadavg()
    runs, info = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for n, m in zip(ns, ms, strict=True):
            run, info = bench_vs_compressai_model(args, n, m, sizes, Path(tmp), import_s)
            runs.append(run)
    notes = [
        "ratios are ours / theirs (below 1: ours faster or smaller)",
        "cold = first call at that size in the process; ours includes JAX compilation "
        "(no persistent compilation cache), CompressAI compiles nothing",
        "bytes: ours the whole .hfd file (header included), theirs the bare strings",
        f"load average (1, 5, 15 min) at start {load0}, at end {os.getloadavg()}",
        *args.note,
    ]
    return dict(
        benchmark="codec_vs_compressai",
        date=datetime.datetime.now().isoformat(timespec="seconds"),
        commit=_git_commit(),
        device=_cpu_model(),
        cpus=os.cpu_count(),
        platform=platform.platform(),
        host=platform.node(),
        versions=dict(
            python=platform.python_version(),
            jax=jax.__version__,
            jaxlib=jaxlib.__version__,
            flax=flax.__version__,
            numpy=np.__version__,
            torch=info.get("torch"),
            compressai=info.get("compressai"),
            numpy_torch_venv=info.get("numpy"),
        ),  # fmt: skip
        xla_flags=os.environ.get("XLA_FLAGS", ""),
        args=vars(args),
        photo=f"skimage.data.{args.photo}",
        runs=runs,
        notes=notes,
    )


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
