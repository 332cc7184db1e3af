"""Our ELIC trainer against CompressAI's, side by side on the same crops, as JSON.

    python bench/trainer_vs_compressai.py --steps=520 --out=runs/bench/vs_compressai.json
    python bench/trainer_vs_compressai.py --steps=20 --init=lecun     # the old initialisation

Both train ELIC at the same size (``Elic2022Official(N, M)``: groups
16, 16, 32, 64, M - 128, channel context 224/128, factorized prior filters
(3, 3, 3, 3)) on the same random crops in the same order (batch, crop, Adam,
lr, global-norm clip, lambda all equal; loss = bpp + lambda * 255^2 * MSE),
each on one core. The steps alternate (ours, theirs, ours, ...) in one
process pair pinned to the same core, so machine noise hits both. Ours is
the project's real training step (``train/step.py``); theirs is CompressAI's
example training loop (main + aux optimizer), run by
``bench/compressai_worker.py`` in a separate interpreter, because CompressAI
pins numpy < 2: create it once with

    python3 -m venv .venv-torch && .venv-torch/bin/pip install torch compressai

Reports per step loss / bpp / PSNR / seconds for both, the first step
(compile) apart, and summaries: mean loss ratio over the second half of the
run and the median steps/s ratio.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TORCH_PY = ROOT / ".venv-torch" / "bin" / "python"


def make_crops(args, path: Path):
    """[steps, batch, crop, crop, 3] uint8 random crops (seeded), written as .npy."""
    import numpy as np

    from hific_diffusion.data import offline_photos
    from hific_diffusion.data.sources import FolderSource

    if args.data:
        src = FolderSource(args.data)
        images = [src[i] for i in range(len(src))]
    else:
        images = offline_photos.load("train")
    images = [im for im in images if min(im.shape[:2]) >= args.crop]
    rng = np.random.default_rng(args.seed)
    out = np.lib.format.open_memmap(
        path, mode="w+", dtype=np.uint8, shape=(args.steps, args.batch, args.crop, args.crop, 3)
    )
    for i in range(args.steps):
        for b in range(args.batch):
            im = images[rng.integers(len(images))]
            r = rng.integers(im.shape[0] - args.crop + 1)
            c = rng.integers(im.shape[1] - args.crop + 1)
            out[i, b] = im[r : r + args.crop, c : c + args.crop]
    out.flush()
    return len(images)


def our_config(args):
    from hific_diffusion import configs

    config = configs.base_config()
    config.task = "autoencoder"
    m = config.model
    m.N, m.M = args.N, args.M
    m.groups = (16, 16, 32, 64, args.M - 128)
    m.channel_context = (224, 128)
    m.prior_filters = (3, 3, 3, 3)
    m.lmbda = args.lmbda
    m.init = args.init
    t = config.train
    t.batch_size, t.lr, t.grad_clip = args.batch, args.lr, args.clip
    t.warmup_steps, t.schedule = 0, "constant"
    config.seed = args.seed
    return config


class Ours:
    def __init__(self, args):
        import jax

        from hific_diffusion.train import sharding as shd
        from hific_diffusion.train import state as train_state
        from hific_diffusion.train import step, tasks

        self.jax, self.shd = jax, shd
        config = our_config(args)
        task = tasks.get_task("autoencoder")
        self.mesh = shd.make_mesh((), "replicate", jax.devices()[:1])
        self.s = train_state.setup(task, config, self.mesh)
        self.state = train_state.init(self.s, task, config)
        self.fn = step.jit_step(
            step.make_step_fn(task, config, self.s.graphdef, self.s.tx), self.s, self.mesh
        )
        self.params = sum(int(x.size) for x in jax.tree.leaves(self.s.abstract["params"]))

    def step(self, batch):
        t0 = time.perf_counter()
        x = self.shd.global_batch(batch, self.mesh)
        self.state, m = self.fn(self.state, self.s.rest, x, None)
        m = self.jax.device_get(m)
        return dict(
            loss=float(m["loss"]), bpp=float(m["bpp"]), mse=float(m["mse"]),
            z_bpp=float(m["z_bpp"]), seconds=time.perf_counter() - t0,
        )  # fmt: skip


class Theirs:
    def __init__(self, args, crops: Path):
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from benchutil import CompressAIWorker

        self.worker = CompressAIWorker(args.torch_python)
        info = self.worker(
            cmd="init", N=args.N, M=args.M, lr=args.lr, lmbda=args.lmbda, clip=args.clip,
            seed=args.seed, crops=str(crops),
        )  # fmt: skip
        self.params, self.torch = info["params"], info["torch"]

    def step(self, i):
        return self.worker(cmd="step", i=i)

    def close(self):
        self.worker.close()


def summarize(rows, skip_first=True):
    import numpy as np

    half = len(rows) // 2
    out = {}
    for who in ("ours", "theirs"):
        r = rows[half:]
        sec = [x[who]["seconds"] for x in rows[1 if skip_first else 0 :]]
        out[who] = dict(
            loss_second_half=float(np.mean([x[who]["loss"] for x in r])),
            bpp_second_half=float(np.mean([x[who]["bpp"] for x in r])),
            psnr_second_half=float(np.mean([-10 * np.log10(max(x[who]["mse"], 1e-10)) for x in r])),
            z_bpp_second_half=float(np.mean([x[who]["z_bpp"] for x in r])),
            first_loss=rows[0][who]["loss"], first_bpp=rows[0][who]["bpp"],
            first_step_s=rows[0][who]["seconds"], median_step_s=float(np.median(sec)),
        )  # fmt: skip
    out["loss_ratio_second_half"] = (
        out["ours"]["loss_second_half"] / out["theirs"]["loss_second_half"]
    )
    out["speed_ratio"] = out["theirs"]["median_step_s"] / out["ours"]["median_step_s"]
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=520)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--N", type=int, default=64)
    p.add_argument("--M", type=int, default=192)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--lmbda", type=float, default=0.0130)
    p.add_argument("--init", default="pytorch", help="our model.init")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default="", help="image folder (default: the offline photos)")
    p.add_argument("--core", type=int, default=0, help="the one CPU core both run on")
    p.add_argument("--torch-python", default=str(DEFAULT_TORCH_PY))
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    if not Path(args.torch_python).is_file():
        raise SystemExit(f"error: no CompressAI interpreter at {args.torch_python} (see --help)")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.core})  # inherited by the worker
    os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false " + os.environ.get(
        "XLA_FLAGS", ""
    )
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        crops = Path(tmp) / "crops.npy"
        n_images = make_crops(args, crops)
        import numpy as np

        data = np.load(crops, mmap_mode="r")
        theirs = Theirs(args, crops)
        ours = Ours(args)
        rows = []
        try:
            for i in range(args.steps):
                batch = np.asarray(data[i])
                rows.append(dict(step=i, ours=ours.step(batch), theirs=theirs.step(i)))
                if i % 20 == 0 or i == args.steps - 1:
                    o, t = rows[-1]["ours"], rows[-1]["theirs"]
                    print(f"step {i:4d}  loss ours {o['loss']:.3f} theirs {t['loss']:.3f}  "
                          f"s/step ours {o['seconds']:.2f} theirs {t['seconds']:.2f}",
                          file=sys.stderr, flush=True)  # fmt: skip
        finally:
            theirs.close()
    import jax

    result = dict(
        bench="trainer_vs_compressai",
        date=datetime.datetime.now().isoformat(timespec="seconds"),
        commit=subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip(),  # fmt: skip
        host=platform.node(), cpu=platform.processor() or platform.machine(),
        jax=jax.__version__, torch=theirs.torch, settings=vars(args), images=n_images,
        params=dict(ours=ours.params, theirs=theirs.params),
        summary=summarize(rows), steps=rows,
    )  # fmt: skip
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(json.dumps(dict(params=result["params"], summary=result["summary"]), indent=1))
    return result


if __name__ == "__main__":
    main()
