"""Writes MODEL_CARD.md and the bundle's model_card.json for the shipped model.

    python scripts/write_model_card.py --bundle=hific_diffusion/assets/quality_2 \\
        --eval=runs/photos/eval_q2 --photos=$HFD_PHOTOS \\
        --run autoencoder=runs/photos/ae_0.3 --run diffusion=runs/photos/diffusion_alex_0.3

The shipped models are trained over several sessions: each session's run
starts from the weights the previous session shipped (``train.init_from`` a
bundle) and the card keeps the whole history. ``--previous`` (default: the
card already in the bundle directory, read before anything is written) is
carried over and this session's runs (``--run NAME=WORKDIR``: config and
metrics.jsonl) are appended to it.

``--eval``: the output of ``python -m hific_diffusion.eval`` on the corpus'
held-out photos with this bundle (per_image.json, summary.json, rd.png).
``--photos``: the corpus directory (its manifest.json names every photo, its
package, licence and credit). ``model_card.json`` holds the held-out figures
that tests/test_default_model.py checks the shipped bundle against, and
``docs/model_card/`` gets the RD plot and a side-by-side crop image.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("bpp", "psnr", "ms_ssim", "lpips", "texture")
DOCS = "docs/model_card"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores visible)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores visible)"


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=ROOT)  # fmt: skip
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def run_record(name: str, workdir: Path, hardware: str) -> dict:
    """One training run of this session: what it trained, from what, how long."""
    cfg = json.loads((workdir / "config.json").read_text())
    rows = [json.loads(s) for s in (workdir / "metrics.jsonl").read_text().splitlines() if s]
    if not rows:
        raise SystemExit(f"{workdir}: no metrics logged yet")
    last = rows[-1]
    # Training time between log lines (steps / rate); the first compile is not in it.
    prev, seconds = 0, 0.0
    for r in rows:
        if r.get("steps_per_s"):
            seconds += (r["step"] - prev) / r["steps_per_s"]
        prev = r["step"]
    t, d = cfg["train"], cfg.get("diffusion", {})
    rec = {
        "name": name,
        "task": cfg["task"],
        "config": cfg.get("name"),
        "steps": int(last["step"]),
        "batch_size": t["batch_size"],
        "crop": cfg["data"]["crop"],
        "lr": t["lr"],
        "init_from": os.path.basename(os.path.normpath(t["init_from"]))
        if t.get("init_from")
        else None,
        "train_seconds": round(seconds),
        "hardware": hardware,
        "date": datetime.date.today().isoformat(),
        "final_metrics": {k: round(last[k], 5) for k in ("loss", "bpp", "psnr") if k in last},
    }
    if cfg["task"] != "autoencoder":
        rec["perceptual"] = {"weight": d.get("perceptual_weight"), "net": d.get("perceptual_net")}
    return rec


def corpus_record(photos: Path) -> dict:
    m = json.loads((photos / "manifest.json").read_text())
    return {
        "command": "python -m hific_diffusion.data.photo_corpus --out DIR",
        "counts": m["counts"],
        "photos": [
            {k: p.get(k) for k in ("id", "split", "package", "version", "licence", "credit")}
            for p in m["photos"]
        ],
    }


def build_card(bundle: Path, eval_dir: Path, photos: Path, runs: list[tuple[str, Path]],
               previous: dict | None, hardware: str) -> dict:  # fmt: skip
    per_image = json.loads((eval_dir / "per_image.json").read_text())
    summary = json.loads((eval_dir / "summary.json").read_text())
    manifest = json.loads((bundle / "manifest.json").read_text())
    config = json.loads((bundle / "config.json").read_text())
    ae = config["autoencoder"]
    decoders = {}
    for name, sec in config.items():
        if name == "autoencoder":
            continue
        u = sec["unet"]
        decoders[name] = {
            "unet": f"base {u['base_channels']}, mult {u['channel_mult']}, "
            f"{u['num_res_blocks']} res block(s) per level",
            "target": sec.get("target", "image"),
            "residual_scale": sec.get("residual_scale"),
            "parameterization": sec.get("parameterization"),
            "steps": sec.get("steps"),
            "sampler": sec.get("sampler"),
            "tile": sec.get("tile"),
        }
    history = list((previous or {}).get("training", []))
    history += [run_record(n, w, hardware) for n, w in runs]
    totals = {}
    for r in history:
        totals[r["name"]] = totals.get(r["name"], 0) + r["steps"]
    return {
        "model": f"photo model, quality {bundle.name.rsplit('_', 1)[-1]} (configs/photos.py)",
        "bundle_fingerprint": manifest.get("fingerprint"),
        "bundle_mb": round(_size_mb(bundle), 2),
        "commit": _commit(),
        "date": datetime.date.today().isoformat(),
        "autoencoder": {k: ae.get(k) for k in ("N", "M", "groups", "res_blocks", "lmbda")},
        "decoders": decoders,
        "data": corpus_record(photos),
        "training": history,
        "total_steps": totals,
        "eval": {"images": len({r["image"] for r in per_image})},
        "heldout_mean": {d: {k: m.get(k) for k in METRICS} for d, m in summary["decoders"].items()},
        "heldout": [
            {k: r.get(k) for k in ("image", "height", "width", "decoder", "bytes", *METRICS)}
            for r in per_image
        ],
        "offline_heldout": offline_rows(bundle),
    }


def offline_rows(bundle: Path) -> list[dict]:
    """The MSE decoder's bytes and PSNR on the held-out photos that ship with
    scikit-image / scikit-learn (``data.offline_photos``): what the tests
    re-measure on any machine (the corpus needs the Debian packages)."""
    from hific_diffusion.data import offline_photos
    from hific_diffusion.metrics.psnr import psnr
    from hific_diffusion.pipeline import Codec

    codec = Codec.load(bundle)
    rows = []
    names = offline_photos.names("heldout")
    for name, x in zip(names, offline_photos.load("heldout"), strict=True):
        data = codec.compress(x)
        y = codec.decompress(data, decoder="mse")
        h, w = x.shape[:2]
        rows.append(
            {"image": name, "height": h, "width": w, "decoder": "mse", "bytes": len(data),
             "bpp": len(data) * 8 / (h * w), "psnr": psnr(x, y)}
        )  # fmt: skip
    return rows


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


GENERATIVE = ("diffusion", "flow", "hfdplus", "corrdiff", "hific")


def markdown(card: dict) -> str:
    ae, means = card["autoencoder"], card["heldout_mean"]
    counts = card["data"]["counts"]
    lines = [
        "# Model card: the bundled default model",
        "",
        "`hific_diffusion/assets/quality_2` is what `hific-diffusion compress` and",
        "`python -m hific_diffusion.eval --config=demo` use when no model is given:",
        f"{card['model']}, trained on a 2-core CPU on {counts['train']} natural photographs",
        "that Debian packages and scikit-image / scikit-learn ship, and measured on",
        f"{counts['heldout']} held-out photographs it never trained on. It is small and",
        "still training (the history below grows each session); its numbers say nothing",
        "about the paper's models (see `configs/hfd.py` and the README).",
        "",
        "## What it is",
        "",
        f"- Autoencoder: ELIC (N={ae['N']}, M={ae['M']}, channel groups "
        f"{','.join(map(str, ae['groups']))}, {ae['res_blocks']} residual block(s) per stage),",
        f"  trained for `bpp + lambda * 255^2 * MSE` with lambda = {ae['lmbda']}.",
    ]
    for name, d in card["decoders"].items():
        target = (
            f"the residual `(x - x_mse) / {d['residual_scale']}`"
            if d["target"] == "residual"
            else "the image"
        )
        lines.append(
            f"- `{name}` decoder: conditional U-Net ({d['unet']}), {d['parameterization']}-"
            f"prediction of {target}; decodes by default in {d['steps']} step(s), sampler "
            f"`{d['sampler']}`, tile {d['tile'] or 'none (whole image)'}."
        )
    lines += [
        f"- Bundle: {card['bundle_mb']} MB, fingerprint `{card['bundle_fingerprint']}`.",
        "",
        "## Data",
        "",
        "Gathered by `python -m hific_diffusion.data.photo_corpus --out DIR` from",
        "sha256-pinned Debian 12 packages (no other download) plus the photos",
        "scikit-image and scikit-learn ship; the held-out split is never trained on.",
        "Random crops with flips (autoencoder 128x128, decoders 64x64).",
        "",
        "| photo | split | package | licence | credit |",
        "|---|---|---|---|---|",
    ]
    for p in card["data"]["photos"]:
        lines.append(
            f"| {p['id']} | {p['split']} | {p['package']} | {p['licence']} | "
            f"{p.get('credit') or '-'} |"
        )
    lines += [
        "",
        "## Training",
        "",
        "Command: `SHIP=1 bash scripts/train_session.sh`, once a session (the project's",
        "own `train`, `export`, `eval` commands and this card's writer). Each session",
        "continues the previous session's weights (`train.init_from` the bundle; a fresh",
        "optimizer).",
        "Seconds are training time between log lines (compilation not included).",
        "",
        "| date | run | task | steps | batch | crop | lr | LPIPS loss | started from "
        "| train time | hardware | last logged batch |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in card["training"]:
        fm = ", ".join(f"{k} {v:.4g}" for k, v in r["final_metrics"].items())
        p = r.get("perceptual") or {}
        lp = f"{p['weight']} {p['net']}" if p.get("weight") else "-"
        lines.append(
            f"| {r['date']} | {r['name']} | {r['task']} | {r['steps']} | {r['batch_size']} "
            f"| {r['crop']} | {r['lr']} | {lp} | {r['init_from'] or 'scratch'} "
            f"| {r['train_seconds'] / 60:.0f} min | {r['hardware']} | {fm} |"
        )
    total = ", ".join(f"{k} {v}" for k, v in card["total_steps"].items())
    lines += [
        "",
        f"Total steps so far: {total}. Card written {card['date']} at commit {card['commit']}.",
        "",
        "## Held-out figures",
        "",
        "Real bpp from the bytes of the `.hfd` file; PSNR, MS-SSIM and LPIPS (AlexNet) on",
        "the uint8 output; `texture` is the high-pass energy relative to the original's",
        "(`metrics.texture`; 1 is the original's detail). Baselines at the MSE decoder's",
        f"real bpp or just below. Means over the {card['eval']['images']} held-out photos",
        "(`python -m hific_diffusion.eval --config=photos:diffusion:0.3 --bundle=BUNDLE`):",
        "",
        "| decoder | bpp | PSNR (dB) | MS-SSIM | LPIPS | texture |",
        "|---|---|---|---|---|---|",
    ]
    for dec, m in means.items():
        lines.append(
            f"| {dec} | {_fmt(m['bpp'], '.4f')} | {_fmt(m['psnr'], '.2f')} "
            f"| {_fmt(m['ms_ssim'], '.4f')} | {_fmt(m['lpips'], '.4f')} "
            f"| {_fmt(m.get('texture'), '.3f')} |"
        )
    lines += [
        "",
        f"![rate-distortion on the held-out photos]({DOCS}/rd.png)",
        "",
        f"![original / x_mse / diffusion / JPEG at equal bpp]({DOCS}/side_by_side.png)",
        "",
        "Crops of held-out photos: original, the MSE decoder, the diffusion decoder and JPEG",
        "at the same or lower bpp (`scripts/write_model_card.py`).",
        "",
        _verdict(card),
        "",
        "Per image:",
        "",
        "| image | decoder | bpp | PSNR (dB) | MS-SSIM | LPIPS | texture |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in card["heldout"]:
        lines.append(
            f"| {r['image']} ({r['width']}x{r['height']}) | {r['decoder']} | "
            f"{_fmt(r['bpp'], '.4f')} | {_fmt(r['psnr'], '.2f')} | {_fmt(r['ms_ssim'], '.4f')} "
            f"| {_fmt(r['lpips'], '.4f')} | {_fmt(r.get('texture'), '.3f')} |"
        )
    lines += [
        "",
        "`tests/test_default_model.py` re-encodes the held-out photos that ship with",
        "scikit-image / scikit-learn with the shipped bundle and checks these bpp and PSNR",
        "figures (`model_card.json` in the bundle directory), and that the generative",
        "decoders add detail and lower LPIPS against x_mse.",
        "",
    ]
    return "\n".join(lines)


def _verdict(card: dict) -> str:
    """What the held-out means say: x_mse against JPEG, the generative decoders
    against x_mse (LPIPS and PSNR)."""
    means = card["heldout_mean"]
    mse, out = means.get("mse", {}), []
    jpeg = means.get("jpeg", {})
    if mse.get("psnr") is not None and jpeg.get("psnr") is not None:
        gap = mse["psnr"] - jpeg["psnr"]
        out.append(
            f"The MSE decoder is {abs(gap):.2f} dB {'above' if gap >= 0 else 'below'} JPEG "
            f"at {mse['bpp']:.3f} bpp against JPEG's {jpeg['bpp']:.3f}."
        )
    for dec in GENERATIVE:
        m = means.get(dec)
        if not m or m.get("lpips") is None or mse.get("lpips") is None:
            continue
        ratio = m["lpips"] / mse["lpips"]
        verdict = "better than" if m["lpips"] < mse["lpips"] else "worse than"
        out.append(
            f"{dec} {m['lpips']:.3f} ({verdict} x_mse's {mse['lpips']:.3f}, {ratio:.2f}x), "
            f"PSNR {m['psnr'] - mse['psnr']:+.2f} dB against x_mse."
        )
    return " ".join(out)


def side_by_side(bundle: Path, photos: Path, out: Path, crop: int = 192) -> None:
    """Original / x_mse / diffusion / JPEG (same or lower bpp) on centre crops of
    three held-out photos, one row each, labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hific_diffusion.data.sources import FolderSource
    from hific_diffusion.evaluation import baselines
    from hific_diffusion.pipeline import Codec

    codec = Codec.load(bundle)
    src = FolderSource(photos / "heldout")
    names = [Path(f).stem for f in src.files] if hasattr(src, "files") else None
    picks = [0, len(src) // 2, len(src) - 1]
    fig, axes = plt.subplots(len(picks), 4, figsize=(12, 3.1 * len(picks)))
    for row, i in enumerate(picks):
        x = src[i]
        h, w = x.shape[:2]
        c = x[(h - crop) // 2 : (h + crop) // 2, (w - crop) // 2 : (w + crop) // 2]
        data = codec.compress(c)
        bpp = len(data) * 8 / (c.shape[0] * c.shape[1])
        jpeg = baselines.at_bpp("jpeg", c, bpp)
        tiles = [
            ("original", c),
            (f"x_mse {bpp:.3f} bpp", codec.decompress(data, decoder="mse")),
            (f"diffusion {bpp:.3f} bpp", codec.decompress(data, decoder="diffusion", seed=0)),
            (f"JPEG {jpeg.bpp:.3f} bpp", jpeg.image),
        ]
        for col, (title, img) in enumerate(tiles):
            ax = axes[row, col]
            ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            label = f"{names[i]}: {title}" if names and col == 0 else title
            ax.set_title(label, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default="hific_diffusion/assets/quality_2")
    ap.add_argument("--eval", default=None)
    ap.add_argument("--photos", default=os.environ.get("HFD_PHOTOS"), required=False)
    ap.add_argument("--run", action="append", default=[], help="NAME=WORKDIR of this session")
    ap.add_argument("--previous", default=None, help="card whose history continues")
    ap.add_argument("--out", default="MODEL_CARD.md")
    ap.add_argument("--hardware", default=None, help="default: this machine's CPU")
    ap.add_argument("--no-images", action="store_true")
    ap.add_argument(
        "--history-only",
        action="store_true",
        help="a work-in-progress bundle: append the runs to its history, no eval",
    )
    args = ap.parse_args()
    if not args.photos and not args.history_only:
        raise SystemExit("--photos (or $HFD_PHOTOS): the photo corpus directory")
    bundle, photos = Path(args.bundle), Path(args.photos or ".")
    prev_path = Path(args.previous) if args.previous else bundle / "model_card.json"
    previous = json.loads(prev_path.read_text()) if prev_path.is_file() else None
    if previous is not None and not isinstance(previous.get("training"), list):
        previous = None  # the demo model's card (one run per task, no history)
    runs = []
    for spec in args.run:
        name, _, workdir = spec.partition("=")
        runs.append((name, Path(workdir)))
    hardware = args.hardware or _cpu()
    if args.history_only:
        # A work-in-progress bundle (not shipped yet): only the training history.
        history = list((previous or {}).get("training", []))
        history += [run_record(n, w, hardware) for n, w in runs]
        card = {"model": "photo model, work in progress", "training": history}
        (bundle / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")
        print(f"wrote {bundle / 'model_card.json'} (history only)")
        return
    if not args.eval:
        raise SystemExit("--eval: the held-out evaluation of the bundle")
    card = build_card(bundle, Path(args.eval), photos, runs, previous, hardware)
    docs = ROOT / DOCS
    if not args.no_images:
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(args.eval) / "rd.png", docs / "rd.png")
        side_by_side(bundle, photos, docs / "side_by_side.png")
    (bundle / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")
    Path(args.out).write_text(markdown(card))
    print(f"wrote {args.out} and {bundle / 'model_card.json'}")


if __name__ == "__main__":
    main()
