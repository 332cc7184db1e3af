"""Writes MODEL_CARD.md and the bundle's model_card.json from a finished demo run
(the first default model, now tests/fixtures/demo_bundle; the photo model's card:
scripts/write_model_card.py).

    python scripts/write_demo_card.py --runs=runs/demo --eval=runs/demo/eval \\
        --bundle=hific_diffusion/assets/quality_2

Reads the training workdirs (config, metrics.jsonl, ``<task>.seconds`` written
by scripts/train_demo.sh), the evaluation's per_image.json / summary.json, and
the bundle. ``model_card.json`` holds the held-out figures that
tests/test_default_model.py checks the shipped bundle against.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
from pathlib import Path

TASKS = ("autoencoder", "diffusion", "flow")
METRICS = ("bpp", "psnr", "ms_ssim", "lpips")


def _last_metrics(workdir: Path) -> dict:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return json.loads(lines[-1]) if lines else {}


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
        cmd = ["git", "rev-parse", "--short", "HEAD"]
        out = subprocess.run(cmd, capture_output=True, text=True)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def build_card(runs: Path, eval_dir: Path, bundle: Path, hardware: str) -> dict:
    from hific_diffusion.data import offline_photos

    training = {}
    for task in TASKS:
        w = runs / task
        cfg = json.loads((w / "config.json").read_text())
        seconds = w.with_suffix(".seconds")
        last = _last_metrics(w)
        training[task] = {
            "steps": int(last.get("step", 0)),
            "batch_size": cfg["train"]["batch_size"],
            "crop": cfg["data"]["crop"],
            "lr": cfg["train"]["lr"],
            "wall_seconds": int(seconds.read_text()) if seconds.is_file() else None,
            "final_metrics": {k: v for k, v in last.items() if k in ("loss", "bpp", "psnr")},
        }
    per_image = json.loads((eval_dir / "per_image.json").read_text())
    summary = json.loads((eval_dir / "summary.json").read_text())
    manifest = json.loads((bundle / "manifest.json").read_text())
    config = json.loads((bundle / "config.json").read_text())
    return {
        "model": "hific_diffusion demo (configs/demo.py)",
        "bundle_fingerprint": manifest.get("fingerprint"),
        "bundle_mb": round(_size_mb(bundle), 2),
        "commit": _commit(),
        "date": datetime.date.today().isoformat(),
        "hardware": hardware,
        "data": {"train": list(offline_photos.TRAIN), "heldout": list(offline_photos.HELDOUT)},
        "decode_settings": {
            "diffusion_steps": config["diffusion"]["steps"],
            "sampler": config["diffusion"]["sampler"],
            "noise_level": config["diffusion"]["noise_level"],
            "seed": 0,
        },
        "diffusion_target": config["diffusion"].get("target", "image"),
        "residual_scale": config["diffusion"].get("residual_scale"),
        "training": training,
        "heldout_mean": {d: {k: m.get(k) for k in METRICS} for d, m in summary["decoders"].items()},
        "heldout": [
            {k: r.get(k) for k in ("image", "height", "width", "decoder", "bytes", *METRICS)}
            for r in per_image
        ],
    }


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def markdown(card: dict) -> str:
    t = card["training"]
    lines = [
        "# Model card: the bundled default model",
        "",
        "`hific_diffusion/assets/quality_2` is what `hific-diffusion compress` and",
        "`python -m hific_diffusion.eval --config=demo` use when no model is given. It is a",
        "*demonstration* model: small, trained for about half an hour per stage on a",
        "2-core CPU on a dozen photos, so that a newcomer can see the whole codec work with",
        "no dataset and no GPU. Its numbers say nothing about the paper's models (see",
        "`configs/hfd.py` and the README).",
        "",
        "## What it is",
        "",
        "- Stage 1: ELIC autoencoder (N=48, M=64, channel groups 4,4,8,16,32, one residual",
        "  block per stage), trained for `bpp + lambda * 255^2 * MSE` with lambda = 0.0035.",
        "- Stage 2: two conditional U-Nets (base 32 channels, multipliers 1,2,2, no attention):",
        "  a v-prediction diffusion decoder (shifted cosine schedule, eta = 0.5) and a",
        "  rectified-flow decoder, both conditioned on the frozen stage-1 reconstruction.",
        _target_line(card),
        f"- Bundle: {card['bundle_mb']} MB, fingerprint `{card['bundle_fingerprint']}`.",
        f"- Decoding defaults: {card['decode_settings']['diffusion_steps']} steps, sampler "
        f"`{card['decode_settings']['sampler']}`, noise level "
        f"{card['decode_settings']['noise_level']}, seed 0.",
        "",
        "## Data",
        "",
        "The natural photos that scikit-image and scikit-learn ship (no download):",
        f"trained on {', '.join(card['data']['train'])} (grayscale ones copied to RGB);",
        f"held out: {', '.join(card['data']['heldout'])}. Random crops with flips (stage 1",
        "128x128, stage 2 64x64).",
        "",
        "## Training",
        "",
        f"Hardware: {card['hardware']}. Date {card['date']}, commit {card['commit']}.",
        "Command: `bash scripts/train_demo.sh` (the project's own `train`, `export` and",
        "`eval` commands; see `configs/demo.py`).",
        "",
        "| stage | steps | batch | crop | lr | wall time | last logged batch |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, tr in t.items():
        fm = tr["final_metrics"]
        last = ", ".join(f"{k} {v:.4g}" for k, v in fm.items())
        wall = "-" if tr["wall_seconds"] is None else f"{tr['wall_seconds'] / 60:.0f} min"
        lines.append(
            f"| {task} | {tr['steps']} | {tr['batch_size']} | {tr['crop']} | {tr['lr']} "
            f"| {wall} | {last} |"
        )
    lines += [
        "",
        "## Held-out figures",
        "",
        "Real bpp from the bytes of the `.hfd` file; PSNR, MS-SSIM and LPIPS (AlexNet) on the",
        "uint8 output; baselines at matched bitrate. Means over the three held-out photos",
        "(`python -m hific_diffusion.eval --config=demo`; FID/KID need the Inception weights",
        "and three photos are too few for them anyway):",
        "",
        "| decoder | bpp | PSNR (dB) | MS-SSIM | LPIPS |",
        "|---|---|---|---|---|",
    ]
    for dec, m in card["heldout_mean"].items():
        lines.append(
            f"| {dec} | {_fmt(m['bpp'], '.4f')} | {_fmt(m['psnr'], '.2f')} "
            f"| {_fmt(m['ms_ssim'], '.4f')} | {_fmt(m['lpips'], '.4f')} |"
        )
    lines += ["", "Per image:", "", "| image | decoder | bpp | PSNR (dB) | MS-SSIM | LPIPS |"]
    lines.append("|---|---|---|---|---|---|")
    for r in card["heldout"]:
        lines.append(
            f"| {r['image']} ({r['width']}x{r['height']}) | {r['decoder']} | "
            f"{_fmt(r['bpp'], '.4f')} | {_fmt(r['psnr'], '.2f')} | {_fmt(r['ms_ssim'], '.4f')} "
            f"| {_fmt(r['lpips'], '.4f')} |"
        )
    lines += [
        "",
        "`tests/test_default_model.py` re-encodes the held-out photos with the shipped bundle",
        "and checks these bpp and PSNR figures (`model_card.json` in the bundle directory).",
        "",
        "## Limitations",
        "",
        "Trained on twelve photos for 1,500 / 2,000 steps (a paper-scale ELIC trains for",
        "millions): at this length its MSE decoder is well below JPEG at the same rate.",
        _lpips_sentence(card),
        "Use it to see the pipeline work, not to compare codecs.",
        "",
    ]
    return "\n".join(lines)


def _target_line(card: dict) -> str:
    if card.get("diffusion_target", "image") == "residual":
        return (
            "  The diffusion decoder models the residual `(x - x_mse) / "
            f'{card["residual_scale"]}` (`diffusion.target = "residual"`), not the image.'
        )
    return '  The diffusion decoder models the image itself (`diffusion.target = "image"`).'


def _lpips_sentence(card: dict) -> str:
    """What the held-out means say about the generative decoders against x_mse."""
    means = card["heldout_mean"]
    ref = means.get("mse", {}).get("lpips")
    parts = []
    for dec in ("diffusion", "flow"):
        lp = means.get(dec, {}).get("lpips")
        if lp is None or ref is None:
            continue
        verdict = "better than" if lp < ref else "worse than"
        parts.append(f"{dec} {lp:.3f} ({verdict} x_mse's {ref:.3f})")
    if not parts:
        return ""
    return (
        "Mean held-out LPIPS of the generative decoders: " + "; ".join(parts) + ". Both add "
        "texture (more high-frequency energy than x_mse, tested); a decoder worse than x_mse "
        "on LPIPS is undertrained at this length."
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="runs/demo")
    ap.add_argument("--eval", default="runs/demo/eval")
    ap.add_argument("--bundle", default="hific_diffusion/assets/quality_2")
    ap.add_argument("--out", default="MODEL_CARD.md")
    ap.add_argument("--hardware", default=None, help="default: this machine's CPU")
    ap.add_argument("--commit", default=None, help="commit the model was trained at")
    args = ap.parse_args()
    card = build_card(Path(args.runs), Path(args.eval), Path(args.bundle), args.hardware or _cpu())
    if args.commit:
        card["commit"] = args.commit
    (Path(args.bundle) / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")
    Path(args.out).write_text(markdown(card))
    print(f"wrote {args.out} and {Path(args.bundle) / 'model_card.json'}")


if __name__ == "__main__":
    main()
