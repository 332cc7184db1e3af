"""Quick held-out probe of a model while it trains: centre crops of the
held-out photos, each compressed once and decoded with every decoder asked
for, against JPEG at the same (or lower) real bpp.

    python scripts/probe_heldout.py --model runs/photos/ae_0.3 --crop 256
    python scripts/probe_heldout.py --model runs/photos/diffusion_0.3 \\
        --decoders mse,diffusion --steps 1 --tile 0

Reports per decoder the means of real bpp, PSNR, LPIPS (AlexNet) and the
high-pass energy ratio to the original (``metrics.texture``; 1.0 is the
original's detail, x_mse sits well below), plus JPEG's, as a table and as
JSON (``--out``). Crops keep full-size generative decodes (minutes each on a
CPU) out of the loop; ``eval`` gives the full-image figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from hific_diffusion.data.sources import FolderSource
from hific_diffusion.evaluation import baselines
from hific_diffusion.metrics import lpips
from hific_diffusion.metrics.psnr import psnr
from hific_diffusion.metrics.texture import highpass_energy
from hific_diffusion.pipeline import Codec


def centre_crop(x: np.ndarray, side: int) -> np.ndarray:
    h, w = x.shape[:2]
    ch, cw = min(side, h), min(side, w)
    return x[(h - ch) // 2 : (h - ch) // 2 + ch, (w - cw) // 2 : (w - cw) // 2 + cw]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="bundle or training workdir")
    ap.add_argument("--data", default=None, help="folder of photos (default: $HFD_PHOTOS/heldout)")
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--limit", type=int, default=0, help="first N photos only (0: all)")
    ap.add_argument("--decoders", default="mse")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--tile", type=int, default=None)
    ap.add_argument("--baseline", default="jpeg", help="'' for none")
    ap.add_argument("--out", default=None, help="JSON file")
    args = ap.parse_args(argv)

    import os

    data = args.data or os.path.join(
        os.environ.get("HFD_PHOTOS", os.path.expanduser("~/.cache/hific_diffusion/photos")),
        "heldout",
    )
    src = FolderSource(data)
    n = len(src) if args.limit <= 0 else min(args.limit, len(src))
    codec = Codec.load(args.model)
    decoders = [d for d in args.decoders.split(",") if d]
    alex = lpips.load_params("alexnet")

    def lp(a, b):
        return float(lpips.distance("alexnet", alex, lpips.to_model_range(a[None]),
                                    lpips.to_model_range(b[None]))[0])  # fmt: skip

    rows = []
    t0 = time.time()
    for i in range(n):
        x = centre_crop(src[i], args.crop)
        pixels = x.shape[0] * x.shape[1]
        data_ = codec.compress(x)
        bpp = len(data_) * 8.0 / pixels
        hp0 = highpass_energy(x)
        outs = {d: codec.decompress(data_, decoder=d, steps=args.steps, tile=args.tile, seed=0)
                for d in decoders}  # fmt: skip
        if args.baseline:
            r = baselines.at_bpp(args.baseline, x, bpp)
            outs[args.baseline] = r.image
        for d, y in outs.items():
            b = r.bpp if d == args.baseline else bpp
            rows.append(dict(image=i, decoder=d, bpp=b, psnr=psnr(x, y), lpips=lp(x, y),
                             hp=highpass_energy(y) / hp0))  # fmt: skip
        print(f"[{i + 1}/{n}] {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    means = {}
    for d in dict.fromkeys(r["decoder"] for r in rows):
        sel = [r for r in rows if r["decoder"] == d]
        means[d] = {k: float(np.mean([r[k] for r in sel])) for k in ("bpp", "psnr", "lpips", "hp")}
    print(f"{'decoder':<10} {'bpp':>7} {'PSNR':>7} {'LPIPS':>7} {'HP':>6}")
    for d, m in means.items():
        print(f"{d:<10} {m['bpp']:7.4f} {m['psnr']:7.2f} {m['lpips']:7.4f} {m['hp']:6.2f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(model=str(args.model), crop=args.crop, means=means, rows=rows), f,
                      indent=1)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
