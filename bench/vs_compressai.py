"""Our codec against CompressAI's ``Elic2022Official`` on the CPU, side by
side in one run (issue #13 item 6): the ``--vs-compressai`` mode of
``bench/codec_bench.py`` (whose docstring describes the protocol)."""

from __future__ import annotations

import datetime
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
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchutil import CompileClock, CompressAIWorker  # noqa: E402


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
