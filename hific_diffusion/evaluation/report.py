"""Outputs of an evaluation: per-image CSV, summary JSON, results table, RD and rate-FID plots.

Published reference points (``anchors/published_rd_clic2020.csv``: HiFiC from
tensorflow/compression ``models/hific/data.csv``, MS-ILLM from
facebookresearch/NeuralCompression ``projects/illm/results.csv``; the source
of every row is in its ``source`` column) are drawn only on plots of the
dataset they were measured on.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from hific_diffusion.atomic import atomic_write, write_text

ANCHORS = Path(__file__).resolve().parent / "anchors" / "published_rd_clic2020.csv"
PER_IMAGE_FIELDS = (
    "image", "decoder", "height", "width", "bytes", "bpp", "bpp_est", "psnr", "ms_ssim",
    "lpips", "texture", "quality", "matched", "seconds",
)  # fmt: skip
MEAN_FIELDS = ("bpp", "bpp_est", "psnr", "ms_ssim", "lpips", "texture", "seconds")
# Published points carry the dataset names their CSV uses.
_ANCHOR_DATASET = {"clic20": "CLIC2020"}


def published_points(dataset: str) -> list[dict]:
    name = _ANCHOR_DATASET.get(dataset)
    if name is None or not ANCHORS.is_file():
        return []
    with open(ANCHORS, newline="") as f:
        return [r for r in csv.DictReader(f) if r["dataset"] == name]


def write_csv(rows: list[dict], path: Path) -> None:
    with atomic_write(path, "w", newline="") as f:
        writer = csv.DictWriter(f, PER_IMAGE_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k, "") for k in PER_IMAGE_FIELDS})


def _finite_mean(values):
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    return float(np.mean(v)) if v else None


def summarize(rows: list[dict], order: list[str]) -> dict[str, dict]:
    """Per decoder: image count and means of the per-image metrics (inf PSNR left out)."""
    out = {}
    for dec in order:
        sel = [r for r in rows if r["decoder"] == dec]
        if sel:
            out[dec] = {"images": len(sel)} | {
                k: _finite_mean(r.get(k) for r in sel) for k in MEAN_FIELDS
            }
    return out


def write_json(obj, path: Path) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON serializable: {type(x)}")


def table(per_decoder: dict[str, dict]) -> str:
    cols = (
        ("bpp", "{:.4f}"), ("bpp_est", "{:.4f}"), ("psnr", "{:.2f}"), ("ms_ssim", "{:.4f}"),
        ("lpips", "{:.4f}"), ("texture", "{:.3f}"), ("fid", "{:.2f}"), ("kid", "{:.4f}"),
        ("images", "{:d}"),
    )  # fmt: skip
    head = f"{'decoder':<12}" + "".join(f"{c:>10}" for c, _ in cols)
    lines = [head, "-" * len(head)]
    for dec, m in per_decoder.items():
        cells = []
        for c, fmt in cols:
            v = m.get(c)
            cells.append(f"{fmt.format(v) if v is not None else '-':>10}")
        lines.append(f"{dec:<12}" + "".join(cells))
    return "\n".join(lines)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_rd(per_decoder: dict, dataset: str, path: Path) -> None:
    """bpp vs PSNR, MS-SSIM and LPIPS: one point per decoder / baseline (dataset means)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, key, label in zip(axes, ("psnr", "ms_ssim", "lpips"), ("PSNR (dB)", "MS-SSIM", "LPIPS"),
                              strict=True):  # fmt: skip
        for dec, m in per_decoder.items():
            if m.get("bpp") is not None and m.get(key) is not None:
                ax.plot(m["bpp"], m[key], "o", label=dec)
        if key == "psnr":
            _published(ax, dataset, "psnr")
        ax.set_xlabel("bits per pixel (real)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"rate-distortion, {dataset}")
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, dpi=120, format="png")
    plt.close(fig)


def plot_rate_fid(per_decoder: dict, dataset: str, path: Path, note: str = "") -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for dec, m in per_decoder.items():
        if m.get("bpp") is not None and m.get("fid") is not None:
            ax.plot(m["bpp"], m["fid"], "o", label=dec)
    _published(ax, dataset, "fid256")
    if note:
        ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", wrap=True)
    ax.set_xlabel("bits per pixel (real)")
    ax.set_ylabel("FID/256" if dataset != "coco30k" else "FID (full image)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.set_title(f"rate-FID, {dataset}")
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, dpi=120, format="png")
    plt.close(fig)


def _published(ax, dataset, key):
    points = published_points(dataset)
    for method in dict.fromkeys(p["method"] for p in points):
        sel = [p for p in points if p["method"] == method and p.get(key)]
        if sel:
            ax.plot([float(p["bpp"]) for p in sel], [float(p[key]) for p in sel], "x--",
                    alpha=0.7, label=f"{method} (published)")  # fmt: skip
