"""The GPU suite's sections; ``gpu_suite.py`` runs each in a process of its own.

    python bench/gpu_sections.py SECTION --out FILE --time-limit S [--dry-run]

Each measurement is written to FILE as soon as it is done, so a section killed
at its time limit keeps what it measured; one that raises is recorded as
``{"error": "..."}`` and the next one runs. ``--dry-run`` runs the same code
with tiny configs and small shapes (``PLANS["dry"]``). The measurements
themselves live in ``codec_bench``, ``train_bench`` and ``unet_bench``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
FIXTURES = ROOT / "tests" / "fixtures"
GOLDEN = FIXTURES / "golden_coding"
_BF16 = ["diffusion.unet.compute_dtype=bfloat16"]

# What each mode measures. Sizes are WxH for the codec, HxW for the decode.
PLANS = {
    "gpu": dict(
        codec=dict(
            config="elic_mse:0.12", sizes=[(768, 512), (2048, 1344)], repeats=3, symbols=2_000_000
        ),
        train=dict(config="elic_mse:0.12", set=[], batch=16, crop=256, steps=10),
        unet=dict(
            configs=[("diffusers_equiv", "diffusers_equiv", []), ("hfd", "hfd", [])],
            train_batch=32,
            sample_batch=64,
            iters=5,
            matmul=8192,
        ),
        decode=dict(config="hfd", set=[], hw=(1344, 2048), steps=None),
        memory=dict(config="hfd", sides=[1024, 2048, 4096], steps=1),
        crossdevice=dict(
            bundle=None,  # the default model (hific_diffusion/assets/quality_2)
            photos=["astronaut", "chelsea", "coffee", "rocket"],
            crop=(296, 440),
        ),
    ),
    "dry": dict(
        codec=dict(config="tiny", sizes=[(192, 128)], repeats=1, symbols=200_000),
        train=dict(config="tiny", set=[], batch=2, crop=64, steps=2),
        unet=dict(
            configs=[(name, "tiny:diffusion", _BF16) for name in ("diffusers_equiv", "hfd")],
            train_batch=2,
            sample_batch=2,
            iters=1,
            matmul=256,
        ),
        decode=dict(config="tiny:diffusion", set=[], hw=(84, 128), steps=None),
        memory=dict(config="tiny:diffusion", sides=[64, 128], steps=1),
        crossdevice=dict(
            bundle=str(GOLDEN / "bundle"), photos=["astronaut", "coffee"], crop=(100, 150)
        ),
    ),
}


def error_line(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".strip().splitlines()
    return text[0][:300] if text else type(e).__name__


class Recorder:
    """A JSON dict written (atomically) to ``path`` after every change."""

    def __init__(self, path):
        self.path, self.data = Path(path), {}

    def put(self, key, value):
        keys = key if isinstance(key, tuple) else (key,)
        node = self.data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        os.replace(tmp, self.path)

    def run(self, key, fn, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            value = fn(*args, **kwargs)
        except Exception as e:  # recorded; the section goes on
            traceback.print_exc()
            value = {"error": error_line(e)}
        if isinstance(value, dict):
            value.setdefault("seconds", time.perf_counter() - t0)
        self.put(key, value)
        return value


# ------------------------------------------------------------------ sections
def codec(plan, rec, deadline):
    import codec_bench
    from flax import nnx

    from hific_diffusion import configs
    from hific_diffusion.autoencoder.elic import ELIC
    from hific_diffusion.pipeline import Codec

    config = configs.load(plan["config"])
    t0 = time.perf_counter()
    c = Codec(config, ELIC(config.model, rngs=nnx.Rngs(0)))
    m = config.model
    rec.put("model", dict(config=plan["config"], N=m.N, M=m.M, weights="random init"))
    rec.put("setup_s", time.perf_counter() - t0)
    rec.run("entropy_coding", codec_bench.bench_entropy_coding, plan["symbols"])
    for w, h in plan["sizes"]:
        rec.run(
            ("latency", f"{w}x{h}"),
            lambda w=w, h=h: codec_bench.bench_latency(c, [(w, h)], plan["repeats"])[0],
        )


def train(plan, rec, deadline):
    import train_bench

    for dtype in ("float32", "bfloat16"):
        args = argparse.Namespace(
            config=plan["config"],
            set=plan["set"],
            batch=plan["batch"],
            crop=plan["crop"],
            steps=plan["steps"],
            sharding="replicate",
            dtype=dtype,
            eager_init=True,
            flops=True,
        )
        rec.run(dtype, train_bench.bench_task, "autoencoder", args)
    f32, bf16 = rec.data.get("float32", {}), rec.data.get("bfloat16", {})
    if "losses" in f32 and "losses" in bf16:
        lf, lb = f32["losses"], bf16["losses"]
        rel = [(b - f) / abs(f) for f, b in zip(lf, lb, strict=False)]
        m32, m16 = f32["first_step_metrics"], bf16["first_step_metrics"]
        rec.put(
            "bf16_rd_cost",
            dict(
                note="same init, batch and noise; step 0 is the same parameters in both dtypes",
                loss_f32=lf,
                loss_bf16=lb,
                rel_loss_diff=rel,
                rel_loss_diff_step0=rel[0],
                mean_rel_loss_diff=statistics.fmean(rel),
                step0={k: dict(f32=m32[k], bf16=m16[k]) for k in ("loss", "bpp", "mse", "psnr")},
            ),
        )


def unet(plan, rec, deadline):
    import unet_bench

    rec.run("matmul", unet_bench.bench_matmul, plan["matmul"])
    for label, spec, sets in plan["configs"]:
        args = argparse.Namespace(
            size=0,
            parts="train,sample",
            train_batch=plan["train_batch"],
            sample_batch=plan["sample_batch"],
            iters=plan["iters"],
        )
        rec.run(
            ("configs", label),
            unet_bench.bench_config,
            spec,
            args,
            sets,
            label,
            on_part=lambda res, label=label: rec.put(("configs", label), dict(res, partial=True)),
        )
        rec.put(("configs", label, "config"), spec)


def decode(plan, rec, deadline):
    import unet_bench

    from hific_diffusion import configs

    dcfg = configs.load(plan["config"], plan["set"]).diffusion
    graphdef, state = unet_bench._model(dcfg.unet)
    limit = max(deadline - time.time() - 10.0, 1.0)
    rec.run(
        "decode",
        unet_bench.bench_decode_chunked,
        graphdef,
        state,
        dcfg,
        tuple(plan["hw"]),
        plan["steps"],
        limit,
    )
    rec.put(("decode", "config"), plan["config"])


def memory(plan, rec, deadline):
    # No JAX here: each decode runs in a fresh process that has the GPU alone.
    import unet_bench

    rec.put("config", plan["config"])
    for side in plan["sides"]:
        rec.run(
            ("sides", str(side)),
            lambda side=side: unet_bench.bench_memory(plan["config"], [side], plan["steps"])[0],
        )


def crossdevice(plan, rec, deadline):
    """Bytes made here decode on the CPU (another process) to the same latents,
    and the other way round; the golden file decodes to its recorded latents."""
    import numpy as np

    from hific_diffusion.data import offline_photos

    work = Path(os.environ.get("HFD_SUITE_WORK") or tempfile.gettempdir()) / "crossdevice"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    codec_, digests = _codec_and_digests(plan["bundle"])
    h, w = plan["crop"]
    for name in plan["photos"]:
        img = offline_photos.photo(name)
        y0, x0 = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
        np.save(work / f"{name}.npy", img[y0 : y0 + h, x0 : x0 + w])
        (work / f"here_{name}.hfd").write_bytes(codec_.compress(np.load(work / f"{name}.npy")))
    cmd = [sys.executable, __file__, "crossdevice_child", "--work", str(work)]
    cmd += ["--bundle", plan["bundle"] or ""]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    timeout = max(deadline - time.time() - 5.0, 5.0)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    sys.stderr.write(proc.stderr)
    if proc.returncode:
        raise RuntimeError(f"CPU process failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    cpu = json.loads((work / "cpu.json").read_text())
    rec.put("cpu_process", dict(devices=cpu["devices"], golden=cpu["golden"]))
    rows = {}
    for name in plan["photos"]:
        row = dict(photo=name, height=h, width=w)
        here, there = (work / f"{p}_{name}.hfd" for p in ("here", "cpu"))
        row["bytes_identical"] = here.read_bytes() == there.read_bytes()
        row["bytes"] = dict(here=here.stat().st_size, cpu=there.stat().st_size)
        for tag, path in (("made_here", here), ("made_on_cpu", there)):
            data = path.read_bytes()
            ref = cpu["files"][path.name]
            img = codec_.decompress(data, decoder="mse")
            diff = np.abs(img.astype(int) - np.load(work / f"{path.name}.cpu.npy").astype(int))
            row[tag] = dict(
                latents_identical=digests(codec_, data) == ref["latents"],
                image_max_abs_diff=int(diff.max()),
                image_frac_differing=float(np.mean(diff > 0)),
            )
        rows[name] = row
        rec.put(("photos", name), row)
    g_codec, _ = _codec_and_digests(str(GOLDEN / "bundle"))
    golden_ok = digests(g_codec, (GOLDEN / "photo.hfd").read_bytes()) == _golden_latents()
    rec.put("golden_file_latents_match", golden_ok)
    sides = [r[t] for r in rows.values() for t in ("made_here", "made_on_cpu")]
    rec.put(
        "summary",
        dict(
            latents_identical=all(s["latents_identical"] for s in sides)
            and golden_ok
            and cpu["golden"],
            bytes_identical=sum(r["bytes_identical"] for r in rows.values()),
            photos=len(rows),
            image_max_abs_diff=max(s["image_max_abs_diff"] for s in sides),
        ),
    )


def _golden_latents():
    return json.loads((GOLDEN / "golden.json").read_text())["latents"]


def _codec_and_digests(bundle):
    sys.path.insert(0, str(FIXTURES))
    import make_golden_coding

    from hific_diffusion.pipeline import Codec

    return Codec.load(bundle or None), make_golden_coding.latent_digests


def crossdevice_child(work: Path, bundle: str):
    """In the CPU process: compress the same crops, decode every file."""
    import jax
    import numpy as np

    codec_, digests = _codec_and_digests(bundle)
    for npy in sorted(work.glob("*.npy")):
        if not npy.name.endswith(".cpu.npy"):
            (work / f"cpu_{npy.stem}.hfd").write_bytes(codec_.compress(np.load(npy)))
    files = {}
    for path in sorted(work.glob("*.hfd")):
        data = path.read_bytes()
        np.save(work / f"{path.name}.cpu.npy", codec_.decompress(data, decoder="mse"))
        files[path.name] = dict(latents=digests(codec_, data))
    g_codec, _ = _codec_and_digests(str(GOLDEN / "bundle"))
    golden = digests(g_codec, (GOLDEN / "photo.hfd").read_bytes()) == _golden_latents()
    out = dict(devices=[str(d) for d in jax.devices()], files=files, golden=golden)
    (work / "cpu.json").write_text(json.dumps(out))


SECTIONS = dict(
    codec=codec, train=train, unet=unet, decode=decode, memory=memory, crossdevice=crossdevice
)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("section", choices=[*SECTIONS, "crossdevice_child"])
    p.add_argument("--out", default="")
    p.add_argument("--time-limit", type=float, default=600.0)
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--work", default="")
    p.add_argument("--bundle", default="")
    args = p.parse_args(argv)
    if args.section == "crossdevice_child":
        return crossdevice_child(Path(args.work), args.bundle)
    deadline = time.time() + args.time_limit
    rec = Recorder(args.out)
    plan = PLANS["dry" if args.dry_run else "gpu"][args.section]
    try:
        SECTIONS[args.section](plan, rec, deadline)
    except Exception as e:
        traceback.print_exc()
        rec.put("error", error_line(e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
